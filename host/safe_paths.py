"""Containment of client-named paths: every file route resolves names with :func:`resolve_inside`.

A path named by a client is accepted only if it stays inside its root both as written (no ``..`` or absolute
escape) and once symbolic links are resolved (``realpath``), so a link placed inside a served folder cannot lead
outside it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

MAX_NAME_LENGTH = 255


def resolve_inside(root: Path, *parts: str) -> Optional[Path]:
    """``root / parts...`` resolved, or None when it leaves ``root`` (lexically or through a link) or a part
    holds a NUL byte. The result may not exist yet; ``root`` itself is a valid answer."""
    if any("\x00" in part for part in parts):
        return None
    base = os.path.realpath(root)
    joined = os.path.abspath(os.path.join(base, *parts))
    if os.path.commonpath([base, joined]) != base:
        return None
    resolved = os.path.realpath(joined)
    if os.path.commonpath([base, resolved]) != base:
        return None
    return Path(resolved)


def is_plain_file_name(name: str) -> bool:
    """A single file name: not empty, no folder separators, no NUL, not '.' or '..', not too long."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00") \
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_LENGTH
