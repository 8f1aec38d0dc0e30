"""Saving outputs (with previews in the node): images, videos, splats and meshes.

Files go to the output folder with ComfyUI's naming (``prefix_00001_.png``), written atomically, never over an
existing file. Splat and mesh nodes report their files under the ``unidit_3d`` key, which the pack's in-node
3D viewer (web/unidit.js) shows.
"""
from __future__ import annotations

from ..runtime import comfy_bridge
from ..runtime.files import save_output, write_atomic
from ..runtime.gaussians.mesh import MESH_FORMATS, mesh_bytes, textured_obj
from ..runtime.gaussians.ply import ply_bytes
from ..runtime.gaussians.splat_file import splat_file_bytes
from ..runtime.gaussians.spz import spz_bytes
from ..runtime.media.image import prompt_text, save_png_images
from ..runtime.media.video import VIDEO_FORMATS, encode_video
from .types import CATEGORY, MESH, SPLAT, meshes_from_comfy, splat_from_comfy

SPLAT_WRITERS = {"ply": ply_bytes, "spz": spz_bytes, "splat": splat_file_bytes}
HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def _prefix(default: str):
    return ("STRING", {"default": default, "tooltip": "File name prefix; may contain subfolders (e.g. "
                                                      "'unidit/run1'). A counter is appended."})


def _file_entry(path, subfolder: str, **extra) -> dict:
    return {"filename": path.name, "subfolder": subfolder, "type": "output", **extra}


class UniDiTSaveImage:
    DESCRIPTION = "Saves images as PNG files (with the prompt and workflow inside, like ComfyUI's Save Image)."
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save, from UniDiT Decode or any IMAGE "
                                                             "output."}),
                             "filename_prefix": _prefix("UniDiT")}, "hidden": HIDDEN}

    def save(self, images, filename_prefix, prompt=None, extra_pnginfo=None):
        saved = save_png_images(images, comfy_bridge.output_directory(), filename_prefix,
                                prompt_text(prompt, extra_pnginfo))
        return {"ui": {"images": [_file_entry(path, subfolder) for path, subfolder in saved]}}


class UniDiTSaveVideo:
    DESCRIPTION = "Saves image frames as one video: MP4 (H.264), WebM (VP9) or animated WebP, previewed in the node."
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "All frames of the video, in order."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                              "tooltip": "Frames per second; connect UniDiT Decode's fps to keep the latent's."}),
            "format": (list(VIDEO_FORMATS), {"default": "mp4",
                                             "tooltip": "mp4 plays everywhere; webm is smaller; webp is an "
                                                        "animated image."}),
            "filename_prefix": _prefix("UniDiT"),
        }}

    def save(self, images, fps, format, filename_prefix):
        path, subfolder = save_output(comfy_bridge.output_directory(), filename_prefix, format,
                                      encode_video(images, fps, format))
        return {"ui": {"images": [_file_entry(path, subfolder)], "animated": [True]}}


def _save_3d(files, filename_prefix: str, kind: str, format: str) -> dict:
    """Write each file's bytes as the next numbered output; the ui entries open in the node's 3D viewer."""
    entries = []
    for data in files:
        path, subfolder = save_output(comfy_bridge.output_directory(), filename_prefix, format, data)
        entries.append(_file_entry(path, subfolder, kind=kind, format=format))
    return {"ui": {"unidit_3d": entries}}


class UniDiTSaveSplat:
    DESCRIPTION = ("Saves a Gaussian splat as 3DGS PLY (SuperSplat, Blender add-ons, most viewers), SPZ (compact) "
                   "or .splat, with a 3D viewer in the node.")
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "splat": (SPLAT, {"tooltip": "The Gaussian splat to save, from UniDiT Decode Splat."}),
            "format": (list(SPLAT_WRITERS), {"default": "ply",
                                             "tooltip": "ply: 3DGS PLY, opens almost everywhere; spz: compact "
                                                        "(about 10x smaller); splat: the antimatter15 .splat layout."}),
            "filename_prefix": _prefix("UniDiT")}}

    def save(self, splat, format, filename_prefix):
        splats = splat_from_comfy(splat)
        files = (SPLAT_WRITERS[format](splats.item(item)) for item in range(splats.batch_size))
        return _save_3d(files, filename_prefix, "splat", format)


class UniDiTSaveMesh:
    DESCRIPTION = ("Saves a mesh as GLB (with normals, vertex colours and a material; a textured mesh with its "
                   "base-colour texture), OBJ (a textured mesh as OBJ + MTL + PNG), PLY or STL, y-up, with a 3D "
                   "viewer in the node.")
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mesh": (MESH, {"tooltip": "The mesh to save, from UniDiT Splat to Mesh (or core's MESH)."}),
            "format": (list(MESH_FORMATS), {"default": "glb",
                                            "tooltip": "glb: one file with normals, colours (or the texture) and "
                                                       "a material (Blender, three.js, the viewer here); obj: vertex "
                                                       "colours, or OBJ + MTL + PNG for a textured mesh; ply: vertex "
                                                       "colours; stl: shape only (3D printing)."}),
            "filename_prefix": _prefix("UniDiT")}}

    def save(self, mesh, format, filename_prefix):
        meshes = meshes_from_comfy(mesh)
        if format == "obj" and meshes[0].texture is not None:
            return {"ui": {"unidit_3d": [_save_textured_obj(item, filename_prefix) for item in meshes]}}
        files = (mesh_bytes(item, format) for item in meshes)
        return _save_3d(files, filename_prefix, "mesh", format)


def _save_textured_obj(mesh, filename_prefix: str) -> dict:
    """OBJ + MTL + PNG: the PNG takes the next numbered name, the MTL its stem, the OBJ the next OBJ name."""
    output = comfy_bridge.output_directory()
    obj_placeholder, material, png = textured_obj(mesh, "texture.png", "material.mtl")
    texture_path, _ = save_output(output, filename_prefix, "png", png)
    material_path = write_atomic(texture_path.with_suffix(".mtl"),
                                 material.replace(b"texture.png", texture_path.name.encode("utf-8")))
    obj = obj_placeholder.replace(b"mtllib material.mtl", b"mtllib " + material_path.name.encode("utf-8"), 1)
    path, subfolder = save_output(output, filename_prefix, "obj", obj)
    return _file_entry(path, subfolder, kind="mesh", format="obj")
