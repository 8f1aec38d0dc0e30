"""What `unidit run` and `unidit submit` show on the terminal (on stderr; stdout lists the output files).

:class:`ProgressDisplay`: each node's title as it starts, a bar per node that reports progress (the sampler's
steps), and the nodes whose outputs were cached, fed with ComfyUI's execution events (``executing``,
``progress``, ``execution_cached``), which the executor and a server's WebSocket both produce.
:func:`rejection_text` words a refused prompt (ComfyUI's ``error`` and ``node_errors``); :func:`finish` reports
how a prompt ended and gives the command's exit status.
"""
from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm


class ProgressDisplay:
    """Shows one prompt's progress; ``prompt`` (API format) gives the nodes' titles."""

    def __init__(self, prompt: dict, enabled: bool = True):
        self.prompt, self.enabled = prompt, enabled
        self.bars: dict = {}

    def show(self, event: str, data: dict) -> None:
        """Show one event; fields of the wrong type (a broken or hostile server's) are passed over."""
        if not self.enabled or not isinstance(data, dict):
            return
        node_id = data.get("node")
        if event == "executing" and isinstance(node_id, str):
            self.close()  # the previous node is done
            node = self.prompt.get(node_id)
            node = node if isinstance(node, dict) else {}
            meta = node.get("_meta") if isinstance(node.get("_meta"), dict) else {}
            tqdm.write(f"#{node_id[:64]} {str(meta.get('title', node.get('class_type', '?')))[:200]}", file=sys.stderr)
        elif event == "progress":
            value, total = data.get("value"), data.get("max")
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10 ** 9 for v in (value, total)):
                return
            key = str(node_id)[:64]
            bar = self.bars.get(key)
            if bar is None or bar.total != total:
                bar = self.bars[key] = tqdm(total=total, desc=f"  #{key}", leave=False, dynamic_ncols=True,
                                            file=sys.stderr)
            bar.update(value - bar.n)
        elif event == "execution_cached" and isinstance(data.get("nodes"), list) and data["nodes"]:
            tqdm.write(f"cached: {', '.join(str(n)[:64] for n in data['nodes'][:100])}", file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def rejection_text(error, node_errors) -> str:
    """Why a prompt was refused: ComfyUI's ``error`` (an object, or any value a server sent) and each of its
    ``node_errors``, one per line."""
    if isinstance(error, dict):
        lines = [str(error.get("message", "rejected")) + (f": {error['details']}" if error.get("details") else "")]
    else:
        lines = [str(error or "rejected")[:500]]
    for node_id, entry in (node_errors if isinstance(node_errors, dict) else {}).items():
        for problem in entry.get("errors", []) if isinstance(entry, dict) else []:
            lines.append(f"  node {node_id} ({entry.get('class_type', '?')}): {problem.get('message', '')}"
                         + (f" [{problem['details']}]" if problem.get("details") else ""))
    return "\n".join(lines)


def finish(status: str, error: Optional[dict], prefix: str = "") -> int:
    """Report how a prompt ended (``status``: success, error or interrupted; ``error``: the data of ComfyUI's
    ``execution_error``) on stderr, each line after ``prefix``; returns the exit status: 0, 1 for an error, 130
    when interrupted."""
    if status == "error":
        error = error if isinstance(error, dict) else {"exception_message": str(error)[:500]}
        print(f"{prefix}error in node {error.get('node_id')} ({error.get('node_type')}): "
              f"{error.get('exception_type')}: {error.get('exception_message')}", file=sys.stderr)
        return 1
    if status == "interrupted":
        print(f"{prefix}interrupted", file=sys.stderr)
        return 130
    return 0
