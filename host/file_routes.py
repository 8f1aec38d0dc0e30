"""``/view`` and ``/upload/image``: files of the output, input and temp folders, with ComfyUI's rules made strict.

``GET /view?filename=&subfolder=&type=output|input|temp[&preview=webp;90][&channel=rgb|a|rgba]``
- a filename ending in ``[output]``, ``[input]`` or ``[temp]`` picks the folder (ComfyUI's annotation);
- 400 for an empty filename, one starting with ``/`` or containing ``..``, or an unknown type; 403 for a
  subfolder that leaves the folder; 403 as well when the file, once symbolic links are resolved, lies outside
  the folder (ComfyUI follows such links); 404 when there is no such file;
- HTML, JavaScript, CSS, SVG and XML are sent as ``application/octet-stream`` attachments (never rendered in
  the app's origin); ``preview`` re-encodes an image (webp or jpeg), ``channel`` extracts rgb or alpha, for images
  of at most 32 megapixels (400 above: ``runtime/memory_budget.py``); a ``Range`` that cannot be served is a 416.

``POST /upload/image`` (multipart: ``image``, ``type`` = input (default) | output | temp, ``subfolder``,
``overwrite`` = "true" | "1") -> ``{"name", "subfolder", "type"}``. An existing file with the same content is
reused; a different one gets the next free ``name (1).ext``. Names that are not plain file names, and
subfolders that leave the folder (also through links), are refused with 400, as is a body that cannot be parsed
(control bytes in a part's headers, an unknown transfer encoding or charset). Writes are atomic; the size is
bounded by the server's upload limit (413). ``overwrite`` replaces a file of the input folder, as in ComfyUI, but
never one of the output folder: outputs are never overwritten (the upload gets a free name there instead).
"""
from __future__ import annotations

import asyncio
import binascii
import io
import mimetypes
import os
import zlib
from pathlib import Path
from typing import Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image

from ..runtime import memory_budget
from ..runtime.files import replace_atomic, store_unique
from ..runtime.output_formats import mime_type
from .middleware import ApiError, file_response, json_response
from .safe_paths import is_plain_file_name, resolve_inside

FOLDER_TYPES = ("output", "input", "temp")
DANGEROUS_TYPES = ("text/html", "application/xhtml+xml", "text/javascript", "application/javascript",
                   "text/css", "image/svg+xml", "text/xml", "application/xml")
MAX_NUMBERED_NAMES = 10_000


def annotated_name(name: str) -> tuple[str, Optional[str]]:
    """ComfyUI's ``name [output]`` rule: the name without its annotation, and the folder type it names."""
    for kind in FOLDER_TYPES:
        if name.endswith(f"[{kind}]"):
            return name[:-len(kind) - 3], kind
    return name, None


class FileRoutes:
    def __init__(self, folders: dict):
        self.folders = folders  # folder type -> Path

    def routes(self) -> list:
        return [("GET", "/view", self.view), ("POST", "/upload/image", self.upload_image)]

    def _folder(self, kind: Optional[str]) -> Path:
        if kind not in self.folders:
            raise ApiError(400, "invalid_type", "Unknown folder type", f"type must be one of {', '.join(FOLDER_TYPES)}")
        return self.folders[kind]

    # ---- view --------------------------------------------------------------------------------------------------

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "filename" not in query:
            raise ApiError(404, "not_found", "No filename given")
        name, kind = annotated_name(query["filename"])
        if not name:
            raise ApiError(400, "invalid_filename", "Empty filename")
        if name.startswith("/") or ".." in name or "\x00" in name:
            raise ApiError(400, "invalid_filename", "The filename must not be absolute or contain '..'")
        root = self._folder(kind or query.get("type", "output"))
        folder = resolve_inside(root, query.get("subfolder", ""))
        if folder is None:
            raise ApiError(403, "forbidden_path", "The subfolder leads outside the folder")
        path = resolve_inside(folder, os.path.basename(name))
        if path is None:
            raise ApiError(403, "forbidden_path", "The file lies outside the folder")
        if not path.is_file():
            raise ApiError(404, "not_found", "No such file", os.path.basename(name))
        if "preview" in query or query.get("channel", "rgba") in ("rgb", "a"):
            return await self._converted_image(path, query)
        content_type = mime_type(path.name) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        quoted = path.name.replace("\\", "\\\\").replace('"', '\\"')
        headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": f'filename="{quoted}"'}
        if content_type.split(";")[0] in DANGEROUS_TYPES:
            content_type = "application/octet-stream"
            headers["Content-Disposition"] = f'attachment; filename="{quoted}"'
        headers["Content-Type"] = content_type
        return await file_response(request, path, headers)

    async def _converted_image(self, path: Path, query) -> web.Response:
        preview = query.get("preview", "").split(";")
        channel = query.get("channel", "rgba")
        if channel not in ("rgb", "a", "rgba"):
            raise ApiError(400, "invalid_query", "channel must be rgb, a or rgba")

        def convert() -> tuple[bytes, str]:
            try:
                return convert_image()
            finally:
                memory_budget.give_back_freed_memory()

        def convert_image() -> tuple[bytes, str]:
            with Image.open(path) as image:
                memory_budget.check_image_size(*image.size, "The image")
                if "preview" in query:
                    kind = preview[0] if preview[0] in ("webp", "jpeg") and "a" not in channel else "webp"
                    quality = int(preview[-1]) if preview[-1].isdigit() and int(preview[-1]) <= 100 else 90
                    picture = image.convert("RGB") if kind == "jpeg" or channel == "rgb" else image
                    buffer = io.BytesIO()
                    picture.save(buffer, format=kind.upper(), quality=quality)
                    return buffer.getvalue(), f"image/{kind}"
                rgba = image.convert("RGBA")
                picture = rgba.convert("RGB") if channel == "rgb" else Image.new("RGBA", rgba.size)
                if channel == "a":
                    picture.putalpha(rgba.getchannel("A"))
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG")
                return buffer.getvalue(), "image/png"

        try:
            body, content_type = await asyncio.to_thread(convert)
        except memory_budget.OverMemoryBudget as problem:
            raise ApiError(400, "image_too_large", str(problem)) from None
        except (OSError, ValueError, Image.DecompressionBombError) as problem:
            raise ApiError(400, "not_an_image", "The file cannot be converted as an image",
                           type(problem).__name__) from None
        return web.Response(body=body, content_type=content_type)

    # ---- upload ------------------------------------------------------------------------------------------------

    async def upload_image(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "invalid_request", "Expected a multipart/form-data body with an 'image' file")
        try:
            form = await request.post()
        except (ValueError, LookupError, RuntimeError, zlib.error, binascii.Error, HttpProcessingError) as problem:
            # what aiohttp raises for a body it cannot parse: control bytes or bad folding in a part's headers,
            # an unknown Content-Transfer-Encoding or charset, undecodable content
            details = problem.message if isinstance(problem, HttpProcessingError) else str(problem)
            raise ApiError(400, "invalid_request", "Malformed multipart body", str(details)[:200]) from None
        image = form.get("image")
        if not isinstance(image, web.FileField):
            raise ApiError(400, "invalid_request", "No 'image' file in the form")
        name = image.filename or ""
        if not is_plain_file_name(name):
            raise ApiError(400, "invalid_filename", "The file name must be a plain file name",
                           "no folders, '..', NUL or names over 255 bytes")
        kind = form.get("type") or "input"
        root = self._folder(kind if isinstance(kind, str) else None)
        subfolder = form.get("subfolder") or ""
        if not isinstance(subfolder, str):
            raise ApiError(400, "invalid_request", "'subfolder' must be text")
        folder = resolve_inside(root, os.path.normpath(subfolder)) if not os.path.isabs(subfolder) else None
        if folder is None:
            raise ApiError(400, "forbidden_path", "The subfolder leads outside the folder")
        overwrite = form.get("overwrite") in ("true", "1") and kind != "output"
        data = image.file.read()
        saved = await asyncio.to_thread(self._store, folder, name, data, overwrite)
        return json_response(request, {"name": saved, "subfolder": subfolder, "type": kind})

    @staticmethod
    def _store(folder: Path, name: str, data: bytes, overwrite: bool) -> str:
        """Write ``data`` as ``folder/name`` (see the module docstring); returns the name used."""
        try:
            if overwrite:
                return replace_atomic(folder / name, data).name
            return store_unique(folder, name, data, MAX_NUMBERED_NAMES).name
        except FileExistsError:
            raise ApiError(409, "conflict", "No free file name left", name) from None
        except OSError as problem:
            raise ApiError(400, "cannot_write", "The file could not be written", problem.strerror or "") from None
