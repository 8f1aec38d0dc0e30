"""Saving outputs (with previews in the node): images, videos, splats and meshes.

Files go to the output folder with ComfyUI's naming (``prefix_00001_.png``), written atomically, never over an
existing file. The formats each node offers, their writers and the ``ui`` key a node lists its files under are
registered once, in runtime/output_formats.py (splats and meshes: ``unidit_3d``, which the pack's in-node 3D
viewer, web/unidit.js, shows).
"""
from __future__ import annotations

from ..runtime import comfy_bridge
from ..runtime.files import save_output, write_atomic
from ..runtime.gaussians.mesh import textured_obj
from ..runtime.media.image import prompt_text, save_png_images
from ..runtime.output_formats import IMAGE_FILES, MESH_FILES, SPLAT_FILES, VIDEO_FILES, OutputKind
from .types import CATEGORY, MESH, SPLAT, meshes_from_comfy, splat_from_comfy

HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def _prefix(default: str):
    return ("STRING", {"default": default, "tooltip": "File name prefix; may contain subfolders (e.g. "
                                                      "'unidit/run1'). A counter is appended."})


def _file_entry(path, subfolder: str, **extra) -> dict:
    return {"filename": path.name, "subfolder": subfolder, "type": "output", **extra}


def _format_choice(kind: OutputKind):
    return (kind.extensions, {"default": kind.default, "tooltip": kind.describe()})


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
        return {"ui": {IMAGE_FILES.ui_key: [_file_entry(path, subfolder) for path, subfolder in saved]}}


class UniDiTSaveVideo:
    DESCRIPTION = f"Saves image frames as one video ({', '.join(VIDEO_FILES.extensions)}), previewed in the node."
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
            "format": _format_choice(VIDEO_FILES),
            "filename_prefix": _prefix("UniDiT"),
        }}

    def save(self, images, fps, format, filename_prefix):
        path, subfolder = save_output(comfy_bridge.output_directory(), filename_prefix, format,
                                      VIDEO_FILES.write(format, images, fps))
        return {"ui": {VIDEO_FILES.ui_key: [_file_entry(path, subfolder)], "animated": [True]}}


def _save_3d(items, filename_prefix: str, kind: OutputKind, format: str) -> dict:
    """Write each item as the next numbered file of ``format``; the ui entries open in the node's 3D viewer."""
    entries = []
    for item in items:
        path, subfolder = save_output(comfy_bridge.output_directory(), filename_prefix, format,
                                      kind.write(format, item))
        entries.append(_file_entry(path, subfolder, kind=kind.name, format=format))
    return {"ui": {kind.ui_key: entries}}


class UniDiTSaveSplat:
    DESCRIPTION = f"Saves a Gaussian splat ({', '.join(SPLAT_FILES.extensions)}), with a 3D viewer in the node."
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "splat": (SPLAT, {"tooltip": "The Gaussian splat to save, from UniDiT Decode Splat."}),
            "format": _format_choice(SPLAT_FILES),
            "filename_prefix": _prefix("UniDiT")}}

    def save(self, splat, format, filename_prefix):
        splats = splat_from_comfy(splat)
        items = (splats.item(item) for item in range(splats.batch_size))
        return _save_3d(items, filename_prefix, SPLAT_FILES, format)


class UniDiTSaveMesh:
    DESCRIPTION = f"Saves a mesh ({', '.join(MESH_FILES.extensions)}), y-up, with a 3D viewer in the node."
    CATEGORY = f"{CATEGORY}/save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mesh": (MESH, {"tooltip": "The mesh to save, from UniDiT Splat to Mesh (or core's MESH)."}),
            "format": _format_choice(MESH_FILES),
            "filename_prefix": _prefix("UniDiT")}}

    def save(self, mesh, format, filename_prefix):
        meshes = meshes_from_comfy(mesh)
        if format == "obj" and meshes[0].texture is not None:
            return {"ui": {MESH_FILES.ui_key: [_save_textured_obj(item, filename_prefix) for item in meshes]}}
        return _save_3d(meshes, filename_prefix, MESH_FILES, format)


def _save_textured_obj(mesh, filename_prefix: str) -> dict:
    """OBJ + MTL + PNG: the PNG takes the next numbered name, the MTL its stem, the OBJ the next OBJ name."""
    output = comfy_bridge.output_directory()
    obj_placeholder, material, png = textured_obj(mesh, "texture.png", "material.mtl")
    texture_path, _ = save_output(output, filename_prefix, "png", png)
    material_path = write_atomic(texture_path.with_suffix(".mtl"),
                                 material.replace(b"texture.png", texture_path.name.encode("utf-8")))
    obj = obj_placeholder.replace(b"mtllib material.mtl", b"mtllib " + material_path.name.encode("utf-8"), 1)
    path, subfolder = save_output(output, filename_prefix, "obj", obj)
    return _file_entry(path, subfolder, kind=MESH_FILES.name, format="obj")
