"""Control maps: depth and object masks from pixel frames to the denoiser's channels, onto latents, into the
backbone through zero-initialised weights."""
from dataclasses import replace

import pytest
import torch

from unidit.runtime.control import CONTROL_CHANNELS, control_latent, depth_image
from unidit.runtime.families.unidit import model_from_bundle
from unidit.runtime.generate import attach_control, empty_latents, generate
from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit_testing import TINY_DIT, make_text, randomize, tiny_bundle, tiny_model


def control_model(seed: int = 1):
    """The tiny bundle with a backbone that takes control maps (random weights, control projection included)."""
    bundle = tiny_bundle(seed)
    bundle.dit = randomize(UniDiT(DiTConfig(**TINY_DIT, control_channels=CONTROL_CHANNELS)), seed).eval()
    return model_from_bundle(bundle)


def test_maps_become_values_and_given_flags_per_latent_frame():
    mask = torch.zeros(1, 9, 16, 16)
    mask[0, 0, :8, :8] = 1.0             # frame 0: top-left quarter
    mask[0, 5:9, 8:, 8:] = 1.0           # frames 5..8 (latent frame 2's group): bottom-right quarter
    channels = control_latent({"mask": mask, "depth": None}, 3, 4, 4, 4)
    assert channels.shape == (1, CONTROL_CHANNELS, 3, 4, 4)
    depth_value, depth_given, mask_value, mask_given = channels[0].unbind(0)
    assert torch.equal(depth_value, torch.zeros(3, 4, 4)) and torch.equal(depth_given, torch.zeros(3, 4, 4))
    assert torch.equal(mask_given, torch.ones(3, 4, 4))
    assert mask_value[0, :2, :2].eq(1).all() and mask_value[0].sum() == 4        # latent frame 0 = pixel frame 0
    assert mask_value[1].sum() == 0                                              # frames 1..4: empty
    assert mask_value[2, 2:, 2:].eq(1).all() and mask_value[2].sum() == 4        # mean of frames 5..8


def test_one_map_holds_for_every_frame_and_maps_are_averaged_to_latent_size():
    depth = torch.zeros(1, 1, 8, 8)
    depth[0, 0, :, :2] = 1.0  # the left quarter of the columns
    channels = control_latent({"depth": depth}, 3, 2, 2, 4)
    assert torch.allclose(channels[0, 0], torch.tensor([[0.5, 0.0], [0.5, 0.0]]).expand(3, 2, 2))
    assert channels[0, 1].eq(1).all() and channels[0, 3].eq(0).all()


def test_bad_maps_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="at least one"):
        control_latent({"depth": None, "mask": None}, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="aspect"):
        control_latent({"mask": torch.zeros(1, 1, 16, 32)}, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="give 1 .* or one per frame of the 9-frame clip"):
        control_latent({"mask": torch.zeros(1, 5, 16, 16)}, 3, 4, 4, 4)
    with pytest.raises(ValueError, match="unknown control maps"):
        control_latent({"normals": torch.zeros(1, 1, 4, 4)}, 1, 4, 4, 4)


def test_depth_image_is_bright_near_dark_far_and_black_where_empty():
    depth = torch.tensor([[[[1.5, 2.0, 0.0]]]])
    alpha = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    image = depth_image(depth, alpha)
    assert image[0, 0, 0].tolist() == pytest.approx([1.0, 0.35, 0.0])


def test_a_zero_initialised_control_path_leaves_the_model_unchanged_until_trained():
    config = DiTConfig(**TINY_DIT, control_channels=CONTROL_CHANNELS)
    model = randomize(UniDiT(config), skip=("control_embed",)).eval()
    torch.nn.init.zeros_(model.control_embed.weight)
    torch.nn.init.zeros_(model.control_embed.bias)
    x, text, sigma = torch.randn(1, 4, 1, 8, 8), make_text(1), torch.tensor([0.5])
    maps = torch.rand(1, CONTROL_CHANNELS, 1, 8, 8)
    with torch.no_grad():
        none, given = model(x, sigma, text, 0), model(x, sigma, text, 0, control=maps)
        assert torch.equal(none, given)
        model.control_embed.weight.normal_(std=0.1)
        assert not torch.allclose(model(x, sigma, text, 0, control=maps), none)
    assert UniDiT(config).control_embed.weight.abs().sum() == 0   # fresh models start silent


def test_latents_carry_control_into_both_guidance_branches():
    model = control_model()
    latents = empty_latents(model, "image", 32, 32, batch_size=2)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1.0
    controlled = attach_control(model, latents, mask=mask)
    assert controlled.control.shape == (2, CONTROL_CHANNELS, 1, 8, 8)
    seen = []
    handle = model.denoiser.dit.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("control")), with_kwargs=True)
    text = model.encode_prompts(["a red cube"])
    guidance, sampler = GuidanceConfig(scale=2.0), SamplerConfig(steps=2)
    with torch.no_grad():
        plain = generate(model, latents, text, model.encode_prompts([""]), guidance, sampler, 0).samples
        steered = generate(model, controlled, text, model.encode_prompts([""]), guidance, sampler, 0).samples
    handle.remove()
    assert seen[0] is None and seen[-1].shape[0] == 4          # conditional and unconditional halves
    assert torch.equal(seen[-1][:2], seen[-1][2:])
    assert not torch.allclose(plain, steered)


def test_control_is_refused_where_it_cannot_work():
    plain = tiny_model()
    with pytest.raises(ValueError, match="not trained to follow control maps"):
        attach_control(plain, empty_latents(plain, "image", 32, 32), mask=torch.ones(1, 32, 32))
    model = control_model()
    with pytest.raises(ValueError, match="3D views take none"):
        attach_control(model, empty_latents(model, "3d", 32, 32), mask=torch.ones(1, 32, 32))
    with pytest.raises(ValueError, match=r"3 mask maps for image latents of batch 2: give 1 or 2"):
        attach_control(model, empty_latents(model, "image", 32, 32, batch_size=2), mask=torch.ones(3, 32, 32))
    video = empty_latents(model, "video", 32, 32, frames=5)
    assert attach_control(model, video, mask=torch.ones(5, 32, 32)).control.shape == (1, 4, 2, 8, 8)
    plain_latents = replace(empty_latents(plain, "image", 32, 32), control=torch.zeros(1, 4, 1, 8, 8))
    with pytest.raises(ValueError, match="not trained to follow control maps"):
        generate(plain, plain_latents, plain.encode_prompts(["a"]), None, GuidanceConfig(scale=1.0),
                 SamplerConfig(steps=1), 0)
