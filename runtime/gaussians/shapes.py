"""Procedural splats of known shape: a sphere, a torus, and random clouds.

They stand in for a decoded object wherever the answer must be known in advance: the benchmarks, the renderer
and mesh tests (a sphere's mesh must be round, a torus's must have a hole). Surfaces are covered by flat
Gaussians ("surfels") lying in the tangent plane, spaced evenly by area.
"""
from __future__ import annotations

import math

import torch

from .rotations import random_rotations, rotations_from_z
from .sh import rgb_to_sh0
from .splats import Splats


def surfel_splats(points: torch.Tensor, normals: torch.Tensor, spacing: float, colors: torch.Tensor,
                  opacity: float = 0.9, thickness: float = 0.2, sh_degree: int = 0) -> Splats:
    """One flat Gaussian per surface point: tangent std ``spacing``, normal std ``thickness * spacing``.

    points, normals (unit), colors (0..1): [N, 3]. Higher SH bands are zero.
    """
    count = points.shape[0]
    scales = torch.tensor([spacing, spacing, thickness * spacing]).expand(count, 3)
    sh = torch.zeros(count, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = rgb_to_sh0(colors)
    return Splats(points[None].float(), scales[None].clone(), rotations_from_z(normals.float())[None],
                  torch.full((1, count, 1), opacity), sh[None])


def sphere_points(count: int) -> torch.Tensor:
    """``count`` unit vectors spread evenly over the sphere (a Fibonacci lattice): [count, 3]."""
    index = torch.arange(count, dtype=torch.float64) + 0.5
    polar = torch.acos(1.0 - 2.0 * index / count)
    azimuth = math.pi * (1.0 + 5.0 ** 0.5) * index
    points = torch.stack([torch.cos(azimuth) * torch.sin(polar), torch.sin(azimuth) * torch.sin(polar),
                          torch.cos(polar)], dim=-1)
    return points.float()


def sphere_splats(count: int = 4000, radius: float = 0.5, center=(0.0, 0.0, 0.0), opacity: float = 0.9,
                  sh_degree: int = 0) -> Splats:
    """Surfels covering a sphere, coloured by direction (so views differ)."""
    normals = sphere_points(count)
    spacing = math.sqrt(4.0 * math.pi / count) * radius
    colors = 0.5 + 0.4 * normals
    return surfel_splats(normals * radius + torch.tensor(center), normals, spacing, colors, opacity,
                         sh_degree=sh_degree)


def torus_points(count: int, major_radius: float, minor_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """About ``count`` points spread evenly by area over a torus around the y axis, and their unit normals.

    Rings around the tube get a number of points proportional to their length, so the density is even.
    """
    area = 4.0 * math.pi ** 2 * major_radius * minor_radius
    spacing = math.sqrt(area / count)
    rings = max(3, round(2.0 * math.pi * minor_radius / spacing))
    points, normals = [], []
    for ring in range(rings):
        tube_angle = 2.0 * math.pi * (ring + 0.5) / rings
        distance = major_radius + minor_radius * math.cos(tube_angle)  # from the y axis
        per_ring = max(3, round(2.0 * math.pi * distance / spacing))
        around = 2.0 * math.pi * (torch.arange(per_ring, dtype=torch.float64) + 0.5 * (ring % 2)) / per_ring
        radial = torch.stack([torch.cos(around), torch.zeros_like(around), torch.sin(around)], dim=-1)
        up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        normal = radial * math.cos(tube_angle) + up * math.sin(tube_angle)
        points.append(radial * major_radius + normal * minor_radius)
        normals.append(normal)
    return torch.cat(points).float(), torch.cat(normals).float()


def torus_splats(count: int = 6000, major_radius: float = 0.45, minor_radius: float = 0.18,
                 opacity: float = 0.9) -> Splats:
    """Surfels covering a torus around the y axis (lying in the x-z plane)."""
    points, normals = torus_points(count, major_radius, minor_radius)
    spacing = math.sqrt(4.0 * math.pi ** 2 * major_radius * minor_radius / points.shape[0])
    colors = 0.5 + 0.4 * normals
    return surfel_splats(points, normals, spacing, colors, opacity)


def random_splats(count: int, sh_degree: int = 0, extent: float = 0.6, scale_range=(0.01, 0.08),
                  generator: torch.Generator | None = None) -> Splats:
    """A random cloud: positions in the cube ``[-extent, extent]^3``, log-uniform anisotropic scales, random
    rotations, opacities in 0.05..1, random SH (band 0 around mid-grey, higher bands small)."""
    positions = (torch.rand(count, 3, generator=generator) * 2.0 - 1.0) * extent
    low, high = math.log(scale_range[0]), math.log(scale_range[1])
    scales = torch.exp(low + (high - low) * torch.rand(count, 3, generator=generator))
    opacities = 0.05 + 0.95 * torch.rand(count, 1, generator=generator)
    sh = torch.randn(count, (sh_degree + 1) ** 2, 3, generator=generator) * 0.3
    sh[:, 0] = rgb_to_sh0(torch.rand(count, 3, generator=generator))
    return Splats(positions[None], scales[None], random_rotations((1, count), generator), opacities[None], sh[None])
