import math

import pytest
import torch

from unidit.runtime.gaussians.camera import Cameras, look_at, orbit_cameras, turntable_cameras
from unidit.runtime.gaussians.render import (RenderConfig, project_gaussians, render, render_dense,
                                             render_turntable)
from unidit.runtime.gaussians.sh import rgb_to_sh0
from unidit.runtime.gaussians.shapes import random_splats
from unidit.runtime.gaussians.splats import Splats


def camera_at(eye, target=(0.0, 0.0, 0.0), size=64, focal=60.0) -> Cameras:
    """One pinhole camera at ``eye`` looking at ``target``, centred principal point."""
    matrix = look_at(torch.tensor([eye]), torch.tensor([target]))
    full = torch.full((1,), focal)
    return Cameras(matrix, full, full, torch.full((1,), size / 2), torch.full((1,), size / 2), size, size)


def gaussians(positions, scales, colors, opacities, rotations=None) -> Splats:
    """A splat of isotropic or axis-aligned Gaussians with base colours (SH degree 0)."""
    positions = torch.tensor(positions, dtype=torch.float32)
    count = positions.shape[0]
    scales = torch.as_tensor(scales, dtype=torch.float32).reshape(count, -1).expand(count, 3)
    rotations = torch.tensor([[1.0, 0, 0, 0]]).repeat(count, 1) if rotations is None else torch.tensor(rotations)
    sh = rgb_to_sh0(torch.tensor(colors, dtype=torch.float32))[:, None, :]
    opacities = torch.tensor(opacities, dtype=torch.float32).reshape(count, 1)
    return Splats(positions[None], scales[None].clone(), rotations[None], opacities[None], sh[None])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sh_degree", [0, 3])
def test_matches_the_dense_reference_on_random_scenes(seed, sh_degree):
    generator = torch.Generator().manual_seed(seed)
    splats = random_splats(600, sh_degree=sh_degree, generator=generator)
    cameras = orbit_cameras([25.0 + 100.0 * seed, 200.0], elevation_deg=10.0 * seed, width=80, height=64)
    config = RenderConfig(background=(0.2, 0.5, 0.9))
    fast, dense = render(splats, cameras, config), render_dense(splats, cameras, config)
    assert fast.alpha.mean() > 0.3  # the scene covers much of the image: the comparison has substance
    assert (fast.color - dense.color).abs().max() < 1e-4
    assert (fast.alpha - dense.alpha).abs().max() < 1e-4
    assert (fast.depth - dense.depth).abs().max() < 1e-4


def test_gradients_match_the_dense_reference():
    def gradients(renderer):
        splats = random_splats(150, sh_degree=1, generator=torch.Generator().manual_seed(5))
        leaves = [splats.positions, splats.scales, splats.opacities, splats.sh]
        for leaf in leaves:
            leaf.requires_grad_(True)
        result = renderer(splats, orbit_cameras([60.0], width=40, height=40))
        weights = torch.linspace(0.5, 1.5, 40 * 40 * 3).reshape(1, 40, 40, 3)
        ((result.color * weights).sum() + result.depth.sum() * 0.1).backward()
        return [leaf.grad for leaf in leaves]

    for fast, dense in zip(gradients(render), gradients(render_dense)):
        assert fast.abs().max() > 0
        assert torch.allclose(fast, dense, rtol=1e-3, atol=1e-3 * dense.abs().max())


def test_one_gaussian_has_the_ewa_footprint():
    # An isotropic Gaussian of std s at depth z on the optical axis projects to std sqrt((f s / z)^2 + 0.3) px.
    focal, z, s, opacity = 60.0, 2.0, 0.05, 0.8
    splats = gaussians([[0.0, 0.0, 0.0]], [s], [[1.0, 1.0, 1.0]], [opacity])
    image = render(splats, camera_at((0.0, 0.0, -z), focal=focal)).alpha[0]
    variance = (focal * s / z) ** 2 + 0.3
    centres = torch.arange(64) + 0.5 - 32.0
    expected = opacity * torch.exp(-0.5 * (centres[:, None] ** 2 + centres[None, :] ** 2) / variance)
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    assert (image - expected).abs().max() < 1e-5
    assert image.sum() > 0.9 * 2 * math.pi * variance * opacity  # nearly all of its mass lands in the image


def test_an_anisotropic_gaussian_is_stretched_along_its_rotated_axis():
    # Long along local x, turned 90 degrees about the view axis (z): it must look tall, not wide.
    turn = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]
    splats = gaussians([[0.0, 0.0, 0.0]], [[0.2, 0.02, 0.02]], [[1.0, 1.0, 1.0]], [0.9], rotations=[turn])
    alpha = render(splats, camera_at((0.0, 0.0, -2.0))).alpha[0]
    tall, wide = (alpha[:, 32] > 0.1).sum(), (alpha[32, :] > 0.1).sum()
    assert tall > 4 * wide


def test_front_to_back_order_and_depth():
    # A red Gaussian at z = 0 hides a blue one behind it from the front, and the other way round from behind.
    splats = gaussians([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]], [0.3, 0.3], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                       [0.99, 0.99])
    front = render(splats, camera_at((0.0, 0.0, -2.0)))
    back = render(splats, camera_at((0.0, 0.0, 2.5)))
    red, blue = front.color[0, 32, 32], back.color[0, 32, 32]
    assert red[0] > 0.95 and red[2] < 0.05
    assert blue[2] > 0.95 and blue[0] < 0.05
    # Almost all weight sits on the near Gaussian: the expected depth is its distance, 2.
    assert abs(front.expected_depth()[0, 32, 32] - 2.0) < 0.02
    assert abs(back.expected_depth()[0, 32, 32] - 2.0) < 0.02


def test_background_fills_what_alpha_leaves():
    splats = gaussians([[0.0, 0.0, 0.0]], [0.1], [[1.0, 0.0, 0.0]], [0.5])
    result = render(splats, camera_at((0.0, 0.0, -2.0)), RenderConfig(background=(0.0, 1.0, 0.0)))
    assert torch.equal(result.color[0, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # a corner: background only
    # Pixel (32, 32) has its centre half a pixel from the Gaussian's in x and y; its std is sqrt(3^2 + 0.3) px.
    alpha = 0.5 * math.exp(-0.5 * 0.5 / 9.3)
    expected = torch.tensor([alpha, 1.0 - alpha, 0.0])  # red over green
    assert torch.allclose(result.color[0, 32, 32], expected, atol=1e-6)


def test_gaussians_behind_the_camera_or_transparent_are_not_drawn():
    splats = gaussians([[0.0, 0.0, -3.0], [0.0, 0.0, 0.0]], [0.3, 0.3], [[1.0, 1.0, 1.0]] * 2, [0.9, 0.001])
    result = render(splats, camera_at((0.0, 0.0, -2.0)), RenderConfig(background=(0.1, 0.2, 0.3)))
    assert result.alpha.abs().max() == 0
    assert torch.allclose(result.color, torch.tensor([0.1, 0.2, 0.3]).expand(1, 64, 64, 3))


def test_view_dependent_colour_follows_the_sh_basis():
    # Band 1, coefficient 2 multiplies C1 * z of the view direction: brighter seen along +z, darker along -z.
    splats = gaussians([[0.0, 0.0, 0.0]], [0.2], [[0.5, 0.5, 0.5]], [0.99])
    sh = torch.zeros(1, 1, 4, 3)
    sh[0, 0, 0] = splats.sh[0, 0, 0]
    sh[0, 0, 2] = 0.4
    splats = Splats(splats.positions, splats.scales, splats.rotations, splats.opacities, sh)
    c1 = 0.4886025119029199
    for eye, sign in (((0.0, 0.0, -2.0), 1.0), ((0.0, 0.0, 2.0), -1.0)):
        result = render(splats, camera_at(eye))  # the view direction at the Gaussian is exactly sign * z
        seen = result.color[0, 32, 32, 0] / result.alpha[0, 32, 32]
        assert abs(seen - (0.5 + sign * c1 * 0.4)) < 1e-5


def test_projection_keeps_visible_gaussians_sorted_front_to_back():
    splats = random_splats(300, generator=torch.Generator().manual_seed(4))
    projected = project_gaussians(splats, orbit_cameras([40.0]), RenderConfig())
    assert len(projected) == 300
    assert bool((projected.depths[1:] >= projected.depths[:-1]).all())


def test_one_splat_per_camera_or_one_for_all():
    a = random_splats(200, generator=torch.Generator().manual_seed(1))
    b = random_splats(200, generator=torch.Generator().manual_seed(2))
    pair = Splats(*(torch.cat([getattr(a, name), getattr(b, name)]) for name in
                    ("positions", "scales", "rotations", "opacities", "sh")))
    cameras = orbit_cameras([0.0, 90.0], width=32, height=32)
    both = render(pair, cameras)
    assert torch.equal(both.color[0], render(a, cameras[0]).color[0])
    assert torch.equal(both.color[1], render(b, cameras[1]).color[0])
    with pytest.raises(ValueError, match="cannot pair"):
        render(pair, orbit_cameras([0.0, 90.0, 180.0], width=32, height=32))


def test_turntable_starts_at_the_front_and_goes_round():
    splats = random_splats(300, generator=torch.Generator().manual_seed(3))
    frames = render_turntable(splats, 4, width=48, height=48)
    assert frames.shape == (4, 48, 48, 3)
    front = render(splats, turntable_cameras(4, width=48, height=48)[0]).color[0]
    assert torch.equal(frames[0], front)
    assert (frames[0] - frames[2]).abs().mean() > 0.01  # the far side looks different


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_renders_what_the_cpu_renders():
    splats = random_splats(500, sh_degree=3, generator=torch.Generator().manual_seed(6))
    cameras = orbit_cameras([10.0, 130.0], width=64, height=64)
    on_cpu = render(splats, cameras)
    on_gpu = render(splats.to("cuda"), cameras)
    assert (on_gpu.color.cpu() - on_cpu.color).abs().max() < 1e-4
    assert (on_gpu.alpha.cpu() - on_cpu.alpha).abs().max() < 1e-4
