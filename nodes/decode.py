"""Latents -> frames, and 3D latents -> Gaussian splats."""
from __future__ import annotations

from ..runtime.generate import decode_frames, decode_splats
from ..runtime.store import STORE
from .types import CATEGORY, SPLAT, flatten_frames, latent_from_comfy, model_input, splat_to_comfy


class UniDiTDecode:
    DESCRIPTION = ("Decodes latents to images. A video gives its frames and a 3D latent its views, all flattened "
                   "into one image batch (item by item).")
    CATEGORY = f"{CATEGORY}/decode"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("Frames: batch items one after the other, each with all its frames or views.",
                       "The video's frame rate (the model's default for images and views).")
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": model_input(),
                             "latent": ("LATENT", {"tooltip": "Latents from UniDiT Sampler (or any UniDiT "
                                                              "latent)."})},
                "optional": {"tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32,
                                                   "tooltip": "0 decodes whole frames. Otherwise decode in "
                                                              "overlapping tiles of this many pixels (a quarter "
                                                              "overlapping), to fit large videos in memory; Wan "
                                                              "VAEs only."})}}

    def decode(self, model, latent, tile_size=0):
        latents = latent_from_comfy(latent)
        loaded = STORE.model(model, ("autoencoder",), latents.samples.shape)
        frames = decode_frames(loaded, latents, tile_size or None)
        return (flatten_frames(frames), float(latents.fps or loaded.defaults.fps))


class UniDiTDecodeSplat:
    DESCRIPTION = ("Decodes a 3D latent into a Gaussian splat: one Gaussian per pixel of every view, placed "
                   "along the view's camera rays, merged into one object.")
    CATEGORY = f"{CATEGORY}/3d"
    RETURN_TYPES = (SPLAT,)
    RETURN_NAMES = ("splat",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "latent": ("LATENT", {"tooltip": "A UniDiT 3D latent (after sampling)."}),
            "min_opacity": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Drop fainter Gaussians (the background's)."}),
        }}

    def decode(self, model, latent, min_opacity):
        loaded = STORE.model(model, parts=("splat_decoder",))
        return (splat_to_comfy(decode_splats(loaded, latent_from_comfy(latent), min_opacity)),)
