"""The Wan 2.1 and Wan 2.2 video autoencoders (VAEs), loaded from the files ComfyUI users have.

Both are causal 3D-convolutional VAEs. A clip of T = 1 + 4k frames becomes 1 + k latent frames: the first frame
is encoded on its own (so an image is a one-frame video), every later latent frame covers 4 frames.

    Wan 2.1  (wan_2.1_vae.safetensors: 16 latent channels, 8x spatial)
      encode  pixels [B, 3, T, H, W]
              -> conv1 (causal 3x3x3)                               base_dim channels
              -> per level: num_res_blocks residual blocks, then (except at the last level) a 2x spatial
                 downsample, with a 2x temporal one where temporal_downsample says so
              -> middle: residual block, single-head self-attention over each frame's pixels, residual block
              -> head: RMS norm, SiLU, causal conv -> 2 z channels -> conv1 (1x1x1) -> (mean, log-variance)
      decode  latents -> conv2 (1x1x1) -> decoder: conv1, middle, levels of residual blocks + 2x upsamples
              (the mirror image; each upsample's conv halves the channels), head -> pixels [B, 3, T, H, W]

    Wan 2.2  (wan2.2_vae.safetensors: 48 latent channels, 16x spatial)
      the same, plus: pixels are first folded into 2x2 patches (3 -> 12 channels at half resolution), and each
      level is one residual "down block" / "up block" whose shortcut is parameter-free: the input averaged over
      its 2x2(x2) cells (AvgDown3D) or duplicated into them (DupUp3D). The decoder is wider than the encoder.

Causal convolutions and the time cache
--------------------------------------
Every 3D convolution is causal in time: an output frame sees only its own and earlier frames (its kernel of
3 frames is padded with 2 frames of zeros before the first frame). That lets a clip be processed in time chunks
(the encoder takes frame 0, then 4 frames at a time; the decoder takes one latent frame at a time) with the same
result as the whole clip at once, provided each causal layer gets the last frames of its input from the previous
chunk. :class:`CausalCache` carries them (the reference code's ``feat_cache`` list, here keyed by layer):

    causal conv (3 frames)      prepends the 2 frames it kept (zeros at the start), keeps the last 2 of its input
    temporal downsample         frame 0 passes through; later chunks are convolved (3 frames, stride 2) with the
                                last frame of the previous chunk prepended
    temporal upsample           the first latent frame passes through (one frame out); later frames go through a
                                causal conv whose history starts after the first chunk and yields 2 frames each

so peak memory depends on the chunk, not on the clip's length. The chunked computation *is* the reference's
definition (its temporal padding and Wan 2.2's averaging shortcut act per chunk). Optional spatial tiles
(``tile_size`` of :meth:`WanVAE.encode` / :meth:`WanVAE.decode`) split large frames into overlapping tiles, each
run through time with its own cache and blended linearly in the overlaps.

Weights keep the original Wan parameter names (ComfyUI's files); diffusers folders are renamed to them by
:func:`diffusers_to_original`. Layers come from an ``ops`` namespace (``model/ops.py`` by default), so weights
stay in their stored dtype and are cast to the compute dtype layer by layer.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, reduce

from ...model import ops as default_ops
from ...weights import CheckpointError, Weights, fill_module, open_weights, place_module, read_json

# Per-channel statistics of the raw latents (the posterior mean) that the Wan diffusion models were trained on:
# the VAE's latents are normalised as (mu - mean) / std. From Wan's reference code (also in ComfyUI's
# latent_formats.Wan21 / Wan22 and diffusers' AutoencoderKLWan configs).
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

# A tensor every Wan VAE has, in the original (ComfyUI) and in the diffusers layout.
ORIGINAL_MARKER = "decoder.middle.0.residual.0.gamma"
DIFFUSERS_MARKER = "decoder.mid_block.resnets.0.norm1.gamma"
# Prefixes a VAE's keys may carry in a single file (stripped when every key has it).
KEY_PREFIXES = ("first_stage_model.", "vae.")


def default_latent_stats(version: str, z_dim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The published (mean, std) of a Wan VAE's latents; mean 0 / std 1 (no normalisation) for a VAE whose
    latent width is not the published one (16 for 2.1, 48 for 2.2), e.g. a tiny test VAE."""
    if version == "2.1" and z_dim == len(WAN21_LATENTS_MEAN):
        return WAN21_LATENTS_MEAN, WAN21_LATENTS_STD
    if version == "2.2" and z_dim == len(WAN22_LATENTS_MEAN):
        return WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
    return (0.0,) * z_dim, (1.0,) * z_dim


@dataclass(frozen=True)
class WanVAEConfig:
    """The shape of a Wan VAE. Defaults are Wan 2.1's; :meth:`wan22` gives Wan 2.2's."""

    version: str = "2.1"                  # "2.1" or "2.2" (residual down/up blocks)
    base_dim: int = 96                    # encoder channels at full resolution
    decoder_base_dim: int = 96            # decoder channels at full resolution (2.2: 256, wider than its 160)
    z_dim: int = 16                       # latent channels
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)                 # channels per level, in units of the base dim
    num_res_blocks: int = 2               # residual blocks per encoder level (the decoder has one more)
    temporal_downsample: tuple[bool, ...] = (False, True, True)  # per 2x spatial downsample: also 2x in time?
    patch_size: int = 1                   # 2.2: pixels folded into 2x2 patches before the encoder
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    def __post_init__(self):
        if self.version not in ("2.1", "2.2"):
            raise ValueError(f"Wan VAE version must be '2.1' or '2.2', got {self.version!r}")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temporal_downsample needs one flag per downsample ({len(self.dim_mult) - 1}), got "
                             f"{len(self.temporal_downsample)}")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ValueError(f"latents_mean and latents_std need {self.z_dim} values (one per latent channel), got "
                             f"{len(self.latents_mean)} and {len(self.latents_std)}")

    @classmethod
    def wan21(cls) -> "WanVAEConfig":
        return cls()

    @classmethod
    def wan22(cls) -> "WanVAEConfig":
        return cls(version="2.2", base_dim=160, decoder_base_dim=256, z_dim=48, patch_size=2,
                   latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)

    @property
    def residual(self) -> bool:
        """Wan 2.2's residual down/up blocks (with parameter-free shortcuts) instead of plain layer lists."""
        return self.version == "2.2"

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


# ---------------------------------------------------------------------------------------------------------------
# The time cache


class CausalCache:
    """What the causal layers remember of the previous time chunks (the reference's ``feat_cache``).

    One cache serves one pass over a clip (or over one spatial tile of it): the encoder or decoder is called once
    per chunk with the same cache, and :meth:`next_chunk` is called between chunks. Entries are keyed by layer.
    """

    def __init__(self):
        self.first_chunk = True
        self._kept: dict[nn.Module, torch.Tensor] = {}

    def next_chunk(self) -> None:
        self.first_chunk = False

    def carry(self, layer: nn.Module, frames: torch.Tensor) -> Optional[torch.Tensor]:
        """Keep ``frames`` for ``layer``'s next chunk; return what it kept in the previous one (None at first)."""
        previous = self._kept.get(layer)
        self._kept[layer] = frames.clone()  # a copy, so the chunk's whole tensor can be freed
        return previous

    def causal_conv(self, conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` over ``x`` [B, C, t, H, W] with the frames before ``x`` (zeros before the clip) prepended."""
        context = conv.kernel_size[0] - 1
        if context == 0:
            return conv(x)
        past = self._kept.get(conv)
        if past is None:
            past = x.new_zeros(*x.shape[:2], context, *x.shape[3:])
        x = torch.cat([past, x], dim=2)                       # [B, C, context + t, H, W]
        self.carry(conv, x[:, :, -context:])
        return conv(x)


def causal_conv3d(ops, in_dim: int, out_dim: int, kernel) -> nn.Conv3d:
    """A 3D conv padded in space only ("same" size); its time padding comes from :meth:`CausalCache.causal_conv`."""
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    return ops.Conv3d(in_dim, out_dim, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))


def run_causal(layers: nn.Sequential, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
    """Apply ``layers`` in order, the 3D convs through the cache."""
    for layer in layers:
        x = cache.causal_conv(layer, x) if isinstance(layer, nn.Conv3d) else layer(x)
    return x


# ---------------------------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma over the channel dimension (dim 1), normalised in float32.

    ``gamma`` is [dim, 1, 1] for images (the attention block's [B*T, C, H, W]) or [dim, 1, 1, 1] for videos."""

    def __init__(self, dim: int, images: bool):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1).to(x.dtype) * self.scale * self.gamma.to(x.dtype)


class ResidualBlock(nn.Module):
    """norm, SiLU, causal conv 3x3x3, norm, SiLU, causal conv 3x3x3, plus a 1x1x1 conv shortcut when the width
    changes. ``residual`` keeps the reference's indices (0, 2, 3, 6 hold the weights)."""

    def __init__(self, in_dim: int, out_dim: int, ops):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), causal_conv3d(ops, in_dim, out_dim, 3),
            RMSNorm(out_dim, images=False), nn.SiLU(),
            nn.Identity(),  # dropout while training
            causal_conv3d(ops, out_dim, out_dim, 3),
        )
        self.shortcut = causal_conv3d(ops, in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        return run_causal(self.residual, x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention among the pixels of each frame (no mixing across frames), with a residual."""

    def __init__(self, dim: int, ops):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = ops.Conv2d(dim, dim * 3, 1)
        self.proj = ops.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: Optional[CausalCache] = None) -> torch.Tensor:
        t, h = x.shape[2], x.shape[3]
        y = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        q, k, v = rearrange(self.to_qkv(y), "n (three c) h w -> three n (h w) c", three=3)
        y = F.scaled_dot_product_attention(q, k, v)          # [B*T, H*W, C]
        y = self.proj(rearrange(y, "n (h w) c -> n c h w", h=h))
        return rearrange(y, "(b t) c h w -> b c t h w", t=t) + x


class Resample(nn.Module):
    """2x spatial down- or upsampling of every frame, optionally with 2x in time (see the module docstring).

    ``resample`` is (pad or upsample, conv) as in the reference, so its conv is ``resample.1``; the temporal
    conv is ``time_conv``. Upsampling convs output ``out_dim`` channels (Wan 2.1 halves them)."""

    def __init__(self, dim: int, mode: str, ops, out_dim: Optional[int] = None):
        super().__init__()
        self.mode = mode
        if mode.startswith("downsample"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), ops.Conv2d(dim, dim, 3, stride=2))
        else:
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          ops.Conv2d(dim, out_dim or dim, 3, padding=1))
        if mode == "downsample3d":
            self.time_conv = ops.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
        elif mode == "upsample3d":
            self.time_conv = causal_conv3d(ops, dim, dim * 2, (3, 1, 1))

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        # temporal upsampling: each frame becomes two (the first latent frame stays one)
        if self.mode == "upsample3d" and not cache.first_chunk:
            x = cache.causal_conv(self.time_conv, x)                          # [B, 2C, t, H, W]
            x = rearrange(x, "b (two c) t h w -> b c (t two) h w", two=2)     # [B, C, 2t, H, W]

        # spatial resampling, frame by frame
        t = x.shape[2]
        x = self.resample(rearrange(x, "b c t h w -> (b t) c h w"))
        x = rearrange(x, "(b t) c h w -> b c t h w", t=t)

        # temporal downsampling: stride-2 conv over the chunk with the previous chunk's last frame in front
        if self.mode == "downsample3d":
            previous = cache.carry(self, x[:, :, -1:])
            if previous is not None:                                          # frame 0 passes through
                x = self.time_conv(torch.cat([previous, x], dim=2))
        return x


class AvgDown3D(nn.Module):
    """Wan 2.2's parameter-free downsampling shortcut: each (time x 2 x 2) cell is unfolded into channels, and
    groups of those channels are averaged down to ``out_dim``. Time is zero-padded in front to whole cells."""

    def __init__(self, out_dim: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_dim, self.factor_t, self.factor_s = out_dim, factor_t, factor_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % self.factor_t, 0))
        x = rearrange(x, "b c (t ft) (h fh) (w fw) -> b (c ft fh fw) t h w",
                      ft=self.factor_t, fh=self.factor_s, fw=self.factor_s)
        return reduce(x, "b (o g) t h w -> b o t h w", "mean", o=self.out_dim)


class DupUp3D(nn.Module):
    """Wan 2.2's parameter-free upsampling shortcut, the inverse of :class:`AvgDown3D`: channels are repeated and
    folded out into (time x 2 x 2) cells. The first chunk keeps only the last frame of its time cells (the main
    path turns the first latent frame into one frame)."""

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_dim, self.factor_t, self.factor_s = out_dim, factor_t, factor_s
        self.repeats = out_dim * factor_t * factor_s * factor_s // in_dim

    def forward(self, x: torch.Tensor, first_chunk: bool) -> torch.Tensor:
        x = x.repeat_interleave(self.repeats, dim=1)
        x = rearrange(x, "b (c ft fh fw) t h w -> b c (t ft) (h fh) (w fw)",
                      ft=self.factor_t, fh=self.factor_s, fw=self.factor_s)
        return x[:, :, self.factor_t - 1:] if first_chunk else x


class DownBlock(nn.Module):
    """Wan 2.2 encoder level: residual blocks and a downsample (``downsamples``), plus an averaging shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, down: bool, ops):
        super().__init__()
        self.avg_shortcut = AvgDown3D(out_dim, 2 if temporal else 1, 2 if down else 1)
        layers = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, ops) for i in range(num_res_blocks)]
        if down:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d", ops))
        self.downsamples = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        shortcut = self.avg_shortcut(x)
        for layer in self.downsamples:
            x = layer(x, cache)
        return x + shortcut


class UpBlock(nn.Module):
    """Wan 2.2 decoder level: residual blocks and an upsample (``upsamples``), plus a duplicating shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, up: bool, ops):
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temporal else 1, 2) if up else None
        layers = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, ops) for i in range(num_res_blocks)]
        if up:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", ops))
        self.upsamples = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        shortcut = None if self.avg_shortcut is None else self.avg_shortcut(x, cache.first_chunk)
        for layer in self.upsamples:
            x = layer(x, cache)
        return x if shortcut is None else x + shortcut


def middle_blocks(dim: int, ops) -> nn.ModuleList:
    return nn.ModuleList([ResidualBlock(dim, dim, ops), AttentionBlock(dim, ops), ResidualBlock(dim, dim, ops)])


def head(dim: int, out_dim: int, ops) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim, images=False), nn.SiLU(), causal_conv3d(ops, dim, out_dim, 3))


class Encoder3d(nn.Module):
    """(patches of) pixels -> 2 * z_dim channels (mean and log-variance), one time chunk per call."""

    def __init__(self, config: WanVAEConfig, ops):
        super().__init__()
        dims = [config.base_dim * m for m in (1, *config.dim_mult)]
        last = len(config.dim_mult) - 1
        self.conv1 = causal_conv3d(ops, 3 * config.patch_size ** 2, dims[0], 3)
        blocks: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            temporal = level < last and config.temporal_downsample[level]
            if config.residual:
                blocks.append(DownBlock(in_dim, out_dim, config.num_res_blocks, temporal, level < last, ops))
                continue
            for i in range(config.num_res_blocks):
                blocks.append(ResidualBlock(in_dim if i == 0 else out_dim, out_dim, ops))
            if level < last:
                blocks.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d", ops))
        self.downsamples = nn.ModuleList(blocks)
        self.middle = middle_blocks(dims[-1], ops)
        self.head = head(dims[-1], 2 * config.z_dim, ops)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = cache.causal_conv(self.conv1, x)
        for block in self.downsamples:
            x = block(x, cache)
        for block in self.middle:
            x = block(x, cache)
        return run_causal(self.head, x, cache)


class Decoder3d(nn.Module):
    """z_dim channels -> (patches of) pixels, one latent frame per call."""

    def __init__(self, config: WanVAEConfig, ops):
        super().__init__()
        mult = config.dim_mult
        dims = [config.decoder_base_dim * m for m in (mult[-1], *mult[::-1])]
        temporal_upsample = config.temporal_downsample[::-1]
        last = len(mult) - 1
        self.conv1 = causal_conv3d(ops, config.z_dim, dims[0], 3)
        self.middle = middle_blocks(dims[0], ops)
        blocks: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            temporal = level < last and temporal_upsample[level]
            if config.residual:
                blocks.append(UpBlock(in_dim, out_dim, config.num_res_blocks + 1, temporal, level < last, ops))
                continue
            if level > 0:
                in_dim //= 2  # the previous level's upsample halved the channels
            for i in range(config.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim if i == 0 else out_dim, out_dim, ops))
            if level < last:
                blocks.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", ops, out_dim // 2))
        self.upsamples = nn.ModuleList(blocks)
        self.head = head(dims[-1], 3 * config.patch_size ** 2, ops)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = cache.causal_conv(self.conv1, x)
        for block in self.middle:
            x = block(x, cache)
        for block in self.upsamples:
            x = block(x, cache)
        return run_causal(self.head, x, cache)


# ---------------------------------------------------------------------------------------------------------------
# The VAE


class WanVAE(nn.Module):
    """A Wan 2.1 / 2.2 VAE: ``encode`` pixels to normalised latents, ``decode`` them back (see the module doc).

    ``compute_dtype`` is the dtype of the computation (inputs are cast to it; weights are cast layer by layer).
    ``tile_size`` (pixels, None = off) and ``tile_overlap`` of encode and decode turn on overlapping spatial
    tiles; both are rounded down to multiples of the spatial factor.
    """

    def __init__(self, config: WanVAEConfig, ops=default_ops):
        super().__init__()
        self.config = config
        self.compute_dtype = torch.float32
        self.encoder = Encoder3d(config, ops)
        self.conv1 = causal_conv3d(ops, 2 * config.z_dim, 2 * config.z_dim, 1)   # -> (mean, log-variance)
        self.conv2 = causal_conv3d(ops, config.z_dim, config.z_dim, 1)
        self.decoder = Decoder3d(config, ops)

    @property
    def latent_channels(self) -> int:
        return self.config.z_dim

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def name(self) -> str:
        return f"the Wan {self.config.version} VAE"

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, tile_size: Optional[int] = None, tile_overlap: int = 64) -> torch.Tensor:
        """Pixels [B, 3, 1 + 4k, H, W] in [-1, 1] -> normalised latents [B, z, 1 + k, H / f, W / f] (the
        posterior mean, (mu - mean) / std)."""
        self._check_pixels(pixels)
        f = self.spatial_factor
        grid = (pixels.shape[3] // f, pixels.shape[4] // f)
        mu = self._over_tiles(self._encode_clip, pixels.to(self.compute_dtype), grid, in_cell=f, out_cell=1,
                              tile_size=tile_size, tile_overlap=tile_overlap)
        mean, std = self._latent_stats(mu)
        return (mu - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, tile_size: Optional[int] = None, tile_overlap: int = 64) -> torch.Tensor:
        """Normalised latents [B, z, 1 + k, h, w] -> pixels [B, 3, 1 + 4k, h * f, w * f] in [-1, 1]."""
        self._check_latents(latents)
        z = latents.to(self.compute_dtype)
        mean, std = self._latent_stats(z)
        z = z * std + mean
        pixels = self._over_tiles(self._decode_clip, z, tuple(z.shape[3:]), in_cell=1, out_cell=self.spatial_factor,
                                  tile_size=tile_size, tile_overlap=tile_overlap)
        return pixels.clamp_(-1.0, 1.0)

    # -- whole clips, chunked over time

    def _encode_clip(self, pixels: torch.Tensor) -> torch.Tensor:
        """The posterior mean of a clip: frame 0, then temporal_factor frames at a time, through one cache."""
        p, step = self.config.patch_size, self.temporal_factor
        cache = CausalCache()
        means = []
        for start in range(0, pixels.shape[2], step):
            chunk = pixels[:, :, :1] if start == 0 else pixels[:, :, start - step + 1:start + 1]
            chunk = rearrange(chunk, "b c t (h q) (w r) -> b (c r q) t h w", q=p, r=p)  # 2.2: [B, 12, t, H/2, W/2]
            mu, _log_var = self.conv1(self.encoder(chunk, cache)).chunk(2, dim=1)
            means.append(mu)
            cache.next_chunk()
        return torch.cat(means, dim=2)

    def _decode_clip(self, z: torch.Tensor) -> torch.Tensor:
        """The pixels of de-normalised latents, one latent frame at a time through one cache, written into one
        output tensor (frame 0 gives 1 frame, every later latent frame temporal_factor frames)."""
        p = self.config.patch_size
        cache = CausalCache()
        pixels, start = None, 0
        for index in range(z.shape[2]):
            frames = self.decoder(self.conv2(z[:, :, index:index + 1]), cache)
            frames = rearrange(frames, "b (c r q) t h w -> b c t (h q) (w r)", q=p, r=p)   # 2.2: 12 -> 3 channels
            if pixels is None:
                count = 1 + (z.shape[2] - 1) * self.temporal_factor
                pixels = frames.new_empty(*frames.shape[:2], count, *frames.shape[3:])
            pixels[:, :, start:start + frames.shape[2]] = frames
            start += frames.shape[2]
            cache.next_chunk()
        return pixels

    # -- spatial tiles

    def _over_tiles(self, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grid: tuple[int, int],
                    in_cell: int, out_cell: int, tile_size: Optional[int], tile_overlap: int) -> torch.Tensor:
        """``run`` over overlapping spatial tiles of ``x``, blended linearly in the overlaps (or over all of ``x``
        when tiling is off or one tile covers it). Tiles are laid out on the latent ``grid`` (height, width); a
        grid cell is ``in_cell`` pixels of ``x`` and ``out_cell`` of the result."""
        if tile_size is None:
            return run(x)
        f = self.spatial_factor
        tile, overlap = tile_size // f, tile_overlap // f
        if tile < 1 or not 0 <= overlap < tile:
            raise ValueError(f"tile_size ({tile_size}) must be at least {f} pixels and tile_overlap "
                             f"({tile_overlap}) between 0 and tile_size - {f} for {self.name}")
        rows, cols = tile_starts(grid[0], tile, overlap), tile_starts(grid[1], tile, overlap)
        if len(rows) == 1 and len(cols) == 1:
            return run(x)
        height, width = min(tile, grid[0]), min(tile, grid[1])
        out = weight = None
        for top in rows:
            for left in cols:
                piece = run(x[..., top * in_cell:(top + height) * in_cell, left * in_cell:(left + width) * in_cell])
                if out is None:
                    out = piece.new_zeros(*piece.shape[:3], grid[0] * out_cell, grid[1] * out_cell)
                    weight = piece.new_zeros(grid[0] * out_cell, grid[1] * out_cell)
                blend = torch.outer(
                    blend_ramp(top, height, grid[0], overlap, out_cell, piece),
                    blend_ramp(left, width, grid[1], overlap, out_cell, piece))
                rows_out = slice(top * out_cell, (top + height) * out_cell)
                cols_out = slice(left * out_cell, (left + width) * out_cell)
                out[..., rows_out, cols_out] += piece * blend
                weight[rows_out, cols_out] += blend
        return out / weight

    # -- inputs

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.config.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 5 or not pixels.is_floating_point():
            raise ValueError(f"{self.name} encodes float pixels [B, 3, T, H, W], got a {pixels.dtype} tensor of "
                             f"shape {tuple(pixels.shape)}")
        _, channels, frames, height, width = pixels.shape
        if channels != 3:
            raise ValueError(f"{self.name} encodes RGB pixels [B, 3, T, H, W]; got {channels} channels")
        t, f = self.temporal_factor, self.spatial_factor
        if (frames - 1) % t:
            raise ValueError(f"{self.name} encodes clips of 1 + {t}k frames (1, {1 + t}, {1 + 2 * t}, ...); got "
                             f"{frames} frames")
        if height % f or width % f or height == 0 or width == 0:
            raise ValueError(f"{self.name} needs a width and height that are multiples of {f}; got {width}x{height}"
                             f" (try {max(f, width // f * f)}x{max(f, height // f * f)})")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or not latents.is_floating_point():
            raise ValueError(f"{self.name} decodes float latents [B, {self.latent_channels}, T, h, w], got a "
                             f"{latents.dtype} tensor of shape {tuple(latents.shape)}")
        if latents.shape[1] != self.latent_channels:
            raise ValueError(f"{self.name} decodes latents with {self.latent_channels} channels; got "
                             f"{latents.shape[1]} (latents of another model?)")
        if 0 in latents.shape[2:]:
            raise ValueError(f"{self.name} cannot decode empty latents of shape {tuple(latents.shape)}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``tile`` cells overlapping by ``overlap`` that cover ``length`` cells (the
    last tile is moved back to end at the edge)."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def blend_ramp(start: int, size: int, length: int, overlap: int, cell: int, like: torch.Tensor) -> torch.Tensor:
    """Blend weights along one axis of a tile covering cells [start, start + size) of ``length``, in output units
    (``cell`` per cell): a linear ramp over the overlap on each side that has a neighbour, else 1. Two ramps
    that meet over the same overlap sum to 1."""
    weights = torch.ones(size * cell, dtype=like.dtype, device=like.device)
    ramp_length = overlap * cell
    if ramp_length:
        ramp = torch.arange(1, ramp_length + 1, dtype=like.dtype, device=like.device) / (ramp_length + 1)
        if start > 0:
            weights[:ramp_length] = ramp
        if start + size < length:
            weights[-ramp_length:] = torch.minimum(weights[-ramp_length:], ramp.flip(0))
    return weights


# ---------------------------------------------------------------------------------------------------------------
# Key layouts and config inference

_RESNET_PARTS = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                 "conv_shortcut": "shortcut"}


def diffusers_to_original(keys: Iterable[str]) -> dict[str, str]:
    """The original Wan (ComfyUI) name of each key of a diffusers ``AutoencoderKLWan`` state dict.

    Keys it does not know map to themselves (loading then reports them). The diffusers layout groups blocks per
    level; the original numbers them, which needs the residual blocks per level (read from the keys).

        quant_conv / post_quant_conv                  conv1 / conv2
        {encoder,decoder}.conv_in / norm_out / conv_out     .conv1 / .head.0 / .head.2
        *.mid_block.resnets.0 / attentions.0 / resnets.1     .middle.0 / .middle.1 / .middle.2
        resnet parts norm1, conv1, norm2, conv2, conv_shortcut   residual.0, .2, .3, .6, shortcut
      Wan 2.1 (R residual blocks per encoder level, R + 1 per decoder level):
        encoder.down_blocks.k                          encoder.downsamples.k   (same flat numbering)
        decoder.up_blocks.i.resnets.j                  decoder.upsamples.{i (R + 2) + j}
        decoder.up_blocks.i.upsamplers.0               decoder.upsamples.{i (R + 2) + R + 1}
      Wan 2.2:
        encoder.down_blocks.i.resnets.j / downsampler  encoder.downsamples.i.downsamples.j / .R
        decoder.up_blocks.i.resnets.j / upsampler      decoder.upsamples.i.upsamples.j / .{R + 1}
    """
    keys = list(keys)
    residual = any(key.startswith("encoder.down_blocks.0.resnets.") for key in keys)
    decoder_resnets = {m.group(1) for key in keys if (m := re.match(r"decoder\.up_blocks\.0\.resnets\.(\d+)\.", key))}
    rules = _block_rules(residual, res_blocks=max(len(decoder_resnets) - 1, 0))
    return {key: _original_name(key, rules) for key in keys}


def _original_name(key: str, rules) -> str:
    for pattern, replacement, is_resnet in rules:
        match = re.match(pattern, key)
        if match:
            prefix = replacement(match) if callable(replacement) else match.expand(replacement)
            rest = key[match.end():]
            if is_resnet:
                part, _, leaf = rest.partition(".")
                rest = f"{_RESNET_PARTS[part]}.{leaf}" if part in _RESNET_PARTS else rest
            return prefix + rest
    return key


def _block_rules(residual: bool, res_blocks: int):
    """(pattern, replacement, is a residual block) for :func:`_original_name`, first match wins."""
    stride = res_blocks + 2  # Wan 2.1 decoder level: R + 1 residual blocks and an upsample
    common = [
        (r"quant_conv\.", "conv1.", False),
        (r"post_quant_conv\.", "conv2.", False),
        (r"(encoder|decoder)\.conv_in\.", r"\1.conv1.", False),
        (r"(encoder|decoder)\.norm_out\.", r"\1.head.0.", False),
        (r"(encoder|decoder)\.conv_out\.", r"\1.head.2.", False),
        (r"(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.middle.0.", True),
        (r"(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.middle.1.", False),
        (r"(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.middle.2.", True),
    ]
    if residual:
        return common + [
            (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.downsamples.\1.downsamples.\2.", True),
            (r"encoder\.down_blocks\.(\d+)\.downsampler\.", rf"encoder.downsamples.\1.downsamples.{res_blocks}.",
             False),
            (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", r"decoder.upsamples.\1.upsamples.\2.", True),
            (r"decoder\.up_blocks\.(\d+)\.upsampler\.", rf"decoder.upsamples.\1.upsamples.{res_blocks + 1}.",
             False),
        ]
    return common + [
        (r"encoder\.down_blocks\.(\d+)\.", r"encoder.downsamples.\1.", True),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
         lambda m: f"decoder.upsamples.{int(m.group(1)) * stride + int(m.group(2))}.", True),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
         lambda m: f"decoder.upsamples.{int(m.group(1)) * stride + res_blocks + 1}.", False),
    ]


def original_layout(weights: Weights) -> Weights:
    """``weights`` with a common key prefix stripped and diffusers names renamed to the original ones."""
    prefix = weights.common_prefix(KEY_PREFIXES)
    if prefix:
        weights = weights.without_prefix(prefix)
    if DIFFUSERS_MARKER in weights:
        names = diffusers_to_original(weights)
        weights = weights.renamed(names.get)
    return weights


def detect_wan_vae(weights: Weights) -> Optional[WanVAEConfig]:
    """The config of the Wan VAE in ``weights`` (original or diffusers layout), read from tensor shapes; None when
    it is not a Wan VAE, a :class:`CheckpointError` when it is an incomplete or malformed one. Latent statistics
    are the published ones (:func:`default_latent_stats`)."""
    weights = original_layout(weights)
    if ORIGINAL_MARKER not in weights:
        return None
    residual = "decoder.upsamples.0.upsamples.0.residual.0.gamma" in weights
    levels = _encoder_levels(weights, residual)
    if not levels:
        raise CheckpointError(f"{weights.name}: looks like a Wan VAE but has no encoder levels "
                              f"('encoder.downsamples.*'); the file is incomplete")
    z_dim = _shape(weights, "conv2.weight")[0]
    base_dim, in_channels = _shape(weights, "encoder.conv1.weight")[:2]
    patch_size = math.isqrt(in_channels // 3)
    widths = [width for width, _, _ in levels]
    if in_channels != 3 * patch_size ** 2 or any(width % base_dim for width in widths):
        raise CheckpointError(f"{weights.name}: looks like a Wan VAE but its encoder widths {widths} (base "
                              f"{base_dim}, {in_channels} input channels) fit no Wan VAE")
    dim_mult = tuple(width // base_dim for width in widths)
    version = "2.2" if residual else "2.1"
    mean, std = default_latent_stats(version, z_dim)
    return WanVAEConfig(
        version=version, base_dim=base_dim,
        decoder_base_dim=_shape(weights, "decoder.conv1.weight")[0] // dim_mult[-1],
        z_dim=z_dim, dim_mult=dim_mult, num_res_blocks=levels[0][1],
        temporal_downsample=tuple(temporal for _, _, temporal in levels[:-1]),
        patch_size=patch_size, latents_mean=mean, latents_std=std)


def _encoder_levels(weights: Weights, residual: bool) -> list[tuple[int, int, bool]]:
    """(width, residual blocks, temporal downsample) of each encoder level, from the keys."""
    levels = []
    if residual:  # encoder.downsamples.<level>.downsamples.<j>: residual blocks, then the downsample
        level = 0
        while f"encoder.downsamples.{level}.downsamples.0.residual.2.weight" in weights:
            prefix = f"encoder.downsamples.{level}.downsamples."
            count = 0
            while f"{prefix}{count}.residual.2.weight" in weights:
                count += 1
            width = _shape(weights, f"{prefix}{count - 1}.residual.2.weight")[0]
            levels.append((width, count, f"{prefix}{count}.time_conv.weight" in weights))
            level += 1
        return levels
    index, count, width = 0, 0, 0  # encoder.downsamples.<k>: residual blocks and downsamples in one list
    while True:
        prefix = f"encoder.downsamples.{index}."
        if f"{prefix}residual.2.weight" in weights:
            count, width = count + 1, _shape(weights, f"{prefix}residual.2.weight")[0]
        elif f"{prefix}resample.1.weight" in weights:
            levels.append((width, count, f"{prefix}time_conv.weight" in weights))
            count = 0
        else:
            break
        index += 1
    if count:
        levels.append((width, count, False))
    return levels


def _shape(weights: Weights, key: str) -> tuple[int, ...]:
    if key not in weights:
        raise CheckpointError(f"{weights.name}: looks like a Wan VAE but tensor '{key}' is missing; the file is "
                              f"incomplete or not a Wan 2.1 / 2.2 VAE")
    return tuple(weights.shape(key))


def _looks_like(weights: Weights) -> str:
    """A few words on what a checkpoint that is not a Wan VAE seems to be."""
    keys = list(weights)
    if any("diffusion_model." in key or ".self_attn." in key for key in keys):
        return "it looks like a diffusion model, which goes in models/diffusion_models"
    if any(key.startswith(("encoder.block.", "shared.", "text_model.", "token_embd")) for key in keys):
        return "it looks like a text encoder, which goes in models/text_encoders"
    if any(key.startswith(("decoder.mid.", "decoder.up_blocks.", "decoder.up.")) for key in keys):
        return "it looks like an image VAE (Stable Diffusion / Flux layout), not a Wan video VAE"
    return f"its tensors start {', '.join(sorted(keys)[:3]) or '(none)'}"


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_wan_vae(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 compute_dtype: torch.dtype = torch.float32, ops=default_ops) -> WanVAE:
    """Load a Wan 2.1 / 2.2 VAE from a ComfyUI single file (``wan_2.1_vae.safetensors``,
    ``wan2.2_vae.safetensors``; keys possibly under ``vae.`` or ``first_stage_model.``) or a diffusers folder
    (``vae/`` with ``config.json`` and one or more safetensors files, or the model folder holding it).

    The model is built on the meta device and filled in place with the file's tensors (memory-mapped, in their
    stored dtype), then moved to ``device``. A diffusers ``config.json``'s ``latents_mean`` / ``latents_std``
    are used when they have one value per latent channel; otherwise the published statistics."""
    path = Path(path)
    source = path / "vae" if path.is_dir() and (path / "vae" / "config.json").is_file() else path
    weights = original_layout(open_weights(source))
    config = detect_wan_vae(weights)
    if config is None:
        raise CheckpointError(f"{weights.name} is not a Wan VAE (no '{ORIGINAL_MARKER}'); {_looks_like(weights)}. "
                              f"Wan 2.1 and 2.2 VAEs go in models/vae")
    if source.is_dir() and (source / "config.json").is_file():
        stats = read_json(source / "config.json")
        mean, std = stats.get("latents_mean"), stats.get("latents_std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == config.z_dim:
            config = replace(config, latents_mean=tuple(float(v) for v in mean),
                             latents_std=tuple(float(v) for v in std))
    with torch.device("meta"):
        model = WanVAE(config, ops)
    fill_module(model, weights, weights.name)
    place_module(model, device, compute_dtype)
    model.compute_dtype = compute_dtype
    return model.eval().requires_grad_(False)
