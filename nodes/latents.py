"""Empty latents for each modality, and image conditioning (image -> video, image -> 3D)."""
from __future__ import annotations

from ..runtime import memory_budget
from ..runtime.gaussians.camera import RIG_PRESETS
from ..runtime.generate import condition_on_image, empty_latents
from ..runtime.store import STORE
from .types import CATEGORY, latent_from_comfy, latent_to_comfy, model_input, range_problem

SIZE_STEP = 16  # the finest size multiple of any family (x4 autoencoder x 4 patch; x8 x 2)


def _size(default: int, what: str):
    return ("INT", {"default": default, "min": SIZE_STEP, "max": 2048, "step": SIZE_STEP,
                    "tooltip": f"{what} in pixels, a multiple of {SIZE_STEP} (32 for Wan 2.2). The demo model was "
                               f"trained at 64, Wan 2.1 at 832x480, Wan 2.2 TI2V at 1280x704."})


def _batch():
    return ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "How many items to generate at once (item i "
                                                                  "uses seed + i)."})


class UniDiTEmptyImageLatent:
    DESCRIPTION = "An empty latent for text -> image: one frame."
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "create"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": model_input(), "width": _size(64, "Width"), "height": _size(64, "Height"),
                             "batch_size": _batch()}}

    @classmethod
    def VALIDATE_INPUTS(cls, width=64, height=64, batch_size=1):
        return range_problem(cls, width=width, height=height, batch_size=batch_size) or memory_budget.frames_problem(
            batch_size, 1, width, height, "The decoded images", "the width, height or batch size") or True

    def create(self, model, width, height, batch_size):
        return (latent_to_comfy(empty_latents(STORE.model(model, parts=()), "image", width, height, batch_size)),)


class UniDiTEmptyVideoLatent:
    DESCRIPTION = ("An empty latent for text -> video (or image -> video with UniDiT Image Condition). The causal "
                   "autoencoder turns 1 + 4k frames into 1 + k latent frames.")
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "create"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(), "width": _size(64, "Width"), "height": _size(64, "Height"),
            "frames": ("INT", {"default": 9, "min": 1, "max": 257, "step": 4,
                               "tooltip": "Frames of the video: 1, 5, 9, 13, ... The demo model was trained on 9, "
                                          "Wan 2.1 on 81 (16 fps), Wan 2.2 TI2V on 121 (24 fps)."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                              "tooltip": "Frame rate, kept with the latent for saving."}),
            "batch_size": _batch(),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, width=64, height=64, frames=9, batch_size=1):
        return range_problem(cls, width=width, height=height, frames=frames, batch_size=batch_size) or \
            memory_budget.frames_problem(batch_size, frames, width, height, "The decoded videos",
                                         "the width, height, frames or batch size") or True

    def create(self, model, width, height, frames, fps, batch_size):
        latents = empty_latents(STORE.model(model, parts=()), "video", width, height, batch_size, frames=frames,
                                fps=fps)
        return (latent_to_comfy(latents),)


class UniDiTEmpty3DLatent:
    DESCRIPTION = ("An empty latent for text -> 3D: the views of a camera rig around the object, generated "
                   "together. Decode them with UniDiT Decode Splat into a Gaussian splat.")
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "create"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(), "width": _size(64, "View width"), "height": _size(64, "View height"),
            "views": ("INT", {"default": 4, "min": 1, "max": 16,
                              "tooltip": "Views around the object, evenly spaced; view 0 faces the front. The demo "
                                         "model was trained on 4."}),
            "rig": (list(RIG_PRESETS), {"default": "orbit",
                                        "tooltip": "Camera elevation: orbit (20°, the demo model's), orbit_level "
                                                   "(0°) or orbit_high (40°)."}),
            "batch_size": _batch(),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, width=64, height=64, views=4, batch_size=1):
        return range_problem(cls, width=width, height=height, views=views, batch_size=batch_size) or \
            memory_budget.frames_problem(batch_size, views, width, height, "The decoded views",
                                         "the width, height, views or batch size") or True

    def create(self, model, width, height, views, rig, batch_size):
        latents = empty_latents(STORE.model(model, parts=()), "3d", width, height, batch_size, rig=rig, views=views)
        return (latent_to_comfy(latents),)


class UniDiTImageCondition:
    DESCRIPTION = ("Makes an image the first frame of a video latent (image -> video) or the front view of a 3D "
                   "latent (image -> 3D). The sampler keeps it fixed and generates the rest. Works with UniDiT "
                   "bundles and Wan 2.2 TI2V-5B.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "condition"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "latent": ("LATENT", {"tooltip": "A UniDiT video or 3D latent."}),
            "image": ("IMAGE", {"tooltip": "One image for the whole batch, or one per item; resized to the "
                                           "latent's size."}),
        }}

    def condition(self, model, latent, image):
        latents = latent_from_comfy(latent)
        loaded = STORE.model(model, ("autoencoder",), latents.samples.shape)
        conditioned = condition_on_image(loaded, latents, image)
        return (latent_to_comfy(conditioned),)
