"""`unidit bench NAME`: speed figures, with ratios measured side by side in one run.

Each benchmark module exposes ``run(progress: bool, **options) -> dict`` returning JSON-serialisable figures.
"""
from __future__ import annotations

import importlib

BENCHMARKS = {
    "forward": "backbone forward pass against diffusers' WanTransformer3DModel (CPU fp32); --family unidit: our "
               "backbone at DiT-S size, 1 thread; --family wan: our Wan model at the 1.3B shape, 2 threads",
    "load": "load a synthetic full-size Wan 2.1 1.3B bf16 file: seconds and peak memory / file size",
    "previews": "what sampling previews cost: sampler time with none, latent2rgb and decode previews (shipped "
                "bundle, 2 threads)",
    "render": "Gaussian-splat renderer: 5,000 Gaussians at 128x128, fps and speedup over the dense reference "
              "(CPU fp32, 2 threads)",
    "fit": "splat fitting to 8 toy-world views of a sphere: seconds per 100 steps at 64x64 and 128x128 (CPU fp32, "
           "2 threads)",
    "mesh": "splat -> mesh -> GLB on a 20,000-Gaussian torus: seconds per stage (CPU fp32, 2 threads)",
    "parallel": "one guided denoiser evaluation in one process and in two gloo processes (sequence parallel, CFG "
                "parallel): max_abs_diff and overhead (CPU fp32, 1 thread per process)",
    "cache": "first-block step caching on the shipped bundle, text -> image and text -> video: sampler speedup, "
             "PSNR against the uncached frames, calls skipped (CPU fp32, 2 threads); --threshold sets the cache's",
}


def run_benchmark(name: str, progress: bool = True, **options) -> dict:
    """Run benchmark ``name``; ``options`` go to its ``run`` (``family`` for forward, ``threshold`` for cache)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    module = importlib.import_module(f".{name}", __package__)
    return module.run(progress=progress, **options)
