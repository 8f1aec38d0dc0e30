"""`unidit eval`: generate from a fixed prompt set and score the outputs with analytic checks against the toy
world (no learned metric, nothing downloaded).

- colour accuracy: the dominant hue of the object in text -> image samples names the prompted colour
  (all 8 colours x 5 shapes, including the colour/shape pairs held out of training);
- shape accuracy: the object's silhouette matches renders of the prompted primitive better (IoU) than renders
  of the other four, over the sizes and poses the world draws and zooms between its sizes (shape is scored, not
  size);
- 3D consistency: PSNR between the decoded splat rendered at view k and the generated view k;
- image -> video: PSNR of the first frame against the input image; image -> 3D: PSNR of view 0 likewise;
- video motion: the fraction of text -> video samples whose object visibly moves;
- keyframes: PSNR of the first and last frames of videos generated between two given frames (rendered toy-world
  clips' first and last frames) against those frames;
- extension seam: a clip continued from its last frame (Continue Clip), its latent joined to the first clip's
  (Join Latents) and decoded once: the mean absolute frame difference across the join divided by the mean
  between the other consecutive frames; beside it the same for the decoded clips joined as frames (Join Clips);
- chain colour agreement: an image made from a prompt, then a video and 3D views conditioned on it: the fraction
  of video frames and views whose object has the image's colour;
- video seams: on the text -> video samples, the mean absolute change between consecutive frames where the
  autoencoder's frame groups begin (frames 0 -> 1, 4 -> 5, ...) divided by that at all other transitions; beside
  it the same ratio of rendered clips of the same prompts (about 1: every toy-world motion, a bounce's single hop
  included, changes as much at those transitions as at the others);
- motion direction: "moving left/right/up/down" videos whose object centroid moves at least MOTION_DIRECTION_PX
  pixels the prompted way between the first and the last frame;
- colour and shape accuracy by size: as above at every frame size of ``SIZES_SCORED``;
- image -> video, later frames: PSNR of frames 1 .. of videos conditioned on the first frame of a rendered clip
  (with its caption) against the clip;
- background accuracy: the grey level of the border of "... on <background>" images is nearest the named one;
- depth control: the silhouette of images made with a rendered scene's depth map as control (and its caption)
  against that scene's object mask (intersection over union); only for models that take control maps. Beside it
  the same for the scenes' renders passed through the autoencoder alone: the decoder bleeds colour a pixel or two
  past an object's edge, which the silhouette counts, so this is as high as a generated image can score.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

from ..families import FamilyModel
from ..gaussians.camera import Cameras, orbit_cameras
from ..gaussians.fit import FitConfig, fit_splats
from ..gaussians.render import RenderConfig, render
from ..control import depth_image
from ..generate import (attach_control, condition_on_image, continue_clip, decode_frames, decode_splats, empty_latents,
                        encode_latents, generate, give_frames, join_clips, join_latents)
from ..refine import RefineConfig, refine_3d
from ..sampling.guidance import GuidanceConfig
from ..sampling.sampler import SamplerConfig
from . import toyworld
from .toyworld import COLOURS, SHAPES, Scene, ToyWorldConfig

VIDEO_PROMPTS = ("a red cube moving left", "a blue ball moving right", "a bouncing green cylinder",
                 "a spinning yellow cube", "an orange cone moving up", "a purple ring spinning",
                 "a pink sphere moving down", "a bouncing cyan cone")
OBJECT_CHROMA = 0.08     # background is achromatic: pixels with more chroma belong to the object
MOTION_THRESHOLD = 0.01  # mean absolute change between the first and last frame that counts as motion
TEMPLATE_ZOOMS = (0.85, 0.92, 1.0, 1.08, 1.15)  # with the sizes 0.65, 1.0, 1.3: every scale from 0.55 to 1.5
SIZES_SCORED = ((48, 48), (96, 96), (128, 128), (96, 64))   # (width, height) of colour and shape accuracy by size
MOTION_DIRECTION_PX = 5.0
DIRECTION_PROMPTS = ("a red cube moving left", "a green ball moving right", "a blue cylinder moving up",
                     "a yellow cube moving down", "a cyan ball moving left", "a pink cube moving right",
                     "an orange sphere moving up", "a purple cylinder moving down")
BACKGROUND_SCORED = 8    # prompts per background
SEAM_TRUTH_DRAWS = 4     # rendered clips per video prompt for the seam ratio of the ground truth


@dataclass
class EvalConfig:
    seed: int = 0
    steps: Optional[int] = None        # default: the model's
    guidance: Optional[float] = None   # default: the model's
    batch_size: int = 8
    conditioned_items: int = 4         # image -> video and image -> 3D inputs; keyframe, extension and chain items
    views_prompts: int = 8             # text -> 3D prompts
    fit_iterations: int = 500          # splat fitting's steps per shape


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in 0..1."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return 99.0 if mse == 0 else 10.0 * math.log10(1.0 / mse)


def object_mask(image: torch.Tensor) -> torch.Tensor:
    """[..., H, W, 3] -> bool [..., H, W]: the coloured object over the achromatic background."""
    chroma = image.amax(dim=-1) - image.amin(dim=-1)
    return chroma > OBJECT_CHROMA


def border_background(image: torch.Tensor) -> tuple[float, float, float]:
    """The background colour of a view: the median of its border pixels."""
    border = torch.cat([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(float(v) for v in border.median(dim=0).values)


def shape_templates(resolution: int, yaws: int = 8, torus_tilts: int = 3, width: int = 0) -> dict:
    """Silhouettes [K, H, W] of every shape, rendered by the toy world at each of its sizes and ``yaws`` turns (the
    torus within its yaw range, at ``torus_tilts`` tilts across its tilt range), each zoomed by every factor of
    TEMPLATE_ZOOMS so that an object drawn between two of the world's sizes is scored by its shape. ``resolution``
    is the height (and the width, unless ``width`` is given)."""
    config = ToyWorldConfig(resolution=resolution, width=0 if width == resolution else width)
    low, high = toyworld.TORUS_TILT
    torus_tilt_values = [low + (high - low) * j / max(1, torus_tilts - 1) for j in range(torus_tilts)]
    templates = {}
    for shape in SHAPES:
        scenes = []
        for size in toyworld.SIZES:
            for k in range(yaws):
                if shape == "torus":
                    yaw, tilts = (2 * k / max(1, yaws - 1) - 1) * toyworld.TORUS_YAW, torus_tilt_values
                else:
                    yaw, tilts = 2 * math.pi * k / yaws, [0.0]
                scenes += [Scene(shape, "red", size, "grey", yaw, tilt) for tilt in tilts]
        silhouettes = toyworld.render_images(scenes, config).alpha > 0.5
        templates[shape] = torch.cat([zoom_masks(silhouettes, factor) for factor in TEMPLATE_ZOOMS])
    return templates


def zoom_masks(masks: torch.Tensor, factor: float) -> torch.Tensor:
    """Masks [K, H, W] scaled by ``factor`` about the image centre, where the toy world's objects stand."""
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]]).expand(len(masks), 2, 3)
    grid = F.affine_grid(theta, [len(masks), 1, *masks.shape[1:]], align_corners=False)
    return F.grid_sample(masks[:, None].float(), grid, align_corners=False)[:, 0] > 0.5


def classify_shape(mask: torch.Tensor, templates: dict) -> str:
    """The shape whose best template overlaps ``mask`` [H, W] most (intersection over union)."""
    scores = {shape: template_iou(mask, silhouettes) for shape, silhouettes in templates.items()}
    return max(scores, key=scores.get)


def evaluate(model: FamilyModel, config: EvalConfig | None = None, progress: bool = True) -> dict:
    config = config or EvalConfig()
    started = time.perf_counter()
    defaults = model.defaults
    width, height = defaults.width, defaults.height
    sampler = SamplerConfig(solver=defaults.solver, steps=config.steps or defaults.steps)
    negative = model.encode_prompts([defaults.negative_prompt])
    generator = torch.Generator().manual_seed(config.seed)
    world = ToyWorldConfig(resolution=width)
    image_pairs = [(colour, shape) for shape in SHAPES for colour in COLOURS]
    items = config.conditioned_items
    control = bool(model.capabilities.control)
    total = (len(image_pairs) * (1 + len(SIZES_SCORED)) + len(VIDEO_PROMPTS) + len(DIRECTION_PROMPTS)
             + config.views_prompts + len(toyworld.BACKGROUNDS) * BACKGROUND_SCORED
             + (9 + 2 * control) * items)   # 2 + 1 + 2 + 3 + 1 runs of items, and depth control's
    bar = tqdm(total=total, desc="eval", disable=not progress, dynamic_ncols=True)

    def sample(latents, prompts: list, seed: int):
        scale = config.guidance if config.guidance is not None else \
            defaults.guidance_scale(bool(latents.given.any()))
        with torch.no_grad():
            result = generate(model, latents, model.encode_prompts(prompts), negative, GuidanceConfig(scale=scale),
                              sampler, config.seed + seed)
        bar.update(len(prompts))
        return result

    def run(modality: str, prompts: list, images: Optional[torch.Tensor] = None, seed: int = 0,
            size: Optional[tuple[int, int]] = None):
        w, h = size or (width, height)
        latents = empty_latents(model, modality, w, h, batch_size=len(prompts), frames=defaults.frames)
        if images is not None:
            latents = condition_on_image(model, latents, images)
        return sample(latents, prompts, seed)

    def colour_and_shape(size: tuple[int, int], seed: int) -> tuple[list, list, list]:
        """Per (colour, shape) pair: colour right, shape right, and whether the pair is held out of training."""
        templates = shape_templates(size[1], width=size[0])
        colour_ok, shape_ok = [], []
        for start in range(0, len(image_pairs), config.batch_size):
            pairs = image_pairs[start:start + config.batch_size]
            frames = decode_frames(model, run("image", [f"a {c} {s}" for c, s in pairs], seed=seed + start,
                                              size=size))[:, 0]
            for (colour, shape), image in zip(pairs, frames):
                mask = object_mask(image)
                colour_ok.append(toyworld.dominant_colour(image, mask) == colour)
                shape_ok.append(bool(mask.any()) and classify_shape(mask, templates) == shape)
        return colour_ok, shape_ok, [pair in toyworld.HELD_OUT_PAIRS for pair in image_pairs]

    # text -> image: colour and shape, at the default size and at the others
    colour_hits, shape_hits, held = colour_and_shape((width, height), 0)
    held_colour = [hit for hit, h in zip(colour_hits, held) if h]
    held_shape = [hit for hit, h in zip(shape_hits, held) if h]
    by_size = {f"{w}x{h}": colour_and_shape((w, h), 10_000 * (index + 1))[:2]
               for index, (w, h) in enumerate(SIZES_SCORED)}

    # text -> video: motion, seams between the autoencoder's frame groups, motion direction
    videos = decode_frames(model, run("video", list(VIDEO_PROMPTS), seed=1000))
    moving = [float((video[-1] - video[0]).abs().mean()) > MOTION_THRESHOLD for video in videos]
    temporal_factor = model.capabilities.temporal_factor
    truth = torch.Generator().manual_seed(config.seed + 8000)
    true_clips = torch.cat([toyworld.render_videos(toyworld.scenes_for_caption(prompt, SEAM_TRUTH_DRAWS, truth),
                                                   replace(world, frames=defaults.frames)).rgb
                            for prompt in VIDEO_PROMPTS])
    directed = decode_frames(model, run("video", list(DIRECTION_PROMPTS), seed=1500))
    direction_hits = [moved_as_prompted(video, toyworld.parse_caption(prompt)["direction"])
                      for video, prompt in zip(directed, DIRECTION_PROMPTS)]

    # backgrounds named in the prompt
    background_hits = []
    for index, name in enumerate(toyworld.BACKGROUNDS):
        pairs = [image_pairs[(7 * index + 5 * k) % len(image_pairs)] for k in range(BACKGROUND_SCORED)]
        frames = decode_frames(model, run("image", [f"a {c} {s} on {name}" for c, s in pairs],
                                          seed=1700 + 100 * index))[:, 0]
        background_hits += [nearest_background(border_background(frame)) == name for frame in frames]

    # text -> 3D: the splat seen from each view against the view itself
    view_prompts = [f"a {colour} {SHAPES[i % len(SHAPES)]}" for i, colour in enumerate(COLOURS)]
    view_prompts = (view_prompts * math.ceil(config.views_prompts / len(view_prompts)))[:config.views_prompts]
    view_latents = run("3d", view_prompts, seed=2000)
    splat_psnrs = splat_view_psnrs(model, view_latents, decode_frames(model, view_latents))

    # image -> video and image -> 3D: the given frame comes back
    scenes = toyworld.sample_scenes(config.conditioned_items, generator, include_held_out=True)
    inputs = toyworld.render_images(scenes, world).rgb
    captions = [toyworld.caption(scene, generator) for scene in scenes]
    first_frames = decode_frames(model, run("video", captions, inputs, seed=3000))[:, 0]
    later_scenes = toyworld.sample_scenes(items, generator, with_motion=True)
    truth = toyworld.render_videos(later_scenes, replace(world, frames=defaults.frames)).rgb
    later = decode_frames(model, run("video", [toyworld.caption(s, generator) for s in later_scenes], truth[:, 0],
                                     seed=3500))
    later_psnrs = [psnr(later[i, t], truth[i, t]) for i in range(items) for t in range(1, truth.shape[1])]
    view0 = decode_frames(model, run("3d", captions, inputs, seed=4000))[:, 0]

    # keyframes: a video between the first and last frames of rendered clips
    moving_scenes = toyworld.sample_scenes(items, generator, with_motion=True)
    clips = toyworld.render_videos(moving_scenes, replace(world, frames=defaults.frames)).rgb
    keyed = empty_latents(model, "video", width, height, batch_size=items, frames=defaults.frames)
    keyed = give_frames(model, give_frames(model, keyed, clips[:, 0], [0]), clips[:, -1], [-1])
    between = decode_frames(model, sample(keyed, [toyworld.caption(s, generator) for s in moving_scenes], 5000))
    keyframe_psnrs = [psnr(between[i, end], clips[i, end]) for i in range(items) for end in (0, -1)]

    # extension: each text -> video sample continued from its last frame, joined as latents and as frames
    prompts = list(VIDEO_PROMPTS[:items])
    first_latents = run("video", prompts, seed=6000)
    firsts = decode_frames(model, first_latents)
    seams, frame_seams = [], []
    for index, (prompt, first) in enumerate(zip(prompts, firsts)):
        second = sample(continue_clip(model, first, 1, defaults.frames), [prompt], 6100 + index)
        joined = join_latents(replace(first_latents, samples=first_latents.samples[index:index + 1],
                                      given=first_latents.given[index:index + 1], clean=None), second)
        seams.append(join_step_ratio(decode_frames(model, joined)[0], len(first) - 1))
        frame_seams.append(join_step_ratio(join_clips(first, decode_frames(model, second)[0], 1), len(first) - 1))

    # one subject across modalities: the image first, the video and the 3D views conditioned on it
    chain_prompts = [f"a {colour} {shape}" for colour, shape in image_pairs[::len(image_pairs) // items][:items]]
    images = decode_frames(model, run("image", chain_prompts, seed=7000))[:, 0]
    chained = torch.cat([decode_frames(model, run("video", chain_prompts, images, seed=7100)),
                         decode_frames(model, run("3d", chain_prompts, images, seed=7200))], dim=1)
    agreement = []
    for image, frames in zip(images, chained):
        colour = toyworld.dominant_colour(image, object_mask(image))
        agreement += [colour is not None and toyworld.dominant_colour(f, object_mask(f)) == colour for f in frames]
    control_ious, round_trip_ious = depth_control_ious(model, sample, world, generator, 2 * items) if control \
        else ([], [])
    text_guidance = GuidanceConfig(scale=config.guidance if config.guidance is not None else defaults.guidance)
    refined_psnrs = refined_novel_view_psnrs(model, negative, text_guidance, sampler, config.seed + 5000)
    bar.close()
    fit_psnrs = fit_novel_view_psnrs(width, config.fit_iterations, config.seed)

    return {
        "color_accuracy": mean(colour_hits),
        "shape_accuracy": mean(shape_hits),
        "splat_view_psnr": round(sum(splat_psnrs) / len(splat_psnrs), 2),
        "i2v_first_frame_psnr": round(sum(psnr(a, b) for a, b in zip(first_frames, inputs)) / len(inputs), 2),
        "i23d_view0_psnr": round(sum(psnr(a, b) for a, b in zip(view0, inputs)) / len(inputs), 2),
        "video_motion": mean(moving),
        "fit_novel_view_psnr": round(sum(fit_psnrs.values()) / len(fit_psnrs), 2),
        "refined_novel_view_psnr": round(sum(refined_psnrs) / len(refined_psnrs), 2),
        "keyframe_psnr": round(sum(keyframe_psnrs) / len(keyframe_psnrs), 2),
        "extension_seam": round(sum(seams) / len(seams), 3),
        "extension_seam_frames": round(sum(frame_seams) / len(frame_seams), 3),
        "chain_color_agreement": mean(agreement),
        "video_seam_ratio": round(video_seam_ratio(videos, temporal_factor), 3),
        "video_seam_ratio_ground_truth": round(video_seam_ratio(true_clips, temporal_factor), 3),
        "motion_direction_accuracy": mean(direction_hits),
        "color_accuracy_by_size": {size: mean(hits[0]) for size, hits in by_size.items()},
        "shape_accuracy_by_size": {size: mean(hits[1]) for size, hits in by_size.items()},
        "i2v_later_frames_psnr": round(sum(later_psnrs) / len(later_psnrs), 2),
        "background_accuracy": mean(background_hits),
        "depth_control_iou": mean(control_ious) if control else None,
        "depth_control_iou_autoencoder": mean(round_trip_ious) if control else None,
        "held_out_color_accuracy": mean(held_colour),
        "held_out_shape_accuracy": mean(held_shape),
        "prompts": total,
        "steps": sampler.steps,
        "guidance": config.guidance if config.guidance is not None else defaults.guidance,
        "given_frames_guidance": config.guidance if config.guidance is not None else defaults.given_frames_guidance,
        "seconds": round(time.perf_counter() - started, 1),
    }


def join_step_ratio(joined: torch.Tensor, join: int) -> float:
    """[T, H, W, 3]: the mean absolute change across step ``join`` (frame join -> join + 1) over the mean of the
    other steps."""
    steps = (joined[1:] - joined[:-1]).abs().flatten(1).mean(1)
    within = torch.cat([steps[:join], steps[join + 1:]]).mean()
    return float(steps[join] / within.clamp_min(1e-4))


def video_seam_ratio(videos: torch.Tensor, temporal_factor: int) -> float:
    """Videos [B, T, H, W, 3]: the mean absolute change between consecutive frames at the transitions into the
    first frame of each of the autoencoder's frame groups (0 -> 1, 4 -> 5, ...) over that at the others."""
    steps = (videos[:, 1:] - videos[:, :-1]).abs().flatten(2).mean(2)     # [B, T - 1]: step t is frame t -> t + 1
    at_seams = torch.arange(steps.shape[1]) % temporal_factor == 0
    return float(steps[:, at_seams].mean() / steps[:, ~at_seams].mean().clamp_min(1e-6))


def object_centroid(image: torch.Tensor) -> Optional[torch.Tensor]:
    """(x, y) in pixels of the object's mask in [H, W, 3], or None where there is no object."""
    mask = object_mask(image)
    if not bool(mask.any()):
        return None
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()])


def moved_as_prompted(video: torch.Tensor, direction: str) -> bool:
    """Whether the object's centroid moves at least MOTION_DIRECTION_PX pixels ``direction`` (image axes: up is -y)
    from the first to the last frame of [T, H, W, 3]."""
    start, end = object_centroid(video[0]), object_centroid(video[-1])
    if start is None or end is None:
        return False
    along = torch.tensor(toyworld.DIRECTIONS[direction][:2])
    return float((end - start) @ along) >= MOTION_DIRECTION_PX


def nearest_background(colour: tuple[float, float, float]) -> str:
    """The toy world's background whose grey level is nearest the mean of ``colour``."""
    level = sum(colour) / 3
    return min(toyworld.BACKGROUNDS, key=lambda name: abs(toyworld.BACKGROUNDS[name] - level))


def depth_control_ious(model: FamilyModel, sample, world: ToyWorldConfig, generator: torch.Generator,
                       items: int) -> tuple[list, list]:
    """Images made with a rendered scene's depth map (and its caption): the intersection over union of each
    one's object with the scene's object mask; and the same for the renders through the autoencoder alone."""
    scenes = toyworld.sample_scenes(items, generator)
    rendered = toyworld.render_images(scenes, world)
    depth = depth_image(rendered.depth[:, None], rendered.alpha[:, None])
    latents = empty_latents(model, "image", *world.size, batch_size=len(scenes))
    latents = attach_control(model, latents, depth=depth[:, 0], mask=None)
    images = decode_frames(model, sample(latents, [toyworld.caption(s, generator) for s in scenes], 9000))[:, 0]
    round_trips = decode_frames(model, encode_latents(model, rendered.rgb, "image"))[:, 0]
    objects = rendered.alpha > 0.5
    return ([iou(object_mask(image), truth) for image, truth in zip(images, objects)],
            [iou(object_mask(image), truth) for image, truth in zip(round_trips, objects)])


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def evaluate_lora(model: FamilyModel, lora_path, config: EvalConfig | None = None, samples: int = 16) -> dict:
    """What a LoRA trained on one subject (its file's ``subject`` metadata, e.g. "purple torus") does to the
    samples of "a <colour> <shape>": the same ``samples`` seeds without it, at strength 1 and at strength 0
    (which must give the base samples bit for bit), scored for colour and shape as in :func:`evaluate`, for the
    overlap with the subject's shape templates, and for the pixels of background the object encloses (a torus'
    hole), beside the same figures on toy-world renders of the subject, the data the LoRA was trained on."""
    from ..lora import read_lora

    config = config or EvalConfig()
    lora = read_lora(lora_path, model.denoiser.lora_targets()[0], model.denoiser.lora_name)
    subject = tuple(lora.metadata.get("subject", "").split())
    if len(subject) != 2 or subject[0] not in COLOURS or subject[1] not in SHAPES:
        raise ValueError(f"{Path(lora_path).name} names no toy-world subject in its metadata (got "
                         f"{lora.metadata.get('subject')!r}); it was not made by unidit train --lora-rank --subject")
    colour, shape = subject
    defaults = model.defaults
    sampler = SamplerConfig(solver=defaults.solver, steps=config.steps or defaults.steps)
    guidance = GuidanceConfig(scale=config.guidance if config.guidance is not None else defaults.guidance)
    prompt = f"a {colour} {shape}"
    templates = shape_templates(defaults.width)

    def images(view: FamilyModel) -> torch.Tensor:
        latents = empty_latents(view, "image", defaults.width, defaults.height, batch_size=samples)
        with torch.no_grad():
            made = generate(view, latents, view.encode_prompts([prompt] * samples),
                            view.encode_prompts([defaults.negative_prompt]), guidance, sampler, config.seed)
        return decode_frames(view, made)[:, 0]

    def scores(frames: torch.Tensor, name: str) -> dict:
        masks = [object_mask(frame) for frame in frames]
        return {f"{name}_color_accuracy": mean([toyworld.dominant_colour(f, m) == colour
                                                for f, m in zip(frames, masks)]),
                f"{name}_shape_accuracy": mean([bool(m.any()) and classify_shape(m, templates) == shape
                                                for m in masks]),
                f"{name}_subject_iou": mean([template_iou(m, templates[shape]) for m in masks]),
                f"{name}_enclosed_pixels": mean([enclosed_pixels(m) for m in masks])}

    base = images(model)
    off = images(model.with_loras([(lora, 0.0)]))
    with_lora = images(model.with_loras([(lora, 1.0)]))
    generator = torch.Generator().manual_seed(config.seed)
    world = ToyWorldConfig(resolution=defaults.width)
    renders = toyworld.render_images(toyworld.sample_scenes(samples, generator, subject=subject), world).rgb
    return {"subject": prompt, "samples": samples, **scores(base, "base"), **scores(with_lora, "lora"),
            **scores(renders, "training_data"), "mean_abs_change": round(float((with_lora - base).abs().mean()), 4),
            "strength_0_bit_identical": bool(torch.equal(off, base))}


def template_iou(mask: torch.Tensor, silhouettes: torch.Tensor) -> float:
    """The best intersection over union of ``mask`` [H, W] with one of ``silhouettes`` [T, H, W]."""
    intersection = (silhouettes & mask).flatten(1).sum(1).float()
    union = (silhouettes | mask).flatten(1).sum(1).float().clamp_min(1)
    return float((intersection / union).max())


def enclosed_pixels(mask: torch.Tensor) -> int:
    """Background pixels that the object ``mask`` [H, W] surrounds (not connected to the image border)."""
    filled = ndimage.binary_fill_holes(mask.numpy())
    return int((filled & ~mask.numpy()).sum())


def mean(values) -> float:
    return round(sum(float(v) for v in values) / max(1, len(values)), 4)


def splat_view_psnrs(model: FamilyModel, latents, views: torch.Tensor, supersample: int = 2) -> list:
    """PSNR of each item's splat rendered at every rig view against the decoded view, averaged over views.

    The generated views are antialiased renders, so the splat is rendered antialiased too: ``supersample`` x
    the resolution, then averaged down.
    """
    splats = decode_splats(model, latents)
    cameras = latents.cameras
    big = cameras.resized(cameras.width * supersample, cameras.height * supersample)
    scores = []
    for item in range(latents.batch_size):
        target = views[item]
        background = border_background(target[0])
        count = int(splats.counts[item]) if splats.counts is not None else splats.num_gaussians
        if count == 0:
            scores.append(psnr(torch.tensor(background).expand_as(target), target))
            continue
        rendering = render(splats.item(item), big, RenderConfig(background=background)).color  # [V, H', W', 3]
        rendered = F.avg_pool2d(rendering.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
        scores.append(sum(psnr(r, t) for r, t in zip(rendered, target)) / len(target))
    return scores


FIT_AZIMUTHS = [45.0 * k for k in range(8)]                   # the fitted views, on the 20-degree orbit
HELD_OUT_AZIMUTHS = [22.5 + 45.0 * k for k in range(8)]       # scored views, halfway between them
HELD_OUT_ELEVATIONS = [10.0, 30.0] * 4


def fit_novel_view_psnrs(resolution: int, iterations: int, seed: int = 0) -> dict:
    """Per shape: PSNR of a splat fitted to 8 toy-world views (resolution²) rendered at the 8 held-out cameras at
    2x the resolution against the world's renders there (antialiased both: the world supersamples its rays, the
    splat is rendered at 2x again and averaged down)."""
    world = ToyWorldConfig(resolution=resolution)
    fitted_cameras = orbit_cameras(FIT_AZIMUTHS, 20.0, width=resolution, height=resolution)
    held_out = Cameras.cat([orbit_cameras([azimuth], elevation, width=4 * resolution, height=4 * resolution)
                          for azimuth, elevation in zip(HELD_OUT_AZIMUTHS, HELD_OUT_ELEVATIONS)])
    scores = {}
    for index, shape in enumerate(SHAPES):
        scene = Scene(shape, list(COLOURS)[index % len(COLOURS)])
        views = toyworld.render_from([scene], fitted_cameras, world).rgb[0]
        truth = toyworld.render_from([scene], held_out.resized(2 * resolution, 2 * resolution), world).rgb[0]
        splats = fit_splats(views, fitted_cameras, config=FitConfig(iterations=iterations, seed=seed)).splats
        with torch.no_grad():
            rendering = render(splats, held_out, RenderConfig(background=border_background(views[0]))).color
        rendered = F.avg_pool2d(rendering.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).clamp(0, 1)
        scores[shape] = sum(psnr(r, t) for r, t in zip(rendered, truth)) / len(truth)
    return scores


REFINE_HELD_OUT = (1, 3)   # the in-between views after rig views 1 and 3 are not fitted, only scored


def refined_novel_view_psnrs(model: FamilyModel, negative, guidance: GuidanceConfig, sampler: SamplerConfig,
                             seed: int, config: RefineConfig | None = None) -> list:
    """Per shape (one prompt each): PSNR of the refined splat at the in-between views it was not fitted to
    (``REFINE_HELD_OUT``) against the model's views there, rendered at 2x and averaged down (as
    :func:`splat_view_psnrs`), averaged over those views."""
    defaults = model.defaults
    prompts = model.encode_prompts([f"a {colour} {shape}" for colour, shape in zip(COLOURS, SHAPES)])
    latents = empty_latents(model, "3d", defaults.width, defaults.height, batch_size=len(SHAPES))
    with torch.no_grad():
        sampled = generate(model, latents, prompts, negative, guidance, sampler, seed)
    refined = refine_3d(model, sampled, prompts, negative, guidance, config or RefineConfig(), seed,
                        hold_out=REFINE_HELD_OUT)
    held_out = [2 * k + 1 for k in REFINE_HELD_OUT]
    cameras = refined.cameras[torch.tensor(held_out)]
    big = cameras.resized(2 * cameras.width, 2 * cameras.height)
    scores = []
    for item in range(len(SHAPES)):
        targets = refined.views[item, held_out]
        with torch.no_grad():
            rendering = render(refined.splats.item(item), big,
                               RenderConfig(background=border_background(targets[0]))).color
        rendered = F.avg_pool2d(rendering.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).clamp(0, 1)
        scores.append(sum(psnr(r, t) for r, t in zip(rendered, targets)) / len(targets))
    return scores
