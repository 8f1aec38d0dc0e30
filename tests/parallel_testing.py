"""What the parallel tests compute, in the test process and in each of the processes they start (so it lives in a
module the started processes can import by name): tiny models of both families, seeded, and their outputs."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from unidit.runtime import parallel
from unidit.runtime.bench.synthetic import randomize_module
from unidit.runtime.families import DenoiserConditioning, FamilyModel, MemoryCost
from unidit.runtime.families.wan import WanDenoiser, capabilities
from unidit.runtime.families.wan.dit import WanDiT, WanDiTConfig
from unidit.runtime.generate import Latents, generate
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.text.conditioning import TextConditioning
from unidit_testing import make_text, tiny_dit, tiny_model
from wan_testing import TEXT_WIDTH, TINY_DIT

FAMILIES = ("unidit", "wan")


def tiny_wan_model() -> FamilyModel:
    """A tiny random Wan 2.2 TI2V-shaped diffusion model (48 channels: it holds given frames) behind the family
    interface; no text encoder or VAE, which generate() and the denoiser do not use."""
    dit = randomize_module(WanDiT(WanDiTConfig(**TINY_DIT, in_channels=48, out_channels=48)), seed=3).eval()
    vae = SimpleNamespace(latent_channels=48, spatial_factor=16, temporal_factor=4)
    return FamilyModel(capabilities(dit, vae, "tiny Wan 2.2"), WanDenoiser(dit), None, None, MemoryCost(0, 0))


def family_case(family: str):
    """(model, latents of a 3-frame video whose frame 0 is given, prompt, negative prompt) of ``family``."""
    generator = torch.Generator().manual_seed(5)
    if family == "unidit":
        model, text_dim = tiny_model(seed=2), 32
    else:
        model, text_dim = tiny_wan_model(), TEXT_WIDTH
    channels = model.capabilities.latent_channels
    samples = torch.zeros(2, channels, 3, 8, 8)      # 3 frames of 4 x 4 tokens, a batch of 2
    given = torch.zeros(2, 3, dtype=torch.bool)
    given[:, 0] = True
    clean = torch.randn(samples.shape, generator=generator)
    latents = Latents(samples, "video", given, clean, fps=8.0)
    positive = make_text(1, length=5, dim=text_dim, seed=7)
    negative = make_text(1, length=3, dim=text_dim, seed=8)
    return model, latents, positive, negative


@torch.no_grad()
def family_outputs(family: str) -> dict:
    """One denoiser forward (noise levels per frame, frame 0 given) and three guided sampling steps."""
    model, latents, positive, negative = family_case(family)
    x = torch.randn(latents.samples.shape, generator=torch.Generator().manual_seed(9))
    sigma = torch.tensor([[0.0, 0.7, 0.7], [0.0, 0.3, 0.3]])
    text = TextConditioning.cat([positive, negative])
    forward = model.denoiser(x, sigma, DenoiserConditioning(text, "video"))
    sampled = generate(model, latents, positive, negative, GuidanceConfig(scale=3.0),
                       SamplerConfig("euler", steps=3), seed=11).samples
    # with a step cache that skips most calls after its warm-up: every rank must take the same decisions
    cached = generate(model, latents, positive, negative, GuidanceConfig(scale=3.0),
                      SamplerConfig("euler", steps=8, cache_threshold=1.0), seed=11).samples
    return {"forward": forward, "sampled": sampled, "cached": cached}


def indivisible_shapes() -> dict:
    """The errors of a sequence-parallel forward whose frame's tokens (3 x 3) or heads (3) do not divide by 2."""
    errors = {}
    text = make_text(1)
    for name, model, x in [("tokens", tiny_dit(), torch.randn(1, 4, 2, 6, 6)),
                           ("heads", tiny_dit(hidden_size=48, num_heads=3), torch.randn(1, 4, 2, 8, 8))]:
        try:
            model(x, torch.tensor([0.5]), text, torch.tensor([1]))
        except parallel.ParallelError as problem:
            errors[name] = str(problem)
    return errors


def ranks_compute(split: str, result: str) -> None:
    """In each started process: join the group with ``split`` and compute both families' outputs; rank 0 saves
    them (and, under sequence parallelism, the errors of shapes that do not divide) to ``result``."""
    context = parallel.init_parallel(split)
    try:
        outputs = {family: family_outputs(family) for family in FAMILIES}
        errors = indivisible_shapes() if context.cfg.size == 1 else {}
        if context.is_leader:
            torch.save({"outputs": outputs, "errors": errors, "split": context.describe()}, result)
    finally:
        parallel.shutdown()


class FailsOnRankOne:
    """A node that fails on rank 1 only (as a node may, say, when one GPU runs out of memory)."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        if parallel.context().rank == 1:
            raise ValueError("out of memory on rank 1")
        return (1,)


class NeedsEveryRank:
    """An output node that makes a collective call, as the sampler does."""

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    def run(self, value):
        parallel.any_rank(True)
        return {"ui": {"text": [str(value)]}}


def ranks_execute(folder: str) -> None:
    """In each started process: execute FailsOnRankOne -> NeedsEveryRank; every rank saves its result."""
    from unidit.host.executor import Executor, validate_prompt

    context = parallel.init_parallel("sequence")
    try:
        nodes = {"FailsOnRankOne": FailsOnRankOne, "NeedsEveryRank": NeedsEveryRank}
        prompt = {"1": {"class_type": "FailsOnRankOne", "inputs": {}},
                  "2": {"class_type": "NeedsEveryRank", "inputs": {"value": ["1", 0]}}}
        validation = validate_prompt(prompt, nodes)
        result = Executor(nodes).execute(validation.prompt, "p", validation.outputs)
        torch.save({"status": result.status, "error": result.error}, f"{folder}/rank{context.rank}.pt")
    finally:
        parallel.shutdown()
