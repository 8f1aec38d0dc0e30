"""`unidit bench render`: the pair-sort splat renderer against the dense reference, 5,000 Gaussians at 128×128.

The scene is an object-sized splat: a sphere of radius 0.5 covered by 5,000 flat Gaussians (surfels spaced
evenly, SH degree 3 with small view-dependent bands), seen by turntable cameras 2 units away with a 49.1°
field of view, so a typical Gaussian covers a disc of a few pixels' radius. CPU fp32 on 2 threads. Each round
renders a turntable of ``FRAMES`` views with :func:`render` and one view with :func:`render_dense`, alternating;
fps comes from the median round and the speedup is the median of per-round ratios (per frame).
"""
from __future__ import annotations

import sys

import torch

from ..gaussians.camera import turntable_cameras
from ..gaussians.render import RenderConfig, project_gaussians, render, render_dense
from ..gaussians.shapes import sphere_splats
from ..gaussians.splats import Splats
from .timing import interleaved, median, median_ratio

GAUSSIANS, SIZE, FRAMES, THREADS = 5000, 128, 8, 2
ROUNDS, WARMUP = 5, 1


def benchmark_scene() -> Splats:
    """The splat of this benchmark (module docstring)."""
    splats = sphere_splats(GAUSSIANS, radius=0.5, sh_degree=3)
    generator = torch.Generator().manual_seed(0)
    splats.sh[:, :, 1:] = 0.05 * torch.randn(splats.sh[:, :, 1:].shape, generator=generator)
    return splats


def run(progress: bool = True) -> dict:
    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        splats = benchmark_scene()
        cameras = turntable_cameras(FRAMES, width=SIZE, height=SIZE)
        projected = project_gaussians(splats, cameras[0], RenderConfig())
        radius_px = float(projected.extents.amax(dim=-1).median())
        say(f"{GAUSSIANS} Gaussians at {SIZE}x{SIZE} (median footprint radius {radius_px:.1f} px); "
            f"{WARMUP} warm-up + {ROUNDS} alternating rounds of a {FRAMES}-frame turntable against one dense "
            f"frame, {THREADS} threads...")
        with torch.inference_mode():
            times = interleaved({"render": lambda: render(splats, cameras),
                                 "dense": lambda: render_dense(splats, cameras[0])}, ROUNDS, WARMUP)
    finally:
        torch.set_num_threads(threads)

    frame_s = median(times["render"]) / FRAMES
    dense_s = median(times["dense"])
    return {
        "fps": round(1.0 / frame_s, 1),
        "speedup_vs_dense": round(median_ratio(times["dense"], [t / FRAMES for t in times["render"]]), 1),
        "ms_per_frame": round(frame_s * 1e3, 2),
        "dense_ms_per_frame": round(dense_s * 1e3, 1),
        "gaussians": GAUSSIANS,
        "resolution": f"{SIZE}x{SIZE}",
        "median_footprint_radius_px": round(radius_px, 2),
        "scene": "sphere of radius 0.5 covered by 5000 surfels, SH degree 3, turntable cameras at distance 2, "
                 "fov 49.1 deg",
        "config": f"CPU fp32, {THREADS} threads, {ROUNDS} rounds, median",
    }
