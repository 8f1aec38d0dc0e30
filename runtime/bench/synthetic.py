"""Random checkpoints in real key layouts, written without holding them in memory: for benchmarks (a full-size
Wan 1.3B file) and tests (tiny models of every part). Nothing here is a trained model."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..weights import write_safetensors


def random_tensor(name: str, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """A float32 tensor that looks trained enough for its role: norm weights near 1, modulation tables and biases
    small, matrices with variance 1 / fan-in."""
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) == 0:
        return torch.rand((), generator=generator) + 0.5
    if leaf in ("gamma",) or (leaf == "weight" and len(shape) == 1 and "norm" in name):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    if leaf == "bias" or len(shape) == 1:
        return 0.02 * torch.randn(shape, generator=generator)
    if "modulation" in name or "scale_shift_table" in name:
        return 0.1 * torch.randn(shape, generator=generator)
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return torch.randn(shape, generator=generator) / max(1, fan_in) ** 0.5


def randomize_module(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter of a (CPU) module with :func:`random_tensor` values, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(random_tensor(name, tuple(parameter.shape), generator))
    return module


def write_random_checkpoint(module: nn.Module, path: os.PathLike, dtype: torch.dtype = torch.bfloat16,
                            seed: int = 0, prefix: str = "") -> Path:
    """Random weights for every parameter of ``module`` (which may live on the meta device) under its own names
    (with ``prefix``), stored as ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(prefix + name, tuple(p.shape), dtype) for name, p in module.named_parameters()]
    return write_safetensors(path, shapes, lambda name, shape: random_tensor(name, shape, generator))
