"""The worker: one thread that runs queued prompts with one :class:`Executor` for the server's whole life (so
outputs are cached across prompts, as in ComfyUI), and turns its events into ComfyUI's WebSocket messages.

Per prompt, its client (the POST's ``client_id``) receives, in ComfyUI's order::

    execution_start, execution_cached,
    per node: progress_state (node running), executing, [progress_state, progress, preview]..., executed,
              progress_state (node finished),
    execution_success | execution_error | execution_interrupted

A ``progress_state`` carries the state of every node that started (the editor replaces its view with it), so
its size grows with the prompt: for prompts of more than :data:`FULL_STATE_NODES` nodes it is sent at most every
:data:`STATE_INTERVAL` seconds (and at the end), else a long chain would cost time quadratic in its length.

then the status broadcast of the shorter queue, then ``executing`` with ``node: null`` (after the history
entry is written, so a client that sees it can fetch the history). Without a client id only ``progress``,
``progress_state``, previews and ``execution_interrupted`` are sent, to everyone (ComfyUI's rule).

``/free`` flags are applied between prompts: ``unload_models`` unloads the model store, ``free_memory`` also
forgets the executor's cached outputs.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .executor import Executor
from .prompt_queue import PromptQueue, QueueItem

log = logging.getLogger("unidit.server")

Send = Callable[[str, Any, Optional[str]], None]   # (event, data, client id or None for everyone)
BROADCAST_WITHOUT_CLIENT = ("progress", "progress_state", "preview", "execution_interrupted")
PREVIEW_MAX_SIZE = 512
FULL_STATE_NODES = 200     # progress_state is sent on every change for prompts up to this many nodes
STATE_INTERVAL = 0.1       # seconds between progress_state messages of larger prompts


@dataclass(frozen=True)
class PreviewFrame:
    """A preview image for the binary WebSocket frames: JPEG bytes and ComfyUI's metadata."""

    jpeg: bytes
    metadata: dict


def encode_preview(image, max_size: int = PREVIEW_MAX_SIZE) -> bytes:
    """A PIL image as JPEG, no larger than ``max_size`` on its longer side (as ComfyUI sends previews)."""
    image = image.convert("RGB")
    image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class PromptMessages:
    """Turns one prompt's executor events into ComfyUI's WebSocket messages (see the module docstring)."""

    def __init__(self, item: QueueItem, send: Send, on_start: Callable[[], None]):
        self.item, self._send, self._on_start = item, send, on_start
        self.client = item.client_id
        self.nodes: dict = {}            # node id -> progress entry of the nodes that started
        self.current: Optional[str] = None
        self._throttled = len(item.prompt) > FULL_STATE_NODES
        self._state_sent = float("-inf")  # when the last progress_state went out
        self._state_waiting = False       # a change not sent yet

    def send(self, event: str, data: Any) -> None:
        if self.client is not None:
            self._send(event, data, self.client)
        elif event in BROADCAST_WITHOUT_CLIENT:
            self._send(event, data, None)

    def _progress_state(self, final: bool = False) -> None:
        now = time.monotonic()
        if self._throttled and not final and now - self._state_sent < STATE_INTERVAL:
            self._state_waiting = True
            return
        self._state_sent, self._state_waiting = now, False
        prompt_id = self.item.prompt_id
        self.send("progress_state", {"prompt_id": prompt_id, "nodes": {
            node_id: {**entry, "node_id": node_id, "prompt_id": prompt_id, "display_node_id": node_id,
                      "parent_node_id": None, "real_node_id": node_id}
            for node_id, entry in self.nodes.items()}})

    def _finish_current(self, state: str = "finished") -> bool:
        if self.current is None:
            return False
        entry = self.nodes[self.current]
        entry.update(state=state, value=entry["max"] if state == "finished" else entry["value"])
        self.current = None
        return True

    def __call__(self, event: str, data: dict) -> None:
        if event == "execution_start":
            self._on_start()
            self.send(event, data)
        elif event == "execution_cached":
            self.send(event, data)
            for node_id in data["nodes"]:
                self.nodes[node_id] = {"value": 1, "max": 1, "state": "finished"}
            if data["nodes"]:
                self._progress_state()
        elif event == "executing":
            self._finish_current()
            self.current = data["node"]
            self.nodes[self.current] = {"value": 0, "max": 1, "state": "running"}
            self._progress_state()
            self.send(event, data)
        elif event == "progress":
            if data["node"] in self.nodes:
                self.nodes[data["node"]].update(value=data["value"], max=data["max"], state="running")
                self._progress_state()
            self.send(event, data)
        elif event == "preview":
            metadata = {"node_id": data["node"], "prompt_id": data["prompt_id"], "display_node_id": data["node"],
                        "parent_node_id": None, "real_node_id": data["node"], "image_type": "image/jpeg"}
            self.send("preview", PreviewFrame(encode_preview(data["image"]), metadata))
        elif event == "executed":
            self.send(event, data)
            if data["node"] == self.current and self._finish_current():
                self._progress_state()
        elif event == "execution_error":
            if self._finish_current("error") or self._state_waiting:
                self._progress_state(final=True)
            self.send(event, data)
        else:  # execution_success, execution_interrupted
            if self._finish_current() or self._state_waiting:
                self._progress_state(final=True)
            self.send(event, data)


class PromptWorker:
    """Takes prompts from the queue and runs them, one at a time, in its own thread."""

    def __init__(self, queue: PromptQueue, executor: Executor, send: Send, unload_models: Callable[[], Any],
                 on_exit: Callable[[], Any] = lambda: None):
        """``on_exit`` runs in the worker's thread after its last prompt (under torchrun: stop the followers)."""
        self.queue, self.executor, self._send, self._unload_models = queue, executor, send, unload_models
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._loop, name="unidit-prompt-worker", daemon=True)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._messages: Optional[PromptMessages] = None
        self._interrupt_target: Optional[str] = None

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running prompt and end the thread."""
        self._stopping.set()
        self.interrupt()
        self.queue.close()
        self._thread.join(timeout)

    def interrupt(self, prompt_id: Optional[str] = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id``, when given); whether one was interrupted."""
        with self._lock:
            running = self.queue.running()  # marked running as the worker takes it, before it starts
            if running is None or (prompt_id is not None and running.prompt_id != prompt_id):
                return False
            self._interrupt_target = running.prompt_id
            self.executor.interrupt()
            return True

    def current_node(self) -> Optional[tuple]:
        """(client id, prompt id, node id) of the node running now, for a client that reconnects."""
        with self._lock:
            messages = self._messages
            if messages is None or messages.current is None:
                return None
            return messages.client, messages.item.prompt_id, messages.current

    def _started(self, item: QueueItem) -> None:
        # The executor clears its interrupt flag when a prompt starts: re-apply one that arrived before.
        with self._lock:
            if self._interrupt_target == item.prompt_id:
                self.executor.interrupt()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self.queue.get(timeout=1.0)
                if item is not None:
                    self._run(item)
                self._apply_flags()
            except Exception:  # never let the one worker die: log, and take the next prompt
                log.exception("the prompt worker hit an internal error")
        self._on_exit()

    def _run(self, item: QueueItem) -> None:
        messages = PromptMessages(item, self._send, lambda: self._started(item))
        with self._lock:
            self._messages = messages
        started = time.perf_counter()
        try:
            result = self.executor.execute(item.prompt, item.prompt_id, item.outputs, item.extra_data, messages)
            status, outputs, history_messages = result.status, result.outputs, result.messages
        except Exception:  # a failure outside any node (e.g. a node's IS_CHANGED): report it, keep serving
            log.exception("prompt %s failed outside of a node", item.prompt_id)
            status, outputs = "error", {}
            failure = {"prompt_id": item.prompt_id, "node_id": "", "node_type": "", "executed": [],
                       "exception_message": "The server failed to run this prompt (see the server log)",
                       "exception_type": "InternalError", "traceback": [], "current_inputs": {},
                       "current_outputs": [], "timestamp": int(time.time() * 1000)}
            messages.send("execution_error", failure)
            history_messages = [["execution_error", failure]]
        entry = {"outputs": outputs,
                 "status": {"status_str": "success" if status == "success" else "error",
                            "completed": status == "success", "messages": history_messages},
                 "meta": {node_id: {"node_id": node_id, "display_node": node_id, "parent_node": None,
                                    "real_node_id": node_id} for node_id in outputs}}
        with self._lock:
            self._messages = None
        self.queue.task_done(item, entry)
        if item.client_id is not None:
            self._send("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)
        log.info("prompt %s: %s in %.2f s", item.prompt_id, status, time.perf_counter() - started)

    def _apply_flags(self) -> None:
        flags = self.queue.take_flags()
        free_memory = bool(flags.get("free_memory"))
        if flags.get("unload_models") or free_memory:
            self._unload_models()
        if free_memory:
            self.executor.reset()
