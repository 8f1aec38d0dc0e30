"""ODE solvers for dx/dsigma = v(x, sigma), stepping sigma from 1 down to 0 (see flow.py).

Each solver is created fresh for one sampling run (multistep solvers keep history) and advances the state
by ``step(velocity, x, sigma, sigma_next) -> (x_next, denoised)``, where ``denoised`` is the clean latent
predicted at the start of the step (for previews).
"""
from __future__ import annotations

from typing import Callable

import torch

from .flow import predicted_clean

Velocity = Callable[[torch.Tensor, float], torch.Tensor]


class Euler:
    """First order: x_next = x + (sigma_next - sigma) v(x, sigma). One model call per step."""

    calls_per_step = 1

    def step(self, velocity: Velocity, x, sigma: float, sigma_next: float):
        v = velocity(x, sigma)
        return x + (sigma_next - sigma) * v, predicted_clean(x, v, sigma)


class Heun:
    """Second order (trapezoidal predictor-corrector). Two model calls per step; the step to sigma = 0 is an
    Euler step, since the velocity at pure data is not needed (as in EDM)."""

    calls_per_step = 2

    def step(self, velocity: Velocity, x, sigma: float, sigma_next: float):
        h = sigma_next - sigma
        v = velocity(x, sigma)
        x_euler = x + h * v
        if sigma_next == 0:
            return x_euler, predicted_clean(x, v, sigma)
        v_next = velocity(x_euler, sigma_next)
        return x + h * 0.5 * (v + v_next), predicted_clean(x, v, sigma)


class AdamsBashforth2:
    """Second-order multistep (Adams-Bashforth with variable steps): reuses the previous velocity, so it costs
    one model call per step like Euler. The first step is an Euler step.

        x_next = x + h * ((1 + r / 2) v - (r / 2) v_prev),   r = h / h_prev
    """

    calls_per_step = 1

    def __init__(self):
        self.previous = None  # (v, h) of the last step

    def step(self, velocity: Velocity, x, sigma: float, sigma_next: float):
        h = sigma_next - sigma
        v = velocity(x, sigma)
        if self.previous is None:
            x_next = x + h * v
        else:
            v_prev, h_prev = self.previous
            r = h / h_prev
            x_next = x + h * ((1 + 0.5 * r) * v - 0.5 * r * v_prev)
        self.previous = (v, h)
        return x_next, predicted_clean(x, v, sigma)


SOLVERS = {
    "euler": Euler,
    "heun": Heun,
    "ab2": AdamsBashforth2,
}

SOLVER_DESCRIPTIONS = {
    "euler": "first order, 1 model call per step",
    "heun": "second order, 2 model calls per step",
    "ab2": "second-order multistep (Adams-Bashforth), 1 model call per step",
}


def make_solver(name: str):
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {list(SOLVERS)}")
    return SOLVERS[name]()
