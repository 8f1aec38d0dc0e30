"""The prompt queue and history of the embedded host, with ComfyUI's rules and shapes.

- Items run in order of their ``number`` (ComfyUI's priority: ``front`` queues with a negative number); equal
  numbers run first-in first-out. A queue item reads ``[number, prompt_id, prompt, extra_data, outputs]``.
- Pending items can be deleted or cleared; the running one is reported under ``queue_running``.
- History entries read ``{"prompt": item, "outputs", "status": {status_str, completed, messages}, "meta"}``,
  oldest first, at most ``max_history`` of them (the oldest are dropped). The queue holds at most
  ``max_pending`` waiting items (:class:`QueueFull` beyond).
- Memory is bounded by nodes too: the pending prompts hold at most ``max_nodes`` nodes together
  (:class:`QueueFull` beyond), and the oldest history entries are dropped while the history holds more.
- Flags (``unload_models``, ``free_memory``) are set by ``/free`` and taken by the worker between prompts.

Thread-safe: the HTTP handlers and the worker thread share it. ``on_change`` is called (from whichever thread
made the change) whenever the number of remaining items may have changed, so the server can broadcast status.
"""
from __future__ import annotations

import heapq
import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")   # prompt ids chosen by clients, and client ids


@dataclass(frozen=True)
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict
    extra_data: dict
    outputs: list

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    @property
    def client_id(self) -> Optional[str]:
        return self.extra_data.get("client_id") or None


class QueueFull(Exception):
    """The queue already holds its maximum of pending items."""


class PromptQueue:
    def __init__(self, max_pending: int = 1000, max_history: int = 1000,
                 on_change: Callable[[], None] = lambda: None, max_nodes: int = 200_000):
        self.max_pending, self.max_history, self.max_nodes = max_pending, max_history, max_nodes
        self._on_change = on_change
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._heap: list = []                     # (number, sequence, item)
        self._sequence = itertools.count()
        self._running: Optional[QueueItem] = None
        self._history: OrderedDict = OrderedDict()
        self._pending_nodes = 0
        self._history_nodes = 0
        self._flags: dict = {}
        self._closed = False

    # ---- pending and running ---------------------------------------------------------------------------------

    def put(self, item: QueueItem) -> None:
        with self._lock:
            if len(self._heap) >= self.max_pending:
                raise QueueFull(f"the queue already holds {self.max_pending} prompts")
            if self._pending_nodes + len(item.prompt) > self.max_nodes:
                raise QueueFull(f"the waiting prompts already hold {self._pending_nodes} nodes, and this one "
                                f"{len(item.prompt)}; at most {self.max_nodes} wait together: queue it later")
            heapq.heappush(self._heap, (item.number, next(self._sequence), item))
            self._pending_nodes += len(item.prompt)
            self._wake.notify()
        self._on_change()

    def get(self, timeout: float) -> Optional[QueueItem]:
        """The next item, now marked running; None after ``timeout`` seconds, once closed, or while flags wait
        to be taken (so a ``/free`` sent before a prompt applies before it runs)."""
        with self._wake:
            if not self._heap and not self._closed and not self._flags:
                self._wake.wait(timeout)
            if not self._heap or self._closed or self._flags:
                return None
            item = heapq.heappop(self._heap)[2]
            self._pending_nodes -= len(item.prompt)
            self._running = item
        self._on_change()
        return item

    def task_done(self, item: QueueItem, entry: dict) -> None:
        """Record the finished ``item`` in the history (``entry``: outputs, status, meta) and free the worker."""
        extra_data = {k: v for k, v in item.extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        with self._lock:
            self._running = None
            self._forget(item.prompt_id)
            self._history[item.prompt_id] = {"prompt": [item.number, item.prompt_id, item.prompt, extra_data,
                                                        item.outputs], **entry}
            self._history_nodes += len(item.prompt)
            while len(self._history) > self.max_history or (self._history_nodes > self.max_nodes
                                                            and len(self._history) > 1):
                self._forget(next(iter(self._history)))
        self._on_change()

    def running(self) -> Optional[QueueItem]:
        with self._lock:
            return self._running

    def pending(self) -> list:
        """Pending items in the order they will run."""
        with self._lock:
            return [entry[2] for entry in sorted(self._heap)]

    def remaining(self) -> int:
        with self._lock:
            return len(self._heap) + (self._running is not None)

    def info(self) -> dict:
        """ComfyUI's queue status: ``{"exec_info": {"queue_remaining": n}}``."""
        return {"exec_info": {"queue_remaining": self.remaining()}}

    def clear_pending(self) -> None:
        with self._lock:
            self._heap = []
            self._pending_nodes = 0
        self._on_change()

    def delete_pending(self, prompt_id: str) -> bool:
        with self._lock:
            kept = [entry for entry in self._heap if entry[2].prompt_id != prompt_id]
            deleted = len(kept) != len(self._heap)
            if deleted:
                heapq.heapify(kept)
                self._heap = kept
                self._pending_nodes = sum(len(entry[2].prompt) for entry in kept)
        if deleted:
            self._on_change()
        return deleted

    def knows(self, prompt_id: str) -> bool:
        """Whether ``prompt_id`` is pending, running or in the history."""
        with self._lock:
            return prompt_id in self._history or (self._running is not None and self._running.prompt_id == prompt_id) \
                or any(entry[2].prompt_id == prompt_id for entry in self._heap)

    # ---- history -----------------------------------------------------------------------------------------------

    def history(self, max_items: Optional[int] = None, offset: int = -1) -> dict:
        """ComfyUI's selection: from ``offset`` (negative with ``max_items``: the last ``max_items``), at most
        ``max_items`` entries, oldest first."""
        with self._lock:
            entries = list(self._history.items())
        if offset < 0 and max_items is not None:
            offset = len(entries) - max_items
        selected = entries[max(offset, 0):]
        if max_items is not None:
            selected = selected[:max_items]
        return dict(selected)

    def history_entry(self, prompt_id: str) -> Optional[dict]:
        with self._lock:
            return self._history.get(prompt_id)

    def clear_history(self) -> None:
        with self._lock:
            self._history.clear()
            self._history_nodes = 0

    def delete_history(self, prompt_id: str) -> None:
        with self._lock:
            self._forget(prompt_id)

    def _forget(self, prompt_id: str) -> None:
        """Drop a history entry (the lock held)."""
        entry = self._history.pop(prompt_id, None)
        if entry is not None:
            self._history_nodes -= len(entry["prompt"][2])

    # ---- flags and shutdown ------------------------------------------------------------------------------------

    def set_flag(self, name: str, value) -> None:
        with self._wake:
            self._flags[name] = value
            self._wake.notify()

    def take_flags(self) -> dict:
        with self._lock:
            flags, self._flags = self._flags, {}
            return flags

    def close(self) -> None:
        """Wake the worker for good: ``get`` returns None from now on."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
