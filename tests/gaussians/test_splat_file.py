import numpy as np
import pytest
import torch

from unidit.runtime.gaussians.sh import C0
from unidit.runtime.gaussians.shapes import random_splats
from unidit.runtime.gaussians.splat_file import read_splat_file, splat_file_bytes, write_splat_file
from unidit.runtime.gaussians.rotations import quaternion_to_matrix


def test_records_are_32_bytes_sorted_large_and_opaque_first():
    splats = random_splats(100, generator=torch.Generator().manual_seed(0))
    data = splat_file_bytes(splats)
    assert len(data) == 100 * 32
    records = np.frombuffer(data, dtype=[("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                                         ("rot", "u1", 4)])
    importance = records["scale"].prod(axis=1) * records["rgba"][:, 3]
    assert (np.diff(importance) <= 255 * 1e-6).all()  # non-increasing (alpha is quantised)
    first = int(torch.argmax(splats.scales[0].prod(-1) * splats.opacities[0, :, 0]))
    assert np.array_equal(records["xyz"][0], splats.positions[0, first].numpy())
    expected_rgb = np.clip(np.round((0.5 + C0 * splats.sh[0, first, 0].double().numpy()) * 255), 0, 255)
    assert np.array_equal(records["rgba"][0, :3], expected_rgb)


def test_decodes_to_the_same_gaussians_within_quantisation(tmp_path):
    splats = random_splats(200, sh_degree=2, generator=torch.Generator().manual_seed(1))
    back = read_splat_file(write_splat_file(splats, tmp_path / "scene.splat"))
    order = torch.argsort(-(splats.scales[0].prod(-1) * splats.opacities[0, :, 0]), stable=True)
    assert back.sh_degree == 0  # .splat carries base colours only
    assert torch.equal(back.positions[0], splats.positions[0, order])
    assert torch.equal(back.scales[0], splats.scales[0, order])
    assert (back.opacities[0] - splats.opacities[0, order]).abs().max() <= 0.5 / 255 + 1e-6
    assert (back.colors_rgb()[0] - splats.colors_rgb()[0, order]).abs().max() <= 0.5 / 255 + 1e-6
    turned = quaternion_to_matrix(back.rotations[0]) - quaternion_to_matrix(splats.rotations[0, order])
    assert turned.abs().max() < 0.05


def test_a_file_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="not a multiple of 32"):
        read_splat_file(bytes(33))
