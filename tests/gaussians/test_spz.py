import gzip
import struct

import numpy as np
import pytest
import torch

from unidit.runtime.gaussians.shapes import random_splats
from unidit.runtime.gaussians.spz import read_spz, spz_bytes, write_spz


def splat(sh_degree, count=300, seed=0):
    splats = random_splats(count, sh_degree=sh_degree, generator=torch.Generator().manual_seed(seed))
    splats.sh[:, :, 1:] = splats.sh[:, :, 1:].clamp(-0.99, 0.99)  # SPZ stores bands 1+ within [-1, 1)
    return splats


def test_header_and_section_sizes():
    splats = splat(3)
    raw = gzip.decompress(spz_bytes(splats))
    magic, version, count, degree, fractional_bits, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, count, degree, fractional_bits, flags, reserved) == (0x5053474E, 2, 300, 3, 12, 0, 0)
    assert len(raw) == 16 + 300 * (9 + 1 + 3 + 3 + 3 + 45)
    # Positions come first, as 24-bit little-endian fixed point with 12 fractional bits.
    x = int.from_bytes(raw[16:19], "little", signed=True) / 4096
    assert abs(x - float(splats.positions[0, 0, 0])) <= 0.5 / 4096


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_decodes_to_the_same_gaussians_within_quantisation(tmp_path, sh_degree):
    splats = splat(sh_degree)
    back = read_spz(write_spz(splats, tmp_path / "scene.spz"))
    assert back.num_gaussians == 300 and back.sh_degree == sh_degree
    assert (back.positions - splats.positions).abs().max() <= 0.5 / 4096 + 1e-7
    assert (back.opacities - splats.opacities).abs().max() <= 0.5 / 255 + 1e-6
    assert (torch.log(back.scales) - torch.log(splats.scales)).abs().max() <= 0.5 / 16 + 1e-5
    assert (back.sh[:, :, 0] - splats.sh[:, :, 0]).abs().max() <= 0.5 / (0.15 * 255) + 1e-6
    if sh_degree:
        assert (back.sh[:, :, 1:] - splats.sh[:, :, 1:]).abs().max() <= 0.5 / 128 + 1e-6
    # The same rotation (q and -q are one rotation). SPZ v2 stores x, y, z in 8 bits and recomputes
    # w = sqrt(1 - x² - y² - z²), which is coarse where w is near 0.
    angle = 2 * torch.acos((back.rotations * splats.rotations).sum(-1).abs().clamp(max=1.0))
    assert angle.mean() < 0.03 and angle.max() < 0.2


def test_positions_are_not_flipped():
    splats = splat(0, count=4)
    splats.positions[0] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-2.0, -3.0, 4.0]])
    assert torch.allclose(read_spz(spz_bytes(splats)).positions, splats.positions)


def test_out_of_range_positions_and_foreign_files_fail_clearly():
    splats = splat(0, count=4)
    splats.positions[0, 0, 0] = 5000.0
    with pytest.raises(ValueError, match="within ±2048"):
        spz_bytes(splats)
    with pytest.raises(ValueError, match="not a gzip stream"):
        read_spz(b"NGSP" + bytes(40))
    with pytest.raises(ValueError, match="magic"):
        read_spz(gzip.compress(bytes(64)))
    wrong_version = gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 0, 0, 12, 0, 0))
    with pytest.raises(ValueError, match="version 3"):
        read_spz(wrong_version)


def test_is_much_smaller_than_a_ply():
    from unidit.runtime.gaussians.ply import ply_bytes

    splats = random_splats(4000, generator=torch.Generator().manual_seed(0))
    assert len(spz_bytes(splats)) < 0.3 * len(ply_bytes(splats))
    assert np.frombuffer(spz_bytes(splats)[:2], np.uint8).tolist() == [0x1F, 0x8B]  # gzip magic
