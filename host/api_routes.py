"""The JSON API of the embedded host: nodes, prompts, queue, history, jobs, and what the frontend reads at start.

Shapes and statuses follow ComfyUI (``shared/reference/comfyui.md`` §4–5); where ComfyUI answers a malformed
request with a 500 text page, these routes answer 400 with a JSON error. Every route is registered with and
without the ``/api`` prefix by the server (``/internal/...`` routes without it, as in ComfyUI).

- ``POST /prompt``: ``{"prompt", "client_id"?, "prompt_id"?, "number"?, "front"?, "extra_data"?,
  "partial_execution_targets"?}`` -> 200 ``{"prompt_id", "number", "node_errors"}`` or 400 ``{"error",
  "node_errors"}`` (ComfyUI's validation). ``number`` is a priority (lower runs first); without it the server
  counts up, and ``front`` makes it negative. A client-chosen ``prompt_id`` must be new (ComfyUI does not check).
  A full queue answers 429.
- ``/queue``, ``/interrupt``, ``/free``, ``/history``: as ComfyUI. ``/api/jobs``: see :mod:`.jobs`.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from aiohttp import web

from ..runtime import comfy_bridge
from .validation import MAX_PROMPT_NODES, validate_prompt
from .frontend import FRONTEND_VERSION, PACK_NAME, extension_urls, template_names
from .jobs import STATUSES, history_job, list_jobs, queued_job
from .middleware import ApiError, json_response, read_json, read_json_object, strip_absolute_paths
from .node_info import node_info
from .prompt_queue import ID_PATTERN, SENSITIVE_EXTRA_DATA_KEYS, PromptQueue, QueueFull, QueueItem
from .worker import PromptWorker

log = logging.getLogger("unidit.server")

MAX_TARGETS = 10_000
# system_stats' argv, in ComfyUI's words: this host has none of comfy.org's API nodes, and the editor reads that
# flag to make no requests to comfy.org (its release check), which an offline host could not answer.
SYSTEM_ARGV = ["unidit", "serve", "--disable-api-nodes"]


def prompt_error(kind: str, message: str, details: str = "") -> ApiError:
    """A rejected POST /prompt, in ComfyUI's shape (with ``node_errors``)."""
    return ApiError(400, kind, message, details, node_errors={})


def _query_int(request: web.Request, name: str, minimum: Optional[int] = None) -> Optional[int]:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"'{name}' must be an integer", f"received {raw[:64]!r}") from None
    if minimum is not None and value < minimum:
        raise ApiError(400, "invalid_query", f"'{name}' must be at least {minimum}", f"received {value}")
    return value


def _id_list(body: dict, key: str) -> list:
    ids = body.get(key)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "invalid_request", f"'{key}' must be a list of prompt ids (strings)")
    return ids


async def _clear_or_delete(request: web.Request, clear, delete) -> web.Response:
    """ComfyUI's ``{"clear": true}`` and ``{"delete": [ids]}`` bodies of POST /queue and POST /history (checked
    whole first: a malformed request changes nothing)."""
    body = await read_json_object(request)
    ids = _id_list(body, "delete") if "delete" in body else []
    if body.get("clear"):
        clear()
    for prompt_id in ids:
        delete(prompt_id)
    return web.Response(status=200)


def _finite_number(value) -> Optional[float]:
    """``value`` as a finite float, or None (booleans, text, overflowing or infinite numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _memory() -> tuple[int, int]:
    """(total, available) bytes of RAM; zeros where the system does not say."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _devices(ram_total: int, ram_free: int) -> list:
    import torch

    if torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            reserved, allocated = torch.cuda.memory_reserved(index), torch.cuda.memory_allocated(index)
            devices.append({"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                            "index": index, "vram_total": total, "vram_free": free, "torch_vram_total": reserved,
                            "torch_vram_free": reserved - allocated})
        return devices
    return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total, "vram_free": ram_free,
             "torch_vram_total": ram_total, "torch_vram_free": ram_free}]


class HostApi:
    """The API routes, over the server's nodes, queue and worker."""

    def __init__(self, nodes: dict, display_names: dict, python_modules: dict, services: comfy_bridge.HostServices,
                 queue: PromptQueue, worker: PromptWorker, features: dict, model_folders: dict, version: str,
                 max_prompt_nodes: int = MAX_PROMPT_NODES):
        self.nodes, self.display_names, self.python_modules = nodes, display_names, python_modules
        self.services, self.queue, self.worker, self.features = services, queue, worker, features
        self.model_folders, self.version, self.max_prompt_nodes = model_folders, version, max_prompt_nodes
        self.next_number = 0

    def routes(self) -> list:
        """(method, path, handler) of the routes served with and without the /api prefix."""
        return [
            ("GET", "/object_info", self.object_info), ("GET", "/object_info/{node_class}", self.object_info_one),
            ("GET", "/prompt", self.get_prompt), ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt), ("POST", "/free", self.post_free),
            ("GET", "/history", self.get_history), ("GET", "/history/{prompt_id}", self.get_history_entry),
            ("POST", "/history", self.post_history),
            ("GET", "/jobs", self.get_jobs), ("GET", "/jobs/{job_id}", self.get_job),
            ("POST", "/jobs/cancel", self.cancel_jobs), ("POST", "/jobs/{job_id}/cancel", self.cancel_job),
            ("GET", "/system_stats", self.system_stats), ("GET", "/features", self.get_features),
            ("GET", "/extensions", self.extensions), ("GET", "/embeddings", self.embeddings),
            ("GET", "/i18n", self.i18n), ("GET", "/workflow_templates", self.workflow_templates),
            ("GET", "/models", self.model_types), ("GET", "/experiment/models", self.experiment_models),
            ("GET", "/experiment/models/{folder}", self.experiment_model_files),
            ("GET", "/global_subgraphs", self.global_subgraphs),
            ("GET", "/global_subgraphs/{subgraph_id}", self.global_subgraph),
        ]

    def internal_routes(self) -> list:
        """(method, path, handler) of the ``/internal`` routes (no /api alias, as in ComfyUI)."""
        return [("GET", "/internal/folder_paths", self.folder_paths)]

    def _with_services(self, function, *arguments):
        """Run ``function`` with the host's folders installed (combo lists, model lists read them)."""
        token = comfy_bridge.use_host(self.services)
        try:
            return function(*arguments)
        finally:
            comfy_bridge.release_host(token)

    # ---- nodes -------------------------------------------------------------------------------------------------

    def _node_info(self, class_type: str) -> dict:
        return node_info(class_type, self.nodes[class_type], self.display_names.get(class_type, class_type),
                         self.python_modules.get(class_type, f"custom_nodes.{PACK_NAME}"))

    def _all_node_infos(self) -> dict:
        infos = {}
        for name in self.nodes:
            try:
                infos[name] = self._node_info(name)
            except Exception:  # one broken node must not hide the others (ComfyUI logs and skips it too)
                log.exception("cannot describe node %s", name)
        return infos

    async def object_info(self, request: web.Request) -> web.Response:
        return json_response(request, await asyncio.to_thread(self._with_services, self._all_node_infos))

    async def object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        if name not in self.nodes:
            return json_response(request, {})
        return json_response(request, {name: await asyncio.to_thread(self._with_services, self._node_info, name)})

    # ---- prompts and queue -------------------------------------------------------------------------------------

    async def get_prompt(self, request: web.Request) -> web.Response:
        return json_response(request, self.queue.info())

    def _validate(self, prompt, targets):
        try:
            return self._with_services(validate_prompt, prompt, self.nodes, targets, self.max_prompt_nodes)
        except Exception as problem:  # a node's own declarations failed: report it, as ComfyUI does
            raise prompt_error("exception_during_validation", "Exception when validating the prompt",
                               strip_absolute_paths(f"{type(problem).__name__}: {problem}")) from None

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        if "number" in body:
            number = _finite_number(body["number"])
            if number is None:
                raise prompt_error("invalid_number", "'number' must be a finite number",
                                   f"received {body['number']!r:.64}")
        else:
            number = -self.next_number if body.get("front") else self.next_number
            self.next_number += 1
        if "prompt" not in body:
            raise prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        prompt_id = body.get("prompt_id")
        if prompt_id is None:
            prompt_id = str(uuid.uuid4())
        elif not isinstance(prompt_id, str) or not ID_PATTERN.fullmatch(prompt_id):
            raise prompt_error("invalid_prompt_id", "Invalid prompt_id",
                               "1 to 128 letters, digits, '_', '.', ':' or '-'; omit it to let the server choose")
        targets = body.get("partial_execution_targets")
        if targets is not None and (not isinstance(targets, list) or len(targets) > MAX_TARGETS or not all(
                isinstance(t, (str, int)) and not isinstance(t, bool) for t in targets)):
            raise prompt_error("invalid_prompt", "'partial_execution_targets' must be a list of node ids")
        extra_data = body.get("extra_data", {})
        if not isinstance(extra_data, dict):
            raise prompt_error("invalid_prompt", "'extra_data' must be an object")
        extra_data = {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        if "client_id" in body:
            if not isinstance(body["client_id"], str) or len(body["client_id"]) > 128:
                raise prompt_error("invalid_prompt", "'client_id' must be a string of at most 128 characters")
            extra_data["client_id"] = body["client_id"]
        validation = await asyncio.to_thread(self._validate, body["prompt"], targets)
        if not validation.ok:
            return json_response(request, {"error": validation.error, "node_errors": validation.node_errors}, 400)
        prompt = body["prompt"]
        stored = {node_id: {**prompt[node_id], "inputs": node["inputs"]} for node_id, node in validation.prompt.items()}
        extra_data["create_time"] = int(time.time() * 1000)
        if self.queue.knows(prompt_id):  # checked here, with no await before the put: no two can slip in
            raise prompt_error("invalid_prompt_id", "prompt_id is already in use", prompt_id)
        try:
            self.queue.put(QueueItem(number, prompt_id, stored, extra_data, validation.outputs))
        except QueueFull as full:
            raise ApiError(429, "queue_full", "The queue is full", str(full), node_errors={}) from None
        return json_response(request, {"prompt_id": prompt_id, "number": number,
                                       "node_errors": validation.node_errors})

    async def get_queue(self, request: web.Request) -> web.Response:
        running = self.queue.running()
        return json_response(request, {"queue_running": [running.as_list()] if running else [],
                                       "queue_pending": [item.as_list() for item in self.queue.pending()]})

    async def post_queue(self, request: web.Request) -> web.Response:
        return await _clear_or_delete(request, self.queue.clear_pending, self.queue.delete_pending)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:  # ComfyUI ignores a body that is not JSON here
            body = await read_json(request, empty={})
        except ApiError as problem:
            if problem.status == 413:
                raise
            body = {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id is not None and not isinstance(prompt_id, str):
            raise ApiError(400, "invalid_request", "'prompt_id' must be a string")
        self.worker.interrupt(prompt_id or None)
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        for flag in ("unload_models", "free_memory"):
            if flag in body:
                if not isinstance(body[flag], bool):
                    raise ApiError(400, "invalid_request", f"'{flag}' must be true or false")
                if body[flag]:
                    self.queue.set_flag(flag, True)
        return web.Response(status=200)

    # ---- history -----------------------------------------------------------------------------------------------

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = _query_int(request, "max_items", minimum=0)
        offset = _query_int(request, "offset")
        return json_response(request, self.queue.history(max_items, -1 if offset is None else offset))

    async def get_history_entry(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.queue.history_entry(prompt_id)
        return json_response(request, {prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        return await _clear_or_delete(request, self.queue.clear_history, self.queue.delete_history)

    # ---- jobs --------------------------------------------------------------------------------------------------

    async def get_jobs(self, request: web.Request) -> web.Response:
        raw = request.query.get("status")
        statuses = tuple(s.strip().lower() for s in raw.split(",") if s.strip()) if raw else STATUSES
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise ApiError(400, "invalid_query", "Invalid status value(s)",
                           f"{', '.join(unknown)[:200]}; valid: {', '.join(STATUSES)}")
        sort_by = request.query.get("sort_by", "created_at").lower()
        sort_order = request.query.get("sort_order", "desc").lower()
        if sort_by not in ("created_at", "execution_duration") or sort_order not in ("asc", "desc"):
            raise ApiError(400, "invalid_query", "sort_by must be created_at or execution_duration, "
                                                 "sort_order asc or desc")
        limit = _query_int(request, "limit", minimum=1)
        offset = max(_query_int(request, "offset") or 0, 0)
        jobs = list_jobs(self.queue.running(), self.queue.pending(), self.queue.history(), statuses,
                         newest_first=sort_order == "desc")
        if sort_by == "execution_duration":
            jobs.sort(key=lambda job: job.get("execution_end_time", 0) - job.get("execution_start_time", 0)
                      if "execution_end_time" in job and "execution_start_time" in job else 0,
                      reverse=sort_order == "desc")
        page = jobs[offset:offset + limit] if limit is not None else jobs[offset:]
        return json_response(request, {"jobs": page, "pagination": {
            "offset": offset, "limit": limit, "total": len(jobs), "has_more": offset + len(page) < len(jobs)}})

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        entry = self.queue.history_entry(job_id)
        if entry is not None:
            return json_response(request, history_job(job_id, entry, detailed=True))
        running = self.queue.running()
        if running is not None and running.prompt_id == job_id:
            return json_response(request, queued_job(running, "in_progress"))
        for item in self.queue.pending():
            if item.prompt_id == job_id:
                return json_response(request, queued_job(item, "pending"))
        raise ApiError(404, "not_found", "Job not found", job_id[:128])

    def _cancel(self, job_id: str) -> bool:
        return self.queue.delete_pending(job_id) or self.worker.interrupt(job_id)

    async def cancel_job(self, request: web.Request) -> web.Response:
        return json_response(request, {"cancelled": self._cancel(request.match_info["job_id"])})

    async def cancel_jobs(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        job_ids = _id_list(body, "job_ids")
        invalid = [job_id for job_id in job_ids if not ID_PATTERN.fullmatch(job_id)]
        if invalid:
            raise ApiError(400, "invalid_request", "job_ids contains invalid id(s)", ", ".join(invalid)[:200])
        cancelled = [self._cancel(job_id) for job_id in job_ids]
        return json_response(request, {"cancelled": any(cancelled)})

    # ---- what the frontend reads at start ----------------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        import torch

        ram_total, ram_free = _memory()
        return json_response(request, {
            "system": {"os": sys.platform, "ram_total": ram_total, "ram_free": ram_free,
                       "comfyui_version": self.version, "required_frontend_version": FRONTEND_VERSION,
                       "python_version": sys.version, "pytorch_version": torch.__version__,
                       "embedded_python": False, "argv": SYSTEM_ARGV},
            "devices": _devices(ram_total, ram_free)})

    async def get_features(self, request: web.Request) -> web.Response:
        return json_response(request, self.features)

    async def extensions(self, request: web.Request) -> web.Response:
        return json_response(request, extension_urls())

    async def embeddings(self, request: web.Request) -> web.Response:
        return json_response(request, [])

    async def i18n(self, request: web.Request) -> web.Response:
        return json_response(request, {})

    async def workflow_templates(self, request: web.Request) -> web.Response:
        return json_response(request, {PACK_NAME: template_names()})

    async def model_types(self, request: web.Request) -> web.Response:
        return json_response(request, list(self.model_folders))

    async def experiment_models(self, request: web.Request) -> web.Response:
        return json_response(request, [{"name": kind, "folders": [str(folder) for folder in folders],
                                        "extensions": [".safetensors"]} for kind, folders in self.model_folders.items()])

    async def experiment_model_files(self, request: web.Request) -> web.Response:
        kind = request.match_info["folder"]
        if kind not in self.model_folders:
            raise ApiError(404, "not_found", "No such model folder", kind[:128])
        files = []
        for index, folder in enumerate(self.model_folders[kind]):
            for path in sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []:
                stat = path.stat()
                files.append({"name": path.name, "pathIndex": index, "modified": stat.st_mtime,
                              "created": stat.st_ctime, "size": stat.st_size})
        return json_response(request, files)

    async def folder_paths(self, request: web.Request) -> web.Response:
        return json_response(request, {kind: [str(folder) for folder in folders]
                                       for kind, folders in self.model_folders.items()})

    async def global_subgraphs(self, request: web.Request) -> web.Response:
        return json_response(request, {})

    async def global_subgraph(self, request: web.Request) -> web.Response:
        raise ApiError(404, "not_found", "No such subgraph", request.match_info["subgraph_id"][:128])

