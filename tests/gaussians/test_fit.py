import math

import pytest
import torch

from unidit.runtime.gaussians.camera import Cameras, midway_cameras, orbit_azimuths, orbit_cameras, turned_about_vertical
from unidit.runtime.gaussians.fit import (FitConfig, fit_splats, image_backgrounds, initial_splats, pixel_footprints,
                                          ssim)
from unidit.runtime.gaussians.render import RenderConfig, render
from unidit.runtime.gaussians.splats import Splats
from unidit.runtime.train import toyworld
from unidit.runtime.train.evaluate import psnr


def toy_views(shape: str, cameras: Cameras) -> torch.Tensor:
    return toyworld.render_from([toyworld.Scene(shape, "red")], cameras, toyworld.ToyWorldConfig()).rgb[0]


@pytest.fixture(scope="module")
def fitted_sphere():
    cameras = orbit_cameras([45.0 * k for k in range(8)], 20.0, width=32, height=32)
    images = toy_views("sphere", cameras)
    return cameras, images, fit_splats(images, cameras, config=FitConfig(iterations=200, densify_from=50,
                                                                         densify_every=50, opacity_reset_every=100,
                                                                         initial_points=1500))


def test_fit_reproduces_its_views_and_renders_new_ones_at_twice_the_size(fitted_sphere):
    cameras, images, result = fitted_sphere
    background = tuple(images[0, 0, 0].tolist())
    with torch.no_grad():
        again = render(result.splats, cameras, RenderConfig(background=background)).color.clamp(0, 1)
        novel = orbit_cameras([22.5 + 45.0 * k for k in range(8)], 30.0, width=64, height=64)
        seen = render(result.splats, novel, RenderConfig(background=background)).color.clamp(0, 1)
    assert sum(psnr(a, b) for a, b in zip(again, images)) / 8 > 30
    assert sum(psnr(a, b) for a, b in zip(seen, toy_views("sphere", novel))) / 8 > 26
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_densification_grows_the_splat_and_the_result_is_valid(fitted_sphere):
    _, _, result = fitted_sphere
    assert result.counts and result.counts[0] > 0
    result.splats.validate()
    assert not any(getattr(result.splats, name).requires_grad for name in ("positions", "scales", "sh"))
    assert bool((result.splats.opacities >= FitConfig().prune_opacity).all())


def test_the_3d_filter_keeps_every_gaussian_at_least_a_fraction_of_a_training_pixel_wide(fitted_sphere):
    cameras, _, result = fitted_sphere
    footprints = pixel_footprints(result.splats.positions[0], cameras)
    widest = result.splats.scales[0].amax(dim=-1)
    assert bool((widest >= FitConfig().filter_pixels * footprints * 0.999).all())


def test_initial_splat_fills_the_visual_hull_in_the_object_colour():
    cameras = orbit_cameras([90.0 * k for k in range(4)], 20.0, width=32, height=32)
    images = toy_views("cube", cameras)
    splats = initial_splats(images, cameras, image_backgrounds(images), 500, torch.Generator().manual_seed(0))
    assert splats.num_gaussians > 100
    inside = toyworld.signed_distance([toyworld.Scene("cube", "red")], splats.positions[0][None])[0]
    assert float((inside < 0.15).float().mean()) > 0.95        # the hull of four views hugs the cube
    colour = (0.5 + 0.28209479177387814 * splats.sh[0, :, 0]).mean(dim=0)
    assert colour[0] > colour[1] + 0.2 and colour[0] > colour[2] + 0.2  # red


def test_fit_refuses_mismatched_cameras_and_empty_views():
    cameras = orbit_cameras([0.0, 90.0], 20.0, width=16, height=16)
    with pytest.raises(ValueError, match="one camera per image"):
        fit_splats(torch.rand(3, 16, 16, 3), cameras)
    with pytest.raises(ValueError, match="differs from its background"):
        fit_splats(torch.full((2, 16, 16, 3), 0.5), cameras)


def test_ssim_is_one_for_equal_images_and_lower_for_noise():
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(image, (image + 0.3 * torch.randn_like(image)).clamp(0, 1))) < 0.8


def test_turning_cameras_moves_their_azimuth_and_keeps_them_on_the_orbit():
    rig = orbit_cameras([0.0, 90.0, 180.0, 270.0], 20.0)
    turned = turned_about_vertical(rig, 30.0)
    assert torch.allclose(orbit_azimuths(turned), torch.tensor([30.0, 120.0, -150.0, -60.0]), atol=1e-3)
    expected = orbit_cameras([30.0, 120.0, 210.0, 300.0], 20.0)
    assert torch.allclose(turned.world_to_camera, expected.world_to_camera, atol=1e-5)
    midway = midway_cameras(orbit_cameras([0.0, 90.0, 180.0], 20.0))
    assert torch.allclose(torch.remainder(orbit_azimuths(midway), 360.0), torch.tensor([45.0, 135.0, 270.0]),
                          atol=1e-3)


def test_cameras_join_in_order_and_refuse_different_sizes():
    a, b = orbit_cameras([0.0], 20.0), orbit_cameras([90.0, 180.0], 20.0)
    joined = Cameras.cat([a, b])
    assert len(joined) == 3 and torch.allclose(joined.world_to_camera[1:], b.world_to_camera)
    with pytest.raises(ValueError, match="different image sizes"):
        Cameras.cat([a, orbit_cameras([0.0], 20.0, width=32, height=32)])


def test_stacked_splats_pad_with_transparent_gaussians():
    small, large = Splats.stack([_cloud(3), _cloud(5)]).item(0), Splats.stack([_cloud(3), _cloud(5)])
    assert small.num_gaussians == 3 and large.counts.tolist() == [3, 5]
    assert float(large.opacities[0, 3:].abs().sum()) == 0.0 and bool((large.scales[0, 3:] == 1.0).all())
    assert math.isclose(float(large.rotations[0, 3:, 0].sum()), 2.0)


def _cloud(n: int) -> Splats:
    rotations = torch.zeros(1, n, 4)
    rotations[..., 0] = 1.0
    return Splats(torch.randn(1, n, 3), torch.full((1, n, 3), 0.1), rotations, torch.full((1, n, 1), 0.5),
                  torch.zeros(1, n, 1, 3))


def test_fit_splats_node_fits_a_rig_of_frames_and_one_splat_per_latent_item():
    from unidit.nodes.splats import UniDiTFitSplats
    from unidit.nodes.types import latent_to_comfy, splat_from_comfy
    from unidit.runtime.generate import Latents

    node = UniDiTFitSplats()
    rig = orbit_cameras([45.0 * k for k in range(8)], 20.0, width=32, height=32)
    frames = toy_views("cylinder", rig)
    (splat,) = node.fit(frames, "orbit", 360.0, 2.0, 49.1, 150, 1, 0)
    fitted = splat_from_comfy(splat)
    with torch.no_grad():
        again = render(fitted, rig, RenderConfig(background=tuple(frames[0, 0, 0].tolist()))).color.clamp(0, 1)
    assert fitted.batch_size == 1 and sum(psnr(a, b) for a, b in zip(again, frames)) / 8 > 28

    four = orbit_cameras([0.0, 90.0, 180.0, 270.0], 20.0, width=32, height=32)
    latent = latent_to_comfy(Latents(torch.zeros(2, 4, 4, 4, 4), "3d", torch.zeros(2, 4, dtype=torch.bool), None,
                                     four))
    both = torch.cat([toy_views("cube", four), toy_views("sphere", four)])
    (splats,) = node.fit(both, "orbit", 360.0, 2.0, 49.1, 20, 1, 0, cameras_from=latent)
    assert splat_from_comfy(splats).batch_size == 2
    with pytest.raises(ValueError, match="whole sets"):
        node.fit(both[:6], "orbit", 360.0, 2.0, 49.1, 20, 1, 0, cameras_from=latent)


def test_fit_splats_runs_inside_inference_mode_as_comfyui_runs_nodes():
    """ComfyUI executes nodes in torch.inference_mode(), with inputs made there; the fit still learns."""
    from unidit.nodes.splats import UniDiTFitSplats
    from unidit.nodes.types import splat_from_comfy

    with torch.inference_mode():
        rig = orbit_cameras([45.0 * k for k in range(8)], 20.0, width=32, height=32)
        frames = toy_views("cube", rig)
        initial = initial_splats(frames, rig, image_backgrounds(frames), 500, torch.Generator().manual_seed(0))
        (splat,) = UniDiTFitSplats().fit(frames, "orbit", 360.0, 2.0, 49.1, 60, 1, 0)
        result = fit_splats(frames, rig, initial=initial, config=FitConfig(iterations=30, initial_points=500))
    assert splat_from_comfy(splat).batch_size == 1
    assert result.losses[-1] < result.losses[0]
