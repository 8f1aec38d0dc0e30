"""The files a prompt's outputs list, in ComfyUI's shape ``{node id: {ui key: [{filename, subfolder, type, ...}]}}``
(history entries, ``unidit run``'s result, a server's ``/history``; UniDiT's ui keys: runtime/output_formats.py).
``unidit run`` and ``unidit submit`` report them, the jobs API counts and previews them."""
from __future__ import annotations

from typing import Iterator


def output_files(outputs) -> Iterator[tuple[str, str, dict]]:
    """(node id, ui key, item) of every file item: a dict with a string ``filename``. Anything else (a flag list
    such as ``animated``, text, a malformed entry sent by another server) is passed over."""
    for node_id, ui in outputs.items() if isinstance(outputs, dict) else ():
        for key, items in ui.items() if isinstance(ui, dict) else ():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    yield node_id, key, item
