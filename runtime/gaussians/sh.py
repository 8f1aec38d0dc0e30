"""Real spherical harmonics of degrees 0-3: the view-dependent colour of a Gaussian.

The basis, signs and constants are those of 3DGS (graphdeco-inria ``utils/sh_utils.py``), so coefficients read
from any 3DGS PLY mean the same colour here. Coefficients are stored ``[..., K, 3]`` with ``K = (degree + 1)^2``;
band 0 alone is the base colour ``rgb = 0.5 + C0 * f_dc``.
"""
from __future__ import annotations

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)

COEFFICIENTS_FOR_DEGREE = {0: 1, 1: 4, 2: 9, 3: 16}


def sh_degree_of(num_coefficients: int) -> int:
    """The degree whose basis has ``num_coefficients`` functions (1, 4, 9 or 16)."""
    for degree, count in COEFFICIENTS_FOR_DEGREE.items():
        if count == num_coefficients:
            return degree
    raise ValueError(f"{num_coefficients} SH coefficients is not a full basis of degree 0-3 (1, 4, 9 or 16)")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """Base colour in 0..1 -> band-0 coefficient (3DGS ``RGB2SH``)."""
    return (rgb - 0.5) / C0


def sh0_to_rgb(f_dc: torch.Tensor) -> torch.Tensor:
    """Band-0 coefficient -> base colour (3DGS ``SH2RGB``; not clamped)."""
    return f_dc * C0 + 0.5


def eval_sh(sh: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Colour offsets ``sum_k sh_k * Y_k(d)`` for unit view directions: sh [..., K, 3], directions [..., 3].

    A renderer adds 0.5 and clamps at 0 (3DGS). ``directions`` point from the camera centre to the Gaussian.
    """
    degree = sh_degree_of(sh.shape[-2])
    result = C0 * sh[..., 0, :]
    if degree == 0:
        return result
    x, y, z = (directions[..., i:i + 1] for i in range(3))
    result = result - C1 * y * sh[..., 1, :] + C1 * z * sh[..., 2, :] - C1 * x * sh[..., 3, :]
    if degree == 1:
        return result
    xx, yy, zz = x * x, y * y, z * z
    xy, yz, xz = x * y, y * z, x * z
    result = (result
              + C2[0] * xy * sh[..., 4, :]
              + C2[1] * yz * sh[..., 5, :]
              + C2[2] * (2.0 * zz - xx - yy) * sh[..., 6, :]
              + C2[3] * xz * sh[..., 7, :]
              + C2[4] * (xx - yy) * sh[..., 8, :])
    if degree == 2:
        return result
    return (result
            + C3[0] * y * (3.0 * xx - yy) * sh[..., 9, :]
            + C3[1] * xy * z * sh[..., 10, :]
            + C3[2] * y * (4.0 * zz - xx - yy) * sh[..., 11, :]
            + C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh[..., 12, :]
            + C3[4] * x * (4.0 * zz - xx - yy) * sh[..., 13, :]
            + C3[5] * z * (xx - yy) * sh[..., 14, :]
            + C3[6] * x * (xx - 3.0 * yy) * sh[..., 15, :])
