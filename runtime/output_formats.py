"""Every kind of file UniDiT writes, registered once: one :class:`OutputKind` per output (image, video, splat,
mesh) with its formats, each a file extension, a MIME type and the function that writes the file's bytes.

Every layer reads these and keeps no list of its own: the Save nodes offer a kind's extensions (the first is the
default), describe them from ``about`` and write through :meth:`OutputKind.write`; ``unidit demo`` writes each
kind's default; a node lists its files in its ``ui`` result under the kind's ``ui_key``, where ``unidit run``
reports them, the editor previews images and videos, and the pack's in-node 3D viewer (web/unidit.js,
web/viewer/viewer.mjs) shows every splat and mesh format; the host serves each extension with its MIME type and
counts splats and meshes as previewable outputs in its jobs API.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from .gaussians.mesh import glb_bytes, mesh_ply_bytes, obj_bytes, stl_bytes
from .gaussians.ply import ply_bytes
from .gaussians.splat_file import splat_file_bytes
from .gaussians.spz import spz_bytes
from .media.image import encode_png
from .media.video import encode_animated_webp, encode_mp4, encode_webm

VIEWER_UI_KEY = "unidit_3d"  # where splat and mesh files are listed: the pack's in-node 3D viewer shows them
OCTET_STREAM = "application/octet-stream"  # no registered MIME type: PLY, SPZ, .splat


@dataclass(frozen=True)
class FileFormat:
    extension: str                # without the dot; also the name a Save node offers
    mime_type: str
    write: Callable[..., bytes]   # the kind's data -> the file's bytes
    about: str                    # what it is good for, in a few words (the Save node's tooltip)


@dataclass(frozen=True)
class OutputKind:
    name: str
    ui_key: str                       # the key of a node's ``ui`` result that lists files of this kind
    formats: tuple[FileFormat, ...]   # the first is the default

    @property
    def extensions(self) -> list[str]:
        return [file_format.extension for file_format in self.formats]

    @property
    def default(self) -> str:
        return self.formats[0].extension

    def format(self, extension: str) -> FileFormat:
        """The format of ``extension`` (with or without its dot, any case)."""
        wanted = extension.lower().lstrip(".")
        for file_format in self.formats:
            if file_format.extension == wanted:
                return file_format
        raise ValueError(f"unknown {self.name} format {extension!r}; choose one of {', '.join(self.extensions)}")

    def write(self, extension: str, *data) -> bytes:
        """The bytes of a file of ``extension`` holding ``data`` (an image: image, text; a video: frames, fps;
        a splat: splats; a mesh: mesh)."""
        return self.format(extension).write(*data)

    def describe(self) -> str:
        """One line per format: "ext: about"."""
        return "; ".join(f"{file_format.extension}: {file_format.about}" for file_format in self.formats) + "."


IMAGE_FILES = OutputKind("image", "images", (
    FileFormat("png", "image/png", encode_png, "lossless, with the prompt and workflow inside"),
))
VIDEO_FILES = OutputKind("video", "images", (  # ComfyUI previews videos as "images" flagged "animated"
    FileFormat("mp4", "video/mp4", encode_mp4, "H.264, plays everywhere"),
    FileFormat("webm", "video/webm", encode_webm, "VP9, smaller"),
    FileFormat("webp", "image/webp", encode_animated_webp, "an animated image"),
))
SPLAT_FILES = OutputKind("splat", VIEWER_UI_KEY, (
    FileFormat("ply", OCTET_STREAM, ply_bytes, "3DGS PLY, opens almost everywhere"),
    FileFormat("spz", OCTET_STREAM, spz_bytes, "compact (about 10x smaller)"),
    FileFormat("splat", OCTET_STREAM, splat_file_bytes, "the antimatter15 .splat layout"),
))
MESH_FILES = OutputKind("mesh", VIEWER_UI_KEY, (
    FileFormat("glb", "model/gltf-binary", glb_bytes,
               "one file with normals, colours (or the baked texture) and a material (Blender, three.js, the "
               "viewer here)"),
    FileFormat("obj", "model/obj", obj_bytes, "vertex colours; a textured mesh: OBJ + MTL + PNG"),
    FileFormat("ply", OCTET_STREAM, mesh_ply_bytes, "vertex colours"),
    FileFormat("stl", "model/stl", stl_bytes, "shape only (3D printing)"),
))
OUTPUT_KINDS = (IMAGE_FILES, VIDEO_FILES, SPLAT_FILES, MESH_FILES)


def mime_type(filename: str | os.PathLike) -> Optional[str]:
    """The MIME type of a file UniDiT writes, by its extension; None for any other file."""
    extension = os.path.splitext(os.fspath(filename))[1].lower().lstrip(".")
    return next((file_format.mime_type for kind in OUTPUT_KINDS for file_format in kind.formats
                 if file_format.extension == extension), None)


def ui_keys() -> list[str]:
    """The keys of a node's ``ui`` result under which output files are listed, each once."""
    return list(dict.fromkeys(kind.ui_key for kind in OUTPUT_KINDS))
