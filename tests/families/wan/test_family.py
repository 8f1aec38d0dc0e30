"""The Wan family behind the engine's one interface: tiny models in ComfyUI's folders load as one model, generate
images and videos through the same generate() as UniDiT bundles, hold a given first frame (Wan 2.2 TI2V) bit for
bit, switch experts (Wan 2.2 A14B), and refuse parts that do not fit with a message naming both files."""
import pytest
import torch

from unidit.runtime.families import ModelFiles, detect_family, load_model
from unidit.runtime.generate import condition_on_image, decode_frames, empty_latents, generate
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.weights import CheckpointError, open_weights
from wan_testing import FILES, write_tiny_wan


@pytest.fixture(scope="module")
def models(wan_models):
    return wan_models


def files(root, version, **changes):
    names = FILES[version]
    parts = dict(diffusion_model=root / "diffusion_models" / names.diffusion_model,
                 text_encoder=root / "text_encoders" / names.text_encoder, vae=root / "vae" / names.vae)
    parts.update(changes)
    return ModelFiles(**parts)


def sample(model, latents, prompt="a red ball on grass", steps=2, seed=0):
    positive = model.encode_prompts([prompt])
    negative = model.encode_prompts([model.defaults.negative_prompt])
    return generate(model, latents, positive, negative, GuidanceConfig(model.defaults.guidance),
                    SamplerConfig("euler", steps), seed)


def test_a_wan_21_model_is_recognised_and_loaded_from_three_files(models):
    family, description = detect_family(open_weights(models / "diffusion_models" / FILES["2.1"].diffusion_model))
    assert family.name == "wan" and description == "Wan 2.1 T2V (dim 256)"
    model = load_model(files(models, "2.1"))
    caps = model.capabilities
    assert (caps.latent_channels, caps.spatial_factor, caps.temporal_factor, caps.size_multiple) == (16, 8, 4, 16)
    assert caps.modalities == ("image", "video") and not caps.given_frames and caps.defaults.shift == 5.0
    assert caps.defaults.negative_prompt.startswith("色调艳丽")  # Wan's official negative prompt
    # weights stay as stored: fp16 DiT, fp8 text encoder with its scales
    assert model.denoiser.high_noise.blocks[0].ffn[0].weight.dtype == torch.float16
    assert model.text_encoder.model.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn


def test_text_to_video_and_text_to_image_through_the_shared_generate(models):
    model = load_model(files(models, "2.1"))
    video = sample(model, empty_latents(model, "video", 64, 48, frames=9, fps=16))
    assert video.samples.shape == (1, 16, 3, 6, 8) and torch.isfinite(video.samples).all()
    frames = decode_frames(model, video)
    assert frames.shape == (1, 9, 48, 64, 3) and 0 <= float(frames.min()) and float(frames.max()) <= 1
    image = sample(model, empty_latents(model, "image", 32, 32))
    assert decode_frames(model, image).shape == (1, 1, 32, 32, 3)
    # the same seed gives the same video; another prompt another one
    assert torch.equal(sample(model, empty_latents(model, "video", 64, 48, frames=9)).samples, video.samples)
    other = sample(model, empty_latents(model, "video", 64, 48, frames=9), prompt="a dog runs in snow")
    assert not torch.allclose(other.samples, video.samples)


def test_wan22_ti2v_keeps_the_first_latent_frame_bit_exact_and_denoises_it_at_noise_level_zero(models):
    model = load_model(files(models, "2.2"))
    assert model.capabilities.given_frames and model.capabilities.size_multiple == 32
    latents = empty_latents(model, "video", 64, 64, frames=9)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    conditioned = condition_on_image(model, latents, image)
    seen = []
    hook = model.denoiser.high_noise.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    result = sample(model, conditioned, steps=3)
    hook.remove()
    assert torch.equal(result.samples[:, :, 0], conditioned.clean[:, :, 0])  # bit for bit
    assert not torch.equal(result.samples[:, :, 1:], conditioned.clean[:, :, 1:])
    # every call (3 Euler steps, conditional and unconditional in one batch of 2) gave frame 0 noise level 0
    # (timestep 0, Wan 2.2's image -> video) and the other frames the step's level
    assert [tuple(s.shape) for s in seen] == [(2, 3)] * 3
    assert all(bool((s[:, 0] == 0).all()) and bool((s[:, 1:] > 0).all()) for s in seen)


def test_what_a_wan_model_cannot_do_is_said_plainly(models):
    model = load_model(files(models, "2.1"))
    latents = empty_latents(model, "video", 64, 48, frames=9)
    with pytest.raises(ValueError, match="Wan 2.1 T2V .* not trained to hold given frames.*Wan 2.2 TI2V-5B"):
        condition_on_image(model, latents, torch.rand(1, 48, 64, 3))
    with pytest.raises(ValueError, match="cannot make 3D assets; it makes images and videos. 3D needs a UniDiT bundle"):
        empty_latents(model, "3d", 64, 64)
    with pytest.raises(ValueError, match="multiples of 16"):
        empty_latents(model, "image", 40, 40)
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        empty_latents(model, "video", 64, 64, frames=8)
    wan22 = load_model(files(models, "2.2"))
    with pytest.raises(ValueError, match="multiples of 32"):
        empty_latents(wan22, "image", 48, 48)


def test_parts_that_do_not_fit_are_refused_naming_both_files(models):
    with pytest.raises(CheckpointError, match="the VAE wan2.2_vae.safetensors makes 48-channel latents but the "
                                              "diffusion model wan2.1_t2v_1.3B_fp16.safetensors .* use wan_2.1_vae"):
        load_model(files(models, "2.1", vae=models / "vae" / "wan2.2_vae.safetensors"))
    with pytest.raises(CheckpointError, match="needs a text encoder .* UniDiT Loader \\(separate files\\)"):
        load_model(ModelFiles(models / "diffusion_models" / FILES["2.1"].diffusion_model))
    with pytest.raises(CheckpointError, match="umt5_xxl_fp8_e4m3fn_scaled.safetensors.*not a Wan VAE|Wan VAE"):
        load_model(files(models, "2.1", vae=models / "text_encoders" / FILES["2.1"].text_encoder))
    # a text encoder of another width than the diffusion model's text input
    from safetensors.torch import load_file, save_file

    state = load_file(models / "diffusion_models" / FILES["2.1"].diffusion_model)
    state["model.diffusion_model.text_embedding.0.weight"] = torch.zeros(256, 32, dtype=torch.float16)
    save_file(state, models / "diffusion_models" / "narrow_text.safetensors")
    with pytest.raises(CheckpointError, match="the text encoder umt5_xxl_fp8_e4m3fn_scaled.safetensors gives 64-wide "
                                              "tokens but the diffusion model narrow_text.safetensors .* takes 32"):
        load_model(files(models, "2.1", diffusion_model=models / "diffusion_models" / "narrow_text.safetensors"))


def test_two_experts_switch_at_the_boundary_and_both_stay_resident(models, tmp_path):
    write_tiny_wan(tmp_path, "2.1", seed=20)  # a second set of weights: the low-noise expert
    low = tmp_path / "diffusion_models" / FILES["2.1"].diffusion_model
    model = load_model(files(models, "2.1", low_noise=low))
    assert "A14B" in model.capabilities.family
    calls = {"high": [], "low": []}
    for name in calls:
        getattr(model.denoiser, f"{name}_noise").register_forward_pre_hook(
            lambda module, args, name=name: calls[name].append(float(args[1].max())))
    sample(model, empty_latents(model, "image", 32, 32), steps=8)
    assert calls["high"] and calls["low"]
    assert min(calls["high"]) >= 0.875 > max(calls["low"])
    with pytest.raises(CheckpointError, match="cannot be the low-noise expert"):
        load_model(files(models, "2.1", low_noise=models / "diffusion_models" / FILES["2.2"].diffusion_model))


def test_decoding_in_spatial_tiles_bounds_what_one_vae_call_sees(models):
    model = load_model(files(models, "2.1"))
    video = sample(model, empty_latents(model, "video", 128, 64, frames=5))
    widths = []
    hook = model.autoencoder.decoder.register_forward_pre_hook(lambda module, args: widths.append(args[0].shape[-1]))
    whole = decode_frames(model, video)
    tiled = decode_frames(model, video, tile_size=64)
    hook.remove()
    assert whole.shape == tiled.shape == (1, 5, 64, 128, 3)
    assert max(widths[:2]) == 16 and max(widths[2:]) == 8     # latent columns per call: the whole frame, then tiles
    assert (tiled - whole).abs().mean() < 0.1                  # a tiny random VAE: seams, but the same picture


def test_every_part_takes_what_comfyuis_model_patcher_sets_on_it(models):
    """ComfyUI's ModelPatcher assigns ``model.device`` and bookkeeping attributes on every load and unload."""
    from unidit_testing import tiny_model

    for model in (load_model(files(models, "2.2")), tiny_model()):
        for name, module in model.modules().items():
            module.device = torch.device("cpu")
            module.model_loaded_weight_memory = 0
            module.to("cpu")
    model = load_model(files(models, "2.1"))
    model.text_encoder.device = torch.device("cpu")
    assert model.encode_prompts(["a dog"]).tokens.shape[-1] == 64  # still works afterwards


def test_unknown_words_are_named_without_their_punctuation(models):
    """The tiny tokenizer was trained on a-z words and spaces only: ü, 🦄 and punctuation are unknown to it."""
    model = load_model(files(models, "2.1"))
    assert model.unknown_words("a red ball on grass") == []
    assert model.unknown_words("a red ball, on zürich grass. 🦄 ,") == ["zürich", "🦄", ","]


def test_a_prompt_longer_than_512_tokens_is_cut_with_a_warning(models, caplog):
    model = load_model(files(models, "2.1"))
    with caplog.at_level("WARNING", logger="unidit"):
        text = model.encode_prompts(["a red ball on grass " * 200])
    assert text.tokens.shape[1] == 512 and int(text.token_ids[0, -1]) == 1  # EOS kept last
    assert any("reads the first 512" in record.message for record in caplog.records)
