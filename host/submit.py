"""``unidit submit``: run a workflow on any ComfyUI-compatible server (``unidit serve`` or ComfyUI itself) and
download what it made.

1. The workflow (UI or API format) is converted to an API prompt with the node definitions of the server's own
   ``/object_info`` (so it converts for whatever that server has installed); ``--set`` overrides apply.
2. A WebSocket is opened with a fresh client id, then the prompt is queued with that id (``POST /prompt``);
   a rejection is reported with the server's message and node errors.
3. Progress is shown from the WebSocket until the server says the prompt is done (``executing`` with node
   null), then the history entry is read and every file in its outputs is downloaded from ``/view`` into the
   output folder (``<out>/<subfolder>/<filename>``; a file already there with the same bytes is kept, a
   different one is never replaced: the download gets a free ``name (1).ext``).

Only aiohttp's client is used, with ComfyUI's un-prefixed routes (which every ComfyUI version serves).
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import aiohttp

from ..runtime.files import store_unique
from .output_files import output_files
from .safe_paths import is_plain_file_name, resolve_inside
from .terminal import ProgressDisplay, rejection_text
from .workflow import apply_overrides, is_ui_workflow, load_workflow, to_api_prompt

MAX_MESSAGE = 64 * 1024 * 1024
MAX_DOWNLOAD = 4 * 1024 ** 3     # bytes of one output file (a long 4K video is far less)


class SubmitError(Exception):
    """The server could not be used, or refused the workflow; the message says why."""


@dataclass
class SubmitResult:
    prompt_id: str
    status: str                                   # "success" | "error" | "interrupted"
    error: Optional[dict] = None                  # the server's execution_error data, for "error"
    files: list = field(default_factory=list)     # downloaded paths


def _save_download(out: Path, item: dict, data: bytes) -> Optional[Path]:
    """Store a downloaded file under ``out`` (see the module docstring); None for names that would leave it."""
    name, subfolder = item["filename"], str(item.get("subfolder") or "")
    folder = resolve_inside(out, subfolder) if not Path(subfolder).is_absolute() else None
    if folder is None or not is_plain_file_name(name):
        return None
    return store_unique(folder, name, data)


class _Connection:
    """The HTTP session and the WebSocket of one submission."""

    def __init__(self, server: str):
        server = server.rstrip("/")
        self.base = server if "://" in server else f"http://{server}"
        self.client_id = uuid.uuid4().hex
        self.events: asyncio.Queue = asyncio.Queue()
        self.session: Optional[aiohttp.ClientSession] = None
        self.ws = None
        self._pump: Optional[asyncio.Task] = None

    async def __aenter__(self):
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=15))
        return self

    async def __aexit__(self, *exc):
        if self._pump is not None:
            self._pump.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()

    async def get_json(self, route: str, **params):
        try:
            async with self.session.get(self.base + route, params=params) as response:
                text = await response.text()
                if response.status != 200:
                    raise SubmitError(f"GET {route}: HTTP {response.status}: {text[:300]}")
                return json.loads(text)
        except aiohttp.ClientError as problem:
            raise SubmitError(f"cannot reach the server at {self.base}: {problem}") from None
        except ValueError:
            raise SubmitError(f"GET {route}: the server did not answer JSON") from None

    async def open_websocket(self) -> None:
        url = self.base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            self.ws = await self.session.ws_connect(url, heartbeat=30, max_msg_size=MAX_MESSAGE)
        except aiohttp.ClientError as problem:
            raise SubmitError(f"cannot open the server's WebSocket: {problem}") from None
        self._pump = asyncio.ensure_future(self._read_events())

    async def _read_events(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("data"), dict):
                    await self.events.put((event.get("type"), event["data"]))
        await self.events.put((None, {}))  # the socket closed

    async def queue_prompt(self, payload: dict) -> str:
        try:
            async with self.session.post(self.base + "/prompt", json=payload) as response:
                text = await response.text()
        except aiohttp.ClientError as problem:
            raise SubmitError(f"cannot reach the server at {self.base}: {problem}") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        if response.status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            error, node_errors = (body.get("error"), body.get("node_errors")) if isinstance(body, dict) else (body, {})
            raise SubmitError(f"the server refused the workflow (HTTP {response.status}): "
                              f"{rejection_text(error, node_errors)}")
        if not isinstance(body["prompt_id"], str):
            raise SubmitError(f"the server answered a prompt_id that is not text: {body['prompt_id']!r:.100}")
        return body["prompt_id"]

    async def download(self, item: dict) -> bytes:
        params = {"filename": item["filename"], "subfolder": str(item.get("subfolder") or ""),
                  "type": str(item.get("type") or "output")}
        try:
            async with self.session.get(self.base + "/view", params=params) as response:
                if response.status != 200:
                    raise SubmitError(f"cannot download {item['filename']}: HTTP {response.status}")
                data = bytearray()
                async for chunk in response.content.iter_chunked(1 << 20):
                    data += chunk
                    if len(data) > MAX_DOWNLOAD:
                        raise SubmitError(f"{item['filename']}: the server sent more than {MAX_DOWNLOAD} bytes")
                return bytes(data)
        except aiohttp.ClientError as problem:
            raise SubmitError(f"cannot download {item['filename']}: {problem}") from None


async def _wait_until_done(connection: _Connection, prompt_id: str, display: ProgressDisplay) -> None:
    """Show the prompt's events until the server reports it done (``executing`` with node null, sent after the
    history entry is written); if the WebSocket closes early, wait for the history entry instead."""
    while True:
        event, data = await connection.events.get()
        if event is None:
            while not await connection.get_json(f"/history/{prompt_id}"):
                await asyncio.sleep(0.5)
            return
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        display.show(event, data)
        if event == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return


def outcome(entry: dict) -> tuple[str, Optional[dict]]:
    """(status, execution error) of a history entry: ``success``, ``interrupted`` or ``error`` with the data of
    its ``execution_error`` message."""
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    messages = status.get("messages") if isinstance(status.get("messages"), list) else []
    events = dict((message[0], message[1]) for message in messages
                  if isinstance(message, list) and len(message) == 2 and isinstance(message[0], str))
    if status.get("status_str") == "success":
        return "success", None
    if "execution_interrupted" in events:
        return "interrupted", None
    failure = events.get("execution_error")
    return "error", failure if isinstance(failure, dict) else {"exception_message": "the server reported an error"}


async def submit_workflow(workflow_path: Path, server: str, out: Path, overrides: Optional[list] = None,
                          progress: bool = True, timeout: Optional[float] = None) -> SubmitResult:
    """Submit, follow and download (see the module docstring). Raises :class:`SubmitError` or
    :class:`WorkflowError` when the workflow cannot be queued; an execution error is in the result."""
    workflow = load_workflow(workflow_path)
    async with _Connection(server) as connection:
        definitions = await connection.get_json("/object_info")
        if not isinstance(definitions, dict):
            raise SubmitError("the server's /object_info is not an object of node definitions")
        names = {name: info.get("display_name", name) for name, info in definitions.items() if isinstance(info, dict)}
        prompt = apply_overrides(to_api_prompt(workflow, definitions, names), overrides or [], definitions)
        payload = {"prompt": prompt, "client_id": connection.client_id}
        if is_ui_workflow(workflow):
            payload["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        await connection.open_websocket()
        prompt_id = await connection.queue_prompt(payload)
        display = ProgressDisplay(prompt, progress)
        try:
            await asyncio.wait_for(_wait_until_done(connection, prompt_id, display), timeout)
        except asyncio.TimeoutError:
            raise SubmitError(f"no result after {timeout} s (prompt {prompt_id} may still be running)") from None
        finally:
            display.close()
        history = await connection.get_json(f"/history/{prompt_id}")
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        files = []
        for _, _, item in output_files(entry.get("outputs") or {}):
            saved = _save_download(out, item, await connection.download(item))
            if saved is None:
                raise SubmitError(f"the server named an output outside the output folder: "
                                  f"{item.get('subfolder')!r}/{item['filename']!r}")
            files.append(saved)
    return SubmitResult(prompt_id, *outcome(entry), files)


def submit(workflow_path: Path, server: str, out: Path, overrides: Optional[list] = None, progress: bool = True,
           timeout: Optional[float] = None) -> SubmitResult:
    """:func:`submit_workflow`, for callers without an event loop."""
    return asyncio.run(submit_workflow(workflow_path, server, out, overrides, progress, timeout))

