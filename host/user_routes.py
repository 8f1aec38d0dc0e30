"""The editor's per-user storage: ``/users``, ``/settings``, ``/userdata`` and ``/v2/userdata``, persisted under
``<user directory>/default/`` (one user, as ComfyUI without ``--multi-user``).

- ``GET /users`` -> ``{"storage": "server", "migrated": true}``.
- ``GET /settings`` -> the settings object (``comfy.settings.json``); ``POST /settings`` merges an object into it;
  ``GET /settings/{id}`` -> the value or null; ``POST /settings/{id}`` sets one value (any JSON).
- ``GET /userdata?dir=D[&recurse=true][&full_info=true][&split=true]`` lists the files under D: relative paths,
  ``{path, size, modified, created}`` (ms) with full_info, ``[path, *parts]`` with split; 400 without dir,
  404 when D does not exist.
- ``GET /v2/userdata?path=P`` -> ``[{name, path, type: "directory"|"file", size?, modified?}]``, folders first.
- ``GET|POST|DELETE /userdata/{file}`` (one path segment: folders as ``%2F``) and
  ``POST /userdata/{file}/move/{dest}``; ``?overwrite=false`` answers 409 when the target exists,
  ``?full_info=true`` answers the file's info instead of its path. Writes are atomic. Files are sent as
  downloads (never rendered in the app's origin), except ``user.css``. The two files the editor reads at
  every start are answered empty when the user has none (``user.css``: no styles, ``comfy.templates.json``: no
  node templates) instead of 404.

Every name is resolved inside the user folder (also through links): 403 when it leaves it (400 for
``/v2/userdata``, as ComfyUI). ComfyUI decodes names a second time (``%252F``); this host does not, so a
double-encoded name is a plain (odd) file name.
"""
from __future__ import annotations

import json
import mimetypes
import os
from pathlib import Path

from aiohttp import web

from ..runtime.files import replace_atomic
from .middleware import ApiError, file_response, json_response, read_json, read_json_object
from .safe_paths import resolve_inside

SETTINGS_FILE = "comfy.settings.json"
MAX_LISTED = 10_000
SAFE_TYPES = ("image/png", "image/jpeg", "image/webp", "application/json", "text/plain")
# Files the editor reads at every start, and what it takes their absence to mean; they are answered so when the
# user has none (ComfyUI answers 404, which the browser reports as an error in the console).
EMPTY_DEFAULTS = {"user.css": ("", "text/css"),                        # the user's own styles: none
                  "comfy.templates.json": ("[]", "application/json")}  # the user's node templates: none


def _file_info(path: Path, root: Path) -> dict:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size,
            "modified": int(stat.st_mtime * 1000), "created": int(stat.st_ctime * 1000)}


class UserRoutes:
    def __init__(self, user_directory: Path):
        self.root = Path(os.path.realpath(user_directory / "default"))

    def routes(self) -> list:
        return [("GET", "/users", self.users),
                ("GET", "/settings", self.get_settings), ("POST", "/settings", self.post_settings),
                ("GET", "/settings/{id}", self.get_setting), ("POST", "/settings/{id}", self.post_setting),
                ("GET", "/userdata", self.list_userdata), ("GET", "/v2/userdata", self.list_userdata_v2),
                ("GET", "/userdata/{file}", self.get_userdata), ("POST", "/userdata/{file}", self.post_userdata),
                ("DELETE", "/userdata/{file}", self.delete_userdata),
                ("POST", "/userdata/{file}/move/{dest}", self.move_userdata)]

    def _path(self, name: str) -> Path:
        path = resolve_inside(self.root, name) if name and not os.path.isabs(name) else None
        if path is None or path == self.root:
            raise ApiError(403, "forbidden_path", "The path leads outside the user folder")
        return path

    async def users(self, request: web.Request) -> web.Response:
        return json_response(request, {"storage": "server", "migrated": True})

    # ---- settings ----------------------------------------------------------------------------------------------

    def _settings(self) -> dict:
        try:
            settings = json.loads((self.root / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return settings if isinstance(settings, dict) else {}

    def _save_settings(self, settings: dict) -> None:
        replace_atomic(self.root / SETTINGS_FILE, json.dumps(settings, indent=4).encode())

    async def get_settings(self, request: web.Request) -> web.Response:
        return json_response(request, self._settings())

    async def get_setting(self, request: web.Request) -> web.Response:
        return json_response(request, self._settings().get(request.match_info["id"]))

    async def post_settings(self, request: web.Request) -> web.Response:
        changes = await read_json_object(request)
        self._save_settings({**self._settings(), **changes})
        return web.Response(status=200)

    async def post_setting(self, request: web.Request) -> web.Response:
        value = await read_json(request)
        settings = self._settings()
        settings[request.match_info["id"]] = value
        self._save_settings(settings)
        return web.Response(status=200)

    # ---- listing -----------------------------------------------------------------------------------------------

    async def list_userdata(self, request: web.Request) -> web.Response:
        directory = request.query.get("dir", "")
        if not directory:
            raise ApiError(400, "invalid_query", "Directory not provided", "give dir=...")
        folder = resolve_inside(self.root, directory) if not os.path.isabs(directory) else None
        if folder is None:
            raise ApiError(403, "forbidden_path", "The directory leads outside the user folder")
        if not folder.is_dir():
            raise ApiError(404, "not_found", "Directory not found", directory[:200])
        recurse = request.query.get("recurse", "").lower() == "true"
        full_info = request.query.get("full_info", "").lower() == "true"
        split = request.query.get("split", "").lower() == "true"
        paths = folder.rglob("*") if recurse else folder.glob("*")
        listed = []
        for path in sorted(p for p in paths if p.is_file() and resolve_inside(self.root, str(p.relative_to(
                self.root))) is not None):
            relative = path.relative_to(folder).as_posix()
            listed.append(_file_info(path, folder) if full_info else [relative, *relative.split("/")] if split
                          else relative)
            if len(listed) >= MAX_LISTED:
                break
        return json_response(request, listed)

    async def list_userdata_v2(self, request: web.Request) -> web.Response:
        requested = request.query.get("path", "")
        folder = self.root if not requested else (
            resolve_inside(self.root, requested) if not os.path.isabs(requested) else None)
        if folder is None:
            raise ApiError(400, "forbidden_path", "Invalid path requested")
        if not folder.exists():
            if folder == self.root:
                return json_response(request, [])
            raise ApiError(404, "not_found", "Requested path not found", requested[:200])
        if not folder.is_dir():
            raise ApiError(400, "not_a_directory", "Requested path is not a directory", requested[:200])
        entries = []
        for path in folder.rglob("*"):
            entry = {"name": path.name, "path": path.relative_to(self.root).as_posix(),
                     "type": "directory" if path.is_dir() else "file"}
            if path.is_file():
                stat = path.stat()
                entry.update(size=stat.st_size, modified=stat.st_mtime)
            entries.append(entry)
            if len(entries) >= MAX_LISTED:
                break
        entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
        return json_response(request, entries)

    # ---- files -------------------------------------------------------------------------------------------------

    async def get_userdata(self, request: web.Request) -> web.StreamResponse:
        path = self._path(request.match_info["file"])
        if path == self.root / "user.css" and path.is_file():
            return await file_response(request, path, {"Content-Type": "text/css",
                                                       "X-Content-Type-Options": "nosniff"})
        if not path.is_file():
            if path.parent == self.root and path.name in EMPTY_DEFAULTS:
                text, content_type = EMPTY_DEFAULTS[path.name]
                return web.Response(text=text, content_type=content_type)
            raise ApiError(404, "not_found", "No such file", request.match_info["file"][:200])
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type not in SAFE_TYPES:
            content_type = "application/octet-stream"
        return await file_response(request, path, {"Content-Type": content_type, "X-Content-Type-Options": "nosniff",
                                                   "Content-Disposition": "attachment"})

    def _answer(self, request: web.Request, path: Path) -> web.Response:
        if request.query.get("full_info", "false").lower() == "true":
            return json_response(request, _file_info(path, self.root))
        return json_response(request, path.relative_to(self.root).as_posix())

    async def post_userdata(self, request: web.Request) -> web.Response:
        path = self._path(request.match_info["file"])
        if request.query.get("overwrite", "true") == "false" and path.exists():
            raise ApiError(409, "conflict", "File already exists", request.match_info["file"][:200])
        if path.is_dir():
            raise ApiError(409, "conflict", "A folder has that name", request.match_info["file"][:200])
        data = await request.read()
        try:
            replace_atomic(path, data)
        except OSError as problem:
            raise ApiError(400, "cannot_write", "Invalid file name", problem.strerror or "") from None
        return self._answer(request, path)

    async def delete_userdata(self, request: web.Request) -> web.Response:
        path = self._path(request.match_info["file"])
        if not path.is_file():
            raise ApiError(404, "not_found", "No such file", request.match_info["file"][:200])
        path.unlink()
        return web.Response(status=204)

    async def move_userdata(self, request: web.Request) -> web.Response:
        source = self._path(request.match_info["file"])
        target = self._path(request.match_info["dest"])
        if not source.is_file():
            raise ApiError(404, "not_found", "No such file", request.match_info["file"][:200])
        if request.query.get("overwrite", "true") == "false" and target.exists():
            raise ApiError(409, "conflict", "File already exists", request.match_info["dest"][:200])
        if target.is_dir():
            raise ApiError(409, "conflict", "A folder has that name", request.match_info["dest"][:200])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except OSError as problem:
            raise ApiError(400, "cannot_write", "The file could not be moved", problem.strerror or "") from None
        return self._answer(request, target)
