import pytest
import torch

from unidit.runtime.sampling.guidance import GuidanceConfig, guided_velocity
from unidit.runtime.sampling.noise import seeded_noise
from unidit.runtime.sampling.sampler import SamplerConfig, SamplingInterrupted, sample
from unidit_testing import make_text, tiny_dit


def run_pipeline(model, seeds, given=None, clean=None, solver="heun", steps=6):
    """text -> latent for a batch of seeds (one prompt), with guidance, as the nodes will do."""
    batch = len(seeds)
    cond, uncond = make_text(1, seed=1).repeat(batch), make_text(1, seed=2).repeat(batch)
    noise = seeded_noise(seeds, (4, 3, 8, 8))

    def model_fn(x, sigma, text):
        repeats = x.shape[0] // batch
        sigmas = torch.full((x.shape[0], x.shape[2]), sigma)
        if given is not None:
            sigmas[given.repeat(repeats, 1)] = 0.0
        return model(x, sigmas, text, torch.ones(x.shape[0], dtype=torch.long))

    velocity = guided_velocity(model_fn, cond, uncond, GuidanceConfig(scale=3.0))
    sigmas = SamplerConfig(solver=solver, steps=steps, shift=2.0).sigmas(tokens_per_frame=48)
    return sample(velocity, noise, sigmas, solver=solver, given=given, clean=clean)


def test_given_frames_keep_their_clean_values_bit_exactly_through_a_whole_run():
    model = tiny_dit()
    clean = torch.randn(2, 4, 3, 8, 8)
    given = torch.tensor([[True, False, False], [False, True, True]])
    for solver in ("euler", "heun", "ab2"):
        result = run_pipeline(model, [1, 2], given=given, clean=clean, solver=solver)
        assert torch.equal(result[0, :, 0], clean[0, :, 0])
        assert torch.equal(result[1, :, 1:], clean[1, :, 1:])
        assert not torch.allclose(result[0, :, 1:], clean[0, :, 1:])  # the free frames were generated


def test_the_model_sees_clean_given_frames_at_every_call():
    seen = []
    clean = torch.randn(1, 4, 2, 8, 8)
    given = torch.tensor([[True, False]])

    def velocity(x, sigma):
        seen.append(torch.equal(x[:, :, 0], clean[:, :, 0]))
        return torch.ones_like(x)

    sample(velocity, torch.randn(1, 4, 2, 8, 8), torch.linspace(1, 0, 5), solver="heun", given=given, clean=clean)
    assert len(seen) == 7 and all(seen)


def test_a_seeds_sample_is_reproducible_and_independent_of_the_batch():
    model = tiny_dit()
    first = run_pipeline(model, [11])
    again = run_pipeline(model, [11])
    assert torch.equal(first, again)
    in_batch = run_pipeline(model, [5, 11, 99])
    assert torch.allclose(in_batch[1], first[0], atol=1e-5)
    assert not torch.allclose(in_batch[0], first[0], atol=1e-2)


def test_callback_reports_every_step_and_cancel_stops_before_the_next():
    model = tiny_dit()
    steps_seen = []
    noise = torch.randn(1, 4, 1, 8, 8)

    def velocity(x, sigma):
        return model(x, torch.tensor([sigma]), make_text(1), 0)

    sample(velocity, noise, torch.linspace(1, 0, 5), callback=lambda i, n, x, d: steps_seen.append((i, n)))
    assert steps_seen == [(0, 4), (1, 4), (2, 4), (3, 4)]

    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return velocity(x, sigma)

    with pytest.raises(SamplingInterrupted, match="before step 3 of 4"):
        sample(counting, noise, torch.linspace(1, 0, 5), cancel=lambda: len(calls) >= 2)
    assert len(calls) == 2


def test_denoise_starts_from_the_input_latent():
    init = torch.randn(1, 4, 1, 8, 8)
    noise = torch.randn(1, 4, 1, 8, 8)
    sigmas = SamplerConfig(steps=4, shift=1.0, denoise=0.25).sigmas(16)
    # with a zero velocity the sampler never moves: the result is the partly noised input
    result = sample(lambda x, s: torch.zeros_like(x), noise, sigmas, init=init)
    assert torch.allclose(result, 0.75 * init + 0.25 * noise)


def test_sampler_config_validates():
    with pytest.raises(ValueError, match="unknown solver 'rk9'"):
        SamplerConfig(solver="rk9")
    with pytest.raises(ValueError, match="given frames need"):
        sample(lambda x, s: x, torch.zeros(1, 4, 2, 8, 8), torch.linspace(1, 0, 3),
               given=torch.tensor([[True, False]]))
