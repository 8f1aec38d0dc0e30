"""Refining a generated 3D asset with the same model: in-between views, a fitted splat, coarse to fine."""
from __future__ import annotations

from ..runtime import comfy_bridge
from ..runtime.refine import RefineConfig, refine_3d
from ..runtime.sampling.guidance import GuidanceConfig
from ..runtime.store import STORE
from .types import CATEGORY, GUIDANCE, SPLAT, TEXT, Guidance, flatten_frames, latent_from_comfy, model_input, \
    splat_to_comfy


class UniDiTRefine3D:
    DESCRIPTION = ("Refines sampled 3D latents into a better splat: the model draws a new view halfway between each "
                   "pair of neighbouring views, with the generated views held fixed; a splat is fitted to all of "
                   "them from the decoded one, then refined at 2x the views' size, optionally pulled towards what "
                   "the model would draw from random angles (score distillation).")
    CATEGORY = f"{CATEGORY}/3d"
    RETURN_TYPES = (SPLAT, "IMAGE")
    RETURN_NAMES = ("splat", "views")
    OUTPUT_TOOLTIPS = ("One refined splat per batch item.",
                       "Every item's generated and new views, interleaved in azimuth order (2 x the rig's views).")
    FUNCTION = "refine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "positive": (TEXT, {"tooltip": "The prompt the latents were sampled with, from UniDiT Text Encode."}),
            "latent": ("LATENT", {"tooltip": "Sampled 3D latents, from UniDiT Sampler."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF,
                             "tooltip": "Seeds the new views' noise and the fits."}),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 1.0, "step": 0.05,
                                   "tooltip": "How freely the new views are drawn: 1 from pure noise, lower keeps "
                                              "more of the decoded splat's look there."}),
            "iterations": ("INT", {"default": 300, "min": 10, "max": 10000, "step": 10,
                                   "tooltip": "Fit steps at the views' size."}),
            "fine_iterations": ("INT", {"default": 150, "min": 0, "max": 10000, "step": 10,
                                        "tooltip": "Fit steps at 2x the views' size (coarse -> fine)."}),
            "sds_steps": ("INT", {"default": 0, "min": 0, "max": 10000,
                                  "tooltip": "Score-distillation steps among the fine steps (0 = off): renders "
                                             "from random angles nudged towards what the model draws there."}),
        }, "optional": {
            "guidance": (GUIDANCE, {"tooltip": "From UniDiT Guidance (default: the model's scale and negative "
                                               "prompt)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, sds_steps=0, fine_iterations=150):
        if sds_steps > fine_iterations:
            return f"sds_steps ({sds_steps}) must not exceed fine_iterations ({fine_iterations})"
        return True

    def refine(self, model, positive, latent, seed, strength, iterations, fine_iterations, sds_steps,
               guidance=None):
        latents = latent_from_comfy(latent)
        if latents.modality != "3d":
            raise ValueError(f"UniDiT Refine 3D takes sampled 3D latents (UniDiT Empty 3D Latent -> UniDiT "
                             f"Sampler); these are {latents.modality} latents")
        guidance = guidance or Guidance(GuidanceConfig(scale=STORE.model(model, parts=()).defaults.guidance))
        negative = guidance.negative
        if negative is None:
            loaded = STORE.model(model, ("text_encoder",))
            negative = loaded.encode_prompts([loaded.defaults.negative_prompt])
        b, channels, views, h, w = latents.samples.shape
        loaded = STORE.model(model, ("denoiser", "autoencoder", "splat_decoder"), (b, channels, 2 * views, h, w),
                             guided=guidance.config.scale != 1.0)    # the in-between views double the views
        progress = comfy_bridge.Progress(latents.batch_size * (iterations + fine_iterations))

        def on_step(done, total):
            if done % 10 == 0 or done == total:
                comfy_bridge.check_interrupt()
                progress.update(done)

        config = RefineConfig(strength=strength, iterations=iterations, fine_iterations=fine_iterations,
                              sds_steps=sds_steps)
        refined = refine_3d(loaded, latents, positive, negative, guidance.config, config, seed, on_step=on_step)
        return splat_to_comfy(refined.splats), flatten_frames(refined.views)
