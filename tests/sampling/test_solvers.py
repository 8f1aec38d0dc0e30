"""Convergence orders on a flow with a closed-form solution.

Data x0 ~ N(mu, s^2) and noise N(0, 1): the probability-flow ODE of x_sigma = (1 - sigma) x0 + sigma noise is
    x(sigma) = (1 - sigma) mu + std(sigma) * x(1),   std(sigma) = sqrt((1 - sigma)^2 s^2 + sigma^2),
so v(x, sigma) = -mu + std'(sigma) / std(sigma) * (x - (1 - sigma) mu), and x(0) = mu + s * x(1) exactly.
"""
import math

import pytest
import torch

from unidit.runtime.sampling.flow import sigma_schedule
from unidit.runtime.sampling.sampler import sample

MU, S = 2.0, 0.5


def gaussian_flow_velocity(x, sigma):
    variance = (1 - sigma) ** 2 * S ** 2 + sigma ** 2
    d_variance = -2 * (1 - sigma) * S ** 2 + 2 * sigma
    return -MU + 0.5 * d_variance / variance * (x - (1 - sigma) * MU)


def final_error(solver, steps):
    start = torch.linspace(-2, 2, 9, dtype=torch.float64)
    result = sample(gaussian_flow_velocity, start, sigma_schedule(steps, shift=1.0).double(), solver=solver)
    return float((result - (MU + S * start)).abs().max())


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2), ("ab2", 2)])
def test_solver_converges_at_its_order(solver, order):
    errors = [final_error(solver, steps) for steps in (16, 32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(rate - order) < 0.25 for rate in rates[1:]), (errors, rates)
    assert errors[-1] < (2e-2 if order == 1 else 1e-4)


def test_heun_uses_two_calls_per_step_and_one_for_the_last():
    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return gaussian_flow_velocity(x, sigma)

    sample(counting, torch.zeros(3, dtype=torch.float64), sigma_schedule(5).double(), solver="heun")
    assert len(calls) == 2 * 5 - 1
