import pytest
import torch

from unidit.runtime.sampling.guidance import GuidanceConfig, combine_guidance, guided_velocity
from unidit.runtime.text.conditioning import TextConditioning
from unidit_testing import make_text, tiny_dit


def model_fn(model):
    def run(x, sigma, text):
        return model(x, torch.full((x.shape[0],), sigma), text, torch.ones(x.shape[0], dtype=torch.long))
    return run


def test_scale_one_is_the_conditional_prediction_and_skips_the_unconditional_pass():
    model = tiny_dit()
    cond, uncond = make_text(1, seed=1), make_text(1, seed=2)
    x = torch.randn(1, 4, 2, 8, 8)
    batches = []
    run = model_fn(model)

    def counting(x, sigma, text):
        batches.append(x.shape[0])
        return run(x, sigma, text)

    v = guided_velocity(counting, cond, uncond, GuidanceConfig(scale=1.0))(x, 0.5)
    assert torch.equal(v, run(x, 0.5, cond))
    assert batches == [1]


def test_scale_zero_is_the_unconditional_prediction_from_one_batched_forward():
    model = tiny_dit()
    cond, uncond = make_text(1, seed=1), make_text(1, length=4, seed=2)
    x = torch.randn(1, 4, 2, 8, 8)
    batches = []
    run = model_fn(model)

    def counting(x, sigma, text):
        batches.append(x.shape[0])
        return run(x, sigma, text)

    v = guided_velocity(counting, cond, uncond, GuidanceConfig(scale=0.0))(x, 0.5)
    assert batches == [2]  # cond and uncond in one forward
    # exact against the unconditional half of the same batched forward...
    both = run(torch.cat([x, x]), 0.5, TextConditioning.cat([cond, uncond]))
    assert torch.equal(v, both[1:])
    # ...and equal to a separate unconditional forward up to batching round-off
    assert torch.allclose(v, run(x, 0.5, uncond), atol=1e-5)


def test_guidance_formula_interval_and_rescale():
    v_cond, v_uncond = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    guided = combine_guidance(v_cond, v_uncond, GuidanceConfig(scale=5.0))
    assert torch.allclose(guided, v_uncond + 5.0 * (v_cond - v_uncond), atol=1e-5)
    rescaled = combine_guidance(v_cond, v_uncond, GuidanceConfig(scale=5.0, rescale=1.0))
    assert torch.allclose(rescaled.std(dim=(1, 2)), v_cond.std(dim=(1, 2)), atol=1e-5)
    config = GuidanceConfig(scale=5.0, sigma_start=0.8, sigma_end=0.2)
    assert [config.active_at(s) for s in (0.9, 0.8, 0.5, 0.2, 0.1)] == [False, True, True, True, False]
    with pytest.raises(ValueError, match="interval"):
        GuidanceConfig(sigma_start=0.2, sigma_end=0.5)


def test_outside_the_interval_only_the_conditional_pass_runs():
    calls = []

    def fake(x, sigma, text):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    velocity = guided_velocity(fake, make_text(1), make_text(1), GuidanceConfig(scale=4.0, sigma_start=0.5))
    velocity(torch.zeros(1, 4, 1, 8, 8), 0.9)
    velocity(torch.zeros(1, 4, 1, 8, 8), 0.4)
    assert calls == [1, 2]
