"""``unidit serve``: the embedded host's HTTP/WebSocket server.

It serves the official ComfyUI editor (:mod:`.frontend`) with UniDiT's nodes and example workflows, and the part
of ComfyUI's API that the editor and headless clients use (:mod:`.api_routes`, :mod:`.file_routes`,
:mod:`.user_routes`, ``/ws`` in :mod:`.websocket`), so one client works against this host and against ComfyUI.
Prompts run one at a time in a worker thread (:mod:`.worker`) with one executor for the server's life. Under
torchrun, rank 0 serves and every other rank executes each prompt with it (:mod:`.lockstep`).

Every API route is served with and without the ``/api`` prefix, every error is JSON (:mod:`.middleware`), no
absolute server path is sent to a client, and the server listens on the loopback interface unless told
otherwise (there is no authentication, as in ComfyUI).

Use :func:`run_server` (blocks until Ctrl+C) or :func:`serve_in_background` (a context manager, e.g. for tests).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from aiohttp import web

from ..runtime import comfy_bridge, parallel
from ..runtime.bundle import SHIPPED_BUNDLE
from .api_routes import HostApi
from .core_nodes import CORE_NODES
from .executor import Executor
from .file_routes import FileRoutes
from .frontend import add_frontend_routes, frontend_root
from .lockstep import LeaderExecutor
from .middleware import (JSON_LIMIT_KEY, REDACTOR_KEY, cache_headers, default_redactor, json_errors,
                         same_origin_on_loopback)
from .prompt_queue import PromptQueue
from .run import prepare_input_directory, standalone_display_names, standalone_nodes
from .user_routes import UserRoutes
from .validation import MAX_PROMPT_NODES
from .websocket import ClientHub, websocket_route
from .worker import PromptWorker

log = logging.getLogger("unidit.server")

MEGABYTE = 1024 * 1024


@dataclass
class ServerConfig:
    """Everything ``unidit serve`` can be told (flag names as ComfyUI's)."""

    listen: str = "127.0.0.1"
    port: int = 8188                      # 0: any free port
    output_directory: Path = Path("output")
    input_directory: Path = Path("input")
    temp_directory: Path = Path("temp")
    user_directory: Path = Path("user")
    models_directories: list = field(default_factory=list)
    max_upload_size_mb: float = 100.0     # bound of every request body (uploads); ComfyUI's --max-upload-size
    max_json_size_mb: float = 32.0        # bound of JSON bodies (prompts, settings)
    max_queue: int = 1000                 # pending prompts
    max_history: int = 1000               # finished prompts kept
    max_prompt_nodes: int = MAX_PROMPT_NODES  # nodes of one prompt
    max_queued_nodes: int = 200_000       # nodes of the pending prompts together, and of the history
    compute: comfy_bridge.ComputeOptions = field(default_factory=comfy_bridge.ComputeOptions)

    def folders(self) -> dict:
        """The served folders by type, absolute."""
        return {"output": self.output_directory.resolve(), "input": self.input_directory.resolve(),
                "temp": self.temp_directory.resolve()}


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("comfyui-unidit")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class HostServer:
    """The server's parts, wired together: the app, the queue, the worker and the WebSocket clients."""

    def __init__(self, config: ServerConfig, nodes: Optional[dict] = None, display_names: Optional[dict] = None):
        self.config = config
        self.nodes = nodes if nodes is not None else standalone_nodes()
        self.display_names = {**standalone_display_names(), **(display_names or {})}
        self.url: Optional[str] = None
        self._runner: Optional[web.AppRunner] = None
        folders = config.folders()
        self.user_directory = config.user_directory.resolve()
        user_model_folders = [Path(folder).resolve() for folder in config.models_directories]
        self.model_folders = {kind: comfy_bridge.standalone_model_folders(user_model_folders, kind)
                              for kind in comfy_bridge.MODEL_KINDS}                    # as the loaders search them
        self.model_folders[comfy_bridge.MODEL_FOLDER].append(SHIPPED_BUNDLE.parent)
        self.services = comfy_bridge.HostServices(folders["output"], folders["input"], folders["temp"],
                                                  user_model_folders, config.compute)
        labels = [(folders[kind], kind) for kind in folders] + [(self.user_directory, "user")]
        labels += [(folder, f"models/{folder.name}") for folder in user_model_folders]
        self.redact = default_redactor(labels)
        features = {"supports_preview_metadata": True, "max_upload_size": int(config.max_upload_size_mb * MEGABYTE)}
        self.hub = ClientHub(features, self.redact)
        self.queue = PromptQueue(config.max_queue, config.max_history, self._broadcast_status,
                                 config.max_queued_nodes)
        if parallel.context() is None:
            self.worker = PromptWorker(self.queue, Executor(self.nodes, self.services), self.hub.send_threadsafe,
                                       self._unload_models)
        else:  # under torchrun: the other ranks execute every prompt with this one (lockstep.py)
            leader = LeaderExecutor(self.nodes, self.services)
            self.worker = PromptWorker(self.queue, leader, self.hub.send_threadsafe, leader.unload_models,
                                       on_exit=leader.stop_followers)
        python_modules = {name: "nodes" for name in CORE_NODES}
        self.api = HostApi(self.nodes, self.display_names, python_modules, self.services, self.queue, self.worker,
                           features, self.model_folders, _package_version(), config.max_prompt_nodes)
        self.app = self._build_app(folders)

    @staticmethod
    def _unload_models() -> None:
        from ..runtime.store import STORE

        count = STORE.unload()
        log.info("unloaded %d model(s)", count)

    def _broadcast_status(self) -> None:
        self.hub.send_threadsafe("status", {"status": self.queue.info()})

    def _build_app(self, folders: dict) -> web.Application:
        app = web.Application(client_max_size=int(self.config.max_upload_size_mb * MEGABYTE),
                              middlewares=[json_errors, same_origin_on_loopback, cache_headers])
        app[JSON_LIMIT_KEY] = int(self.config.max_json_size_mb * MEGABYTE)
        app[REDACTOR_KEY] = self.redact
        websocket = websocket_route(self.hub, self.queue.info, self.worker.current_node)
        routes = [("GET", "/ws", websocket)] + self.api.routes() + FileRoutes(folders).routes() + \
            UserRoutes(self.user_directory).routes()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        for method, path, handler in self.api.internal_routes():
            app.router.add_route(method, path, handler)
        add_frontend_routes(app, frontend_root())
        app.on_shutdown.append(lambda _: self.hub.close_all())
        return app

    def _prepare_folders(self) -> None:
        for folder in self.config.folders().values():
            folder.mkdir(parents=True, exist_ok=True)
        prepare_input_directory(self.config.input_directory.resolve())
        for name in ("workflows", "subgraphs"):  # the editor lists these at start
            (self.user_directory / "default" / name).mkdir(parents=True, exist_ok=True)

    async def start(self) -> str:
        """Create the folders, listen and start the worker; returns the URL."""
        self._prepare_folders()
        self.hub.attach(asyncio.get_running_loop())
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen, self.config.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.worker.start()
        host, port = self._runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening, close the WebSockets, interrupt the running prompt and end the worker."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self.worker.started:
            await asyncio.to_thread(self.worker.stop)


def run_server(config: ServerConfig) -> None:
    """Serve until Ctrl+C (or SIGTERM), then stop cleanly."""

    async def main() -> None:
        server = HostServer(config)
        url = await server.start()
        print(f"UniDiT is serving the ComfyUI editor at {url}  (Ctrl+C to stop)", flush=True)
        if config.listen not in ("127.0.0.1", "localhost", "::1"):
            log.warning("listening on %s: anyone who can reach this machine can use the server (there is no "
                        "authentication)", config.listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(signal_number, stop.set)
        try:
            await stop.wait()
        finally:
            print("stopping", flush=True)
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def serve_in_background(config: ServerConfig, nodes: Optional[dict] = None,
                        display_names: Optional[dict] = None) -> Iterator[HostServer]:
    """Run a server in a background thread (its own event loop) for the duration of the ``with`` block; yields
    the started :class:`HostServer` (its ``url`` set)."""
    server = HostServer(config, nodes, display_names)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as problem:  # reported to the caller below
            failure.append(problem)
            loop.close()
            return
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, name="unidit-server", daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
