"""``/ws``: the WebSocket clients of the embedded host and what is sent to them.

Contract (ComfyUI's, observed on 0.3.64):
- ``/ws?clientId=X`` registers the connection as client X (a missing or unusable id gets a fresh one); its first
  message is ``{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": n}}, "sid": X}}``. A
  client that reconnects with the same id takes the place of its old connection; if its prompt is running it
  is told which node runs now.
- If the client's first message is ``{"type": "feature_flags", "data": {...}}``, its flags are kept and the
  server answers with its own ``feature_flags``.
- Messages are JSON ``{"type", "data"}`` texts; previews are binary frames: type 4 (JSON metadata, then the JPEG)
  for clients that declared ``supports_preview_metadata``, else type 1 (format 1 = JPEG, then the bytes).

Each client has its own bounded outbox and writer task, so a slow client cannot hold the others up; a client
whose outbox overflows is disconnected. Messages to one client keep the order they were sent in.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
from typing import Any, Callable, Optional

from aiohttp import WSMsgType, web

from .middleware import PathRedactor, json_dumps
from .prompt_queue import ID_PATTERN
from .worker import PreviewFrame

log = logging.getLogger("unidit.server")

OUTBOX_SIZE = 10_000
MAX_CLIENT_MESSAGE = 1 << 20
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA, JPEG = 1, 4, 1


class Client:
    """One WebSocket connection: its id, its declared features, its outbox."""

    def __init__(self, sid: str, ws: web.WebSocketResponse):
        self.sid, self.ws = sid, ws
        self.feature_flags: dict = {}
        self.outbox: asyncio.Queue = asyncio.Queue(OUTBOX_SIZE)
        self.writer: Optional[asyncio.Task] = None

    def frame(self, message) -> tuple[str, Any]:
        if isinstance(message, str):
            return "text", message
        metadata, jpeg = message.metadata, message.jpeg
        if self.feature_flags.get("supports_preview_metadata") is True:
            encoded = json.dumps(metadata).encode()
            return "bytes", struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + jpeg
        return "bytes", struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg

    async def write(self) -> None:
        while True:
            kind, payload = self.frame(await self.outbox.get())
            try:
                if kind == "text":
                    await self.ws.send_str(payload)
                else:
                    await self.ws.send_bytes(payload)
            except (ConnectionError, RuntimeError) as problem:  # closed or closing
                log.debug("dropping client %s: %s", self.sid, problem)
                return


class ClientHub:
    """The connected clients, and sending to one of them or to all."""

    def __init__(self, server_features: dict, redact: PathRedactor):
        self.server_features = server_features
        self._redact = redact
        self._clients: dict[str, Client] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def connect(self, sid: str, ws: web.WebSocketResponse) -> Client:
        client = Client(sid, ws)
        client.writer = asyncio.ensure_future(client.write())
        self._clients[sid] = client
        return client

    def disconnect(self, client: Client) -> None:
        if self._clients.get(client.sid) is client:  # not the connection that replaced it
            del self._clients[client.sid]
        if client.writer is not None:
            client.writer.cancel()

    def send(self, event: str, data: Any, sid: Optional[str] = None) -> None:
        """Queue a message for client ``sid`` (None: every client). Call on the event loop."""
        message = data if isinstance(data, PreviewFrame) else json_dumps(self._redact({"type": event, "data": data}))
        targets = list(self._clients.values()) if sid is None else \
            [self._clients[sid]] if sid in self._clients else []
        for client in targets:
            try:
                client.outbox.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("client %s is not reading its messages; disconnecting it", client.sid)
                self.disconnect(client)
                asyncio.ensure_future(client.ws.close())

    def send_threadsafe(self, event: str, data: Any, sid: Optional[str] = None) -> None:
        """:meth:`send` from another thread (the worker)."""
        if self._loop is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self.send, event, data, sid)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    async def close_all(self) -> None:
        """Close every connection (at shutdown), waiting at most 2 s for the clients to answer."""
        clients = list(self._clients.values())
        for client in clients:
            self.disconnect(client)
        if clients:
            await asyncio.wait([asyncio.ensure_future(client.ws.close()) for client in clients], timeout=2)


def websocket_route(hub: ClientHub, queue_info: Callable[[], dict],
                    current_node: Callable[[], Optional[tuple]]):
    """The ``/ws`` handler (see the module docstring)."""

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_CLIENT_MESSAGE)
        await ws.prepare(request)
        requested = request.query.get("clientId", "")
        sid = requested if ID_PATTERN.fullmatch(requested) else uuid.uuid4().hex
        client = hub.connect(sid, ws)
        try:
            hub.send("status", {"status": queue_info(), "sid": sid}, sid)
            running = current_node()
            if running is not None and running[0] == sid:
                hub.send("executing", {"node": running[2], "display_node": running[2], "prompt_id": running[1]}, sid)
            first = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                if first:
                    first = False
                    try:
                        data = json.loads(message.data)
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(data, dict) and data.get("type") == "feature_flags" \
                            and isinstance(data.get("data"), dict):
                        client.feature_flags = data["data"]
                        hub.send("feature_flags", hub.server_features, sid)
        finally:
            hub.disconnect(client)
        return ws

    return websocket
