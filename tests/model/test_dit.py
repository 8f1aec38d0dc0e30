import pytest
import torch

from unidit.runtime.gaussians.camera import camera_rig
from unidit.runtime.model.config import DiTConfig, modality_index
from unidit.runtime.model.dit import UniDiT, patchify, unpatchify
from unidit.runtime.text.conditioning import TextConditioning
from unidit_testing import TINY_DIT, make_text, randomize, tiny_dit


def test_fresh_model_predicts_exactly_zero():
    model = UniDiT(DiTConfig(**TINY_DIT))
    x = torch.randn(2, 4, 3, 8, 8)
    sigma = torch.tensor([[0.0, 0.3, 0.3], [0.0, 0.9, 0.9]])  # frame 0 given
    v = model(x, sigma, make_text(2), torch.tensor([1, 1]))
    assert torch.equal(v, torch.zeros_like(x))


def test_patchify_round_trip_is_exact():
    x = torch.randn(2, 4, 6, 8, 10)
    for patch in [(1, 2, 2), (2, 2, 2), (1, 1, 1)]:
        tokens = patchify(x, patch)
        assert tokens.shape[1] == (6 // patch[0]) * (8 // patch[1]) * (10 // patch[2])
        grid = (6 // patch[0], 8 // patch[1], 10 // patch[2])
        assert torch.equal(unpatchify(tokens, grid, patch), x)
    # token 1 is the patch to the right of token 0
    tokens = patchify(x, (1, 2, 2))
    assert torch.equal(tokens[0, 1].view(4, 1, 2, 2), x[0, :, 0:1, 0:2, 2:4])


def test_one_model_runs_image_video_and_3d_views_through_one_code_path():
    model = tiny_dit()
    calls = []
    handle = model.blocks[0].register_forward_hook(lambda module, args, output: calls.append(output.shape))
    text = make_text(1)
    image = model(torch.randn(1, 4, 1, 8, 8), torch.tensor([0.5]), text, modality_index("image"))
    video = model(torch.randn(1, 4, 3, 8, 8), torch.tensor([0.5]), text, modality_index("video"))
    cameras = camera_rig("orbit", 4, width=8, height=8)
    plucker = cameras.plucker_rays().permute(1, 0, 2, 3)[None]  # [1, 6, views, h, w]
    views = model(torch.randn(1, 4, 4, 8, 8), torch.tensor([[0.0, 0.5, 0.5, 0.5]]), text, modality_index("3d"),
                  plucker=plucker)
    handle.remove()
    assert image.shape == (1, 4, 1, 8, 8) and video.shape == (1, 4, 3, 8, 8) and views.shape == (1, 4, 4, 8, 8)
    assert calls == [(1, 16, 64), (1, 48, 64), (1, 64, 64)]  # the same block took 1, 3 and 4 frames of tokens
    for v in (image, video, views):
        assert torch.isfinite(v).all() and v.abs().mean() > 1e-3


def test_camera_channels_enter_through_zero_weights_so_a_fresh_model_ignores_them():
    model = randomize(UniDiT(DiTConfig(**TINY_DIT)), skip=("camera_embed",)).eval()
    x, text = torch.randn(1, 4, 4, 8, 8), make_text(1)
    plucker = torch.randn(1, 6, 4, 8, 8)
    without = model(x, torch.tensor([0.5]), text, 2)
    with_rays = model(x, torch.tensor([0.5]), text, 2, plucker=plucker)
    assert torch.equal(without, with_rays)
    randomize(model)  # once the camera weights are trained, the rays matter
    assert not torch.allclose(model(x, torch.tensor([0.5]), text, 2),
                              model(x, torch.tensor([0.5]), text, 2, plucker=plucker))


def test_every_frame_is_modulated_by_its_own_noise_level():
    model = tiny_dit()
    x, text = torch.randn(1, 4, 3, 8, 8), make_text(1)
    # Zero the camera weights so a frame's noise level acts only through its modulation.
    torch.nn.init.zeros_(model.camera_embed.weight)
    torch.nn.init.zeros_(model.camera_embed.bias)
    # A [B] sigma gives every frame that level.
    assert torch.equal(model(x, torch.tensor([0.7]), text, 1), model(x, torch.tensor([[0.7, 0.7, 0.7]]), text, 1))
    # Frame 0 at sigma 0 (given) is modulated differently from frame 0 at 0.7.
    given_first = model(x, torch.tensor([[0.0, 0.7, 0.7]]), text, 1)
    assert not torch.allclose(given_first[:, :, 0], model(x, torch.tensor([0.7]), text, 1)[:, :, 0], atol=1e-4)
    # Per-frame levels equal running each frame with its own level when frames do not attend to each other (one
    # frame at a time); with attention they also see each other, so the batch of frames is what the model makes.
    for level in (0.0, 0.3, 0.9):
        one = x[:, :, :1]
        assert torch.equal(model(one, torch.tensor([[level]]), text, 1), model(one, torch.tensor([level]), text, 1))


def test_a_frame_at_sigma_zero_is_flagged_as_given():
    model = tiny_dit()
    x, text = torch.randn(1, 4, 2, 8, 8), make_text(1)
    seen = []
    handle = model.camera_embed.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    model(x, torch.tensor([[0.0, 0.4]]), text, 1)
    handle.remove()
    # tokens [B, frames x 16, 7 channels x 4 cells]: channel 6 is the given flag
    given_channel = seen[0].view(1, 2, 16, 7, 4)[:, :, :, 6]
    assert torch.equal(given_channel[0, 0], torch.ones(16, 4)) and torch.equal(given_channel[0, 1], torch.zeros(16, 4))


def test_text_padding_is_ignored_and_the_prompt_matters():
    model = tiny_dit()
    x = torch.randn(1, 4, 1, 8, 8)
    text = make_text(1, length=6, valid=4)
    v = model(x, torch.tensor([0.5]), text, 0)
    altered = make_text(1, length=6, valid=4)
    altered.tokens[:, 4:] = 100.0  # padding content must not leak in
    assert torch.allclose(model(x, torch.tensor([0.5]), altered, 0), v, atol=1e-6)
    other = make_text(1, seed=5)
    assert not torch.allclose(model(x, torch.tensor([0.5]), other, 0), v, atol=1e-4)


def test_samples_in_a_batch_do_not_interact():
    model = tiny_dit()
    x, text = torch.randn(3, 4, 2, 8, 8), make_text(3)
    sigma = torch.tensor([0.2, 0.5, 0.9])
    batched = model(x, sigma, text, torch.tensor([1, 1, 1]))
    for i in range(3):
        one_text = TextConditioning(text.tokens[i:i + 1], text.mask[i:i + 1], text.pooled[i:i + 1])
        single = model(x[i:i + 1], sigma[i:i + 1], one_text, 1)
        assert torch.allclose(batched[i:i + 1], single, atol=1e-5)


def test_shapes_that_do_not_fit_the_patch_fail_clearly():
    model = tiny_dit()
    with pytest.raises(ValueError, match="divisible by the patch"):
        model(torch.randn(1, 4, 1, 7, 8), torch.tensor([0.5]), make_text(1), 0)
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 3, 1, 8, 8), torch.tensor([0.5]), make_text(1), 0)


def test_config_round_trips_and_rejects_unknown_keys():
    config = DiTConfig(**TINY_DIT)
    assert DiTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown DiT config keys"):
        DiTConfig.from_dict({**config.to_dict(), "flux_capacitor": 1})
    with pytest.raises(ValueError, match="multiple of 16"):
        DiTConfig(hidden_size=96, num_heads=4)
