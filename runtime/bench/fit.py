"""`unidit bench fit`: seconds per 100 steps of splat fitting (:func:`~..gaussians.fit.fit_splats`) at 64² and
128².

The views are the toy world's renders of a red sphere from 8 cameras round the 20° orbit (what the eval's
``fit_novel_view_psnr`` fits). Each round fits 100 steps from the same visual-hull start (4,000 points), with one
densification at step 50 so its cost is counted; the figure is the median of ``ROUNDS`` rounds after a warm-up.
CPU fp32 on 2 threads (a CUDA device, when present, is not used: the figures compare across machines).
"""
from __future__ import annotations

import sys

import torch

from ..gaussians.camera import orbit_cameras
from ..gaussians.fit import FitConfig, fit_splats
from ..train import toyworld
from .timing import interleaved, median

SIZES, VIEWS, STEPS, THREADS = (64, 128), 8, 100, 2
ROUNDS, WARMUP = 3, 1


def run(progress: bool = True) -> dict:
    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    config = FitConfig(iterations=STEPS, densify_from=STEPS // 2, densify_every=STEPS // 2)
    scene = toyworld.Scene("sphere", "red")
    figures = {}
    try:
        for size in SIZES:
            cameras = orbit_cameras([360.0 * k / VIEWS for k in range(VIEWS)], 20.0, width=size, height=size)
            views = toyworld.render_from([scene], cameras, toyworld.ToyWorldConfig(resolution=size)).rgb[0]
            say(f"fitting {VIEWS} views at {size}x{size}: {WARMUP} warm-up + {ROUNDS} rounds of {STEPS} steps, "
                f"{THREADS} threads...")
            times = interleaved({"fit": lambda: fit_splats(views, cameras, config=config)}, ROUNDS, WARMUP)
            figures[f"seconds_per_100_steps_{size}"] = round(median(times["fit"]) * 100 / STEPS, 2)
    finally:
        torch.set_num_threads(threads)
    return {
        **figures,
        "views": VIEWS,
        "initial_gaussians": config.initial_points,
        "scene": "toy-world red sphere, 8 views on the 20-degree orbit at distance 2, fov 49.1 deg; one "
                 "densification per 100 steps",
        "config": f"CPU fp32, {THREADS} threads, {ROUNDS} rounds, median",
    }
