"""First-block step caching (runtime/sampling/step_cache.py) through the shared generate(), on a tiny UniDiT
model and a tiny Wan model: off changes nothing, on skips calls that then run only the first block, stays close
to the uncached result, and never carries a residual across runs, batch layouts or experts."""
import math

import pytest
import torch

from unidit.runtime.bench.synthetic import randomize_module
from unidit.runtime.families.wan import dit as wan_dit
from unidit.runtime.model import dit as unidit_dit
from unidit.runtime.families import ModelFiles, load_model
from unidit.runtime.families.unidit import UniDiTDenoiser
from unidit.runtime.families.wan import WanDenoiser
from unidit.runtime.families.wan.dit import WanDiT, WanDiTConfig
from unidit.runtime.generate import empty_latents, generate
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.sampling.step_cache import WARMUP_CALLS, StepCache, run_blocks
from unidit_testing import tiny_dit, tiny_model
from wan_testing import FILES
from wan_testing import TINY_DIT as TINY_WAN_DIT

DEPTH = 4


def unidit_model():
    """The tiny bundle with a 4-block backbone, so a skipped call leaves 3 blocks out."""
    model = tiny_model()
    model.denoiser = UniDiTDenoiser(tiny_dit(depth=DEPTH))
    return model


def wan_model(root, low_noise_seed=None):
    """The tiny Wan 2.1 model with a 4-block backbone (and a second expert when ``low_noise_seed`` is given)."""
    names = FILES["2.1"]
    model = load_model(ModelFiles(root / "diffusion_models" / names.diffusion_model,
                                  root / "text_encoders" / names.text_encoder, root / "vae" / names.vae))

    def backbone(seed):
        return randomize_module(WanDiT(WanDiTConfig(**{**TINY_WAN_DIT, "num_layers": DEPTH})), seed).eval()

    low_noise = None if low_noise_seed is None else backbone(low_noise_seed)
    model.denoiser = WanDenoiser(backbone(0), low_noise)
    return model


@pytest.fixture(scope="module", params=["unidit", "wan"])
def model(request):
    if request.param == "unidit":
        return unidit_model()
    return wan_model(request.getfixturevalue("wan_models"))


def backbones(model):
    denoiser = model.denoiser
    if isinstance(denoiser, UniDiTDenoiser):
        return [denoiser.dit]
    return [dit for dit in (denoiser.high_noise, denoiser.low_noise) if dit is not None]


class CallLog:
    """Per denoiser call: the batch size, which blocks ran (indices) and the run's step cache."""

    def __init__(self, model):
        self.calls, self.caches, self.hooks = [], [], []
        self.hooks.append(model.denoiser.register_forward_pre_hook(self._call))
        for dit in backbones(model):
            for index, block in enumerate(dit.blocks):
                self.hooks.append(block.register_forward_hook(lambda *_, i=index: self.calls[-1]["blocks"].append(i)))

    def _call(self, module, args):
        self.calls.append({"batch": args[0].shape[0], "blocks": []})
        self.caches.append(args[2].step_cache)

    def skipped(self) -> int:
        return sum(call["blocks"] == [0] for call in self.calls)

    def remove(self):
        for hook in self.hooks:
            hook.remove()


def run(model, threshold, latents=None, guidance=None, steps=8, solver="heun", shift=1.0, seed=3):
    """One sampling run (by default of a 2-item video batch); returns (latents, CallLog)."""
    latents = latents or empty_latents(model, "video", 32, 32, batch_size=2, frames=5)
    positive = model.encode_prompts(["a red cube", "a blue ball"][:latents.batch_size])
    negative = model.encode_prompts(["green"])
    log = CallLog(model)
    try:
        result = generate(model, latents, positive, negative, guidance or GuidanceConfig(3.0),
                          SamplerConfig(solver, steps, shift, cache_threshold=threshold), seed)
    finally:
        log.remove()
    return result.samples, log


# On both tiny models (random weights) this skips some calls of an 8-step heun run but not all: 6 of 15, the
# first call of each step from the third on, which follows the previous step's corrector at the same noise level.
THRESHOLD = 0.3


def test_threshold_zero_makes_no_cache_runs_every_block_and_matches_the_plain_block_loop(model, monkeypatch):
    samples, log = run(model, 0.0)
    assert log.caches and all(cache is None for cache in log.caches)
    assert all(call["blocks"] == list(range(DEPTH)) for call in log.calls)
    assert log.skipped() == 0

    def plain_loop(blocks, tokens, run_block, cache):   # the backbones' loop before step caching
        for block in blocks:
            tokens = run_block(block, tokens)
        return tokens

    monkeypatch.setattr(unidit_dit, "run_blocks", plain_loop)
    monkeypatch.setattr(wan_dit, "run_blocks", plain_loop)
    assert torch.equal(run(model, 0.0)[0], samples)


def test_a_cache_skips_calls_that_then_run_only_the_first_block_and_stays_close(model):
    uncached, _ = run(model, 0.0)
    cached, log = run(model, THRESHOLD)
    cache = log.caches[0]
    assert all(c is cache for c in log.caches)   # one cache for the whole run
    ran = [call["blocks"] for call in log.calls]
    assert all(blocks in ([0], list(range(DEPTH))) for blocks in ran)   # the first block alone, or all of them
    skipped = log.skipped()
    assert 0 < skipped < len(ran) - WARMUP_CALLS
    assert (cache.skipped, cache.calls) == (skipped, len(ran))
    assert all(blocks == list(range(DEPTH)) for blocks in ran[:WARMUP_CALLS])   # the first calls run in full
    error = float((cached - uncached).norm() / uncached.norm())
    assert 0 < error < 0.01


def test_a_higher_threshold_skips_more(model):
    counts = [run(model, threshold)[1].skipped() for threshold in (0.05, THRESHOLD, 10.0)]
    assert counts[0] <= counts[1] < counts[2]
    # heun, 8 steps: 15 calls, of which all but the warm-up may be skipped when every change counts as small
    assert counts[2] == 15 - WARMUP_CALLS


def test_two_runs_with_the_same_seed_give_the_same_result_each_with_its_own_cache(model):
    first, first_log = run(model, THRESHOLD)
    second, second_log = run(model, THRESHOLD)
    assert torch.equal(first, second)
    assert first_log.caches[0] is not second_log.caches[0]
    assert [c["blocks"] for c in first_log.calls] == [c["blocks"] for c in second_log.calls]
    assert not any(isinstance(value, StepCache) for module in [model.denoiser, *backbones(model)]
                   for value in vars(module).values())


def test_guided_and_conditional_only_calls_never_share_a_residual(model):
    # guidance only below noise level 0.6: the first calls are conditional only (batch 2), then guided (batch 4)
    guidance = GuidanceConfig(3.0, sigma_start=0.6)
    latents = empty_latents(model, "image", 32, 32, batch_size=2)
    samples, log = run(model, 10.0, latents=latents, guidance=guidance, solver="euler", steps=10)
    batches = [call["batch"] for call in log.calls]
    assert batches[0] == 2 and batches[-1] == 4
    assert samples.shape == latents.samples.shape
    for batch in (2, 4):
        layout = [call["blocks"] for call in log.calls if call["batch"] == batch]
        # each layout starts with its own full calls; with a huge threshold every later one is skipped
        assert layout[:WARMUP_CALLS] == [list(range(DEPTH))] * WARMUP_CALLS
        assert layout[WARMUP_CALLS:] == [[0]] * (len(layout) - WARMUP_CALLS)


def test_a_batch_of_one_guided_item_never_broadcasts_a_guided_residual_onto_a_conditional_call():
    model = unidit_model()
    # guided first (batch 2), then conditional only (batch 1): a residual shared across layouts would broadcast
    guidance = GuidanceConfig(3.0, sigma_end=0.5)
    latents = empty_latents(model, "image", 32, 32, batch_size=1)
    samples, log = run(model, 10.0, latents=latents, guidance=guidance, solver="euler", steps=10)
    assert [call["batch"] for call in log.calls][:2] == [2, 2] and log.calls[-1]["batch"] == 1
    first_conditional = next(i for i, call in enumerate(log.calls) if call["batch"] == 1)
    assert log.calls[first_conditional]["blocks"] == list(range(DEPTH))
    assert samples.shape == latents.samples.shape


def test_the_two_wan_experts_keep_their_own_residuals(wan_models):
    model = wan_model(wan_models, low_noise_seed=5)
    experts = {"high": [], "low": []}
    for name in experts:
        expert = getattr(model.denoiser, f"{name}_noise")
        expert.register_forward_pre_hook(lambda module, args, name=name: experts[name].append([]))
        for index, block in enumerate(expert.blocks):
            block.register_forward_hook(lambda *_, name=name, i=index: experts[name][-1].append(i))
    # Wan's shift 5: the high-noise expert takes the first 5 of 10 Euler steps, the low-noise one the others
    run(model, 10.0, latents=empty_latents(model, "image", 32, 32), solver="euler", steps=10, shift=None)
    assert len(experts["high"]) == len(experts["low"]) == 5
    for calls in experts.values():
        assert calls[:WARMUP_CALLS] == [list(range(DEPTH))] * WARMUP_CALLS
        assert calls[WARMUP_CALLS:] == [[0]] * (len(calls) - WARMUP_CALLS)


@torch.no_grad()
def test_a_skipped_call_adds_the_last_full_calls_residual_to_its_first_block_output():
    blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
    cache = StepCache(threshold=1e9, warmup_calls=1)
    ran = []

    def run_block(block, tokens):
        ran.append(block)
        return tokens + block(tokens)

    full_input = torch.randn(2, 5, 8)
    full = run_blocks(blocks, full_input, run_block, cache)
    residual = full - run_block(blocks[0], full_input)
    ran.clear()
    tokens = torch.randn(2, 5, 8)
    out = run_blocks(blocks, tokens, run_block, cache)
    assert ran == [blocks[0]]
    assert torch.allclose(out, run_block(blocks[0], tokens) + residual)
    # another batch layout has nothing cached: it runs in full
    ran.clear()
    run_blocks(blocks, torch.randn(1, 5, 8), run_block, cache)
    assert ran == list(blocks)


def test_the_change_is_summed_since_the_last_full_computation():
    blocks = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
    cache = StepCache(threshold=0.25, warmup_calls=1)
    base = torch.ones(1, 4, 2)
    full = []
    # the first block's residual is the tokens themselves (Identity + residual add): 10% change per call
    for step in range(6):
        before = cache.skipped
        run_blocks(blocks, base * 1.1 ** step, lambda block, t: t + block(t), cache)
        full.append(cache.skipped == before)
    # full at call 0; then 0.1 and 0.2 (summed) stay below 0.25, the third change (0.3 summed) runs in full
    assert full == [True, False, False, True, False, False]


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "0.1"])
def test_bad_thresholds_are_refused_clearly(bad):
    with pytest.raises(ValueError, match="cache_threshold must be a finite number >= 0"):
        SamplerConfig(cache_threshold=bad)
    with pytest.raises(ValueError, match="a step cache needs a positive, finite threshold"):
        StepCache(bad)
    with pytest.raises(ValueError, match="0 turns caching off"):
        StepCache(0.0)
    assert SamplerConfig(cache_threshold=0).step_cache() is None
    assert SamplerConfig(cache_threshold=0.1).step_cache().threshold == 0.1
