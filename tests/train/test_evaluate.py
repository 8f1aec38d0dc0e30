"""The eval's shape check: it names the primitive of every toy-world render, whatever its size, pose or
background, and an object drawn between two of the world's sizes is still scored by its shape."""
import pytest
import torch

from unidit.runtime.train import evaluate
from unidit.runtime.train import toyworld as tw

RESOLUTION = 64


def centred_disk(radius: float) -> torch.Tensor:
    """A bool disk [H, W] of ``radius`` pixels about the image centre."""
    v, u = torch.meshgrid(torch.arange(RESOLUTION) + 0.5, torch.arange(RESOLUTION) + 0.5, indexing="ij")
    return (u - RESOLUTION / 2) ** 2 + (v - RESOLUTION / 2) ** 2 < radius ** 2


@pytest.fixture(scope="module")
def templates():
    return evaluate.shape_templates(RESOLUTION)


def test_zooming_a_mask_scales_its_area_by_the_square_of_the_factor():
    disk = centred_disk(12.0)[None]
    for factor in (0.8, 1.25):
        zoomed = evaluate.zoom_masks(disk, factor)
        assert float(zoomed.sum() / disk.sum()) == pytest.approx(factor ** 2, rel=0.06)
        rows = torch.nonzero(zoomed[0].any(dim=1)).flatten()
        assert float(rows.float().mean()) == pytest.approx(RESOLUTION / 2 - 0.5, abs=0.5)  # still centred


def test_the_shape_of_every_toy_world_render_is_named(templates):
    scenes = tw.sample_scenes(120, torch.Generator().manual_seed(7), include_held_out=True)
    images = tw.render_images(scenes, tw.ToyWorldConfig(resolution=RESOLUTION)).rgb
    named = [evaluate.classify_shape(evaluate.object_mask(image), templates) for image in images]
    assert {scene.shape for scene in scenes} == set(tw.SHAPES)
    assert named == [scene.shape for scene in scenes]


@pytest.mark.parametrize("factor", [0.82, 1.12, 1.2])
def test_an_object_between_the_worlds_sizes_is_scored_by_its_shape(templates, factor):
    scenes = [tw.Scene(scene.shape, scene.colour, "medium", scene.background, scene.yaw, scene.tilt)
              for scene in tw.sample_scenes(40, torch.Generator().manual_seed(3))]
    silhouettes = tw.render_images(scenes, tw.ToyWorldConfig(resolution=RESOLUTION)).alpha > 0.5
    named = [evaluate.classify_shape(mask, templates) for mask in evaluate.zoom_masks(silhouettes, factor)]
    assert named == [scene.shape for scene in scenes]


def test_a_disk_is_a_sphere_and_a_square_a_cube(templates):
    square = torch.zeros(RESOLUTION, RESOLUTION, dtype=torch.bool)
    side = slice(RESOLUTION // 2 - 14, RESOLUTION // 2 + 14)
    square[side, side] = True
    assert evaluate.classify_shape(centred_disk(0.3 * RESOLUTION), templates) == "sphere"
    assert evaluate.classify_shape(square, templates) == "cube"
