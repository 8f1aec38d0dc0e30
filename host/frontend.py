"""What the embedded host serves besides the API: the official ComfyUI frontend, the pack's editor extensions
and its example workflows as templates.

- The frontend comes from the ``comfyui-frontend-package`` wheel (UniDiT's ``serve`` extra), pinned to
  :data:`FRONTEND_VERSION`, the newest version this host is tested with. ``/`` is its ``index.html`` (never
  cached); everything else under ``/`` is a file of the wheel's ``static`` folder.
- The pack's ``web/`` folder is served at ``/extensions/unidit/``; ``/extensions`` lists its ``*.js`` files
  (the viewer's ``.mjs`` modules are served, not listed, as in ComfyUI).
- ``workflows/*.json`` (UI format) are the templates: ``/api/workflow_templates`` lists them as
  ``{"unidit": [names]}``, ``/api/workflow_templates/unidit/<name>.json`` serves one. ComfyUI's own template
  library (a separate wheel) is not shipped: its indexes (``/templates/index*.json``) are served empty, so the
  editor's template browser shows the pack's workflows without failed requests.
"""
from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from aiohttp import web

from .middleware import ApiError, file_response, json_response
from .safe_paths import is_plain_file_name, resolve_inside

log = logging.getLogger("unidit.server")

FRONTEND_VERSION = "1.58.1"
FRONTEND_PACKAGE = "comfyui-frontend-package"
PACK_NAME = "unidit"
PACK_ROOT = Path(__file__).resolve().parents[1]
WEB_DIRECTORY = PACK_ROOT / "web"
WORKFLOW_DIRECTORY = PACK_ROOT / "workflows"


class FrontendMissing(RuntimeError):
    """The comfyui-frontend-package wheel is not installed."""


def frontend_root() -> Path:
    """The ``static`` folder of the installed frontend wheel; warns when its version is not the pinned one."""
    try:
        import comfyui_frontend_package
    except ImportError:
        raise FrontendMissing(
            f"the ComfyUI editor is not installed. Install UniDiT's 'serve' extra, e.g. "
            f"pip install 'comfyui-unidit[serve]' (it provides {FRONTEND_PACKAGE}=={FRONTEND_VERSION})") from None
    version = getattr(comfyui_frontend_package, "__version__", "unknown")
    if version != FRONTEND_VERSION:
        log.warning("%s %s is installed; UniDiT's host is tested with %s (pip install %s==%s)", FRONTEND_PACKAGE,
                    version, FRONTEND_VERSION, FRONTEND_PACKAGE, FRONTEND_VERSION)
    return Path(str(importlib.resources.files(comfyui_frontend_package) / "static"))


def extension_urls() -> list:
    """URLs of the pack's editor extensions: every ``*.js`` under ``web/``."""
    return [f"/extensions/{PACK_NAME}/{path.relative_to(WEB_DIRECTORY).as_posix()}"
            for path in sorted(WEB_DIRECTORY.rglob("*.js")) if path.is_file()]


def template_names() -> list:
    return sorted(path.stem for path in WORKFLOW_DIRECTORY.glob("*.json") if path.is_file())


TEMPLATE_FILES = {".json": "application/json", ".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


async def workflow_template(request: web.Request) -> web.FileResponse:
    """A template's workflow, or its thumbnail when the pack has one (``workflows/<name>.jpg`` ...)."""
    name = request.match_info["name"]
    stem, suffix = Path(name).stem, Path(name).suffix
    path = WORKFLOW_DIRECTORY / name
    if not is_plain_file_name(name) or stem not in template_names() or suffix not in TEMPLATE_FILES \
            or not path.is_file():
        raise ApiError(404, "not_found", "No such workflow template file", name[:200])
    return await file_response(request, path, {"Content-Type": TEMPLATE_FILES[suffix]})


def add_frontend_routes(app: web.Application, root: Path) -> None:
    """The file routes; add them after the API routes: the last one answers every other path (a file of the
    frontend or of the pack's ``web/``, else 404, or 405 for a known route asked with another method)."""

    async def index(request: web.Request) -> web.FileResponse:
        return await file_response(request, root / "index.html", {
            "Cache-Control": "no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"})

    async def empty_stylesheet(request: web.Request) -> web.Response:
        # index.html links /user.css for users' own styles; ComfyUI answers 404, we answer an empty sheet
        return web.Response(text="", content_type="text/css")

    async def empty_template_index(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not (name.startswith("index") and name.endswith(".json")):
            raise ApiError(404, "not_found", "ComfyUI's template library is not installed", name[:200])
        return json_response(request, {} if name == "index_logo.json" else [])

    extension_prefix = f"extensions/{PACK_NAME}/"

    async def file_or_not_found(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            allowed = set()
            for resource in request.app.router.resources():
                if resource is not request.match_info.route.resource:
                    allowed |= (await resource.resolve(request))[1]
            if allowed:
                raise web.HTTPMethodNotAllowed(request.method, allowed)
            raise ApiError(404, "not_found", "No such route", request.path[:200])
        name = request.match_info["path"]
        folder, name = (WEB_DIRECTORY, name[len(extension_prefix):]) if name.startswith(extension_prefix) \
            else (root, name)
        path = resolve_inside(folder, name) if name else None
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", "No such file or route", request.path[:200])
        return await file_response(request, path)

    app.router.add_get("/", index)
    app.router.add_get("/user.css", empty_stylesheet)
    app.router.add_get(f"/api/workflow_templates/{PACK_NAME}/{{name}}", workflow_template)
    app.router.add_get("/templates/{name}", empty_template_index)
    app.router.add_route("*", "/{path:.*}", file_or_not_found)
