"""The causal video autoencoder: images, videos and 3D views share one latent space.

A video of T = 1 + 4K frames becomes 1 + K latent frames: the first frame is encoded alone, then each group of
4 frames together. An image is therefore exactly a one-frame video, and a 3D view set is a batch of images.

    frames [B, 3, T, H, W]
      -> per-frame 2D conv trunk, downsampling 2^levels  -> features [B, T, c, h, w]
      -> latent frame 0 from frame 0; latent frame k from frames 4k-3 .. 4k   (causal: nothing looks ahead)
      -> mean, log-variance [B, z, 1 + K, h, w]         (KL-regularised)
    decode: latent frame 0 -> frame 0; latent frame k (with frame k - 1 as causal context) -> its 4 frames,
            then the per-frame 2D conv trunk upsamples back to pixels.

Latents are normalised per channel (``latent_shift``, ``latent_scale``, measured on data after training) so the
diffusion model sees roughly unit-variance latents. Pixels are in [-1, 1] inside the autoencoder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


@dataclass
class AutoencoderConfig:
    image_channels: int = 3
    latent_channels: int = 16
    channels: tuple = (32, 64, 128, 128)   # trunk width at each resolution; len - 1 = number of 2x downsamplings
    temporal_group: int = 4                # frames per latent frame after the first
    latent_shift: list = field(default_factory=list)  # per-channel mean of the raw latents (empty = 0)
    latent_scale: list = field(default_factory=list)  # per-channel std of the raw latents (empty = 1)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

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


class CausalVideoAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        width, z, group = config.channels[-1], config.latent_channels, config.temporal_group
        self.frame_encoder = FrameEncoder(config)
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
        group = self.config.temporal_group
        features = self.frame_encoder(rearrange(frames, "b c t h w -> (b t) c h w"))
        features = rearrange(features, "(b t) c h w -> b t c h w", b=b)
        moments = self.first_to_latent(features[:, 0]).unsqueeze(1)  # [B, 1, 2z, h, w]
        if latent_frames > 1:
            groups = rearrange(features[:, 1:], "b (k g) c h w -> (b k) (g c) h w", g=group)
            rest = rearrange(self.group_to_latent(groups), "(b k) c h w -> b k c h w", b=b)
            moments = torch.cat([moments, rest], dim=1)
        mean, log_variance = rearrange(moments, "b k c h w -> b c k h w").chunk(2, dim=1)
        return mean, log_variance.clamp(-30.0, 20.0)

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

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, z, 1 + K, h, w] -> frames [B, 3, 1 + 4K, H, W] in [-1, 1] (unclamped)."""
        return self.decode_raw(self.denormalize(latents))

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        b = raw.shape[0]
        frames = rearrange(raw, "b z k h w -> b k z h w")
        features = [self.latent_to_first(frames[:, 0]).unsqueeze(1)]               # [B, 1, width, h, w]
        if frames.shape[1] > 1:
            pairs = torch.cat([frames[:, 1:], frames[:, :-1]], dim=2)             # each latent frame + the one before
            grouped = self.latent_to_group(rearrange(pairs, "b k z h w -> (b k) z h w"))
            features.append(rearrange(grouped, "(b k) (g c) h w -> b (k g) c h w", b=b, g=self.config.temporal_group))
        features = torch.cat(features, dim=1)                                         # [B, T, width, h, w]
        pixels = self.frame_decoder(rearrange(features, "b t c h w -> (b t) c h w"))
        return rearrange(pixels, "(b t) c h w -> b c t h w", b=b)
