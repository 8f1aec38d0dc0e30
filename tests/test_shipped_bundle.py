"""The demo bundle shipped in models/: it loads, round-trips through its own file format, is small enough to ship,
and follows a prompt (colour accuracy over all prompts is measured by `unidit eval`)."""
import pytest
import torch

from unidit.runtime.bundle import SHIPPED_BUNDLE, ModelBundle
from unidit.runtime.families.unidit import model_from_bundle
from unidit.runtime.generate import decode_frames, empty_latents, generate
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.train.evaluate import object_mask
from unidit.runtime.train.toyworld import dominant_colour


@pytest.fixture(scope="module")
def shipped():
    assert SHIPPED_BUNDLE.exists(), f"{SHIPPED_BUNDLE} is missing: train it with `unidit train --preset toyworld`"
    return ModelBundle.load(SHIPPED_BUNDLE)


def sample_images(bundle, prompts, seed=0, steps=None):
    model = model_from_bundle(bundle)
    defaults = model.defaults
    latents = empty_latents(model, "image", defaults.width, defaults.height, batch_size=len(prompts))
    sampler = SamplerConfig(solver=defaults.solver, steps=steps or defaults.steps)
    with torch.no_grad():
        result = generate(model, latents, model.encode_prompts(prompts), model.encode_prompts([""]),
                          GuidanceConfig(defaults.guidance), sampler, seed)
    return decode_frames(model, result)[:, 0]


def test_the_shipped_bundle_is_complete_and_small(shipped):
    assert SHIPPED_BUNDLE.stat().st_size <= 60e6
    assert shipped.info["training"]["preset"] == "toyworld"
    defaults = shipped.defaults
    assert (defaults.width, defaults.height, defaults.rig, defaults.views) == (64, 64, "orbit", 4)
    assert shipped.tokenizer.get_vocab_size() > 50


def test_the_shipped_bundle_round_trips(shipped, tmp_path):
    copy = ModelBundle.load(shipped.save(tmp_path / "copy.safetensors"))  # stored in fp16, as shipped
    for name, module in shipped.modules().items():
        reloaded = copy.modules()[name].state_dict()
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, reloaded[key]), f"{name}.{key}"
    assert copy.info == shipped.info and copy.defaults == shipped.defaults
    assert torch.equal(sample_images(shipped, ["a red sphere"], steps=4), sample_images(copy, ["a red sphere"], steps=4))


@pytest.mark.parametrize("colour, shape",
                         [("red", "sphere"), ("blue", "sphere"), ("green", "cube"), ("purple", "cone")])
def test_the_object_has_the_prompted_colour(shipped, colour, shape):
    images = sample_images(shipped, [f"a {colour} {shape}"] * 4, seed=7)
    for image in images:
        mask = object_mask(image)
        assert mask.float().mean() > 0.02, "no object in the image"
        assert dominant_colour(image, mask) == colour
