"""The splat decoder: the latents of a view set -> one Gaussian splat (the "splatter image" idea).

Each view's latent is decoded, like an image, into one Gaussian per output pixel, described in that view's
camera frame:

    depth    = near + (far - near) * sigmoid(.)       camera-space z along the pixel's ray
    colour   = sigmoid(.)                              sRGB 0..1, stored as SH band 0
    opacity  = sigmoid(.)
    scales   = footprint * (min + (max - min) * sigmoid(.)),  footprint = depth / fx, one pixel at that depth
    rotation = normalise((1, 0, 0, 0) + .)             in the camera frame, then turned into the world frame

Positions come from ``Cameras.unproject(depth)``; the Gaussians of all views together form one splat in the
world frame of ``camera.py``. Predicting in camera frames makes the decoder independent of where a view is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from einops import rearrange

from ..gaussians.camera import Cameras
from ..gaussians.rotations import matrix_to_quaternion, quaternion_multiply
from ..gaussians.sh import rgb_to_sh0
from ..gaussians.splats import Splats
from .autoencoder import AutoencoderConfig, FrameDecoder, ResBlock

# Output channels per pixel: depth 1, colour 3, opacity 1, scales 3, rotation 4.
PARAMETER_CHANNELS = 12


@dataclass
class SplatDecoderConfig:
    latent_channels: int = 16
    channels: tuple = (32, 64, 128, 128)  # widths per resolution, fine to coarse (as the autoencoder's)
    near: float = 0.5                     # depth range of the predicted surfaces (camera-space z)
    far: float = 3.5
    min_scale: float = 0.05               # scales in units of the pixel footprint
    max_scale: float = 3.0

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SplatDecoderConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown splat decoder config keys {unknown}")
        return cls(**data)


class SplatDecoder(nn.Module):
    def __init__(self, config: SplatDecoderConfig):
        super().__init__()
        self.config = config
        width = config.channels[-1]
        self.latent_in = nn.Sequential(nn.Conv2d(config.latent_channels, width, 3, padding=1), ResBlock(width, width))
        self.decoder = FrameDecoder(AutoencoderConfig(image_channels=PARAMETER_CHANNELS, channels=config.channels))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised view latents [B, z, V, h, w] -> raw per-pixel parameters [B, V, 12, H, W]."""
        raw = self.decoder(self.latent_in(rearrange(latents, "b z v h w -> (b v) z h w")))
        return rearrange(raw, "(b v) c h w -> b v c h w", b=latents.shape[0])

    def gaussians(self, raw: torch.Tensor, cameras: Cameras) -> dict:
        """Per-pixel Gaussians in the world frame, each [B, V, H, W, ...]: positions 3, colors 3 (sRGB),
        opacities 1, scales 3, rotations 4, depth 1 (camera z)."""
        config = self.config
        b, v, _, height, width = raw.shape
        cameras = cameras.resized(width, height).to(raw.device, raw.dtype)
        raw = rearrange(raw, "b v c h w -> b v h w c")
        d, color, opacity, scale, rotation = raw.split([1, 3, 1, 3, 4], dim=-1)
        depth = config.near + (config.far - config.near) * torch.sigmoid(d)
        footprint = depth / cameras.fx.view(1, v, 1, 1, 1)
        scales = footprint * (config.min_scale + (config.max_scale - config.min_scale) * torch.sigmoid(scale))
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], device=raw.device, dtype=raw.dtype)
        rotation = rotation + identity
        rotation = rotation / rotation.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        camera_to_world = matrix_to_quaternion(cameras.rotation.transpose(1, 2))  # [V, 4]
        rotation = quaternion_multiply(camera_to_world.view(1, v, 1, 1, 4), rotation)
        return {
            "positions": cameras.unproject(depth.squeeze(-1)),
            "colors": torch.sigmoid(color),
            "opacities": torch.sigmoid(opacity),
            "scales": scales,
            "rotations": rotation,
            "depth": depth.squeeze(-1),
        }

    def decode(self, latents: torch.Tensor, cameras: Cameras, min_opacity: float = 0.0) -> Splats:
        """View latents [B, z, V, h, w] and the rig's V cameras -> one splat per batch item.

        Gaussians with opacity below ``min_opacity`` are dropped; items then differ in size, so shorter ones are
        padded with transparent Gaussians and ``counts`` holds each item's real number.
        """
        return self.keep_opaque(self.gaussians(self(latents), cameras), latents.shape[0], min_opacity)

    @staticmethod
    def keep_opaque(per_pixel: dict, b: int, min_opacity: float) -> Splats:
        """The per-pixel Gaussians of ``b`` items (from :meth:`gaussians`) as one splat per item, without those
        fainter than ``min_opacity``."""
        flat = {key: value.reshape(b, -1, value.shape[-1]) for key, value in per_pixel.items() if key != "depth"}
        keep = flat["opacities"][..., 0] >= min_opacity
        counts = keep.sum(dim=1)
        size = max(1, int(counts.max()))
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :size]  # kept Gaussians first

        def take(tensor):
            return torch.gather(tensor, 1, order[..., None].expand(-1, -1, tensor.shape[-1]))

        opacities = take(flat["opacities"]) * (torch.arange(size, device=counts.device)[None, :, None]
                                               < counts[:, None, None])
        return Splats(positions=take(flat["positions"]), scales=take(flat["scales"]),
                      rotations=take(flat["rotations"]), opacities=opacities,
                      sh=rgb_to_sh0(take(flat["colors"])).unsqueeze(2), counts=counts)
