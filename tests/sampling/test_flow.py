import math

import pytest
import torch

from unidit.runtime.sampling.flow import (add_noise, default_shift, predicted_clean, sample_training_sigmas,
                                          shift_sigma, sigma_schedule, velocity_target)


def test_noising_and_velocity_follow_the_convention():
    x0, noise = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.equal(add_noise(x0, noise, 1.0), noise)
    assert torch.equal(add_noise(x0, noise, 0.0), x0)
    sigma = 0.3
    x = add_noise(x0, noise, sigma)
    v = velocity_target(x0, noise)
    assert torch.allclose(v, noise - x0)
    assert torch.allclose(predicted_clean(x, v, sigma), x0, atol=1e-6)
    # v is the derivative of x_sigma with respect to sigma
    h = 1e-3
    assert torch.allclose((add_noise(x0, noise, sigma + h) - x) / h, v, atol=1e-3)


def test_shift_keeps_endpoints_and_favours_high_noise():
    sigma = torch.linspace(0, 1, 11)
    shifted = shift_sigma(sigma, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > sigma[1:-1]).all()
    assert torch.allclose(shift_sigma(sigma, 1.0), sigma)
    assert shift_sigma(0.5, 3.0) == pytest.approx(0.75)


def test_default_shift_grows_with_token_count():
    assert default_shift(64) == 1.0 and default_shift(256) == 1.0
    assert default_shift(4096) == pytest.approx(3.0)
    assert default_shift(1024) < default_shift(2048) < default_shift(4096)
    assert default_shift(1024, frames=4) == pytest.approx(2 * default_shift(1024))


def test_schedule_descends_to_zero_and_denoise_starts_part_way():
    sigmas = sigma_schedule(10, shift=2.0)
    assert len(sigmas) == 11 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert (sigmas[1:] < sigmas[:-1]).all()
    partial = sigma_schedule(10, shift=2.0, denoise=0.5)
    assert partial[0] == pytest.approx(shift_sigma(0.5, 2.0)) and partial[-1] == 0.0
    with pytest.raises(ValueError, match="denoise"):
        sigma_schedule(10, denoise=0.0)
    with pytest.raises(ValueError, match="steps"):
        sigma_schedule(0)


def test_training_sigmas_are_logit_normal():
    sigmas = sample_training_sigmas(20000, torch.Generator().manual_seed(0))
    assert 0 < float(sigmas.min()) and float(sigmas.max()) < 1
    logits = torch.log(sigmas / (1 - sigmas))
    assert abs(float(logits.mean())) < 0.03 and abs(float(logits.std()) - 1) < 0.03
    assert abs(float(sigmas.median()) - 0.5) < 0.02


def test_a_reference_token_count_gives_the_resolution_dependent_shift():
    assert default_shift(16, reference_tokens=16) == 1.0
    assert default_shift(64, reference_tokens=16) == pytest.approx(2.0)        # twice the side: shift 2
    assert default_shift(9, reference_tokens=16) == pytest.approx(0.75)
    assert default_shift(64, frames=4, reference_tokens=16) == pytest.approx(4.0)
