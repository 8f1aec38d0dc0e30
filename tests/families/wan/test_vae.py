"""The Wan 2.1 / 2.2 VAEs: parity with diffusers' AutoencoderKLWan, the key layouts, loading, the time cache, tiles.

Everything runs on tiny seeded VAEs written to temporary files in the real key layouts (no downloads), on CPU in
float32. Parity figures are relative: max |ours - diffusers| / max |diffusers|.
"""
import json
import math

import pytest
import torch
from einops import reduce, repeat
from safetensors.torch import save_file

from unidit.runtime.families.wan.vae import (
    WAN21_LATENTS_MEAN, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, WanVAE, WanVAEConfig, blend_ramp, detect_wan_vae,
    diffusers_to_original, load_wan_vae, tile_starts)
from unidit.runtime.weights import CheckpointError, open_weights

# Tiny versions of the two VAEs, with the real number of levels, residual blocks and temporal downsamples.
TINY21 = WanVAEConfig(base_dim=16, decoder_base_dim=16)
TINY22 = WanVAEConfig(version="2.2", base_dim=16, decoder_base_dim=24, z_dim=48, patch_size=2,
                      latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
SIZES = {"2.1": 32, "2.2": 64}           # frame size of the test clips (4x4 latents)
PARITY = 1e-4                            # max abs difference allowed, relative to the output's largest value


def config_of(version):
    return TINY21 if version == "2.1" else TINY22


def seeded_state_dict(config, seed=0):
    """Random weights in the original Wan layout, every tensor perturbed (gammas around 1, not 1)."""
    with torch.device("meta"):
        shapes = {key: tensor.shape for key, tensor in WanVAE(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        if key.endswith("gamma"):
            weights[key] = 1 + 0.3 * noise
        elif key.endswith("bias"):
            weights[key] = 0.05 * noise
        else:
            weights[key] = noise / math.sqrt(math.prod(shape[1:]))
    return weights


def diffusers_vae(version):
    diffusers = pytest.importorskip("diffusers")
    config = config_of(version)
    kwargs = dict(base_dim=config.base_dim, decoder_base_dim=config.decoder_base_dim, z_dim=config.z_dim,
                  dim_mult=list(config.dim_mult), num_res_blocks=config.num_res_blocks,
                  temperal_downsample=list(config.temporal_downsample),
                  latents_mean=list(config.latents_mean), latents_std=list(config.latents_std))
    if version == "2.2":
        kwargs.update(is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    return diffusers.AutoencoderKLWan(**kwargs).eval()


def diffusers_state_dict(version, weights):
    """``weights`` (original layout) under diffusers' names: for 2.1 by diffusers' own converter, for 2.2 (which
    it lacks) by our diffusers -> original map, inverted over the keys of a diffusers model."""
    if version == "2.1":
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
        return convert_wan_vae_to_diffusers(weights)
    names = diffusers_to_original(diffusers_vae(version).state_dict())
    to_diffusers = {original: name for name, original in names.items()}
    assert len(to_diffusers) == len(names)
    return {to_diffusers[key]: value for key, value in weights.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Per version: the seeded weights and a ComfyUI-style single file of them."""
    root = tmp_path_factory.mktemp("wan_vae")
    made = {}
    for version in ("2.1", "2.2"):
        weights = seeded_state_dict(config_of(version))
        single = root / f"wan{version}_vae.safetensors"
        save_file(weights, str(single))
        made[version] = {"weights": weights, "single": single}
    return made


@pytest.fixture(scope="module")
def references(files, tmp_path_factory):
    """Per version: diffusers' AutoencoderKLWan holding the same weights (loaded strictly), and a diffusers folder
    it saved, in shards small enough that the shard index is used."""
    root = tmp_path_factory.mktemp("wan_vae_diffusers")
    made = {}
    for version in ("2.1", "2.2"):
        reference = diffusers_vae(version)
        reference.load_state_dict(diffusers_state_dict(version, files[version]["weights"]), strict=True)
        folder = root / f"diffusers{version}" / "vae"
        reference.save_pretrained(folder, max_shard_size="4MB", safe_serialization=True)
        made[version] = {"model": reference, "folder": folder}
    return made


def stats(config):
    shape = (1, config.z_dim, 1, 1, 1)
    return torch.tensor(config.latents_mean).view(shape), torch.tensor(config.latents_std).view(shape)


def relative_error(ours, reference):
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def clip(version, frames=9, seed=1):
    size = SIZES[version]
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------------------------
# Parity with diffusers


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_encode_and_decode_match_diffusers(files, references, version):
    vae = load_wan_vae(files[version]["single"])
    reference = references[version]["model"]
    mean, std = stats(vae.config)
    pixels = clip(version)

    latents = vae.encode(pixels)
    with torch.no_grad():
        expected = (reference.encode(pixels).latent_dist.mode() - mean) / std
    assert latents.shape == (1, vae.latent_channels, 3, 4, 4) and latents.dtype == torch.float32
    encode_error = relative_error(latents, expected)

    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    decoded = vae.decode(noise)
    with torch.no_grad():
        expected_pixels = reference.decode(noise * std + mean).sample
    assert decoded.shape == pixels.shape
    assert 0.3 < expected_pixels.std() and (expected_pixels.abs() < 1).float().mean() > 0.8  # mostly unclamped
    decode_error = relative_error(decoded, expected_pixels)
    print(f"Wan {version}: encode {encode_error:.2e}, decode {decode_error:.2e} (max abs diff / max abs)")
    assert encode_error <= PARITY and decode_error <= PARITY


def test_wan21_names_agree_with_diffusers_converter(files):
    """diffusers' own single-file converter and our inverse map agree on every Wan 2.1 key."""
    convert_wan_vae_to_diffusers = pytest.importorskip("diffusers.loaders.single_file_utils").convert_wan_vae_to_diffusers

    weights = files["2.1"]["weights"]
    converted = convert_wan_vae_to_diffusers(weights)
    back = diffusers_to_original(converted)
    assert {back[name]: converted[name] for name in converted}.keys() == weights.keys()
    assert all(converted[name] is weights[back[name]] for name in converted)


# The parameters of ComfyUI's comfy/ldm/wan/vae2_2.py WanVAE(dim=8, dec_dim=8, z_dim=4, dim_mult=[1, 2, 2],
# num_res_blocks=1, temperal_downsample=[True, False]) (ComfyUI a125cd84), printed by instantiating that module:
# the original Wan 2.2 layout, with a downsample3d/2d, upsample2d/3d and shortcuts in both directions.
COMFYUI_WAN22_KEYS = """
encoder.conv1.weight 8x12x3x3x3
encoder.conv1.bias 8
encoder.downsamples.0.downsamples.0.residual.0.gamma 8x1x1x1
encoder.downsamples.0.downsamples.0.residual.2.weight 8x8x3x3x3
encoder.downsamples.0.downsamples.0.residual.2.bias 8
encoder.downsamples.0.downsamples.0.residual.3.gamma 8x1x1x1
encoder.downsamples.0.downsamples.0.residual.6.weight 8x8x3x3x3
encoder.downsamples.0.downsamples.0.residual.6.bias 8
encoder.downsamples.0.downsamples.1.resample.1.weight 8x8x3x3
encoder.downsamples.0.downsamples.1.resample.1.bias 8
encoder.downsamples.0.downsamples.1.time_conv.weight 8x8x3x1x1
encoder.downsamples.0.downsamples.1.time_conv.bias 8
encoder.downsamples.1.downsamples.0.residual.0.gamma 8x1x1x1
encoder.downsamples.1.downsamples.0.residual.2.weight 16x8x3x3x3
encoder.downsamples.1.downsamples.0.residual.2.bias 16
encoder.downsamples.1.downsamples.0.residual.3.gamma 16x1x1x1
encoder.downsamples.1.downsamples.0.residual.6.weight 16x16x3x3x3
encoder.downsamples.1.downsamples.0.residual.6.bias 16
encoder.downsamples.1.downsamples.0.shortcut.weight 16x8x1x1x1
encoder.downsamples.1.downsamples.0.shortcut.bias 16
encoder.downsamples.1.downsamples.1.resample.1.weight 16x16x3x3
encoder.downsamples.1.downsamples.1.resample.1.bias 16
encoder.downsamples.2.downsamples.0.residual.0.gamma 16x1x1x1
encoder.downsamples.2.downsamples.0.residual.2.weight 16x16x3x3x3
encoder.downsamples.2.downsamples.0.residual.2.bias 16
encoder.downsamples.2.downsamples.0.residual.3.gamma 16x1x1x1
encoder.downsamples.2.downsamples.0.residual.6.weight 16x16x3x3x3
encoder.downsamples.2.downsamples.0.residual.6.bias 16
encoder.middle.0.residual.0.gamma 16x1x1x1
encoder.middle.0.residual.2.weight 16x16x3x3x3
encoder.middle.0.residual.2.bias 16
encoder.middle.0.residual.3.gamma 16x1x1x1
encoder.middle.0.residual.6.weight 16x16x3x3x3
encoder.middle.0.residual.6.bias 16
encoder.middle.1.norm.gamma 16x1x1
encoder.middle.1.to_qkv.weight 48x16x1x1
encoder.middle.1.to_qkv.bias 48
encoder.middle.1.proj.weight 16x16x1x1
encoder.middle.1.proj.bias 16
encoder.middle.2.residual.0.gamma 16x1x1x1
encoder.middle.2.residual.2.weight 16x16x3x3x3
encoder.middle.2.residual.2.bias 16
encoder.middle.2.residual.3.gamma 16x1x1x1
encoder.middle.2.residual.6.weight 16x16x3x3x3
encoder.middle.2.residual.6.bias 16
encoder.head.0.gamma 16x1x1x1
encoder.head.2.weight 8x16x3x3x3
encoder.head.2.bias 8
conv1.weight 8x8x1x1x1
conv1.bias 8
conv2.weight 4x4x1x1x1
conv2.bias 4
decoder.conv1.weight 16x4x3x3x3
decoder.conv1.bias 16
decoder.middle.0.residual.0.gamma 16x1x1x1
decoder.middle.0.residual.2.weight 16x16x3x3x3
decoder.middle.0.residual.2.bias 16
decoder.middle.0.residual.3.gamma 16x1x1x1
decoder.middle.0.residual.6.weight 16x16x3x3x3
decoder.middle.0.residual.6.bias 16
decoder.middle.1.norm.gamma 16x1x1
decoder.middle.1.to_qkv.weight 48x16x1x1
decoder.middle.1.to_qkv.bias 48
decoder.middle.1.proj.weight 16x16x1x1
decoder.middle.1.proj.bias 16
decoder.middle.2.residual.0.gamma 16x1x1x1
decoder.middle.2.residual.2.weight 16x16x3x3x3
decoder.middle.2.residual.2.bias 16
decoder.middle.2.residual.3.gamma 16x1x1x1
decoder.middle.2.residual.6.weight 16x16x3x3x3
decoder.middle.2.residual.6.bias 16
decoder.upsamples.0.upsamples.0.residual.0.gamma 16x1x1x1
decoder.upsamples.0.upsamples.0.residual.2.weight 16x16x3x3x3
decoder.upsamples.0.upsamples.0.residual.2.bias 16
decoder.upsamples.0.upsamples.0.residual.3.gamma 16x1x1x1
decoder.upsamples.0.upsamples.0.residual.6.weight 16x16x3x3x3
decoder.upsamples.0.upsamples.0.residual.6.bias 16
decoder.upsamples.0.upsamples.1.residual.0.gamma 16x1x1x1
decoder.upsamples.0.upsamples.1.residual.2.weight 16x16x3x3x3
decoder.upsamples.0.upsamples.1.residual.2.bias 16
decoder.upsamples.0.upsamples.1.residual.3.gamma 16x1x1x1
decoder.upsamples.0.upsamples.1.residual.6.weight 16x16x3x3x3
decoder.upsamples.0.upsamples.1.residual.6.bias 16
decoder.upsamples.0.upsamples.2.resample.1.weight 16x16x3x3
decoder.upsamples.0.upsamples.2.resample.1.bias 16
decoder.upsamples.1.upsamples.0.residual.0.gamma 16x1x1x1
decoder.upsamples.1.upsamples.0.residual.2.weight 16x16x3x3x3
decoder.upsamples.1.upsamples.0.residual.2.bias 16
decoder.upsamples.1.upsamples.0.residual.3.gamma 16x1x1x1
decoder.upsamples.1.upsamples.0.residual.6.weight 16x16x3x3x3
decoder.upsamples.1.upsamples.0.residual.6.bias 16
decoder.upsamples.1.upsamples.1.residual.0.gamma 16x1x1x1
decoder.upsamples.1.upsamples.1.residual.2.weight 16x16x3x3x3
decoder.upsamples.1.upsamples.1.residual.2.bias 16
decoder.upsamples.1.upsamples.1.residual.3.gamma 16x1x1x1
decoder.upsamples.1.upsamples.1.residual.6.weight 16x16x3x3x3
decoder.upsamples.1.upsamples.1.residual.6.bias 16
decoder.upsamples.1.upsamples.2.resample.1.weight 16x16x3x3
decoder.upsamples.1.upsamples.2.resample.1.bias 16
decoder.upsamples.1.upsamples.2.time_conv.weight 32x16x3x1x1
decoder.upsamples.1.upsamples.2.time_conv.bias 32
decoder.upsamples.2.upsamples.0.residual.0.gamma 16x1x1x1
decoder.upsamples.2.upsamples.0.residual.2.weight 8x16x3x3x3
decoder.upsamples.2.upsamples.0.residual.2.bias 8
decoder.upsamples.2.upsamples.0.residual.3.gamma 8x1x1x1
decoder.upsamples.2.upsamples.0.residual.6.weight 8x8x3x3x3
decoder.upsamples.2.upsamples.0.residual.6.bias 8
decoder.upsamples.2.upsamples.0.shortcut.weight 8x16x1x1x1
decoder.upsamples.2.upsamples.0.shortcut.bias 8
decoder.upsamples.2.upsamples.1.residual.0.gamma 8x1x1x1
decoder.upsamples.2.upsamples.1.residual.2.weight 8x8x3x3x3
decoder.upsamples.2.upsamples.1.residual.2.bias 8
decoder.upsamples.2.upsamples.1.residual.3.gamma 8x1x1x1
decoder.upsamples.2.upsamples.1.residual.6.weight 8x8x3x3x3
decoder.upsamples.2.upsamples.1.residual.6.bias 8
decoder.head.0.gamma 8x1x1x1
decoder.head.2.weight 12x8x3x3x3
decoder.head.2.bias 12
"""


def test_wan22_names_and_shapes_match_comfyui_module():
    config = WanVAEConfig(version="2.2", base_dim=8, decoder_base_dim=8, z_dim=4, dim_mult=(1, 2, 2),
                          num_res_blocks=1, temporal_downsample=(True, False), patch_size=2,
                          latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)
    with torch.device("meta"):
        ours = {key: "x".join(map(str, tensor.shape)) for key, tensor in WanVAE(config).state_dict().items()}
    expected = dict(line.split() for line in COMFYUI_WAN22_KEYS.strip().splitlines())
    assert ours == expected


# ---------------------------------------------------------------------------------------------------------------
# Loading and config inference


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_single_file_and_sharded_diffusers_folder_give_identical_results(files, references, version):
    folder = references[version]["folder"]
    assert len(list(folder.glob("*.safetensors"))) > 1 and list(folder.glob("*.safetensors.index.json"))
    from_file = load_wan_vae(files[version]["single"])
    from_folder = load_wan_vae(folder.parent)  # the model folder: its vae/ subfolder is found
    assert from_file.config == from_folder.config == config_of(version)
    pixels = clip(version, frames=5)
    latents = from_file.encode(pixels)
    assert torch.equal(latents, from_folder.encode(pixels))
    assert torch.equal(from_file.decode(latents), from_folder.decode(latents))


def test_detect_reads_the_config_from_shapes_in_both_layouts(files, references):
    for version in ("2.1", "2.2"):
        assert detect_wan_vae(open_weights(files[version]["single"])) == config_of(version)
        assert detect_wan_vae(open_weights(references[version]["folder"])) == config_of(version)
    assert TINY21.spatial_factor == 8 and TINY22.spatial_factor == 16 and TINY22.temporal_factor == 4
    assert WanVAEConfig.wan22().decoder_base_dim == 256 and WanVAEConfig.wan21().latents_mean == WAN21_LATENTS_MEAN


def test_other_latent_widths_get_no_normalisation_and_prefixes_are_stripped(tmp_path):
    config = WanVAEConfig(base_dim=8, decoder_base_dim=8, z_dim=4, dim_mult=(1, 2, 2), num_res_blocks=1,
                          temporal_downsample=(False, True), latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)
    weights = seeded_state_dict(config)
    path = tmp_path / "model.safetensors"
    save_file({f"first_stage_model.{key}": value for key, value in weights.items()}, str(path))
    vae = load_wan_vae(path)
    assert vae.config == config and vae.temporal_factor == 2 and vae.spatial_factor == 4
    assert vae.encode(torch.zeros(1, 3, 5, 8, 8)).shape == (1, 4, 3, 2, 2)


def test_diffusers_config_latent_statistics_are_used(references, tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    for file in references["2.1"]["folder"].iterdir():
        (folder / file.name).symlink_to(file)
    config = json.loads((references["2.1"]["folder"] / "config.json").read_text())
    config["latents_mean"], config["latents_std"] = [0.5] * 16, [2.0] * 16
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    vae = load_wan_vae(folder)
    assert vae.config.latents_mean == (0.5,) * 16 and vae.config.latents_std == (2.0,) * 16


def test_bf16_weights_stay_bf16_and_compute_in_fp32(files, tmp_path):
    rounded = {key: value.to(torch.bfloat16) for key, value in files["2.1"]["weights"].items()}
    bf16_path, fp32_path = tmp_path / "bf16.safetensors", tmp_path / "fp32.safetensors"
    save_file(rounded, str(bf16_path))
    save_file({key: value.float() for key, value in rounded.items()}, str(fp32_path))
    vae = load_wan_vae(bf16_path, compute_dtype=torch.float32)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    pixels = clip("2.1", frames=5).half()  # inputs of any float dtype are cast to the compute dtype
    latents = vae.encode(pixels)
    assert latents.dtype == torch.float32
    assert torch.equal(latents, load_wan_vae(fp32_path).encode(pixels))  # same numbers as fp32 copies would give


# ---------------------------------------------------------------------------------------------------------------
# The time cache


def frames_seen_by_3d_convs(vae):
    """Forward hooks recording the most frames any 3D conv gets in one call."""
    seen = [0]

    def record(_module, inputs):
        seen[0] = max(seen[0], inputs[0].shape[2])

    handles = [m.register_forward_pre_hook(record) for m in vae.modules() if isinstance(m, torch.nn.Conv3d)]
    return seen, handles


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_chunks_are_causal_and_bounded_in_time(files, version):
    vae = load_wan_vae(files[version]["single"])
    chunk, context = vae.temporal_factor, 2
    pixels = clip(version, frames=21)
    latents = torch.randn(1, vae.latent_channels, 6, 4, 4, generator=torch.Generator().manual_seed(3))

    seen, handles = frames_seen_by_3d_convs(vae)
    peaks = {}
    for frames in (3, 6):
        seen[0] = 0
        encoded = vae.encode(pixels[:, :, :1 + 4 * (frames - 1)])
        decoded = vae.decode(latents[:, :, :frames])
        peaks[frames] = seen[0]
        assert encoded.shape[2] == frames and decoded.shape[2] == 1 + 4 * (frames - 1)
        if frames == 3:
            short_encoded, short_decoded = encoded, decoded
    for handle in handles:
        handle.remove()
    assert peaks[3] == peaks[6] <= chunk + context      # memory does not grow with the clip
    # a clip's first frames do not depend on later ones: the 3-frame results are prefixes of the 6-frame ones
    assert torch.equal(short_encoded, encoded[:, :, :3])
    assert torch.equal(short_decoded, decoded[:, :, :9])


# ---------------------------------------------------------------------------------------------------------------
# Spatial tiles


def test_tile_layout_and_blend_weights():
    assert tile_starts(8, 4, 2) == [0, 2, 4] and tile_starts(9, 4, 2) == [0, 2, 4, 5] and tile_starts(3, 4, 2) == [0]
    like = torch.zeros(0)
    first, middle = blend_ramp(0, 4, 8, 2, 1, like), blend_ramp(2, 4, 8, 2, 1, like)
    assert torch.allclose(first, torch.tensor([1, 1, 2 / 3, 1 / 3]))
    assert torch.allclose(middle, torch.tensor([1 / 3, 2 / 3, 2 / 3, 1 / 3]))
    assert torch.allclose(first[2:] + middle[:2], torch.ones(2))            # neighbours' weights sum to 1
    assert blend_ramp(4, 4, 8, 2, 8, like).shape == (32,)                    # in output pixels: 8 per cell


@pytest.mark.parametrize("config", [TINY21, TINY22], ids=["2.1", "2.2"])
def test_tiles_reassemble_a_local_map_exactly(config):
    """With the networks replaced by maps that look at one cell only, tiling must not change anything: this checks
    where tiles are cut and put back, and the normalisation of the blend, in both directions."""
    with torch.device("meta"):
        vae = WanVAE(config)
    f, z = vae.spatial_factor, vae.latent_channels
    vae._decode_clip = lambda latents: repeat(torch.tanh(latents[:, :3]), "b c t h w -> b c t (h p) (w q)", p=f, q=f)
    vae._encode_clip = lambda pixels: reduce(pixels, "b c t (h p) (w q) -> b c t h w", "mean", p=f, q=f).repeat(
        1, z // 3 + 1, 1, 1, 1)[:, :z]
    latents, pixels = torch.randn(1, z, 2, 10, 7), torch.rand(1, 3, 5, 10 * f, 7 * f) * 2 - 1
    whole_pixels, whole_latents = vae.decode(latents), vae.encode(pixels)
    tiles = dict(tile_size=4 * f, tile_overlap=2 * f)     # 4 x 3 tiles of 4 x 4 cells
    assert torch.allclose(vae.decode(latents, **tiles), whole_pixels, atol=1e-6)
    assert torch.allclose(vae.encode(pixels, **tiles), whole_latents, atol=1e-6)


def test_tiled_vae_stays_close_to_whole_frames_and_one_tile_is_exact(files):
    vae = load_wan_vae(files["2.1"]["single"])
    pixels = torch.rand(1, 3, 5, 96, 96, generator=torch.Generator().manual_seed(4)) * 2 - 1
    latents = vae.encode(pixels)
    decoded = vae.decode(latents)

    one = dict(tile_size=96, tile_overlap=32)   # one tile covers the frame: the untiled computation
    assert torch.equal(vae.encode(pixels, **one), latents) and torch.equal(vae.decode(latents, **one), decoded)

    tiles = dict(tile_size=64, tile_overlap=32)   # 2 x 2 tiles of 8 x 8 latents overlapping by 4, each over time
    tiled_latents, tiled_pixels = vae.encode(pixels, **tiles), vae.decode(latents, **tiles)

    def mean_error(ours, reference):
        return ((ours - reference).abs().mean() / reference.abs().mean()).item()

    encode_error, decode_error = mean_error(tiled_latents, latents), mean_error(tiled_pixels, decoded)
    print(f"tiled vs whole (mean |diff| / mean |whole|): encode {encode_error:.3f}, decode {decode_error:.3f}")
    # Measured 0.083 and 0.194: the tiny random VAE's receptive field (3x3 convs at every level, attention over the
    # whole tile) spans several latent cells, so seams are visible; a misplaced tile would give errors above 1.
    assert encode_error < 0.15 and decode_error < 0.3

    with pytest.raises(ValueError, match="tile_overlap"):
        vae.decode(latents, tile_size=32, tile_overlap=32)


# ---------------------------------------------------------------------------------------------------------------
# Errors


def test_files_that_are_not_wan_vaes_are_refused_with_what_they_look_like(tmp_path):
    model = tmp_path / "wan2.1_t2v_1.3B.safetensors"
    save_file({"model.diffusion_model.blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(model))
    with pytest.raises(CheckpointError, match=r"wan2.1_t2v_1.3B.safetensors is not a Wan VAE \(no "
                                              r"'decoder.middle.0.residual.0.gamma'\); it looks like a diffusion "
                                              r"model.*Wan 2.1 and 2.2 VAEs go in models/vae"):
        load_wan_vae(model)
    image_vae = tmp_path / "ae.safetensors"
    save_file({"decoder.mid.block_1.norm1.weight": torch.zeros(2)}, str(image_vae))
    with pytest.raises(CheckpointError, match="ae.safetensors is not a Wan VAE.*image VAE"):
        load_wan_vae(image_vae)


def test_truncated_and_mismatched_files_are_refused(files, tmp_path):
    truncated = tmp_path / "wan_2.1_vae.safetensors"
    truncated.write_bytes(files["2.1"]["single"].read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="wan_2.1_vae.safetensors.*truncated"):
        load_wan_vae(truncated)
    weights = dict(files["2.1"]["weights"])
    weights["decoder.head.2.weight"] = torch.zeros(3, 16, 3, 3, 1)
    wrong = tmp_path / "wrong.safetensors"
    save_file(weights, str(wrong))
    with pytest.raises(CheckpointError, match=r"'decoder.head.2.weight' has shape \(3, 16, 3, 3, 1\)"):
        load_wan_vae(wrong)


def test_bad_inputs_say_what_is_expected(files):
    vae21, vae22 = load_wan_vae(files["2.1"]["single"]), load_wan_vae(files["2.2"]["single"])
    with pytest.raises(ValueError, match="RGB pixels .* got 4 channels"):
        vae21.encode(torch.zeros(1, 4, 1, 32, 32))
    with pytest.raises(ValueError, match=r"clips of 1 \+ 4k frames \(1, 5, 9, ...\); got 8 frames"):
        vae21.encode(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="multiples of 8; got 36x32"):
        vae21.encode(torch.zeros(1, 3, 1, 32, 36))
    with pytest.raises(ValueError, match="Wan 2.2 VAE needs a width and height that are multiples of 16; got 72x64"):
        vae22.encode(torch.zeros(1, 3, 1, 64, 72))
    with pytest.raises(ValueError, match="decodes latents with 48 channels; got 16"):
        vae22.decode(torch.zeros(1, 16, 1, 4, 4))
    with pytest.raises(ValueError, match=r"pixels \[B, 3, T, H, W\]"):
        vae21.encode(torch.zeros(3, 32, 32))
