"""3DGS binary PLY, the interchange format of Gaussian splats (graphdeco-inria ``GaussianModel.save_ply``).

One ``vertex`` element, all ``float`` little-endian, in exactly this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3(K-1)-1)  opacity  scale_0..2  rot_0..3

holding *raw* values: logit opacity, log scale, the quaternion as w x y z, zero normals. ``f_rest`` is
channel-major: ``f_rest_0..K-2`` are the red coefficients of bands 1+, then green, then blue. That is what
SuperSplat, Spark, ComfyUI's viewer and the reference loader read; positions are in the OpenCV frame of
``camera.py`` (no axis change). The PLY container itself is read and written by ``plyfile``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import plyfile
import torch

from ..files import write_atomic
from .splats import Splats, prepare_for_file

REQUIRED_PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                       "rot_0", "rot_1", "rot_2", "rot_3")


def ply_property_names(sh_degree: int) -> list[str]:
    """The graphdeco property order for a splat of this SH degree."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def ply_bytes(splats: Splats) -> bytes:
    """The 3DGS PLY file of one splat (B = 1); non-finite Gaussians are dropped with a warning."""
    splats = prepare_for_file(splats, "PLY")
    # log and logit in float64, so the stored float32 raw values are correctly rounded.
    raw = splats.to(dtype=torch.float64).to_raw()
    count = splats.num_gaussians
    sh = raw.sh[0]
    columns = torch.cat([
        raw.positions[0],
        torch.zeros(count, 3, dtype=torch.float64),
        sh[:, 0, :],
        sh[:, 1:, :].transpose(1, 2).reshape(count, -1),  # channel-major f_rest
        raw.opacity_logits[0],
        raw.log_scales[0],
        raw.quaternions[0],
    ], dim=1).numpy().astype("<f4")
    names = ply_property_names(splats.sh_degree)
    records = np.empty(count, dtype=[(name, "<f4") for name in names])
    for index, name in enumerate(names):
        records[name] = columns[:, index]
    buffer = io.BytesIO()
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")], byte_order="<").write(buffer)
    return buffer.getvalue()


def write_ply(splats: Splats, path: str | os.PathLike) -> Path:
    """Write one splat as a new 3DGS PLY file (atomically; an existing file is never replaced)."""
    return write_atomic(path, ply_bytes(splats))


def read_ply(source: str | os.PathLike | bytes) -> Splats:
    """Read a 3DGS PLY (a path or the file's bytes) into an activated splat with B = 1.

    Any property order and numeric types are accepted; properties and elements beyond the 3DGS set are ignored.
    A PLY that is not a Gaussian splat (a mesh, a point cloud, ASCII) fails with a message naming what is missing.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    name = "PLY data" if isinstance(source, bytes) else str(source)
    if not data.startswith(b"ply"):
        raise ValueError(f"{name} is not a PLY file (it does not start with 'ply')")
    try:
        ply = plyfile.PlyData.read(io.BytesIO(data))
    except plyfile.PlyElementParseError as error:
        raise ValueError(f"{name} is truncated or damaged: {error}") from None
    except plyfile.PlyParseError as error:
        raise ValueError(f"{name} is not a readable PLY file: {error}") from None
    if ply.text:
        raise ValueError(f"{name} is an ASCII PLY; 3DGS splat files are binary")
    if "vertex" not in ply:
        raise ValueError(f"{name} has no vertex element; it is not a 3DGS splat PLY")
    vertex = ply["vertex"]
    names = [prop.name for prop in vertex.properties]
    missing = [prop for prop in REQUIRED_PROPERTIES if prop not in names]
    if missing:
        raise ValueError(f"{name} is not a 3DGS splat PLY: its vertex element lacks the properties "
                         f"{', '.join(missing)} (a mesh or point cloud PLY has no scales and rotations)")
    rest = sorted((prop for prop in names if prop.startswith("f_rest_")), key=lambda p: int(p[7:]))
    rest_count = len(rest)
    if rest_count not in (0, 9, 24, 45) or rest != [f"f_rest_{i}" for i in range(rest_count)]:
        raise ValueError(f"{name}: {rest_count} f_rest properties do not form SH of degree 1-3 "
                         f"(need f_rest_0 .. f_rest_8, _23 or _44)")
    count = vertex.count

    def column(*props):
        return torch.from_numpy(np.stack([np.asarray(vertex[p], dtype=np.float32) for p in props], axis=-1))

    coefficients = rest_count // 3 + 1
    sh = torch.zeros(count, coefficients, 3)
    sh[:, 0] = column("f_dc_0", "f_dc_1", "f_dc_2")
    if rest_count:
        sh[:, 1:] = column(*rest).reshape(count, 3, coefficients - 1).transpose(1, 2)
    splats = Splats.from_raw(column("x", "y", "z")[None].double(),
                             column("scale_0", "scale_1", "scale_2")[None].double(),
                             column("rot_0", "rot_1", "rot_2", "rot_3")[None].double(),
                             column("opacity")[None].double(), sh[None].double())
    return splats.to(dtype=torch.float32)
