"""The demo bundle shipped in models/: it loads, round-trips through its own file format, is small enough to ship,
and follows a prompt: colour at every trained size, shape, background (the scores over all prompts are
`unidit eval`'s)."""
import pytest
import torch

from unidit.runtime.bundle import SHIPPED_BUNDLE, ModelBundle
from unidit.runtime.families.unidit import model_from_bundle
from unidit.runtime.generate import attach_control, decode_frames, empty_latents, generate
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig
from unidit.runtime.train.evaluate import (border_background, classify_shape, nearest_background, object_mask,
                                          shape_templates)
from unidit.runtime.train.toyworld import dominant_colour


@pytest.fixture(scope="module")
def shipped():
    assert SHIPPED_BUNDLE.exists(), f"{SHIPPED_BUNDLE} is missing: train it with `unidit train --preset toyworld`"
    return ModelBundle.load(SHIPPED_BUNDLE)


def sample_frames(bundle, prompts, seed=0, steps=None, size=None, frames=1, mask=None):
    """[N, H, W, 3] images, or [N, T, H, W, 3] videos of ``frames`` frames; ``mask``: object masks through the
    control maps (one per frame of a video: a trajectory)."""
    model = model_from_bundle(bundle)
    defaults = model.defaults
    width, height = size or (defaults.width, defaults.height)
    latents = empty_latents(model, "image" if frames == 1 else "video", width, height, batch_size=len(prompts),
                            frames=frames)
    if mask is not None:
        latents = attach_control(model, latents, mask=mask)
    sampler = SamplerConfig(solver=defaults.solver, steps=steps or defaults.steps)
    with torch.no_grad():
        result = generate(model, latents, model.encode_prompts(prompts), model.encode_prompts([""]),
                          GuidanceConfig(defaults.guidance), sampler, seed)
    frames_out = decode_frames(model, result)
    return frames_out[:, 0] if frames == 1 else frames_out


def test_the_shipped_bundle_is_complete_and_small(shipped):
    assert SHIPPED_BUNDLE.stat().st_size <= 60e6
    assert shipped.info["training"]["preset"] == "toyworld"
    defaults = shipped.defaults
    assert (defaults.width, defaults.height, defaults.rig, defaults.views) == (64, 64, "orbit", 4)
    assert shipped.tokenizer.get_vocab_size() > 50
    assert set(defaults.sizes()) >= {(48, 48), (64, 64), (96, 96), (128, 128), (96, 64), (64, 96)}
    assert model_from_bundle(shipped).capabilities.control


def test_the_shipped_bundle_round_trips(shipped, tmp_path):
    copy = ModelBundle.load(shipped.save(tmp_path / "copy.safetensors"))  # stored in fp16, as shipped
    for name, module in shipped.modules().items():
        reloaded = copy.modules()[name].state_dict()
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, reloaded[key]), f"{name}.{key}"
    assert copy.info == shipped.info and copy.defaults == shipped.defaults
    assert torch.equal(sample_frames(shipped, ["a red sphere"], steps=4), sample_frames(copy, ["a red sphere"], steps=4))


@pytest.mark.parametrize("colour, shape",
                         [("red", "sphere"), ("blue", "sphere"), ("green", "cube"), ("purple", "cone")])
def test_the_object_has_the_prompted_colour(shipped, colour, shape):
    images = sample_frames(shipped, [f"a {colour} {shape}"] * 4, seed=7)
    for image in images:
        mask = object_mask(image)
        assert mask.float().mean() > 0.02, "no object in the image"
        assert dominant_colour(image, mask) == colour


@pytest.mark.parametrize("size, colour, shape", [((48, 48), "blue", "cube"), ((96, 96), "red", "cylinder"),
                                                 ((128, 128), "green", "sphere"), ((96, 64), "yellow", "cone"),
                                                 ((64, 96), "purple", "cube")])
def test_the_object_has_the_prompted_colour_at_every_trained_size(shipped, size, colour, shape):
    images = sample_frames(shipped, [f"a {colour} {shape}"] * 2, seed=5, size=size)
    assert images.shape[1:3] == (size[1], size[0])
    for image in images:
        mask = object_mask(image)
        assert mask.float().mean() > 0.02, f"no object in the {size[0]}x{size[1]} image"
        assert dominant_colour(image, mask) == colour


@pytest.mark.parametrize("shape", ["sphere", "cylinder", "cone"])
def test_the_object_has_the_prompted_shape(shipped, shape):
    """The shapes the model draws reliably (15 or 16 in 16 each over 8 colours and 2 seeds). The torus, whose hole
    is sometimes drawn too small, and the cube, whose rounded corners can read as a cylinder, miss more, and their
    misses cluster by seed (the torus: 15 in 16 at seeds 0 and 1, 2 of these 4 at seed 7)."""
    templates = shape_templates(64)
    images = sample_frames(shipped, [f"a {colour} {shape}" for colour in ("red", "blue", "green", "yellow")], seed=7)
    named = [classify_shape(object_mask(image), templates) for image in images]
    assert named.count(shape) >= 3, named


@pytest.mark.parametrize("background", ["black", "white", "grey"])
def test_the_background_is_the_prompted_one(shipped, background):
    for image in sample_frames(shipped, [f"a yellow cube on {background}", f"a cyan cone on {background}"], seed=9):
        assert nearest_background(border_background(image)) == background


def test_image_to_video_moves_the_object_the_prompted_way(shipped):
    """A still render of the object given as frame 0, and "moving left / right / up / down": the object moves at
    least 5 px the prompted way in at least 6 of 8 clips (2 objects x 4 directions), every direction at least
    once."""
    from unidit.runtime.generate import condition_on_image
    from unidit.runtime.train.evaluate import moved_as_prompted
    from unidit.runtime.train.toyworld import Scene, ToyWorldConfig, render_images

    model = model_from_bundle(shipped)
    directions = ["left", "right", "up", "down"]
    hits = []
    for shape, colour in (("cube", "red"), ("sphere", "green")):
        image = render_images([Scene(shape, colour, "medium", "grey", yaw=0.5)], ToyWorldConfig(resolution=64)).rgb
        latents = condition_on_image(model, empty_latents(model, "video", 64, 64, batch_size=4, frames=9),
                                     image.expand(4, -1, -1, -1))
        prompts = [f"a {colour} {shape} moving {direction}" for direction in directions]
        with torch.no_grad():
            result = generate(model, latents, model.encode_prompts(prompts), model.encode_prompts([""]),
                              GuidanceConfig(model.defaults.given_frames_guidance),
                              SamplerConfig(solver=model.defaults.solver, steps=model.defaults.steps), 1)
        hits += [(direction, moved_as_prompted(video, direction))
                 for video, direction in zip(decode_frames(model, result), directions)]
    assert sum(hit for _, hit in hits) >= 6, hits
    assert {direction for direction, hit in hits if hit} == set(directions), hits


def test_text_to_video_moves_the_object_the_prompted_way(shipped):
    """Text alone, "moving left / right / up / down": at least 6 of 8 clips move the object 5 px or more the
    prompted way, every direction at least once (motion_direction_accuracy in `unidit eval`: 7 or 8 of 8 at seeds
    0-2 when this bundle shipped; 0 to 1 of 8 before its motion stage)."""
    from unidit.runtime.train.evaluate import moved_as_prompted

    directions = ["left", "right", "up", "down"]
    prompts = [f"a {colour} {shape} moving {direction}" for colour, shape in (("red", "cube"), ("green", "sphere"))
               for direction in directions]
    videos = sample_frames(shipped, prompts, seed=3, frames=9)
    hits = [(prompt.split()[-1], moved_as_prompted(video, prompt.split()[-1])) for video, prompt in zip(videos, prompts)]
    assert sum(hit for _, hit in hits) >= 6, hits
    assert {direction for direction, hit in hits if hit} == set(directions), hits


@pytest.mark.parametrize("size", [(48, 48), (96, 96), (128, 128)])
def test_the_object_has_the_prompted_shape_beyond_64(shipped, size):
    """Cones, a shape drawn reliably at every size (16 of 16 at 48², 96² and 128² over 8 colours and 2 seeds before
    the bundle's colour pass; spheres too, but a blob of no shape reads as one): at least 3 of 4 named right. Over
    all five shapes shape accuracy is 0.775-0.9 at 48², 0.825-0.9 at 96², 0.7-0.85 at 128² (`unidit eval`); cubes
    and tori miss most."""
    templates = shape_templates(size[1], width=size[0])
    images = sample_frames(shipped, [f"a {colour} cone" for colour in ("red", "blue", "green", "yellow")],
                           seed=11, size=size)
    named = [classify_shape(object_mask(image), templates) for image in images]
    assert named.count("cone") >= 3, (size, named)


@pytest.mark.parametrize("direction", ["left", "up"])
def test_a_mask_per_frame_moves_the_object_along_it(shipped, direction):
    """An object mask per frame through UniDiT Control (a trajectory) moves the object along it."""
    from unidit.runtime.train.evaluate import moved_as_prompted
    from unidit.runtime.train.toyworld import Scene, ToyWorldConfig, render_videos

    scene = Scene("cube", "red", "medium", "grey", yaw=0.5, motion="translate", direction=direction, amount=0.35)
    trajectory = render_videos([scene], ToyWorldConfig(resolution=64, frames=9)).alpha[0]     # [9, 64, 64]
    [video] = sample_frames(shipped, [f"a red cube moving {direction}"], seed=1, frames=9, mask=trajectory > 0.5)
    assert moved_as_prompted(video, direction)
    assert dominant_colour(video[-1], object_mask(video[-1])) == "red"
