"""The flow convention of UniDiT, stated once and used everywhere (training, sampling, nodes):

    x_sigma = (1 - sigma) * x0 + sigma * noise        sigma = 1 is pure noise, sigma = 0 is data
    v       = dx_sigma / dsigma = noise - x0          the backbone predicts v
    x0      = x_sigma - sigma * v                     noise = x_sigma + (1 - sigma) * v

Sampling integrates dx/dsigma = v from sigma = 1 down to 0. A time shift s > 1 spends more steps at high
noise, which larger token counts need: ``sigma' = s * sigma / (1 + (s - 1) * sigma)``. Training draws sigma
from a logit-normal distribution.
"""
from __future__ import annotations

import math
from typing import Optional

import torch


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma; ``sigma`` broadcasts against x0 (a float, or [B, 1, ..., 1])."""
    return (1 - sigma) * x0 + sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target of training: v = noise - x0."""
    return noise - x0


def predicted_clean(x: torch.Tensor, v: torch.Tensor, sigma) -> torch.Tensor:
    """The clean latent implied by a velocity prediction at noise level sigma."""
    return x - sigma * v


def shift_sigma(sigma, shift: float):
    """The time shift s * sigma / (1 + (s - 1) * sigma); s = 1 is the identity, s > 1 favours high noise."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def default_shift(num_tokens: int, frames: int = 1, reference_tokens: Optional[int] = None) -> float:
    """A shift that grows with the token count per frame, times sqrt(frames) for videos and view sets: by
    default 1 at <= 256 tokens, 3 at 4096, linear in between and beyond (Open-Sora 2.0's rule); with
    ``reference_tokens`` (a model trained at several sizes) sqrt(num_tokens / reference_tokens), the
    resolution-dependent shift of SD3 (the same noise level hides as much of the image at every size)."""
    if reference_tokens:
        base = math.sqrt(num_tokens / reference_tokens)
    else:
        base = 1.0 + 2.0 * max(0, num_tokens - 256) / (4096 - 256)
    return base * math.sqrt(max(1, frames))


def sigma_schedule(steps: int, shift: float = 1.0, denoise: float = 1.0) -> torch.Tensor:
    """``steps + 1`` descending noise levels ending at 0.

    ``denoise`` < 1 starts part-way (image-to-image): the schedule is the last ``denoise`` fraction of the
    full one, so the first level is ``shift_sigma(denoise, shift)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise}")
    linear = torch.linspace(denoise, 0.0, steps + 1, dtype=torch.float64)
    return shift_sigma(linear, shift).float()


def sample_training_sigmas(batch: int, generator: torch.Generator | None = None, mean: float = 0.0,
                           std: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """Logit-normal noise levels for training: sigmoid(N(mean, std^2)), then the time shift."""
    normal = torch.randn(batch, generator=generator) * std + mean
    return shift_sigma(torch.sigmoid(normal), shift)
