"""Latents: empty ones for each modality, encoded ones (image -> image, video -> video), and given frames (image
-> video, image -> 3D, keyframes, continuing a clip)."""
from __future__ import annotations

from ..runtime import memory_budget
from ..runtime.gaussians.camera import RIG_PRESETS
from ..runtime.generate import (attach_control, condition_on_image, continue_clip, empty_latents, encode_latents,
                                give_frames, join_clips, join_latents, parse_positions)
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


class UniDiTEncode:
    DESCRIPTION = ("Encodes images into a latent with the model's autoencoder: each image an image latent, the "
                   "frames of a clip one video latent, or the views of an object one 3D latent. Sample it with the "
                   "Sampler's denoise below 1 to change it as the prompt says (image -> image, video -> video).")
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "images": ("IMAGE", {"tooltip": "Images, the frames of one clip, or the views of one object (view 0 "
                                            "the front). Sizes are centre-cropped to the model's multiple."}),
            "modality": (["image", "video", "3d"], {"default": "image",
                                                    "tooltip": "image: each image its own latent (a batch); "
                                                               "video: all frames one clip (1 + 4k frames); "
                                                               "3d: all images the views of a camera rig."}),
        }, "optional": {
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                              "tooltip": "Frame rate of a video, kept with the latent for saving."}),
            "rig": (list(RIG_PRESETS), {"default": "orbit", "tooltip": "The cameras of 3D views (as in UniDiT "
                                                                       "Empty 3D Latent)."}),
        }}

    def encode(self, model, images, modality, fps=8.0, rig="orbit"):
        shape = (1, 1, images.shape[0], *images.shape[1:3])
        loaded = STORE.model(model, ("autoencoder",), shape)
        return (latent_to_comfy(encode_latents(loaded, images, modality, fps=fps, rig=rig)),)


class UniDiTKeyframes:
    DESCRIPTION = ("Holds images at chosen frames of a video latent (or views of a 3D latent) while the rest is "
                   "generated: '0' is image -> video, '0, -1' a video from a first to a last frame, '-1' a video "
                   "that ends on the image. One image per position, in order.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "place"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "latent": ("LATENT", {"tooltip": "A UniDiT video or 3D latent (keyframes already on it are kept)."}),
            "images": ("IMAGE", {"tooltip": "One image per position (batch them with a Batch Images node); "
                                            "resized to the latent's size."}),
            "positions": ("STRING", {"default": "0, -1",
                                     "tooltip": "Pixel frames (or views) the images go to, comma-separated; -1 is "
                                                "the last. After frame 0, keyframes at least 4 frames apart."}),
        }}

    def place(self, model, latent, images, positions):
        latents = latent_from_comfy(latent)
        loaded = STORE.model(model, ("autoencoder",), latents.samples.shape)
        return (latent_to_comfy(give_frames(loaded, latents, images, parse_positions(positions))),)


class UniDiTControl:
    DESCRIPTION = ("Steers where the object is and what shape it has: a depth map (brighter = nearer, background "
                   "black, as depth estimators give it) and/or an object mask (white = object). One map holds for "
                   "every frame; a video takes one map per frame too (a mask per frame is a trajectory). Models "
                   "trained with control maps follow them (the UniDiT demo model v2); others refuse.")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "control"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "latent": ("LATENT", {"tooltip": "A UniDiT image or video latent (given frames on it are kept)."}),
        }, "optional": {
            "depth": ("IMAGE", {"tooltip": "Depth map(s): brighter is nearer, the empty background black. "
                                           "Stretched to the latent's size, which must have the same aspect."}),
            "mask": ("MASK", {"tooltip": "Object mask(s): 1 (white) on the object. From an image: Convert Image "
                                         "to Mask. One per video frame makes the object follow it."}),
        }}

    def control(self, model, latent, depth=None, mask=None):
        if depth is None and mask is None:
            raise ValueError("UniDiT Control needs a depth map, a mask or both: connect at least one")
        latents = latent_from_comfy(latent)
        loaded = STORE.model(model, parts=())
        return (latent_to_comfy(attach_control(loaded, latents, depth=depth, mask=mask)),)


class UniDiTContinueClip:
    DESCRIPTION = ("Starts the next clip of a video: a video latent whose first frames are the last frames of the "
                   "clip so far, so the sampler carries its look and motion on. Put the sampled result after the "
                   "clip's latent with UniDiT Join Latents and decode once (or decode it and use UniDiT Join Clips, "
                   "same overlap).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "clip": ("IMAGE", {"tooltip": "The frames so far, e.g. from UniDiT Decode."}),
            "overlap": ("INT", {"default": 1, "min": 1, "max": 129, "step": 4,
                                "tooltip": "How many last frames the new clip starts with: 1, 5, 9, ... More "
                                           "frames carry more motion over; 1 carries the last picture."}),
            "frames": ("INT", {"default": 9, "min": 5, "max": 257, "step": 4,
                               "tooltip": "Frames of the new clip, the overlap included (1 + 4k)."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                              "tooltip": "Frame rate, kept with the latent for saving."}),
        }}

    def extend(self, model, clip, overlap, frames, fps):
        memory_budget.require_frames(1, frames, clip.shape[2], clip.shape[1], "The continued clip", "the frames")
        loaded = STORE.model(model, ("autoencoder",), (1, 1, overlap, *clip.shape[1:3]))
        return (latent_to_comfy(continue_clip(loaded, clip, overlap, frames, fps)),)


class UniDiTJoinLatents:
    DESCRIPTION = ("Puts a continued clip's latent after the latent of the clip it continues, dropping the overlap "
                   "the second starts with: decoded once, the video plays on without a jump and the first clip's "
                   "frames come out as they were. Chain it for longer videos.")
    CATEGORY = f"{CATEGORY}/latent"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "join"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "first": ("LATENT", {"tooltip": "The sampled latent of the clip so far (or an earlier Join Latents)."}),
            "second": ("LATENT", {"tooltip": "The sampled latent that UniDiT Continue Clip started from the first "
                                             "clip's decoded frames."}),
        }}

    def join(self, first, second):
        return (latent_to_comfy(join_latents(latent_from_comfy(first), latent_from_comfy(second))),)


class UniDiTJoinClips:
    DESCRIPTION = ("Puts a continued clip's frames after the clip it continues, dropping the overlap frames the "
                   "second repeats. Its copy of them went through the autoencoder, which can show as a small jump "
                   "at the join: UniDiT Join Latents, before decoding, has none.")
    CATEGORY = f"{CATEGORY}/image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "join"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "first": ("IMAGE", {"tooltip": "The clip so far."}),
            "second": ("IMAGE", {"tooltip": "The decoded clip made from UniDiT Continue Clip."}),
            "overlap": ("INT", {"default": 1, "min": 0, "max": 129,
                                "tooltip": "The overlap given to UniDiT Continue Clip."}),
        }}

    def join(self, first, second, overlap):
        return (join_clips(first, second, overlap),)
