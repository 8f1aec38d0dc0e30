"""Seeded noise: each sample's noise depends only on its own seed, never on the rest of the batch, the device
or the run. Noise is drawn on the CPU in fp32 (identical on every machine) and then moved."""
from __future__ import annotations

import torch


def seeded_noise(seeds: list[int], shape: tuple[int, ...], device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise [len(seeds), *shape], sample i drawn from a generator seeded with seeds[i]."""
    samples = []
    for seed in seeds:
        generator = torch.Generator(device="cpu").manual_seed(int(seed) % (2 ** 64))
        samples.append(torch.randn(shape, generator=generator, dtype=torch.float32))
    return torch.stack(samples).to(device=device, dtype=dtype)
