"""runtime/files.py: atomic, no-overwrite writes (every splat and mesh writer goes through it)."""
import os

import pytest

from unidit.runtime import files
from unidit.runtime.files import write_atomic


def test_creates_the_file_and_its_folders(tmp_path):
    path = write_atomic(tmp_path / "out" / "deep" / "a.bin", b"\x00\x01payload")
    assert path.read_bytes() == b"\x00\x01payload"
    assert os.listdir(path.parent) == ["a.bin"]


def test_refuses_to_overwrite_and_leaves_nothing_behind(tmp_path):
    path = write_atomic(tmp_path / "a.bin", b"first")
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_atomic(path, b"second")
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_name_taken_while_writing_is_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "race.bin"
    real_link = os.link

    def someone_else_writes_first(source, target):
        target_path = os.fspath(target)
        with open(target_path, "wb") as handle:
            handle.write(b"theirs")
        real_link(source, target)

    monkeypatch.setattr(files.os, "link", someone_else_writes_first)
    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        write_atomic(path, b"ours")
    assert path.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["race.bin"]  # the temporary file is gone


def test_filesystems_without_hard_links_still_get_an_atomic_rename(tmp_path, monkeypatch):
    def no_links(source, target):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(files.os, "link", no_links)
    path = write_atomic(tmp_path / "fat.bin", b"data")
    assert path.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["fat.bin"]


def test_numbered_outputs_follow_comfyui_naming_and_never_collide(tmp_path):
    first, subfolder = files.save_output(tmp_path, "UniDiT", "png", b"a")
    second, _ = files.save_output(tmp_path, "UniDiT", "png", b"b")
    assert (first.name, second.name, subfolder) == ("UniDiT_00001_.png", "UniDiT_00002_.png", "")
    (tmp_path / "UniDiT_00041_.mp4").write_bytes(b"")  # the counter continues after the highest number used
    assert files.numbered_output(tmp_path, "UniDiT", "glb")[0].name == "UniDiT_00042_.glb"
    assert files.numbered_output(tmp_path, "UniDiT_x", "glb")[0].name == "UniDiT_x_00001_.glb"
    nested, subfolder = files.save_output(tmp_path, "video/clip", "mp4", b"c")
    assert nested == tmp_path / "video" / "clip_00001_.mp4" and subfolder == "video"


def test_prefixes_cannot_leave_the_output_folder(tmp_path):
    for prefix in ("../escape", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="output folder"):
            files.numbered_output(tmp_path / "out", prefix, "png")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="leads outside"):
        files.numbered_output(tmp_path / "out", "link/x", "png")


def test_store_unique_reuses_the_same_bytes_and_numbers_other_bytes(tmp_path):
    first = files.store_unique(tmp_path / "up", "pic.png", b"red")
    assert files.store_unique(tmp_path / "up", "pic.png", b"red") == first == tmp_path / "up" / "pic.png"
    assert files.store_unique(tmp_path / "up", "pic.png", b"blue").name == "pic (1).png"
    assert files.store_unique(tmp_path / "up", "pic.png", b"green").name == "pic (2).png"
    assert files.store_unique(tmp_path / "up", "pic.png", b"blue").name == "pic (1).png"
    assert first.read_bytes() == b"red"
    with pytest.raises(FileExistsError, match="no free name"):
        files.store_unique(tmp_path / "up", "pic.png", b"black", attempts=3)


def test_replace_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    path = files.replace_atomic(tmp_path / "settings" / "s.json", b"{}")
    assert files.replace_atomic(path, b'{"a": 1}') == path
    assert path.read_bytes() == b'{"a": 1}' and os.listdir(path.parent) == ["s.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_any_new_file_of_the_process(tmp_path, umask, mode):
    """As ComfyUI's outputs: 0666 less the umask (not the owner-only 0600 of a temporary file)."""
    previous = os.umask(umask)
    try:
        written = write_atomic(tmp_path / "out.png", b"png")
        replaced = files.replace_atomic(tmp_path / "settings.json", b"{}")
        numbered, _ = files.save_output(tmp_path, "UniDiT", "png", b"png")
    finally:
        os.umask(previous)
    assert {oct(path.stat().st_mode & 0o777) for path in (written, replaced, numbered)} == {oct(mode)}
    assert sorted(os.listdir(tmp_path)) == ["UniDiT_00001_.png", "out.png", "settings.json"]  # no temporary left
