"""Control maps: a depth map and an object mask that say where the object is and what shape it has.

Maps come as frames [N, T, H, W] in 0..1 at any pixel size of the latent's aspect:
- depth: brighter is nearer, empty background black (the convention of MiDaS / Depth Anything outputs);
- mask: 1 on the object, 0 elsewhere; one mask per video frame is a trajectory.
One map (T = 1) holds for every frame; a video takes one map per pixel frame (1 + 4k).

The denoiser sees them at latent size as ``CONTROL_CHANNELS`` channels per latent frame,
``[depth, depth given, mask, mask given]``: a missing map is zeros with its flag 0, so "no depth" never reads as
"nothing there". Latent frame 0 takes pixel frame 0 and latent frame k the mean of pixel frames 4k-3 .. 4k, as
the causal autoencoder groups them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

CONTROL_KINDS = ("depth", "mask")
CONTROL_CHANNELS = 2 * len(CONTROL_KINDS)
ASPECT_TOLERANCE = 0.05


def control_latent(maps: dict[str, Optional[torch.Tensor]], latent_frames: int, latent_height: int,
                   latent_width: int, temporal_factor: int) -> torch.Tensor:
    """Maps {"depth": [N, T, H, W] or None, "mask": ...} -> control channels [N, 4, latent_frames, h, w]."""
    given = {kind: value for kind, value in maps.items() if value is not None}
    unknown = sorted(set(maps) - set(CONTROL_KINDS))
    if unknown:
        raise ValueError(f"unknown control maps {unknown}; choose from {list(CONTROL_KINDS)}")
    if not given:
        raise ValueError("give at least one control map (depth or mask)")
    batch = {value.shape[0] for value in given.values()}
    if len(batch) != 1:
        raise ValueError(f"the control maps hold different numbers of items: {sorted(batch)}")
    (n,) = batch
    channels = torch.zeros(n, CONTROL_CHANNELS, latent_frames, latent_height, latent_width)
    for index, kind in enumerate(CONTROL_KINDS):
        if kind in given:
            channels[:, 2 * index] = _to_latent_frames(given[kind].float(), kind, latent_frames, latent_height,
                                                        latent_width, temporal_factor)
            channels[:, 2 * index + 1] = 1.0
    return channels


def _to_latent_frames(maps: torch.Tensor, kind: str, latent_frames: int, h: int, w: int,
                      temporal_factor: int) -> torch.Tensor:
    n, t, height, width = maps.shape
    if abs(width / height - w / h) > ASPECT_TOLERANCE * (w / h):
        raise ValueError(f"the {kind} map is {width}x{height} but the latent is {w}x{h} latent pixels (aspect "
                         f"{w / h:.2f}); resize or crop the map to the latent's aspect first (e.g. Upscale Image)")
    small = F.interpolate(maps.reshape(n * t, 1, height, width), size=(h, w), mode="area").reshape(n, t, h, w)
    pixel_frames = 1 + (latent_frames - 1) * temporal_factor
    if t == 1:
        return small.expand(n, latent_frames, h, w)
    if t != pixel_frames:
        raise ValueError(f"the {kind} maps have {t} frames; give 1 (for every frame) or one per frame of the "
                         f"{pixel_frames}-frame clip")
    rest = small[:, 1:].reshape(n, latent_frames - 1, temporal_factor, h, w).mean(dim=2)
    return torch.cat([small[:, :1], rest], dim=1)


def depth_image(depth: torch.Tensor, alpha: torch.Tensor, near: float = 1.0, far: float = 0.35) -> torch.Tensor:
    """A depth map as the control takes it from camera-space depth and coverage [N, T, H, W] (toy-world renders):
    per item, the nearest covered point ``near``, the farthest ``far``, linear in depth, times coverage (soft
    edges); the empty background 0."""
    covered = alpha > 0.5
    big = torch.finfo(depth.dtype).max
    nearest = torch.where(covered, depth, big).flatten(1).amin(dim=1).view(-1, 1, 1, 1)
    farthest = torch.where(covered, depth, -big).flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    span = (farthest - nearest).clamp_min(1e-6)
    value = near - (near - far) * ((depth - nearest) / span).clamp(0.0, 1.0)
    return torch.where(alpha > 0, value * alpha, torch.zeros_like(depth))
