"""Working with splats: turntable renders and meshes."""
from __future__ import annotations

import torch

from ..runtime import comfy_bridge, memory_budget
from ..runtime.gaussians.mesh import MeshConfig, splat_to_mesh
from ..runtime.gaussians.render import RenderConfig, render_turntable
from .types import CATEGORY, MESH, SPLAT, meshes_to_comfy, range_problem, splat_from_comfy

RENDERS, RENDER_SETTINGS = "The turntable renders", "the frames, width or height"
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "grey": (0.5, 0.5, 0.5), "black": (0.0, 0.0, 0.0)}


class UniDiTRenderSplat:
    DESCRIPTION = "Renders a turntable of a splat: cameras on a circle around it (pure PyTorch, CPU or GPU)."
    CATEGORY = f"{CATEGORY}/3d"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "splat": (SPLAT, {"tooltip": "A Gaussian splat, from UniDiT Decode Splat (or core's splat nodes)."}),
            "frames": ("INT", {"default": 24, "min": 1, "max": 360, "tooltip": "Views around the object."}),
            "width": ("INT", {"default": 256, "min": 16, "max": 2048, "step": 8,
                              "tooltip": "Width of each rendered frame in pixels."}),
            "height": ("INT", {"default": 256, "min": 16, "max": 2048, "step": 8,
                               "tooltip": "Height of each rendered frame in pixels."}),
            "elevation": ("FLOAT", {"default": 20.0, "min": -89.0, "max": 89.0, "step": 1.0,
                                    "tooltip": "Degrees above the object."}),
            "distance": ("FLOAT", {"default": 2.0, "min": 0.1, "max": 100.0, "step": 0.1,
                                   "tooltip": "Camera distance from the centre (the demo model's rig uses 2)."}),
            "background": (list(BACKGROUNDS), {"default": "white",
                                               "tooltip": "The colour behind the object."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, frames=24, width=256, height=256):
        return range_problem(cls, frames=frames, width=width, height=height) or memory_budget.frames_problem(
            1, frames, width, height, RENDERS, RENDER_SETTINGS) or True

    def render(self, splat, frames, width, height, elevation, distance, background):
        splats = splat_from_comfy(splat)
        memory_budget.require_frames(splats.batch_size, frames, width, height, RENDERS, RENDER_SETTINGS)
        config = RenderConfig(background=BACKGROUNDS[background])
        images = []
        progress = comfy_bridge.Progress(splats.batch_size)
        for item in range(splats.batch_size):
            comfy_bridge.check_interrupt()
            images.append(render_turntable(splats.item(item), frames, width, height, elevation_deg=elevation,
                                           radius=distance, config=config))
            progress.update(item + 1)
        return (torch.cat(images).clamp(0, 1),)


class UniDiTSplatToMesh:
    DESCRIPTION = ("Turns a splat into a coloured triangle mesh: Gaussian density on a grid, marching cubes, small "
                   "pieces dropped, simplified, vertex colours from the nearest Gaussians.")
    CATEGORY = f"{CATEGORY}/3d"
    RETURN_TYPES = (MESH,)
    RETURN_NAMES = ("mesh",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "splat": (SPLAT, {"tooltip": "A Gaussian splat, from UniDiT Decode Splat."}),
            "resolution": ("INT", {"default": 128, "min": 16, "max": 512, "step": 8,
                                   "tooltip": "Grid points along the longest side; more is finer and slower."}),
            "threshold": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 2.0, "step": 0.01,
                                    "tooltip": "Surface level as a fraction of the typical density at the "
                                               "Gaussians; lower gives a fuller mesh."}),
            "target_faces": ("INT", {"default": 50000, "min": 0, "max": 2000000, "step": 1000,
                                     "tooltip": "Simplify to about this many faces (0 = keep all)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, resolution=128):
        return range_problem(cls, resolution=resolution) or memory_budget.problem(
            resolution ** 3 * memory_budget.GRID_BYTES_PER_CELL, f"A {resolution}^3 density grid", "the resolution") \
            or True

    def convert(self, splat, resolution, threshold, target_faces):
        splats = splat_from_comfy(splat)
        config = MeshConfig(resolution=resolution, threshold=threshold, target_faces=target_faces or None)
        meshes = []
        for item in range(splats.batch_size):
            comfy_bridge.check_interrupt()
            meshes.append(splat_to_mesh(splats.item(item), config))
        return (meshes_to_comfy(meshes),)
