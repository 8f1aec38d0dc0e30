"""3D rotary position embedding over (frame-or-view, y, x).

The head dimension D is split ¼ / ⅜ / ⅜ between the three axes (D = 64 -> 16 / 24 / 24). Each axis rotates
its share of the head's channel pairs by ``position * theta ** (-2i / D_axis)``. Positions are plain indices, so
any number of frames, height and width works, and the score between a query and a key depends only on their
offset along each axis.

Channel pairs are adjacent, (2i, 2i + 1): (x1, x2) -> (x1 cos a - x2 sin a, x1 sin a + x2 cos a). Everything is
float32 and real-valued (no float64, no complex numbers), so it runs on every device, Apple's MPS included.
Other splits of the head (Wan's) are passed as ``dims``.
"""
from __future__ import annotations

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels given to the (frame, y, x) axes: ¼, ⅜, ⅜ of ``head_dim`` (a multiple of 16)."""
    if head_dim % 16 != 0:
        raise ValueError(f"3D RoPE needs a head dimension divisible by 16, got {head_dim}")
    return head_dim // 4, head_dim * 3 // 8, head_dim * 3 // 8


def grid_positions(frames: int, height: int, width: int, device=None) -> torch.Tensor:
    """Integer (frame, y, x) positions of a token grid in frame-major order, [frames * height * width, 3]."""
    f, y, x = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                             torch.arange(width, device=device), indexing="ij")
    return torch.stack([f.reshape(-1), y.reshape(-1), x.reshape(-1)], dim=-1)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0,
                dims: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Rotation angle of every channel pair at every position, [N, head_dim / 2]; ``dims`` are the channels of
    the (frame, y, x) axes (default :func:`axis_dims`)."""
    angles = []
    for axis, dim in enumerate(dims or axis_dims(head_dim)):
        exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim
        frequencies = theta ** (-exponents)
        angles.append(positions[:, axis, None].float() * frequencies[None, :])
    return torch.cat(angles, dim=-1)


def rope_rotations(positions: torch.Tensor, head_dim: int, theta: float = 10000.0,
                   dims: tuple[int, int, int] | None = None) -> torch.Tensor:
    """cos and sin of every pair's angle, [2, N, head_dim / 2] (float32), ready for :func:`apply_rope`."""
    angles = rope_angles(positions, head_dim, theta, dims)
    return torch.stack([torch.cos(angles), torch.sin(angles)])


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [..., N, D]: channel pair (2i, 2i + 1) of token n by the angle of rotations[:, n, i]."""
    cos, sin = rotations
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).to(x.dtype)
