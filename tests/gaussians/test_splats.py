import math

import pytest
import torch

from unidit.runtime.gaussians.rotations import quaternion_to_matrix, random_rotations, rotations_from_z
from unidit.runtime.gaussians.shapes import random_splats, sphere_splats
from unidit.runtime.gaussians.splats import Splats, prepare_for_file


def test_raw_round_trip_restores_the_activated_values():
    splats = random_splats(100, sh_degree=2, generator=torch.Generator().manual_seed(0))
    raw = splats.to_raw()
    assert torch.allclose(raw.log_scales, torch.log(splats.scales))
    assert torch.allclose(torch.sigmoid(raw.opacity_logits), splats.opacities, atol=1e-6)
    back = Splats.from_raw(raw.positions, raw.log_scales, raw.quaternions * 3.0, raw.opacity_logits, raw.sh)
    assert torch.allclose(back.scales, splats.scales, rtol=1e-6)
    assert torch.allclose(back.opacities, splats.opacities, atol=1e-6)
    assert torch.allclose(back.rotations, splats.rotations, atol=1e-6)  # the factor 3 is normalised away
    assert back.sh_degree == 2


def test_raw_values_stay_finite_at_the_extremes():
    splats = sphere_splats(10)
    splats.opacities[0, 0] = 1.0
    splats.opacities[0, 1] = 0.0
    splats.scales[0, 2] = 0.0
    raw = splats.to_raw()
    assert torch.isfinite(raw.opacity_logits).all() and torch.isfinite(raw.log_scales).all()
    assert raw.opacity_logits[0, 0] > 13 and raw.opacity_logits[0, 1] < -13


def test_validate_names_every_broken_invariant():
    splats = sphere_splats(20)
    splats.validate()
    splats.scales[0, 0, 0] = -1.0
    splats.opacities[0, 1] = 1.5
    splats.rotations[0, 2] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    splats.positions[0, 3, 1] = float("nan")
    with pytest.raises(ValueError) as error:
        splats.validate()
    message = str(error.value)
    for expected in ("1 Gaussians have non-finite positions", "scales <= 0", "opacities outside 0..1",
                     "not unit quaternions"):
        assert expected in message


def test_shapes_are_checked_on_construction():
    splats = sphere_splats(5)
    with pytest.raises(ValueError, match="opacities must be"):
        Splats(splats.positions, splats.scales, splats.rotations, splats.opacities[:, :4], splats.sh)
    with pytest.raises(ValueError, match="not a full basis"):
        Splats(splats.positions, splats.scales, splats.rotations, splats.opacities, torch.zeros(1, 5, 2, 3))


def test_item_drops_padding_and_drop_non_finite_pads_with_counts():
    a, b = sphere_splats(6), sphere_splats(6, radius=2.0)
    batch = Splats(*(torch.cat([getattr(a, n), getattr(b, n)]) for n in
                     ("positions", "scales", "rotations", "opacities", "sh")), counts=torch.tensor([6, 4]))
    assert batch.item(1).num_gaussians == 4
    assert torch.equal(batch.item(1).positions[0], b.positions[0, :4])
    batch.sh[1, 1, 0, 2] = float("inf")  # a real Gaussian of item 1
    batch.positions[1, 5, 0] = float("nan")  # padding: not counted
    with pytest.warns(UserWarning, match="dropped 1 of 10 Gaussians"):
        clean = batch.drop_non_finite()
    assert clean.counts.tolist() == [6, 3]
    assert torch.equal(clean.item(1).positions[0], b.positions[0, [0, 2, 3]])
    assert torch.equal(clean.item(0).positions[0], a.positions[0])


def test_files_take_one_finite_splat():
    splats = sphere_splats(8)
    splats.scales[0, 3, 1] = float("nan")
    with pytest.warns(UserWarning, match="dropped 1 of 8"):
        assert prepare_for_file(splats, "PLY").num_gaussians == 7
    pair = Splats(*(torch.cat([getattr(splats, n)] * 2) for n in
                    ("positions", "scales", "rotations", "opacities", "sh")))
    with pytest.raises(ValueError, match="holds one splat, got a batch of 2"):
        prepare_for_file(pair, "PLY")


def test_covariance_is_r_s2_rt():
    # A quarter turn about z swaps the x and y extents.
    turn = torch.tensor([[[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]]])
    splats = Splats(torch.zeros(1, 1, 3), torch.tensor([[[0.3, 0.1, 0.2]]]), turn, torch.ones(1, 1, 1),
                    torch.zeros(1, 1, 1, 3))
    expected = torch.diag(torch.tensor([0.01, 0.09, 0.04]))
    assert torch.allclose(splats.covariances()[0, 0], expected, atol=1e-7)


def test_quaternions_give_proper_rotations():
    quaternions = random_rotations((50,), torch.Generator().manual_seed(0))
    matrices = quaternion_to_matrix(quaternions)
    assert torch.allclose(matrices @ matrices.transpose(1, 2), torch.eye(3).expand(50, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(50), atol=1e-5)
    # 90 degrees about x takes y to z (right-handed).
    about_x = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])
    assert torch.allclose(quaternion_to_matrix(about_x) @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0, 1]),
                          atol=1e-6)


def test_rotations_from_z_turn_z_onto_the_normals():
    normals = torch.nn.functional.normalize(torch.randn(40, 3), dim=-1)
    normals[0] = torch.tensor([0.0, 0.0, -1.0])
    normals[1] = torch.tensor([0.0, 0.0, 1.0])
    turned = quaternion_to_matrix(rotations_from_z(normals))[:, :, 2]
    assert torch.allclose(turned, normals, atol=1e-5)


def test_base_colour_comes_from_band_zero():
    splats = sphere_splats(4)
    splats.sh[0, :, 0] = torch.tensor([[0.0, 1.0, -1.0]] * 4) / 0.28209479177387814
    assert torch.allclose(splats.colors_rgb()[0], torch.tensor([[0.5, 1.0, 0.0]] * 4))  # clamped to 0..1
