"""The antimatter15 ``.splat`` format: 32 bytes per Gaussian, no header, base colour only.

Each record, little endian (``antimatter15/splat: convert.py``): ``float32 x, y, z`` | ``float32`` linear
scales | ``uint8 r, g, b, a`` with ``rgb = (0.5 + C0 f_dc) * 255`` and ``a = opacity * 255`` | ``uint8`` unit
quaternion w, x, y, z as ``q * 128 + 128``. Records are sorted large and opaque first (by
``scale_x * scale_y * scale_z * opacity``, descending), as the converter does, so viewers that stream the file
show the bulk early. Positions keep the PLY frame. Higher SH bands are dropped.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..files import write_atomic
from .sh import rgb_to_sh0, sh0_to_rgb
from .splats import Splats, prepare_for_file

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])


def splat_file_bytes(splats: Splats) -> bytes:
    """The ``.splat`` file of one splat (B = 1); non-finite Gaussians are dropped with a warning."""
    splats = prepare_for_file(splats, ".splat")
    scales = splats.scales[0].double()
    opacities = splats.opacities[0].double()
    order = torch.argsort(-(scales.prod(dim=-1) * opacities[:, 0]), stable=True)
    rotations = splats.rotations[0].double()
    rotations = rotations / rotations.norm(dim=-1, keepdim=True)
    rgba = torch.cat([sh0_to_rgb(splats.sh[0, :, 0].double()), opacities], dim=-1)
    records = np.empty(splats.num_gaussians, dtype=RECORD)
    records["position"] = splats.positions[0][order].numpy()
    records["scale"] = splats.scales[0][order].numpy()
    records["rgba"] = np.clip(np.round(rgba[order].numpy() * 255.0), 0, 255).astype(np.uint8)
    records["rotation"] = np.clip(np.round(rotations[order].numpy() * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return records.tobytes()


def write_splat_file(splats: Splats, path: str | os.PathLike) -> Path:
    """Write one splat as a new ``.splat`` file (atomically; an existing file is never replaced)."""
    return write_atomic(path, splat_file_bytes(splats))


def read_splat_file(source: str | os.PathLike | bytes) -> Splats:
    """Read a ``.splat`` file (a path or its bytes) into an activated splat with B = 1 and SH degree 0."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) % RECORD.itemsize:
        name = ".splat data" if isinstance(source, bytes) else str(source)
        raise ValueError(f"{name} is not a .splat file: {len(data)} bytes is not a multiple of 32")
    records = np.frombuffer(data, dtype=RECORD)
    rgba = torch.from_numpy(records["rgba"].astype(np.float32) / 255.0)
    rotations = torch.from_numpy((records["rotation"].astype(np.float32) - 128.0) / 128.0)
    rotations = rotations / rotations.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return Splats(torch.from_numpy(records["position"].copy())[None], torch.from_numpy(records["scale"].copy())[None],
                  rotations[None], rgba[None, :, 3:], rgb_to_sh0(rgba[:, :3])[None, :, None, :])
