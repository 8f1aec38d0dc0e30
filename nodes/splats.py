"""Working with splats: fitting them to views, turntable renders and meshes."""
from __future__ import annotations

import torch

from ..runtime import comfy_bridge, memory_budget
from ..runtime.gaussians.camera import RIG_PRESETS, camera_rig
from ..runtime.gaussians.fit import FitConfig, fit_objects
from ..runtime.gaussians.mesh import SURFACES, MeshConfig, splat_to_mesh, texture_mesh
from ..runtime.gaussians.render import RenderConfig, render_turntable
from .types import (CATEGORY, MESH, SPLAT, latent_from_comfy, meshes_to_comfy, range_problem, splat_from_comfy,
                    splat_to_comfy)

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
    DESCRIPTION = ("Turns a splat into a closed, coloured triangle mesh: the splat's visual hull from renders all "
                   "round (or its Gaussian density) on a grid, pores closed, marching cubes, volume-keeping "
                   "smoothing, small pieces dropped, simplified, vertex colours from the nearest Gaussians.")
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
                                    "tooltip": "surface = density only: the level as a fraction of the typical "
                                               "density at the Gaussians; lower gives a fuller mesh."}),
            "target_faces": ("INT", {"default": 50000, "min": 0, "max": 2000000, "step": 1000,
                                     "tooltip": "Simplify to about this many faces (0 = keep all)."}),
        }, "optional": {
            "surface": (list(SURFACES), {"default": "silhouettes",
                                         "tooltip": "silhouettes: the splat's visual hull, one closed piece "
                                                    "without pores (best for generated and fitted splats; "
                                                    "hollows that no view sees into are filled). density: "
                                                    "the level of the Gaussians' density (keeps hollows, "
                                                    "porous for noisy splats)."}),
            "texture_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 256,
                                     "tooltip": "0: vertex colours only. Otherwise a UV atlas and a base-colour "
                                                "texture of this many pixels square, baked from the splat; UniDiT "
                                                "Save Mesh then writes a textured GLB, or OBJ + MTL + PNG."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, resolution=128, texture_size=0):
        return range_problem(cls, resolution=resolution, texture_size=texture_size) or memory_budget.problem(
            resolution ** 3 * memory_budget.GRID_BYTES_PER_CELL, f"A {resolution}^3 density grid", "the resolution") \
            or memory_budget.frames_problem(1, 1, texture_size, texture_size, "The texture", "texture_size") or True

    def convert(self, splat, resolution, threshold, target_faces, surface="silhouettes", texture_size=0):
        splats = splat_from_comfy(splat)
        config = MeshConfig(resolution=resolution, threshold=threshold, target_faces=target_faces or None,
                            surface=surface)
        meshes = []
        for item in range(splats.batch_size):
            comfy_bridge.check_interrupt()
            mesh = splat_to_mesh(splats.item(item), config)
            meshes.append(texture_mesh(mesh, splats.item(item), texture_size) if texture_size else mesh)
        return (meshes_to_comfy(meshes),)


class UniDiTFitSplats:
    DESCRIPTION = ("Fits a Gaussian splat to views of an object taken by known cameras (3D Gaussian Splatting's "
                   "optimisation on the pack's renderer): from a UniDiT 3D latent's own cameras, or a rig of views "
                   "evenly spaced round the object, such as the frames of a turntable video or a Load Image batch. "
                   "Starts from the given splat, else from the views' visual hull. Renders hold up at 2-4x the "
                   "views' size.")
    CATEGORY = f"{CATEGORY}/3d"
    RETURN_TYPES = (SPLAT,)
    RETURN_NAMES = ("splat",)
    OUTPUT_TOOLTIPS = ("One splat per object: one for a rig of views, one per batch item of a 3D latent.",)
    FUNCTION = "fit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The views, in camera order: a turntable video's frames, a Load Image "
                                            "batch, or UniDiT Decode's views of a 3D latent. The object on a plain "
                                            "background."}),
            "rig": (list(RIG_PRESETS), {"default": "orbit",
                                        "tooltip": "Camera height when no latent gives the cameras: orbit 20 "
                                                   "degrees above the object, orbit_level at its height, "
                                                   "orbit_high 40 degrees above."}),
            "arc": ("FLOAT", {"default": 360.0, "min": -360.0, "max": 360.0, "step": 1.0,
                              "tooltip": "Degrees the views go round, evenly spaced, starting in front: 360 for a "
                                         "full turn; negative when the camera goes round the other way (an object "
                                         "spinning counter-clockwise seen from above)."}),
            "distance": ("FLOAT", {"default": 2.0, "min": 0.1, "max": 100.0, "step": 0.1,
                                   "tooltip": "Camera distance from the object's centre (the demo model's rig: 2)."}),
            "field_of_view": ("FLOAT", {"default": 49.1, "min": 5.0, "max": 150.0, "step": 0.1,
                                        "tooltip": "Vertical field of view of the views in degrees."}),
            "iterations": ("INT", {"default": 1000, "min": 10, "max": 30000, "step": 10,
                                   "tooltip": "Optimisation steps per object (one view per step); 300 is a quick "
                                              "fit, 1000 a careful one."}),
            "supersample": ("INT", {"default": 1, "min": 1, "max": 4,
                                    "tooltip": "Render each step at this many times the views' size and average "
                                               "down: finer detail for large renders, slower."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF,
                             "tooltip": "Seeds the initial points and the order of the views."}),
        }, "optional": {
            "splat": (SPLAT, {"tooltip": "Start from this splat (e.g. UniDiT Decode Splat's); one, or one per "
                                         "object."}),
            "cameras_from": ("LATENT", {"tooltip": "A UniDiT 3D latent whose cameras took the views (rig, arc, "
                                                   "distance and field of view are then unused); the images are "
                                                   "its batch items' views in order, one splat per item."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, iterations=1000, supersample=1, arc=360.0):
        return range_problem(cls, iterations=iterations, supersample=supersample, arc=arc) or True

    def fit(self, images, rig, arc, distance, field_of_view, iterations, supersample, seed, splat=None,
            cameras_from=None):
        count, height, width = images.shape[:3]
        if cameras_from is not None:
            cameras = latent_from_comfy(cameras_from).cameras
            if cameras is None:
                raise ValueError("UniDiT Fit Splats: cameras_from must be a UniDiT 3D latent (UniDiT Empty 3D "
                                 "Latent or a sampled one); this latent has no cameras")
            if count % len(cameras):
                raise ValueError(f"UniDiT Fit Splats: {count} images are not whole sets of the latent's "
                                 f"{len(cameras)} views; connect UniDiT Decode of the same latent")
        else:
            cameras = camera_rig(rig, count, width, height, distance, field_of_view, arc)
        views = len(cameras)
        memory_budget.require_frames(1, views, width * supersample, height * supersample,
                                     "Fit Splats' renders", "the images' size or supersample")
        device = comfy_bridge.default_device()
        device = device if device.type == "cuda" else torch.device("cpu")
        objects = images.reshape(count // views, views, height, width, images.shape[-1])[..., :3].to(device)
        progress = comfy_bridge.Progress(objects.shape[0] * iterations)

        def on_step(done, total):
            if done % 10 == 0 or done == total:
                comfy_bridge.check_interrupt()
                progress.update(done)

        config = FitConfig(iterations=iterations, supersample=supersample, seed=seed)
        initial = None if splat is None else splat_from_comfy(splat)
        return (splat_to_comfy(fit_objects(objects, cameras, initial, config, on_step)),)
