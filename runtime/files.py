"""Writing output files: atomically, and never over an existing file (DESIGN §6).

Every file UniDiT writes (images, videos, splats, meshes) goes through :func:`write_atomic`, so a reader never
sees a half-written file and a user's earlier output is never replaced.
"""
from __future__ import annotations

import os
import tempfile
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
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


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
