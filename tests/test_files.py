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
