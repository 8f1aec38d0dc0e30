"""`unidit bench cache`: first-block step caching (sampling/step_cache.py) on the shipped bundle, off against on.

Text -> image and text -> video from the same prompts and seeds at the bundle's own defaults (size, frames,
steps, solver, guidance), one item per run. An untimed pass makes every output with the cache off and on: the
PSNR of the cached decoded frames against the uncached ones (over all of a modality's frames; the headline is the
mean of the two modalities) and the fraction of denoiser calls that skipped the blocks after the first (counted
by hooks on the first and last block). Then ``ROUNDS`` alternating rounds time the sampler (``generate()``, all
prompts of a modality) with the cache off and on; speedups are medians of per-round ratios, ``speedup`` that of
both modalities together. CPU fp32, 2 threads.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch

from ..bundle import SHIPPED_BUNDLE
from ..families import ModelFiles, load_model
from ..generate import decode_frames, empty_latents, generate
from ..sampling.guidance import GuidanceConfig
from ..sampling.sampler import SamplerConfig
from .timing import interleaved, median, median_ratio, progress_printer, torch_threads

THRESHOLD = 0.05   # the default, and the widget's suggested value (README: the trade-off table)
PROMPTS = {"image": ("a red cube", "a small blue ball", "a green cylinder on white", "a large yellow cone"),
           "video": ("a red cube moving left", "a bouncing green cylinder", "a spinning yellow cube",
                     "a pink sphere moving down")}
SEED, THREADS, ROUNDS, WARMUP = 100, 2, 5, 1


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of frames in 0..1; infinite when they are equal."""
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


class _BlockCounter:
    """Counts the calls of a backbone's first and last block while installed."""

    def __init__(self, blocks):
        self.first = self.last = 0
        self.hooks = [blocks[0].register_forward_hook(lambda *_: self._count("first")),
                      blocks[-1].register_forward_hook(lambda *_: self._count("last"))]

    def _count(self, which):
        setattr(self, which, getattr(self, which) + 1)

    def remove(self):
        for hook in self.hooks:
            hook.remove()


def run(progress: bool = True, threshold: Optional[float] = None) -> dict:
    threshold = THRESHOLD if threshold is None else threshold
    if not threshold > 0:
        raise ValueError(f"the cache benchmark needs a threshold > 0, got {threshold}")

    say = progress_printer(progress)
    with torch_threads(THREADS):
        model = load_model(ModelFiles(SHIPPED_BUNDLE))
        d = model.defaults
        guidance = GuidanceConfig(scale=d.guidance)
        samplers = {"off": SamplerConfig(d.solver, d.steps), "on": SamplerConfig(d.solver, d.steps,
                                                                                 cache_threshold=threshold)}
        negative = model.encode_prompts([d.negative_prompt])
        positives = {modality: [model.encode_prompts([p]) for p in prompts] for modality, prompts in PROMPTS.items()}

        def sample_all(modality, cache):
            """The latents of every prompt of ``modality``, item i with seed SEED + i."""
            return [generate(model, empty_latents(model, modality, d.width, d.height, frames=d.frames), positive,
                             negative, guidance, samplers[cache], SEED + i)
                    for i, positive in enumerate(positives[modality])]

        say(f"{SHIPPED_BUNDLE.name}: {d.width}x{d.height}, {d.frames}-frame videos, {d.solver} {d.steps} steps, "
            f"guidance {d.guidance}; threshold {threshold}; {len(PROMPTS['image'])} prompts per modality ...")
        figures, counts = {}, {}
        for modality in PROMPTS:
            uncached = decode_frames(model, _cat(sample_all(modality, "off")))
            counter = _BlockCounter(model.denoiser.dit.blocks)
            try:
                cached = decode_frames(model, _cat(sample_all(modality, "on")))
            finally:
                counter.remove()
            counts[modality] = (counter.first - counter.last, counter.first)   # (skipped, all) denoiser calls
            figures[modality] = {"psnr_db": round(psnr_db(cached, uncached), 2),
                                 "skipped_fraction": round(counts[modality][0] / counts[modality][1], 3),
                                 "denoiser_calls": counter.first}

        say(f"{WARMUP} warm-up + {ROUNDS} alternating rounds of the sampler, cache off and on, {THREADS} threads ...")
        with torch.inference_mode():
            times = interleaved({f"{modality}_{cache}": (lambda m=modality, c=cache: sample_all(m, c))
                                 for modality in PROMPTS for cache in ("off", "on")}, ROUNDS, WARMUP)

    for modality in PROMPTS:
        off, on = times[f"{modality}_off"], times[f"{modality}_on"]
        figures[modality].update(speedup=round(median_ratio(off, on), 3), off_s=round(median(off), 3),
                                 on_s=round(median(on), 3))
    total_off = [sum(pair) for pair in zip(times["image_off"], times["video_off"])]
    total_on = [sum(pair) for pair in zip(times["image_on"], times["video_on"])]
    skipped, calls = (sum(values) for values in zip(*counts.values()))
    return {
        "speedup": round(median_ratio(total_off, total_on), 3),
        "psnr_db": round(sum(figures[m]["psnr_db"] for m in PROMPTS) / len(PROMPTS), 2),
        "threshold": threshold,
        "skipped_fraction": round(skipped / calls, 3),
        **figures,
        "setup": f"{SHIPPED_BUNDLE.name}, {d.width}x{d.height}, video {d.frames} frames, {d.solver} {d.steps} "
                 f"steps, guidance {d.guidance}, {len(PROMPTS['image'])} prompts per modality, seeds {SEED}+",
        "config": f"CPU fp32, {THREADS} threads, {WARMUP} warm-up + {ROUNDS} rounds, median of per-round ratios",
    }


def _cat(latents: list):
    """One Latents holding the items of several single-item runs."""
    return replace(latents[0], samples=torch.cat([item.samples for item in latents]),
                   given=torch.cat([item.given for item in latents]))
