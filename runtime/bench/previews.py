"""`unidit bench previews`: what sampling previews cost. The shipped bundle samples text -> video (its default
size, steps and solver) with a preview made after every step by each method: none, latent2rgb (the projection),
decode (the autoencoder); interleaved rounds, medians, and the time each method adds over none."""
from __future__ import annotations

import sys

import torch

from ..bundle import SHIPPED_BUNDLE
from ..families import ModelFiles, load_model
from ..generate import empty_latents, generate
from ..previews import PREVIEW_METHODS, latent_rgb_projection, preview_image
from ..sampling.guidance import GuidanceConfig
from ..sampling.sampler import SamplerConfig
from .timing import interleaved, median

ROUNDS, WARMUP, THREADS = 5, 1, 2


def run(progress: bool = True) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model = load_model(ModelFiles(SHIPPED_BUNDLE))
        d = model.defaults
        latents = empty_latents(model, "video", d.width, d.height, frames=d.frames, fps=d.fps)
        positive, negative = model.encode_prompts(["a bouncing red ball"]), model.encode_prompts([""])
        sampler = SamplerConfig(d.solver, d.steps)
        latent_rgb_projection(model)   # fitted once per model, before timing

        def sampling(method):
            def run_once():
                generate(model, latents, positive, negative, GuidanceConfig(d.guidance), sampler, 0,
                         callback=lambda step, total, x, denoised: preview_image(model, denoised, method))
            return run_once

        if progress:
            print(f"text -> video, {d.frames} frames at {d.width}x{d.height}, {d.steps} {d.solver} steps, a preview "
                  f"per step; {WARMUP} warm-up + {ROUNDS} rounds on {THREADS} threads ...", file=sys.stderr)
        with torch.inference_mode():
            times = interleaved({method: sampling(method) for method in PREVIEW_METHODS}, ROUNDS, WARMUP)
    finally:
        torch.set_num_threads(threads)
    none = median(times["none"])
    return {**{f"{method}_s": round(median(times[method]), 3) for method in PREVIEW_METHODS},
            **{f"{method}_added_ms_per_step": round((median(times[method]) - none) / d.steps * 1e3, 2)
               for method in PREVIEW_METHODS if method != "none"},
            "steps": d.steps, "config": f"shipped bundle, text -> video, {THREADS} threads"}
