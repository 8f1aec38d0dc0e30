"""`unidit bench mesh`: seconds per stage of splat -> mesh -> GLB, at the default MeshConfig.

The splat is a torus (major radius 0.45, minor 0.18) covered by 20,000 flat Gaussians. The stages are those
:func:`splat_to_mesh` reports, then the GLB export. CPU fp32, 2 threads; each figure is the median of
``ROUNDS`` runs.
"""
from __future__ import annotations

import sys
import time

import torch

from ..gaussians.mesh import MeshConfig, glb_bytes, splat_to_mesh
from ..gaussians.shapes import torus_splats
from .timing import median

GAUSSIANS, THREADS, ROUNDS = 20_000, 2, 3


def _timed_run(splats, config: MeshConfig) -> tuple[dict, dict]:
    """Seconds per stage, and the sizes of what came out."""
    seconds = {}
    clock = time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    mesh = splat_to_mesh(splats, config, on_stage=lap)
    glb = glb_bytes(mesh)
    lap("export")
    return seconds, {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "glb_bytes": len(glb)}


def run(progress: bool = True) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        splats = torus_splats(GAUSSIANS)
        config = MeshConfig()
        if progress:
            print(f"torus of {splats.num_gaussians} Gaussians -> mesh (resolution {config.resolution}, about "
                  f"{config.target_faces} faces) -> GLB, {ROUNDS} runs...", file=sys.stderr, flush=True)
        runs = [_timed_run(splats, config) for _ in range(ROUNDS)]
    finally:
        torch.set_num_threads(threads)
    figures = {f"{stage}_s": round(median([seconds[stage] for seconds, _ in runs]), 3) for stage in runs[0][0]}
    figures["total_s"] = round(median([sum(seconds.values()) for seconds, _ in runs]), 3)
    figures.update(runs[0][1])
    figures.update(gaussians=splats.num_gaussians, resolution=config.resolution, target_faces=config.target_faces,
                   config=f"CPU fp32, {THREADS} threads, median of {ROUNDS} runs")
    return figures
