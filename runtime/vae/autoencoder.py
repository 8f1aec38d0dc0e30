"""The causal video autoencoder: images, videos and 3D views share one latent space.

A video of T = 1 + 4K frames becomes 1 + K latent frames: the first frame is encoded alone, then each group of
4 frames together. An image is therefore exactly a one-frame video, and a 3D view set is a batch of images.
Two temporal designs share the per-frame 2D trunk (``AutoencoderConfig.temporal``):

``"causal3d"`` (demo model v2): causal convolutions across time at the trunk's resolution, so every frame is
made by the same layers and sees the frames before it, across group boundaries:

    frames [B, 3, T, H, W] -> 2D trunk per frame (downsampling 2^levels) -> features [B, c, T, h, w]
      -> causal (2+1)D residual blocks -> time / 2 -> blocks -> time / 2 -> blocks -> mean, log-variance
    latents [B, z, 1 + K, h, w] -> blocks -> time x 2 -> blocks -> time x 2 -> blocks -> 2D trunk per frame

    causal temporal conv: frame t sees frames t-2, t-1, t (before frame 0, frame 0 repeats)
    time / 2: frames (a, b) = (t, t+1) -> one, with frame 0 paired with itself: 1 + 2m -> 1 + m
    time x 2: frame x_k -> two (one made from x_{k-1} and x_k, then one from x_k), the clip's first frame's first
              dropped: 1 + m -> 1 + 2m

    The time layers start as a key frame every 4 frames and a blend in between: an image passes through them
    unchanged (the residual blocks' time convolutions at zero, time / 2 as b + Q (a - b) / 2 with Q a random
    rotation, time x 2's second frame as x_k), latent frame k holds frame 4k and its group's changes (mixed in by
    Q), and the frames decoded between two latent frames blend them (time x 2's first frame as (x_{k-1} + x_k) / 2).
    Started with random time layers, the autoencoder learned no colour in 750 steps; started as copies, it held
    every group's frames equal (a jump at each group start).

    Decoding in chunks of latent frames (``decode(..., chunk=n)``) carries each temporal layer's last input
    frames from one chunk to the next (the causal cache), and gives the same frames as decoding the whole clip.

``"grouped"`` (the first demo model): latent frame 0 from frame 0; latent frame k from frames 4k-3 .. 4k stacked
on channels; decoding maps latent frame k (with latent frame k - 1 as context) to its 4 frames. Frame groups
are decoded by different layers, which shows as a jump at every group's first frame.

Latents are normalised per channel (``latent_shift``, ``latent_scale``, measured on data after training) so the
diffusion model sees roughly unit-variance latents. Pixels are in [-1, 1] inside the autoencoder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


TEMPORAL_DESIGNS = ("causal3d", "grouped")


@dataclass
class AutoencoderConfig:
    image_channels: int = 3
    latent_channels: int = 16
    channels: tuple = (32, 64, 128, 128)   # trunk width at each resolution; len - 1 = number of 2x downsamplings
    temporal_group: int = 4                # frames per latent frame after the first
    temporal: str = "grouped"              # "causal3d" or "grouped" (see the module docstring)
    temporal_blocks: int = 1               # causal3d: residual blocks at each frame rate
    latent_shift: list = field(default_factory=list)  # per-channel mean of the raw latents (empty = 0)
    latent_scale: list = field(default_factory=list)  # per-channel std of the raw latents (empty = 1)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.temporal not in TEMPORAL_DESIGNS:
            raise ValueError(f"unknown temporal design {self.temporal!r}; choose one of {list(TEMPORAL_DESIGNS)}")
        if self.temporal == "causal3d" and self.temporal_group != 4:
            raise ValueError("the causal3d autoencoder halves time twice: temporal_group must be 4")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip: 1 + (frames - 1) / temporal_group."""
        if frames < 1 or (frames - 1) % self.temporal_group:
            raise ValueError(f"a clip must have 1 + {self.temporal_group}k frames (1, 5, 9, 13, ...), got {frames}")
        return 1 + (frames - 1) // self.temporal_group

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.temporal_group

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AutoencoderConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown autoencoder config keys {unknown}")
        return cls(**data)


class ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class FrameEncoder(nn.Module):
    """One frame [N, 3, H, W] -> features [N, channels[-1], H / f, W / f]."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        widths = config.channels
        self.conv_in = nn.Conv2d(config.image_channels, widths[0], 3, padding=1)
        layers = []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [ResBlock(width_in, width_in), nn.Conv2d(width_in, width_out, 3, stride=2, padding=1)]
        layers.append(ResBlock(widths[-1], widths[-1]))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(self.conv_in(x))


class FrameDecoder(nn.Module):
    """Features [N, channels[-1], h, w] -> one frame [N, 3, h * f, w * f] in [-1, 1] (unclamped)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        widths = config.channels[::-1]
        layers = [ResBlock(widths[0], widths[0])]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in, width_out, 3, padding=1),
                       ResBlock(width_out, width_out)]
        self.layers = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(8, widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], config.image_channels, 3, padding=1)

    def forward(self, x):
        return self.conv_out(F.silu(self.norm_out(self.layers(x))))


class CausalTimeConv(nn.Module):
    """A convolution across time only (3 frames, 1x1 in space) on [B, C, T, h, w], causal: frame t sees frames
    t-2 .. t; before the clip's first frame, the first frame repeats. With a ``cache`` (a dict shared by one chunked
    decode) the last two input frames carry over to the next chunk. Starts at zero (its residual block starts as
    the identity)."""

    KERNEL = 3

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv = nn.Conv3d(channels_in, channels_out, (self.KERNEL, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        return self.conv(with_past_frames(self, x, self.KERNEL - 1, cache))


def with_past_frames(layer: nn.Module, x: torch.Tensor, frames: int, cache: Optional[dict]) -> torch.Tensor:
    """[B, C, T, h, w] -> [B, C, frames + T, h, w]: the ``frames`` frames before the clip put in front, which are
    the first frame repeated, or, in a chunked decode, ``layer``'s last input frames of the chunk before (kept in
    ``cache``)."""
    past = cache.get(layer) if cache is not None else None
    if past is None:
        past = x[:, :, :1].expand(-1, -1, frames, -1, -1)
    padded = torch.cat([past, x], dim=2)
    if cache is not None:
        cache[layer] = padded[:, :, -frames:]
    return padded


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 2D module applied to every frame of [B, C, T, h, w]."""
    b = x.shape[0]
    out = module(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(out, "(b t) c h w -> b c t h w", b=b)


class CausalResBlock(nn.Module):
    """x + time(silu(norm(space(silu(norm(x)))))): a 3x3 convolution in each frame, then a causal one across time;
    the group norms are per frame, so nothing looks ahead."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.space = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.time = CausalTimeConv(channels, channels)

    def forward(self, x: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        h = per_frame(lambda f: self.space(F.silu(self.norm1(f))), x)
        h = per_frame(lambda f: F.silu(self.norm2(f)), h)
        return x + self.time(h, cache)


def random_rotation(channels: int) -> torch.Tensor:
    """A random orthogonal [channels, channels] matrix (from the global generator)."""
    q, r = torch.linalg.qr(torch.randn(channels, channels))
    return q * torch.sign(torch.diagonal(r))


class TimeDownsample(nn.Module):
    """[B, C, 1 + 2m, h, w] -> [B, C, 1 + m, h, w]: frames (a, b) = (2i - 1, 2i) -> one, frame 0 paired with itself.
    Starts as b + Q (a - b) / 2, Q a random rotation: the later frame, with the pair's difference (its motion) mixed
    into other channels; an image (a = b) passes unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.pair = nn.Conv3d(2 * channels, channels, 1)
        eye, rotation = torch.eye(channels), random_rotation(channels)
        with torch.no_grad():
            self.pair.weight.copy_(torch.cat([rotation / 2, eye - rotation / 2], dim=1)[..., None, None, None])
            self.pair.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x[:, :, :1], x], dim=2)
        return self.pair(rearrange(padded, "b c (m two) h w -> b (two c) m h w", two=2))


class TimeUpsample(nn.Module):
    """[B, C, 1 + m, h, w] -> [B, C, 1 + 2m, h, w]: every frame x_k -> two, one made from x_{k-1} and x_k, then one
    from x_k (causal: before the clip's first frame the first frame repeats; with a ``cache`` the last frame
    carries over to the next chunk). Starts as ((x_{k-1} + x_k) / 2, x_k): the frame in between blends its
    neighbours. The clip's first frame keeps only its second (so frame 0 comes from latent frame 0 alone); in a
    chunked decode only the first chunk drops one."""

    def __init__(self, channels: int):
        super().__init__()
        self.split = nn.Conv3d(2 * channels, 2 * channels, 1)      # [x_{k-1}, x_k] -> [between, x_k]
        eye, zero = torch.eye(channels), torch.zeros(channels, channels)
        with torch.no_grad():
            self.split.weight.copy_(torch.cat([torch.cat([eye / 2, eye / 2], dim=1), torch.cat([zero, eye], dim=1)],
                                              dim=0)[..., None, None, None])
            self.split.bias.zero_()

    def forward(self, x: torch.Tensor, cache: Optional[dict] = None, first_chunk: bool = True) -> torch.Tensor:
        previous = with_past_frames(self, x, 1, cache)[:, :, :-1]                 # x_{k-1} for every k
        doubled = rearrange(self.split(torch.cat([previous, x], dim=1)), "b (two c) m h w -> b c (m two) h w", two=2)
        return doubled[:, :, 1:] if first_chunk else doubled


class CausalTemporalEncoder(nn.Module):
    """Trunk features [B, c, T, h, w] -> moments [B, 2z, 1 + (T - 1) / 4, h, w]."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        width, n = config.channels[-1], config.temporal_blocks
        self.stages = nn.ModuleList(nn.ModuleList(CausalResBlock(width) for _ in range(n)) for _ in range(3))
        self.downsamples = nn.ModuleList(TimeDownsample(width) for _ in range(2))
        self.to_moments = nn.Sequential(ResBlock(width, width), nn.Conv2d(width, 2 * config.latent_channels, 3,
                                                                          padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, blocks in enumerate(self.stages):
            if index:
                x = self.downsamples[index - 1](x)
            for block in blocks:
                x = block(x)
        return per_frame(self.to_moments, x)


class CausalTemporalDecoder(nn.Module):
    """Latents [B, z, 1 + K, h, w] -> trunk features [B, c, 1 + 4K, h, w], in chunks with a causal cache."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        width, n = config.channels[-1], config.temporal_blocks
        self.from_latents = nn.Sequential(nn.Conv2d(config.latent_channels, width, 3, padding=1),
                                          ResBlock(width, width))
        self.stages = nn.ModuleList(nn.ModuleList(CausalResBlock(width) for _ in range(n)) for _ in range(3))
        self.upsamples = nn.ModuleList(TimeUpsample(width) for _ in range(2))

    def forward(self, raw: torch.Tensor, cache: Optional[dict] = None, first_chunk: bool = True) -> torch.Tensor:
        x = per_frame(self.from_latents, raw)
        for index, blocks in enumerate(self.stages):
            if index:
                x = self.upsamples[index - 1](x, cache, first_chunk)
            for block in blocks:
                x = block(x, cache)
        return x


class CausalVideoAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        width, z, group = config.channels[-1], config.latent_channels, config.temporal_group
        self.frame_encoder = FrameEncoder(config)
        if config.temporal == "causal3d":
            self.temporal_encoder = CausalTemporalEncoder(config)
            self.temporal_decoder = CausalTemporalDecoder(config)
        else:
            self.first_to_latent = nn.Sequential(ResBlock(width, width), nn.Conv2d(width, 2 * z, 3, padding=1))
            self.group_to_latent = nn.Sequential(nn.Conv2d(group * width, width, 1), ResBlock(width, width),
                                                 nn.Conv2d(width, 2 * z, 3, padding=1))
            self.latent_to_first = nn.Sequential(nn.Conv2d(z, width, 3, padding=1), ResBlock(width, width))
            self.latent_to_group = nn.Sequential(nn.Conv2d(2 * z, width, 3, padding=1), ResBlock(width, width),
                                                 nn.Conv2d(width, group * width, 1))
        self.frame_decoder = FrameDecoder(config)
        shift = torch.tensor(config.latent_shift or [0.0] * z, dtype=torch.float32)
        scale = torch.tensor(config.latent_scale or [1.0] * z, dtype=torch.float32)
        self.register_buffer("latent_shift", shift.view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("latent_scale", scale.view(1, z, 1, 1, 1), persistent=False)

    def decoder_modules(self) -> dict:
        """The modules that map latents to frames (trainable apart from the encoder)."""
        if self.config.temporal == "causal3d":
            return {"temporal_decoder": self.temporal_decoder, "frame_decoder": self.frame_decoder}
        return {"latent_to_first": self.latent_to_first, "latent_to_group": self.latent_to_group,
                "frame_decoder": self.frame_decoder}

    def set_latent_statistics(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Record the per-channel mean and std of raw latents; :meth:`encode` then returns normalised latents."""
        self.config.latent_shift = [float(v) for v in shift]
        self.config.latent_scale = [float(v) for v in scale]
        self.latent_shift.copy_(shift.view_as(self.latent_shift))
        self.latent_scale.copy_(scale.view_as(self.latent_scale))

    def encode_distribution(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, 3, T, H, W] in [-1, 1] -> raw (unnormalised) mean and log-variance [B, z, 1 + K, h, w]."""
        b, c, t, h, w = frames.shape
        latent_frames = self.config.latent_frames(t)
        factor = self.config.spatial_factor
        if h % factor or w % factor:
            raise ValueError(f"frame size {h}x{w} must be divisible by {factor}")
        features = per_frame(self.frame_encoder, frames)                       # [B, width, T, h, w]
        if self.config.temporal == "causal3d":
            moments = self.temporal_encoder(features)
        else:
            moments = self._grouped_moments(features, latent_frames)
        mean, log_variance = moments.chunk(2, dim=1)
        return mean, log_variance.clamp(-30.0, 20.0)

    def _grouped_moments(self, features: torch.Tensor, latent_frames: int) -> torch.Tensor:
        b, group = features.shape[0], self.config.temporal_group
        moments = self.first_to_latent(features[:, :, 0]).unsqueeze(2)  # [B, 2z, 1, h, w]
        if latent_frames > 1:
            groups = rearrange(features[:, :, 1:], "b c (k g) h w -> (b k) (g c) h w", g=group)
            rest = rearrange(self.group_to_latent(groups), "(b k) c h w -> b c k h w", b=b)
            moments = torch.cat([moments, rest], dim=2)
        return moments

    def encode(self, frames: torch.Tensor, generator: torch.Generator | None = None,
               sample: bool = False) -> torch.Tensor:
        """frames [B, 3, T, H, W] in [-1, 1] -> normalised latents [B, z, 1 + K, h, w] (the posterior mean,
        or a sample of it)."""
        mean, log_variance = self.encode_distribution(frames)
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + torch.exp(0.5 * log_variance) * noise
        return self.normalize(mean)

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.latent_shift) / self.latent_scale

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latent_scale + self.latent_shift

    def decode(self, latents: torch.Tensor, chunk: Optional[int] = None) -> torch.Tensor:
        """Normalised latents [B, z, 1 + K, h, w] -> frames [B, 3, 1 + 4K, H, W] in [-1, 1] (unclamped).
        ``chunk`` latent frames at a time (causal3d), with the same result, bounds the decoder's memory."""
        return self.decode_raw(self.denormalize(latents), chunk)

    def decode_raw(self, raw: torch.Tensor, chunk: Optional[int] = None) -> torch.Tensor:
        if self.config.temporal == "causal3d":
            cache, pieces = {}, []
            step = chunk or raw.shape[2]
            for start in range(0, raw.shape[2], step):
                features = self.temporal_decoder(raw[:, :, start:start + step], cache, first_chunk=start == 0)
                pieces.append(per_frame(self.frame_decoder, features))
            return torch.cat(pieces, dim=2)
        return per_frame(self.frame_decoder, self._grouped_features(raw))

    def _grouped_features(self, raw: torch.Tensor) -> torch.Tensor:
        b = raw.shape[0]
        frames = rearrange(raw, "b z k h w -> b k z h w")
        features = [self.latent_to_first(frames[:, 0]).unsqueeze(1)]               # [B, 1, width, h, w]
        if frames.shape[1] > 1:
            pairs = torch.cat([frames[:, 1:], frames[:, :-1]], dim=2)             # each latent frame + the one before
            grouped = self.latent_to_group(rearrange(pairs, "b k z h w -> (b k) z h w"))
            features.append(rearrange(grouped, "(b k) (g c) h w -> b (k g) c h w", b=b, g=self.config.temporal_group))
        return rearrange(torch.cat(features, dim=1), "b t c h w -> b c t h w")         # [B, width, T, h, w]
