"""Quaternion helpers (w, x, y, z order, the order of 3DGS files and ComfyUI's SPLAT)."""
from __future__ import annotations

import torch


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b [..., 4]: the rotation b followed by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] with w >= 0.

    Each of the four candidate formulas (largest of w, x, y, z first) is evaluated and the best-conditioned one
    is kept per matrix (Shepperd's method), so no element is divided by a value near zero.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], dim=-1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                     m[..., 0, 2] + m[..., 2, 0]], dim=-1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                     m[..., 1, 2] + m[..., 2, 1]], dim=-1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m00 - m11 + m22], dim=-1),
    ], dim=-2)  # [..., 4 candidates, 4]; candidate i's own component is 4 q_i^2
    best = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22],
                       dim=-1).argmax(dim=-1)
    chosen = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quaternion = chosen / chosen.norm(dim=-1, keepdim=True)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) [..., 4] -> rotation matrices [..., 3, 3]."""
    w, x, y, z = quaternions.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quaternions.shape[:-1] + (3, 3))



def random_rotations(shape, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly distributed unit quaternions (w, x, y, z): [*shape, 4]."""
    quaternions = torch.randn(*shape, 4, generator=generator)
    return quaternions / quaternions.norm(dim=-1, keepdim=True)


def rotations_from_z(normals: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) turning the +z axis onto each unit normal [N, 3] by the shortest arc."""
    z_axis = torch.zeros_like(normals)
    z_axis[:, 2] = 1.0
    w = 1.0 + normals[:, 2:3]
    xyz = torch.cross(z_axis, normals, dim=-1)
    opposite = w[:, 0] < 1e-6  # normal = -z: any half turn about an axis in the xy plane
    quaternions = torch.cat([w, xyz], dim=-1)
    quaternions[opposite] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=normals.dtype)
    return quaternions / quaternions.norm(dim=-1, keepdim=True)
