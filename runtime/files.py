"""Writing output files: atomically, and never over an existing file (DESIGN §6).

Every file UniDiT writes (images, videos, splats, meshes) goes through :func:`write_atomic`, so a reader never
sees a half-written file and a user's earlier output is never replaced. :func:`store_unique` keeps files that
arrive with a name of their own (uploads, downloads) the same way; :func:`replace_atomic` is for the few files
that are meant to be replaced (settings, an upload with ``overwrite``).

Files get the permissions of any new file of the process (0666 less the umask: 0644 with the usual 022), as
ComfyUI's outputs do; the temporary file is created with them, not narrowed to the owner and widened later.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Create the new file ``path`` holding ``data``, atomically; returns the path.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the temporary file is then
    linked to its final name. Linking fails when the name exists, so a file that appears meanwhile is not
    replaced either. Missing parent folders are created.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; UniDiT never overwrites a file. "
                              f"Choose another name (or prefix), or move the old file away.")
    _write_then(path, data, _publish)
    return path


def replace_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``path`` holding ``data``, replacing the file there if any, atomically (readers see the old or the
    new bytes, never a mix); returns the path. Missing parent folders are created."""
    path = Path(path)
    _write_then(path, data, os.replace)
    return path


def _write_then(path: Path, data: bytes, publish) -> None:
    """Write ``data`` to a temporary file next to ``path``, flush it to disk, then ``publish(temporary, path)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _create_temporary(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new hidden file next to ``path``, opened for writing, with the process's default permissions."""
    for _ in range(100):
        temporary = str(path.parent / f".unidit-{secrets.token_hex(8)}.partial")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), \
                temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def store_unique(folder: str | os.PathLike, name: str, data: bytes, attempts: int = 10_000) -> Path:
    """Keep ``data`` as ``folder/name`` without replacing anything, as ComfyUI names uploads: a file of that
    name with the same bytes is reused, else the first free ``stem (1).ext``, ``stem (2).ext``... is written.
    Returns the path used; FileExistsError when ``attempts`` names are all taken by other bytes."""
    folder = Path(folder)
    stem, suffix = os.path.splitext(name)
    for index in range(attempts):
        path = folder / (name if index == 0 else f"{stem} ({index}){suffix}")
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
        if path.exists():
            continue
        try:
            return write_atomic(path, data)
        except FileExistsError:  # taken meanwhile: look at it again, it may hold the same bytes
            if path.is_file() and path.read_bytes() == data:
                return path
    raise FileExistsError(f"no free name left for {name!r} in {folder}")


def _publish(temporary: str, path: Path) -> None:
    """Give the finished temporary file its final name without replacing anything."""
    try:
        os.link(temporary, path)  # atomic, and raises FileExistsError if the name was taken meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while it was being written; UniDiT never overwrites a file. "
                              f"Choose another name.") from None
    except OSError:
        # Filesystems without hard links (FAT, some network shares): rename, after checking the name again.
        if path.exists():
            raise FileExistsError(f"{path} appeared while it was being written; UniDiT never overwrites a "
                                  f"file. Choose another name.") from None
        os.replace(temporary, path)


def numbered_output(output_dir: str | os.PathLike, filename_prefix: str, extension: str) -> tuple[Path, str]:
    """The next free ComfyUI-style name for ``filename_prefix``: ``<output_dir>/<sub>/<name>_00001_.<ext>``.

    ``filename_prefix`` may contain subfolders ("video/UniDiT"); the result must stay inside ``output_dir``
    (resolved with symlinks, so a link cannot lead outside). The counter continues after the highest number
    already used by that name, as ComfyUI's ``get_save_image_path`` does. Returns the path and the subfolder.
    """
    root = Path(os.path.realpath(output_dir))
    relative = Path(os.path.normpath(filename_prefix.strip() or "UniDiT"))
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"filename prefix {filename_prefix!r} must stay inside the output folder "
                         f"(no absolute paths or '..')")
    folder = Path(os.path.realpath(root / relative.parent))
    if os.path.commonpath([root, folder]) != str(root):
        raise ValueError(f"filename prefix {filename_prefix!r} leads outside the output folder")
    name = relative.name
    used = [0]
    if folder.is_dir():
        for entry in os.listdir(folder):
            stem = entry.rsplit(".", 1)[0]
            if stem.startswith(f"{name}_") and stem.endswith("_") and stem[len(name) + 1:-1].isdigit():
                used.append(int(stem[len(name) + 1:-1]))
    subfolder = "" if relative.parent == Path(".") else relative.parent.as_posix()
    return folder / f"{name}_{max(used) + 1:05d}_.{extension.lstrip('.')}", subfolder


def save_output(output_dir: str | os.PathLike, filename_prefix: str, extension: str, data: bytes) -> tuple[Path, str]:
    """Write ``data`` under the next free numbered name (see :func:`numbered_output`); returns the path and its
    subfolder. If another writer takes the name first, the next number is used."""
    for _ in range(100):
        path, subfolder = numbered_output(output_dir, filename_prefix, extension)
        try:
            return write_atomic(path, data), subfolder
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free name for {filename_prefix!r} in {output_dir}")
