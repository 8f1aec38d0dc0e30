"""Niantic SPZ version 2: a gzip stream of quantised Gaussians, about a tenth of a PLY.

Version 2 is what Spark (ComfyUI's splat viewer), mkkellogg and SuperSplat read; Spark rejects version 4. After
a 16-byte header (``magic 0x5053474E "NGSP" | version | count`` as uint32, then ``sh_degree |
fractional_bits | flags | reserved`` as uint8) come whole sections, each over all Gaussians:

============  =====  ===========================================================================
positions     9 N    x, y, z as 24-bit signed fixed point with 12 fractional bits (little endian)
alphas        N      ``opacity * 255``
colors        3 N    ``f_dc * 0.15 * 255 + 127.5`` (band-0 SH, slightly compressed in contrast)
scales        3 N    ``(log(scale) + 10) * 16``
rotations     3 N    x, y, z of the unit quaternion turned to w >= 0, as ``(q + 1) * 127.5``
sh            N·3·(K-1)  bands 1+, coefficient-major with the colour channel innermost, ``sh * 128 + 128``
============  =====  ===========================================================================

Positions keep the PLY frame (no axis flip), as Spark and ComfyUI expect.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..files import write_atomic
from .sh import COEFFICIENTS_FOR_DEGREE
from .splats import Splats, prepare_for_file

SPZ_MAGIC = 0x5053474E
SPZ_VERSION = 2
FRACTIONAL_BITS = 12
COLOR_SCALE = 0.15
_HEADER = struct.Struct("<IIIBBBB")


def _quantize(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def spz_bytes(splats: Splats) -> bytes:
    """The SPZ v2 file of one splat (B = 1); non-finite Gaussians are dropped with a warning."""
    splats = prepare_for_file(splats, "SPZ")
    count, degree = splats.num_gaussians, splats.sh_degree
    positions = splats.positions[0].double().numpy()
    limit = 2 ** (23 - FRACTIONAL_BITS)
    if np.abs(positions).max() >= limit:
        raise ValueError(f"SPZ v2 stores positions within ±{limit} units; this splat reaches "
                         f"{np.abs(positions).max():.1f}. Scale the scene down or save a PLY.")
    fixed = np.round(positions * (1 << FRACTIONAL_BITS)).astype(np.int32).reshape(-1)
    position_bytes = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=-1).astype(np.uint8)

    rotations = splats.rotations[0].double().numpy()
    rotations = rotations / np.linalg.norm(rotations, axis=-1, keepdims=True)
    rotations = np.where(rotations[:, :1] < 0, -rotations, rotations)  # w >= 0, so w = sqrt(1 - |xyz|^2)
    sh = splats.sh[0].double().numpy()
    sections = [
        position_bytes,
        _quantize(splats.opacities[0].double().numpy() * 255.0),
        _quantize(sh[:, 0, :] * (COLOR_SCALE * 255.0) + 127.5),
        _quantize((np.log(np.maximum(splats.scales[0].double().numpy(), 1e-30)) + 10.0) * 16.0),
        _quantize((rotations[:, 1:] + 1.0) * 127.5),
        _quantize(sh[:, 1:, :].reshape(count, -1) * 128.0 + 128.0),
    ]
    header = _HEADER.pack(SPZ_MAGIC, SPZ_VERSION, count, degree, FRACTIONAL_BITS, 0, 0)
    return gzip.compress(header + b"".join(section.tobytes() for section in sections), mtime=0)


def write_spz(splats: Splats, path: str | os.PathLike) -> Path:
    """Write one splat as a new SPZ v2 file (atomically; an existing file is never replaced)."""
    return write_atomic(path, spz_bytes(splats))


def read_spz(source: str | os.PathLike | bytes) -> Splats:
    """Read an SPZ version 2 file (a path or its bytes) into an activated splat with B = 1."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    name = "SPZ data" if isinstance(source, bytes) else str(source)
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as error:
        raise ValueError(f"{name} is not an SPZ file (not a gzip stream: {error}); SPZ v4 is not supported") from None
    if len(raw) < _HEADER.size:
        raise ValueError(f"{name} is too short for an SPZ header")
    magic, version, count, degree, fractional_bits, _, _ = _HEADER.unpack_from(raw)
    if magic != SPZ_MAGIC:
        raise ValueError(f"{name} is not an SPZ file (magic {magic:#x}, expected {SPZ_MAGIC:#x})")
    if version != SPZ_VERSION or degree not in COEFFICIENTS_FOR_DEGREE:
        raise ValueError(f"{name}: SPZ version {version} with SH degree {degree} is not supported (version 2, "
                         f"degree 0-3)")
    coefficients = COEFFICIENTS_FOR_DEGREE[degree]
    sizes = [9 * count, count, 3 * count, 3 * count, 3 * count, 3 * (coefficients - 1) * count]
    if len(raw) < _HEADER.size + sum(sizes):
        raise ValueError(f"{name} is truncated: {count} Gaussians need {_HEADER.size + sum(sizes)} bytes")
    sections, offset = [], _HEADER.size
    for size in sizes:
        sections.append(np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset).astype(np.float64))
        offset += size
    position_bytes, alphas, colors, scales, rotations, rest = sections

    position_bytes = position_bytes.astype(np.int64).reshape(count * 3, 3)
    fixed = position_bytes[:, 0] | (position_bytes[:, 1] << 8) | (position_bytes[:, 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed)  # sign extension
    positions = fixed.reshape(count, 3) / (1 << fractional_bits)
    xyz = rotations.reshape(count, 3) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - (xyz ** 2).sum(-1, keepdims=True)))
    quaternions = np.concatenate([w, xyz], axis=-1)
    sh = np.zeros((count, coefficients, 3))
    sh[:, 0] = (colors.reshape(count, 3) - 127.5) / (COLOR_SCALE * 255.0)
    sh[:, 1:] = (rest.reshape(count, coefficients - 1, 3) - 128.0) / 128.0

    def tensor(values):
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None]

    quaternions = quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True)
    return Splats(tensor(positions), tensor(np.exp(scales.reshape(count, 3) / 16.0 - 10.0)), tensor(quaternions),
                  tensor(alphas.reshape(count, 1) / 255.0), tensor(sh))
