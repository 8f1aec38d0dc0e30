"""`unidit bench NAME`: speed figures, with ratios measured side by side in one run.

Each benchmark module exposes ``run(progress: bool) -> dict`` returning JSON-serialisable figures.
"""
from __future__ import annotations

import importlib

BENCHMARKS = {
    "forward": "backbone forward pass against diffusers' WanTransformer3DModel (CPU fp32, 1 thread)",
}


def run_benchmark(name: str, progress: bool = True) -> dict:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    module = importlib.import_module(f".{name}", __package__)
    return module.run(progress=progress)
