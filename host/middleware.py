"""HTTP plumbing shared by every route of the embedded host: JSON errors, safe JSON bodies, the loopback Origin
check, cache headers, and the redaction of server paths.

Contract:
- Every error a client receives is JSON, ``{"error": {"type", "message", "details", "extra_info"}}`` (routes
  with a ComfyUI shape add their own keys, e.g. ``node_errors``), with the status ComfyUI uses where it has one.
  Malformed requests get 4xx, never 5xx; an unexpected exception is logged and answered with a generic 500.
- Request bodies parsed as JSON are bounded in size (413) and nesting depth (400); ``NaN``/``Infinity`` are
  refused (they are not JSON, and would be echoed back as invalid JSON).
- Cross-origin requests are refused with 403 (the defence against web pages queueing work on the server; there
  is no authentication): one whose ``Origin`` differs from the ``Host`` it was sent to, comparing scheme-default
  ports too (an Origin without a port is port 80 for http); one marked ``Sec-Fetch-Site: cross-site``; and, on a
  connection that arrived at a loopback address, one whose ``Host`` is not a loopback name (DNS rebinding: a
  foreign name resolved to 127.0.0.1 makes the browser treat this server as that site's own).
- Files are answered through :func:`file_response`: a ``Range`` that cannot be served is a JSON 416.
- No absolute path of the server's folders appears in JSON sent to a client: :class:`PathRedactor` rewrites
  them to short names (``output/...``, ``<python>/...``).
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import math
import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Optional

from aiohttp import web

from .workflow import MAX_JSON_DEPTH, nesting_exceeds

log = logging.getLogger("unidit.server")

PATH_BOUNDARY = r"(?=[/\\\s'\")\],:;]|$)"   # what may follow a folder's path inside a text
NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.ENOTDIR, errno.EINVAL)
STATUS_TYPES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "request_too_large", 415: "unsupported_media_type",
                416: "range_not_satisfiable", 429: "too_many_requests"}
PARSE_IN_THREAD = 64 * 1024      # JSON bodies larger than this are parsed off the event loop


class ApiError(Exception):
    """An error answered as ``{"error": {...}, **extra}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, kind: str, message: str, details: str = "", headers: Optional[dict] = None,
                 **extra):
        super().__init__(message)
        self.status, self.kind, self.message, self.details, self.extra = status, kind, message, details, extra
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": error_object(self.kind, self.message, self.details), **self.extra}


def error_object(kind: str, message: str, details: str = "", **extra_info) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


class PathRedactor:
    """Rewrites the server's absolute folder paths inside strings to short, harmless names. A root is replaced
    only where it ends at a path boundary (so ``/home/al`` does not touch ``/home/alice``)."""

    def __init__(self, labelled_roots: Iterable[tuple[Path, str]]):
        labels = {}
        for root, label in labelled_roots:
            for variant in {str(root), os.path.realpath(root)}:
                variant = variant.rstrip("/\\")
                if len(variant) > 1:
                    labels.setdefault(variant, label)
        self._labels = labels
        alternatives = "|".join(re.escape(root) for root in sorted(labels, key=len, reverse=True))
        self._pattern = re.compile(f"({alternatives}){PATH_BOUNDARY}") if labels else None

    def text(self, text: str) -> str:
        if self._pattern is None or ("/" not in text and "\\" not in text):
            return text
        return self._pattern.sub(lambda match: self._labels[match.group(1)], text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            return self.text(os.fspath(value))
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


ABSOLUTE_PATH = re.compile(r"(?<![\w.~<>:/\\-])(?:[A-Za-z]:)?[/\\](?:[^\s'\"/\\:]+[/\\])+")


def strip_absolute_paths(text: str) -> str:
    """``text`` with every absolute path cut down to its last part (the file name), for exception messages
    that may name files anywhere on the server."""
    return ABSOLUTE_PATH.sub("", text)


def default_redactor(folders: Iterable[tuple[Path, str]]) -> PathRedactor:
    """A redactor for the host's own folders plus the places every Python process has (installation, home,
    working directory)."""
    import site
    import sysconfig

    roots = list(folders)
    for path in site.getsitepackages() + [site.getusersitepackages(), sysconfig.get_paths()["purelib"]]:
        roots.append((Path(path), "<site-packages>"))
    roots += [(Path(sys.prefix), "<python>"), (Path(sys.base_prefix), "<python>"),
              (Path(__file__).resolve().parents[1], "<unidit>"), (Path.cwd(), "."), (Path.home(), "~")]
    return PathRedactor(roots)


def json_dumps(value: Any) -> str:
    """JSON text; non-finite floats (which JSON cannot carry) become null, and values JSON has no form for
    (a tensor a node put in its ui, say) become ``"<TypeName>"``."""
    try:
        return json.dumps(value, allow_nan=False, default=_placeholder)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, default=_placeholder)


def _placeholder(value: Any) -> str:
    return f"<{type(value).__name__}>"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_response(request: web.Request, value: Any, status: int = 200) -> web.Response:
    """A JSON response, with the server's paths redacted."""
    redact = request.app.get(REDACTOR_KEY)
    body = json_dumps(redact(value) if redact is not None else value)
    return web.Response(text=body, status=status, content_type="application/json")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, at most MAX_JSON_DEPTH levels of nesting."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "invalid_json", "The request body is nested too deeply",
                       f"at most {MAX_JSON_DEPTH} levels of arrays and objects") from None
    except (UnicodeDecodeError, ValueError) as problem:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON", str(problem)) from None
    if nesting_exceeds(value, MAX_JSON_DEPTH):
        raise ApiError(400, "invalid_json", "The request body is nested too deeply",
                       f"at most {MAX_JSON_DEPTH} levels of arrays and objects")
    return value


async def read_json(request: web.Request, *, empty: Any = ...) -> Any:
    """The request's JSON body (bounded by the app's JSON size limit). An empty body is ``empty`` when given,
    else an error."""
    limit = request.app[JSON_LIMIT_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "request_too_large", "The request body is too large", f"at most {limit} bytes of JSON")
    data = await request.read()
    if len(data) > limit:
        raise ApiError(413, "request_too_large", "The request body is too large", f"at most {limit} bytes of JSON")
    if not data.strip():
        if empty is not ...:
            return empty
        raise ApiError(400, "invalid_json", "The request body is empty", "expected a JSON value")
    if len(data) > PARSE_IN_THREAD:  # a large prompt must not hold up every other request while it parses
        return await asyncio.to_thread(parse_json, data)
    return parse_json(data)


async def read_json_object(request: web.Request) -> dict:
    value = await read_json(request)
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", "The request body must be a JSON object",
                       f"received a JSON {type(value).__name__}")
    return value


# ---- middlewares ---------------------------------------------------------------------------------------------

JSON_LIMIT_KEY = web.AppKey("json_limit", int)
REDACTOR_KEY = web.AppKey("redactor", PathRedactor)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Turn every error into a JSON response (see the module docstring)."""
    try:
        return await handler(request)
    except ApiError as problem:
        response = json_response(request, problem.body(), problem.status)
        response.headers.update(problem.headers)
        return response
    except web.HTTPException as problem:
        if problem.status < 400:
            raise
        kind = STATUS_TYPES.get(problem.status, "http_error")
        details = "" if problem.text in (None, problem.reason, f"{problem.status}: {problem.reason}") \
            else problem.text
        if isinstance(problem, web.HTTPMethodNotAllowed):
            details = f"allowed: {', '.join(sorted(problem.allowed_methods))}"
        response = json_response(request, {"error": error_object(kind, problem.reason, details)}, problem.status)
        if "Allow" in problem.headers:
            response.headers["Allow"] = problem.headers["Allow"]
        return response
    except OSError as problem:
        if problem.errno in NAME_ERRNOS:  # the file system refused a name the client chose
            return json_response(request, {"error": error_object("invalid_path", "Invalid file name",
                                                                  os.strerror(problem.errno))}, 400)
        return _internal_error(request)
    except Exception:
        return _internal_error(request)


def _internal_error(request: web.Request) -> web.Response:
    """A bug or a server-side failure: log it, tell the client only that it happened."""
    log.exception("internal error while answering %s %s", request.method, request.path[:200])
    return json_response(request, {"error": error_object("internal_error", "Internal server error",
                                                          "the server logged the details")}, 500)


def is_loopback(host: Optional[str]) -> bool:
    """Whether a host name or address can only mean this machine: localhost (and names under .localhost, which
    browsers resolve to it themselves), 127.0.0.0/8, ::1."""
    if not host:
        return False
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_and_port(authority: str, scheme: str) -> tuple[Optional[str], Optional[int]]:
    """(host name, port) of ``host[:port]``, the port defaulting to the scheme's; ValueError when malformed."""
    parts = urllib.parse.urlsplit("//" + authority.lower())
    port = parts.port  # ValueError for a port that is not a number in range
    return (parts.hostname.rstrip(".") if parts.hostname else None), \
        (port if port is not None else DEFAULT_PORTS.get(scheme))


@web.middleware
async def same_origin_on_loopback(request: web.Request, handler):
    """Refuse cross-origin requests and DNS rebinding (see the module docstring)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, "forbidden_origin", "Cross-site requests are not allowed")
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    try:
        host_name, host_port = _host_and_port(host, request.scheme) if host else (None, None)
        if origin is not None:
            origin_parts = urllib.parse.urlsplit(origin.lower())
            origin_host = _host_and_port(origin_parts.netloc, origin_parts.scheme) if origin_parts.netloc \
                else (None, None)
    except ValueError:
        raise ApiError(400, "bad_request", "Malformed Host or Origin header") from None
    if host and _arrived_on_loopback(request) and not is_loopback(host_name):
        log.warning("refused a request for host %r on a loopback address", host[:200])
        raise ApiError(403, "forbidden_host", "This server answers only to loopback host names",
                       "open it as http://127.0.0.1:PORT or http://localhost:PORT (a foreign host name on a "
                       "loopback address is how DNS rebinding attacks reach local servers); to serve other names, "
                       "listen on another address with --listen")
    if origin is not None and host and origin_host != (host_name, host_port):
        log.warning("refused a request from origin %r to host %r", origin[:200], host[:200])
        raise ApiError(403, "forbidden_origin", "Requests from another origin are not allowed",
                       "the Origin header does not match the Host (scheme, name and port)")
    return await handler(request)


def _arrived_on_loopback(request: web.Request) -> bool:
    """Whether the connection was made to a loopback address of this machine."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    address = sockname[0] if isinstance(sockname, (tuple, list)) and sockname else None
    return isinstance(address, str) and is_loopback(address)


async def file_response(request: web.Request, path, headers: Optional[dict] = None) -> web.FileResponse:
    """``path`` as a file response, with the Range header checked first: aiohttp answers an unsatisfiable or
    malformed one with an empty 416 of its own once the handler has returned, past the JSON errors."""
    if "Range" in request.headers:
        try:
            status = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            raise ApiError(404, "not_found", "No such file", os.path.basename(path)) from None
        if request.if_range is None or status.st_mtime <= request.if_range.timestamp():  # else: whole file
            _check_range(request, status.st_size)
    return web.FileResponse(path, headers=headers)


def _check_range(request: web.Request, size: int) -> None:
    """Raise the JSON 416 for a Range header that aiohttp would refuse for a file of ``size`` bytes."""
    unsatisfiable = {"headers": {"Content-Range": f"bytes */{size}"}}
    try:
        requested = request.http_range
    except ValueError:
        raise ApiError(416, "range_not_satisfiable", "The Range header cannot be served",
                       "one range: bytes=START-END, bytes=START- or bytes=-LENGTH", **unsatisfiable) from None
    start = requested.start
    if start is None:
        return
    first = max(start + size, 0) if start < 0 and requested.stop is None else start
    if first >= size:
        raise ApiError(416, "range_not_satisfiable", "The Range starts at or after the end of the file",
                       f"the file has {size} bytes", **unsatisfiable)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".gif", ".ico", ".apng", ".svg", ".webp", ".avif")


@web.middleware
async def cache_headers(request: web.Request, handler):
    """ComfyUI's cache policy: scripts, styles and index JSON revalidate; images are cached for a day."""
    response = await handler(request)
    name = request.path.rsplit("/", 1)[-1]
    if name.endswith((".js", ".mjs", ".css")) or (name.startswith("index") and name.endswith(".json")):
        response.headers.setdefault("Cache-Control", "no-cache")
    elif name.lower().endswith(IMAGE_SUFFIXES) and response.status == 200:
        response.headers.setdefault("Cache-Control", "public, max-age=86400")
    return response
