"""Our Wan diffusion model against diffusers' WanTransformer3DModel, from files in the original (ComfyUI) and the
diffusers layouts, stored fp32, bf16 and ComfyUI's scaled fp8."""
import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from unidit.runtime.bench.synthetic import randomize_module
from unidit.runtime.families.wan.dit import WanDiT, WanDiTConfig, load_wan_dit
from unidit.runtime.weights import CheckpointError

TINY_21 = dict(dim=256, ffn_dim=384, num_heads=2, num_layers=2, in_channels=16, out_channels=16, text_dim=64)
TINY_22 = dict(TINY_21, in_channels=48, out_channels=48)


def original_state(config: dict, seed: int = 0) -> dict:
    """A seeded random state dict in the original Wan layout (our module's names)."""
    return {k: v.clone() for k, v in randomize_module(WanDiT(WanDiTConfig(**config)), seed).state_dict().items()}


def reference(config: dict, state: dict) -> WanTransformer3DModel:
    """diffusers' model, filled through diffusers' own converter from the original layout (strict)."""
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=config["num_heads"],
                                  attention_head_dim=config["dim"] // config["num_heads"],
                                  in_channels=config["in_channels"], out_channels=config["out_channels"],
                                  text_dim=config["text_dim"], freq_dim=256, ffn_dim=config["ffn_dim"],
                                  num_layers=config["num_layers"], cross_attn_norm=True,
                                  qk_norm="rms_norm_across_heads", eps=1e-6)
    converted = convert_wan_transformer_to_diffusers({f"model.diffusion_model.{k}": v for k, v in state.items()})
    model.load_state_dict(converted, strict=True)
    return model.eval()


def inputs(channels: int, seed: int = 1, frames: int = 3, text_tokens: int = 7):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, frames, 8, 12, generator=generator)
    context = torch.randn(2, text_tokens, 64, generator=generator)
    context[1, 4:] = 0  # the second prompt is shorter: its rows past the end are zero, as the T5 part gives them
    return x, context


def reference_velocity(model, x, sigma_per_frame, context):
    """diffusers' call: the prompt zero-padded to 512 tokens, a timestep 1000 sigma (per token when frames differ)."""
    padded = torch.nn.functional.pad(context, (0, 0, 0, 512 - context.shape[1]))
    b, _, f, h, w = x.shape
    if bool((sigma_per_frame == sigma_per_frame[:, :1]).all()):
        timestep = 1000 * sigma_per_frame[:, 0]
    else:  # Wan 2.2's expand_timesteps: one timestep per token
        timestep = (1000 * sigma_per_frame)[:, :, None].expand(b, f, (h // 2) * (w // 2)).reshape(b, -1)
    with torch.no_grad():
        return model(x, timestep, padded, return_dict=False)[0]


def close(ours, reference_output):
    scale = reference_output.abs().max()
    error = (ours - reference_output).abs().max()
    assert error <= 1e-4 * scale, f"max abs difference {error:.3g} against output scale {scale:.3g}"
    return float(error / scale)


@pytest.mark.parametrize("config", [TINY_21, TINY_22], ids=["wan2.1", "wan2.2"])
def test_matches_diffusers_from_the_original_single_file_layout(tmp_path, config):
    state = original_state(config)
    save_file({f"model.diffusion_model.{k}": v for k, v in state.items()}, tmp_path / "wan.safetensors")
    ours = load_wan_dit(tmp_path / "wan.safetensors")
    assert ours.config == WanDiTConfig(**config)  # inferred from the tensor shapes alone
    peer = reference(config, state)
    x, context = inputs(config["in_channels"])
    sigma = torch.tensor([[0.6] * 3, [0.25] * 3])
    with torch.no_grad():
        close(ours(x, sigma, context), reference_velocity(peer, x, sigma, context))


def test_the_diffusion_model_of_a_file_that_holds_other_parts_too_loads(tmp_path):
    state = original_state(TINY_21, seed=2)
    save_file({**{f"model.diffusion_model.{k}": v for k, v in state.items()},
               "vae.decoder.conv1.weight": torch.zeros(2, 2), "text_encoders.umt5xxl.shared.weight": torch.zeros(2, 2)},
              tmp_path / "all_in_one.safetensors")
    save_file(state, tmp_path / "plain.safetensors")
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.5)
    with torch.no_grad():
        assert torch.equal(load_wan_dit(tmp_path / "all_in_one.safetensors")(x, sigma, context),
                           load_wan_dit(tmp_path / "plain.safetensors")(x, sigma, context))


def test_wan22_per_frame_noise_levels_match_diffusers_per_token_timesteps(tmp_path):
    state = original_state(TINY_22, seed=3)
    save_file(state, tmp_path / "ti2v.safetensors")  # also without the model.diffusion_model. prefix
    ours, peer = load_wan_dit(tmp_path / "ti2v.safetensors"), reference(TINY_22, state)
    x, context = inputs(48, seed=4)
    sigma = torch.tensor([[0.0, 0.7, 0.7], [0.0, 0.3, 0.3]])  # image -> video: the first latent frame given
    with torch.no_grad():
        close(ours(x, sigma, context), reference_velocity(peer, x, sigma, context))


@pytest.mark.parametrize("text_tokens", [1, 512])
def test_prompts_from_one_token_to_the_full_512_match_diffusers(tmp_path, text_tokens):
    """The zero padding is computed once and counted; at 512 real tokens there is none."""
    state = original_state(TINY_21, seed=8)
    save_file(state, tmp_path / "wan.safetensors")
    ours, peer = load_wan_dit(tmp_path / "wan.safetensors"), reference(TINY_21, state)
    x, context = inputs(16, seed=9, text_tokens=text_tokens)
    context[1] = torch.randn(context[1].shape)  # both prompts full length here
    sigma = torch.full((2, 3), 0.5)
    with torch.no_grad():
        close(ours(x, sigma, context), reference_velocity(peer, x, sigma, context))


def test_single_file_and_diffusers_folder_give_identical_outputs(tmp_path):
    state = original_state(TINY_21, seed=5)
    save_file(state, tmp_path / "wan.safetensors")
    reference(TINY_21, state).save_pretrained(tmp_path / "transformer", max_shard_size="1MB")
    assert len(list((tmp_path / "transformer").glob("*.safetensors"))) > 1  # sharded, with an index
    single, folder = load_wan_dit(tmp_path / "wan.safetensors"), load_wan_dit(tmp_path / "transformer")
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.5)
    with torch.no_grad():
        assert torch.equal(single(x, sigma, context), folder(x, sigma, context))


def test_weights_stay_in_their_stored_dtype_and_memory_mapped(tmp_path):
    state = original_state(TINY_21, seed=6)
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, tmp_path / "wan_bf16.safetensors")
    model = load_wan_dit(tmp_path / "wan_bf16.safetensors", compute_dtype=torch.float32)
    weight = model.blocks[0].ffn[0].weight
    assert weight.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in model.parameters())
    # the parameter is a view of the file's mapping, not a copy: its storage is the whole file
    assert weight.untyped_storage().nbytes() == (tmp_path / "wan_bf16.safetensors").stat().st_size
    # computing in fp32 from bf16 weights gives what an fp32 model with the rounded weights gives
    rounded = WanDiT(WanDiTConfig(**TINY_21))
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in state.items()})
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.4)
    with torch.no_grad():
        assert torch.allclose(model(x, sigma, context), rounded(x, sigma, context), atol=1e-5)


def test_scaled_fp8_file_gives_the_outputs_of_its_dequantised_weights(tmp_path):
    state = original_state(TINY_21, seed=7)
    quantised, dequantised = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, {}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2:  # the Linear weights, as ComfyUI's scaled-fp8 files have
            scale = value.abs().max() / 448.0
            fp8 = (value / scale).to(torch.float8_e4m3fn)
            quantised[key], quantised[key[:-len("weight")] + "scale_weight"] = fp8, scale.reshape(1)
            dequantised[key] = fp8.float() * scale
        else:
            quantised[key] = dequantised[key] = value
    save_file({f"model.diffusion_model.{k}": v for k, v in quantised.items()}, tmp_path / "wan_fp8_scaled.safetensors")
    model = load_wan_dit(tmp_path / "wan_fp8_scaled.safetensors")
    assert model.blocks[1].self_attn.q.weight.dtype == torch.float8_e4m3fn  # kept as fp8 in memory
    expected = WanDiT(WanDiTConfig(**TINY_21))
    expected.load_state_dict(dequantised)
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.8)
    with torch.no_grad():
        close(model(x, sigma, context), expected(x, sigma, context))


def test_plain_fp8_file_computes_with_its_weights_as_stored(tmp_path):
    """wan2.1_t2v_14B_fp8_e4m3fn.safetensors style: Linear weights in float8_e4m3fn without scales."""
    state = original_state(TINY_21, seed=9)
    stored = {k: v.to(torch.float8_e4m3fn) if k.endswith(".weight") and v.ndim == 2 else v.half()
              for k, v in state.items()}
    save_file(stored, tmp_path / "wan_fp8_e4m3fn.safetensors")
    model = load_wan_dit(tmp_path / "wan_fp8_e4m3fn.safetensors")
    assert model.blocks[0].ffn[2].weight.dtype == torch.float8_e4m3fn
    assert model.blocks[0].norm3.weight.dtype == torch.float16
    expected = WanDiT(WanDiTConfig(**TINY_21))
    expected.load_state_dict({k: v.float() for k, v in stored.items()})
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.3)
    with torch.no_grad():
        close(model(x, sigma, context), expected(x, sigma, context))


def test_files_that_are_not_a_runnable_wan_model_are_refused_clearly(tmp_path):
    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4)}, tmp_path / "t5.safetensors")
    with pytest.raises(CheckpointError, match="t5.safetensors: not a Wan diffusion model"):
        load_wan_dit(tmp_path / "t5.safetensors")
    state = original_state(TINY_21)
    state["img_emb.proj.0.bias"] = torch.zeros(8)
    save_file(state, tmp_path / "wan2.1_i2v.safetensors")
    with pytest.raises(CheckpointError, match="wan2.1_i2v.safetensors is a Wan 2.1 I2V .* which UniDiT does not run"):
        load_wan_dit(tmp_path / "wan2.1_i2v.safetensors")
    state = original_state(TINY_21)
    del state["blocks.1.ffn.2.bias"]
    save_file(state, tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="cut.safetensors: tensor 'blocks.1.ffn.2.bias' is missing"):
        load_wan_dit(tmp_path / "cut.safetensors")
    (tmp_path / "wan.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="pickle"):
        load_wan_dit(tmp_path / "wan.ckpt")


def test_bad_latents_fail_with_the_reason():
    model = WanDiT(WanDiTConfig(**TINY_21))
    with pytest.raises(ValueError, match="latent has 48 channels, this Wan model takes 16"):
        model(torch.zeros(1, 48, 1, 8, 8), torch.tensor([0.5]), torch.zeros(1, 3, 64))
    with pytest.raises(ValueError, match="divisible by the patch"):
        model(torch.zeros(1, 16, 1, 7, 8), torch.tensor([0.5]), torch.zeros(1, 3, 64))
    with pytest.raises(ValueError, match="513 text tokens exceed"):
        model(torch.zeros(1, 16, 1, 8, 8), torch.tensor([0.5]), torch.zeros(1, 513, 64))


def test_comfyuis_fp8_unet_flag_stores_the_matrices_in_fp8(tmp_path):
    state = original_state(TINY_21, seed=10)
    save_file({k: v.half() for k, v in state.items()}, tmp_path / "wan_fp16.safetensors")
    model = load_wan_dit(tmp_path / "wan_fp16.safetensors", matrix_dtype=torch.float8_e4m3fn)
    assert model.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn        # matrices narrowed
    assert model.patch_embedding.weight.dtype == torch.float8_e4m3fn
    assert model.blocks[0].norm3.weight.dtype == torch.float16                     # norms, biases and
    assert model.blocks[0].modulation.dtype == torch.float16                       # modulation tables kept
    assert model.blocks[0].ffn[0].bias.dtype == torch.float16
    expected = WanDiT(WanDiTConfig(**TINY_21))
    narrowed = {name for name, p in model.named_parameters() if p.dtype == torch.float8_e4m3fn}
    expected.load_state_dict({k: (v.half().to(torch.float8_e4m3fn).float() if k in narrowed else v.half().float())
                              for k, v in state.items()})
    x, context = inputs(16)
    sigma = torch.full((2, 3), 0.5)
    with torch.no_grad():
        close(model(x, sigma, context), expected(x, sigma, context))
