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


# ---- the v2 scores: seams, motion direction, backgrounds, sizes --------------------------------------------------

def moving_clips(count: int = 8, seed: int = 3):
    scenes = tw.sample_scenes(count, torch.Generator().manual_seed(seed), with_motion=True)
    return scenes, tw.render_videos(scenes, tw.ToyWorldConfig(resolution=RESOLUTION)).rgb


def test_ground_truth_clips_have_no_seams_and_a_jump_at_a_group_start_is_one():
    _, clips = moving_clips()
    assert evaluate.video_seam_ratio(clips, 4) == pytest.approx(1.0, abs=0.35)
    jumped = clips.clone()
    jumped[:, 1:] = (jumped[:, 1:] + 0.05).clamp(0, 1)        # every frame after frame 0 a little brighter
    jumped[:, 5:] = (jumped[:, 5:] - 0.05).clamp(0, 1)        # and back at frame 5
    assert evaluate.video_seam_ratio(jumped, 4) > 2.0


def test_the_join_step_ratio_is_one_for_even_motion_and_counts_a_jump_at_the_join():
    even = torch.arange(17, dtype=torch.float32)[:, None, None, None].expand(17, 2, 2, 3) * 0.01
    assert evaluate.join_step_ratio(even, 8) == pytest.approx(1.0)
    jumped = even.clone()
    jumped[9:] += 0.03                               # the step 8 -> 9 is 0.04 where the others are 0.01
    assert evaluate.join_step_ratio(jumped, 8) == pytest.approx(4.0)
    assert evaluate.join_step_ratio(jumped, 3) == pytest.approx(0.01 / (0.18 / 15))   # the jump is among "the others"


def test_true_clips_of_the_evals_video_prompts_have_no_seams():
    """The seam ratio is calibrated on the ground truth: rendered clips of every video prompt, bouncing ones
    included, change as much where the autoencoder's frame groups begin as elsewhere (no autoencoder involved)."""
    generator = torch.Generator().manual_seed(5)
    world = tw.ToyWorldConfig(resolution=RESOLUTION)

    def ratio(prompts) -> float:
        clips = torch.cat([tw.render_videos(tw.scenes_for_caption(p, 4, generator), world).rgb for p in prompts])
        return evaluate.video_seam_ratio(clips, 4)

    bouncing = [p for p in evaluate.VIDEO_PROMPTS if tw.parse_caption(p)["motion"] == "bounce"]
    assert len(bouncing) == 2
    assert ratio(bouncing) == pytest.approx(1.0, abs=0.1)
    assert ratio(evaluate.VIDEO_PROMPTS) == pytest.approx(1.0, abs=0.1)
    assert ratio(evaluate.DIRECTION_PROMPTS) == pytest.approx(1.0, abs=0.1)


def test_motion_direction_reads_the_rendered_translations():
    scenes = [tw.Scene("cube", "red", "medium", "grey", motion="translate", direction=d, amount=0.35)
              for d in tw.DIRECTIONS]
    clips = tw.render_videos(scenes, tw.ToyWorldConfig(resolution=RESOLUTION)).rgb
    for scene, clip in zip(scenes, clips):
        assert evaluate.moved_as_prompted(clip, scene.direction)
        opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[scene.direction]
        assert not evaluate.moved_as_prompted(clip, opposite)
    still = clips[:, :1].expand_as(clips)
    assert not any(evaluate.moved_as_prompted(clip, "left") for clip in still)
    assert all(evaluate.toyworld.parse_caption(p)["direction"] for p in evaluate.DIRECTION_PROMPTS)


def test_backgrounds_are_named_from_the_border_of_renders():
    for name in tw.BACKGROUNDS:
        image = tw.render_images([tw.Scene("cone", "blue", "large", name)], tw.ToyWorldConfig(resolution=32)).rgb[0]
        assert evaluate.nearest_background(evaluate.border_background(image)) == name


def test_shapes_are_named_at_every_scored_size():
    for width, height in evaluate.SIZES_SCORED:
        templates = evaluate.shape_templates(height, yaws=4, width=width)
        scenes = [tw.Scene(shape, "red", "medium", "grey", yaw=0.3, tilt=0.8 if shape == "torus" else 0.0)
                  for shape in tw.SHAPES]
        masks = tw.render_images(scenes, tw.ToyWorldConfig.sized(width, height)).alpha > 0.5
        assert [evaluate.classify_shape(m, templates) for m in masks] == list(tw.SHAPES), (width, height)
