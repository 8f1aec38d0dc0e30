"""Every model part runs without float64 or complex tensors, which Apple's MPS does not have."""
import pytest
import torch

from unidit.runtime.families import ModelFiles, load_model
from unidit.runtime.generate import decode_frames, empty_latents
from unidit_testing import Float64Forbidden, forbid_float64, make_text, tiny_dit, tiny_model
from wan_testing import FILES


def test_the_forbidding_mode_does_catch_float64():
    with pytest.raises(Float64Forbidden):
        with forbid_float64():
            torch.ones(2, dtype=torch.float64) * 2


def test_unidit_parts_run_without_float64():
    model = tiny_model()
    with torch.no_grad(), forbid_float64():
        model.denoiser.dit(torch.randn(1, 4, 3, 8, 8), torch.tensor([[0.0, 0.5, 0.5]]), make_text(1),
                           torch.tensor([1]))
        model.encode_prompts(["a red cube"])
        decode_frames(model, empty_latents(model, "video", 32, 32, frames=5))
    tiny_dit()  # and the plain backbone too
    with torch.no_grad(), forbid_float64():
        tiny_dit()(torch.randn(1, 4, 1, 8, 8), torch.tensor([0.3]), make_text(1), torch.tensor([0]))


def test_wan_parts_run_without_float64(wan_models):
    names = FILES["2.2"]
    model = load_model(ModelFiles(wan_models / "diffusion_models" / names.diffusion_model,
                                  wan_models / "text_encoders" / names.text_encoder, wan_models / "vae" / names.vae))
    with torch.no_grad(), forbid_float64():
        text = model.encode_prompts(["a red ball"])
        model.denoiser.high_noise(torch.randn(1, 48, 2, 4, 4), torch.tensor([[0.0, 0.7]]), text.tokens)
        frames = decode_frames(model, empty_latents(model, "video", 64, 64, frames=5))
        model.autoencoder.encode(frames.permute(0, 4, 1, 2, 3) * 2 - 1)
