"""The sampling loop: noise -> latent by integrating the flow ODE with a solver, under guidance.

Given (clean conditioning) frames are handled by masks, not by other models: they enter the model at their
clean values, their velocity is zero, and after every solver step they are put back to their clean latents
bit for bit. That one mechanism covers image -> video, image -> 3D, video extension and interpolation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .flow import add_noise, default_shift, sigma_schedule
from .solvers import SOLVERS, make_solver
from .step_cache import StepCache

StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


class SamplingInterrupted(Exception):
    """Raised when the cancel check asks the sampler to stop."""

    def __init__(self, step: int, total: int):
        super().__init__(f"sampling interrupted before step {step + 1} of {total}")
        self.step, self.total = step, total


@dataclass
class SamplerConfig:
    solver: str = "euler"
    steps: int = 20
    shift: Optional[float] = None   # None: the model family's shift, else one that grows with the token count
    denoise: float = 1.0            # < 1 starts from a partly noised input latent
    cache_threshold: float = 0.0    # > 0: first-block step caching (step_cache.py); 0 runs every block every call

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {list(SOLVERS)}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")
        if not (isinstance(self.cache_threshold, (int, float)) and math.isfinite(self.cache_threshold)
                and self.cache_threshold >= 0):
            raise ValueError(f"cache_threshold must be a finite number >= 0 (0 = no step caching), got "
                             f"{self.cache_threshold!r}")

    def step_cache(self) -> Optional[StepCache]:
        """A new step cache for one sampling run, or None when caching is off."""
        return StepCache(self.cache_threshold) if self.cache_threshold > 0 else None

    def sigmas(self, tokens_per_frame: int, frames: int = 1, family_shift: Optional[float] = None,
               reference_tokens: Optional[int] = None) -> torch.Tensor:
        """The noise levels of a run over ``frames`` latent frames of ``tokens_per_frame`` tokens each. Without a
        shift of its own the sampler uses ``family_shift`` (the model's default), else flow.default_shift (with
        the model's ``reference_tokens``)."""
        shift = self.shift if self.shift is not None else family_shift
        if shift is None:
            shift = default_shift(tokens_per_frame, frames, reference_tokens)
        return sigma_schedule(self.steps, shift, self.denoise)


def sample(velocity: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, sigmas: torch.Tensor,
           solver: str = "euler", init: Optional[torch.Tensor] = None, given: Optional[torch.Tensor] = None,
           clean: Optional[torch.Tensor] = None, callback: Optional[StepCallback] = None,
           cancel: Optional[Callable[[], bool]] = None) -> torch.Tensor:
    """Integrate from ``sigmas[0]`` to ``sigmas[-1]`` (0) and return the final latent.

    velocity: ``(x, sigma) -> v`` (guidance already applied, see guidance.guided_velocity);
    noise: [B, C, F, H, W]; init: the latent to start from when sigmas[0] < 1 (default zeros, ComfyUI's
    empty latent); given: [B, F] bool frames held at ``clean`` [B, C, F, H, W];
    callback: ``(step, total, x, denoised)`` after each step; cancel: checked before each step — returning
    True raises :class:`SamplingInterrupted` (it may also raise its own exception).
    """
    sigma_values = [float(s) for s in sigmas]
    total = len(sigma_values) - 1
    start = init if init is not None else torch.zeros_like(noise)
    x = add_noise(start.to(noise.dtype), noise, sigma_values[0])
    hold = None
    if given is not None and bool(given.any()):
        if clean is None:
            raise ValueError("given frames need their clean latents")
        hold = given[:, None, :, None, None].to(noise.device).expand_as(noise)
        clean = clean.to(device=noise.device, dtype=noise.dtype)
        x = torch.where(hold, clean, x)

        def velocity_of_free_frames(x_in, sigma):
            v = velocity(torch.where(hold, clean, x_in), sigma)
            return v.masked_fill(hold, 0.0)
        step_velocity = velocity_of_free_frames
    else:
        step_velocity = velocity

    stepper = make_solver(solver)
    for index in range(total):
        if cancel is not None and cancel():
            raise SamplingInterrupted(index, total)
        x, denoised = stepper.step(step_velocity, x, sigma_values[index], sigma_values[index + 1])
        if hold is not None:
            x = torch.where(hold, clean, x)
        if callback is not None:
            callback(index, total, x, denoised)
    return x
