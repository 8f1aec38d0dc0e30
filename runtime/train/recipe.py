"""The recipe of the shipped demo bundle: presets and the training stages, from nothing to one .safetensors.

    1. autoencoder     toy-world images and videos at the preset's frame sizes -> reconstruction (L1 + MSE) +
                       the frame-to-frame change of videos (L1, against seams between frames) + KL, rendered
                       fresh every step
       decoder         the decoder alone, on posterior means (the encoder, hence the latent space, stays fixed):
                       sharper frames at a fraction of the cost of a full autoencoder step, with the object's
                       pixels weighted up and a hue term, so colours come out as named
    2. statistics      per-channel mean/std of the latents, so the backbone sees unit-variance latents
    3. splat decoder   4 rig views -> per-pixel Gaussians: ground-truth surfels + a render loss on 4 held-out views
    4. latent dataset  images, videos and view sets rendered, encoded and cached with their captions, at several
                       frame sizes (one bucket each), with depth and mask control maps; some clips augmented
                       out of the toy world (data.augment_clip)
    5. backbone        rectified flow on the cached latents with the text encoder, a task mixture as given-frame
                       masks (text -> image / video / 3D, image -> video, image -> 3D, extension, interpolation),
                       control maps given at random, caption dropout for guidance, unknown words for robustness;
                       each step draws every kind's clips from one size bucket, with the batch scaled so every
                       step costs about the same, and noise levels shifted by the bucket's token count
       later passes    (Preset.later_passes) the same, each with its own mixture, from the weights before it:
       backbone polish shorter, at a lower learning rate
       backbone motion videos weighing most (twice the clips, images and view sets at 0.3 of the loss) and
                       translations drawn most of the time, so that direction words ("moving left") move the
                       object: without it clips moved whichever way the noise chose, a few pixels
       backbone sizes  images at the sizes other than 64² drawn most (48² most of all), videos kept as in the
                       motion pass: shapes at 48², 96² and 128² had fallen behind 64²
       backbone colour short, at a low learning rate: images weighing most, at their cached sizes (half of
                       them 64², drawn once in ten by the sizes pass), so colour words bind again on colour x
                       shape pairs never seen ("a purple torus" had turned partly pink)

Every stage checkpoints into the work folder and resumes where it stopped; ``train_bundle`` with the same
preset, seed and work folder continues an interrupted run and skips finished stages.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..bundle import GenerationDefaults, ModelBundle
from ..control import CONTROL_CHANNELS
from ..gaussians.render import RenderConfig, render
from ..gaussians.splats import Splats
from ..gaussians.sh import rgb_to_sh0
from ..model.config import DiTConfig, modality_index
from ..sampling.flow import add_noise, default_shift, sample_training_sigmas, velocity_target
from ..text.encoder import TextEncoderConfig
from ..text.tokenizer import build_tokenizer
from ..vae.autoencoder import AutoencoderConfig
from ..vae.splat_decoder import SplatDecoderConfig
from . import toyworld
from .data import (KINDS, build_latent_dataset, dataset_seconds, encode_clips, favour_translation, size_name,
                   to_pixels)
from .lora import add_lora, lora_layers, remove_lora
from .toyworld import ToyWorldConfig
from .trainer import StageConfig, TrainingStage


@dataclass
class TaskMixture:
    """How often a training clip is conditioned on given frames (the rest are text-only)."""

    image_to_video: float = 0.3        # video frame 0 given
    extension: float = 0.1             # the first half of the video frames given
    interpolation: float = 0.1         # the first and last video frames given
    image_to_3d: float = 0.3           # view 0 given
    caption_dropout: float = 0.1       # caption replaced by "" (the unconditional branch of guidance)
    unknown_word: float = 0.1          # a word the vocabulary does not know inserted into the caption
    control: float = 0.3               # images and videos given control maps: depth, mask or both (a third each)


@dataclass
class BackbonePass:
    """A backbone stage after the first, with a mixture of its own; it starts from the weights before it."""
    name: str                                          # the stage's name in the report and the work folder
    stage: StageConfig
    batch: dict = field(default_factory=dict)          # clips per step by kind (empty: the preset's backbone batch)
    loss_weights: dict = field(default_factory=dict)   # by kind (unlisted: 1)
    translation_share: Optional[float] = None          # of the videos drawn, translations (None: as cached)
    size_weights: dict = field(default_factory=dict)   # {kind: {(width, height): how often, relative}}; a kind
    #                                                    not listed draws its sizes as often as they hold clips


@dataclass
class Preset:
    name: str
    world: ToyWorldConfig
    dit: DiTConfig
    autoencoder: AutoencoderConfig
    splat: SplatDecoderConfig
    text: TextEncoderConfig                 # vocab_size is set from the tokenizer
    autoencoder_stage: StageConfig
    autoencoder_batch: tuple[int, int]      # images, videos per step
    decoder_stage: StageConfig
    splat_stage: StageConfig
    splat_batch: int                        # objects per step (each with 4 input and 4 held-out views)
    backbone_stage: StageConfig
    backbone_batch: dict                    # clips per step by kind, at the preset's default frame size
    dataset: dict                           # cached clips by kind and frame size: {kind: {(width, height): n}}
    autoencoder_sizes: tuple = ()           # frame sizes (width, height) the autoencoder stages draw from, as often
    #                                         as listed (empty: the world's); images per step scale with the area
    later_passes: tuple = ()                # BackbonePass after the backbone, in order, each from the last's weights
    statistics_clips: int = 256
    tasks: TaskMixture = field(default_factory=TaskMixture)
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)


def _presets() -> dict:
    toyworld_preset = Preset(
        name="toyworld",
        world=ToyWorldConfig(resolution=64),
        dit=DiTConfig(latent_channels=8, hidden_size=256, depth=8, num_heads=4, mlp_hidden=704, text_dim=128,
                      patch_size=(1, 4, 4), control_channels=CONTROL_CHANNELS),
        autoencoder=AutoencoderConfig(latent_channels=8, channels=(32, 64, 128), temporal="causal3d"),
        splat=SplatDecoderConfig(latent_channels=8, channels=(32, 64, 128)),
        text=TextEncoderConfig(width=128, depth=2, num_heads=4, max_length=24),
        autoencoder_stage=StageConfig(steps=1200, learning_rate=1e-3, warmup_steps=50, ema_decay=0.998),
        autoencoder_batch=(24, 2),
        autoencoder_sizes=((64, 64), (64, 64), (48, 48), (96, 96), (128, 128), (96, 64)),
        decoder_stage=StageConfig(steps=1000, learning_rate=4e-4, warmup_steps=20, ema_decay=0.995),
        splat_stage=StageConfig(steps=1000, learning_rate=1e-3, warmup_steps=50, ema_decay=0.995),
        splat_batch=4,
        backbone_stage=StageConfig(steps=7000, learning_rate=3e-4, warmup_steps=200, ema_decay=0.999),
        backbone_batch={"image": 48, "video": 16, "3d": 16},
        dataset={"image": {(64, 64): 6000, (48, 48): 1500, (96, 96): 1500, (128, 128): 1500, (96, 64): 1000,
                           (64, 96): 500},
                 "video": {(64, 64): 3200, (96, 64): 800},
                 "3d": {(64, 64): 4000}},
        later_passes=(
            BackbonePass("backbone_polish", StageConfig(steps=1000, learning_rate=1.5e-4, warmup_steps=20,
                                                        ema_decay=0.995)),
            BackbonePass("backbone_motion", StageConfig(steps=1500, learning_rate=3e-4, warmup_steps=20,
                                                        ema_decay=0.99),
                         batch={"image": 12, "video": 32, "3d": 6}, loss_weights={"image": 0.3, "3d": 0.3},
                         translation_share=0.9),
            BackbonePass("backbone_sizes", StageConfig(steps=1500, learning_rate=2e-4, warmup_steps=20,
                                                       ema_decay=0.99),
                         batch={"image": 24, "video": 32, "3d": 6}, loss_weights={"image": 0.6, "3d": 0.3},
                         translation_share=0.9,
                         size_weights={"image": {(48, 48): 3, (96, 96): 2, (128, 128): 2, (64, 64): 1,
                                                 (96, 64): 1, (64, 96): 1}}),
            BackbonePass("backbone_colour", StageConfig(steps=300, learning_rate=1e-4, warmup_steps=20,
                                                        ema_decay=0.99),
                         batch={"image": 48, "video": 8, "3d": 6}, loss_weights={"video": 0.3, "3d": 0.3},
                         translation_share=0.9),
        ),
        defaults=GenerationDefaults(width=64, height=64, frames=9, fps=8.0, steps=24, guidance=4.0,
                                    given_frames_guidance=1.5, solver="heun", shift_reference_tokens=16),
    )
    tiny = Preset(
        name="tiny",
        world=ToyWorldConfig(resolution=32),
        dit=DiTConfig(latent_channels=8, hidden_size=64, depth=2, num_heads=2, mlp_hidden=176, text_dim=32,
                      control_channels=CONTROL_CHANNELS),
        autoencoder=AutoencoderConfig(latent_channels=8, channels=(16, 32, 32), temporal="causal3d"),
        splat=SplatDecoderConfig(latent_channels=8, channels=(16, 32, 32)),
        text=TextEncoderConfig(width=32, depth=1, num_heads=2, max_length=24),
        autoencoder_stage=StageConfig(steps=120, learning_rate=2e-3, warmup_steps=10, ema_decay=0.9),
        autoencoder_batch=(16, 1),
        autoencoder_sizes=((32, 32), (48, 32)),
        decoder_stage=StageConfig(steps=60, learning_rate=5e-4, warmup_steps=5, ema_decay=0.9),
        splat_stage=StageConfig(steps=40, learning_rate=2e-3, warmup_steps=5, ema_decay=0.9),
        splat_batch=2,
        backbone_stage=StageConfig(steps=150, learning_rate=1e-3, warmup_steps=10, ema_decay=0.95),
        backbone_batch={"image": 16, "video": 4, "3d": 4},
        dataset={"image": {(32, 32): 192, (48, 32): 64}, "video": {(32, 32): 64}, "3d": {(32, 32): 64}},
        later_passes=(
            BackbonePass("backbone_motion", StageConfig(steps=20, learning_rate=5e-4, warmup_steps=5, ema_decay=0.9),
                         batch={"image": 4, "video": 8, "3d": 2}, loss_weights={"image": 0.3, "3d": 0.3},
                         translation_share=0.9, size_weights={"image": {(48, 32): 1}}),
        ),
        statistics_clips=64,
        defaults=GenerationDefaults(width=32, height=32, frames=9, fps=8.0, steps=8, guidance=3.0,
                                    given_frames_guidance=1.5, solver="heun", shift_reference_tokens=64),
    )
    for preset in (toyworld_preset, tiny):
        preset.defaults.trained_sizes = sorted(preset.dataset["image"])
    return {preset.name: preset for preset in (toyworld_preset, tiny)}


PRESETS = _presets()


def train_bundle(preset: Preset, work_dir: Path, seed: int = 0, progress: bool = True) -> ModelBundle:
    """Run (or resume) every stage of ``preset`` in ``work_dir``; returns the trained bundle (EMA weights)."""
    work_dir = Path(work_dir)
    torch.manual_seed(seed)  # the initial weights
    tokenizer = build_tokenizer(toyworld.vocabulary(), max_length=preset.text.max_length)
    text = replace(preset.text, vocab_size=tokenizer.get_vocab_size())
    bundle = ModelBundle.build(preset.dit, replace(preset.autoencoder), preset.splat, text, tokenizer,
                               preset.defaults)
    report: dict = {"preset": preset.name, "seed": seed}

    stage = TrainingStage("autoencoder", {"vae": bundle.autoencoder}, preset.autoencoder_stage, work_dir, seed,
                          progress)
    report["autoencoder"] = _summary(stage.run(autoencoder_step(bundle, preset)), stage.seconds)
    decoder = bundle.autoencoder.decoder_modules()
    stage = TrainingStage("decoder", decoder, preset.decoder_stage, work_dir, seed + 1, progress)
    report["decoder"] = _summary(stage.run(decoder_step(bundle, preset)), stage.seconds)

    measure_latent_statistics(bundle, preset, seed)

    stage = TrainingStage("splat_decoder", {"splat": bundle.splat_decoder}, preset.splat_stage, work_dir, seed,
                          progress)
    report["splat_decoder"] = _summary(stage.run(splat_decoder_step(bundle, preset)), stage.seconds)

    dataset = build_latent_dataset(bundle.autoencoder, preset.dataset, preset.world, seed + 1,
                                   work_dir / "latents.safetensors", progress=progress)
    clips = {kind: {size_name(size): n for size, n in sizes.items()} for kind, sizes in preset.dataset.items()}
    report["latent_dataset"] = {"clips": clips, "seconds": dataset_seconds(work_dir / "latents.safetensors")}
    stage = TrainingStage("backbone", {"dit": bundle.dit, "text": bundle.text_encoder}, preset.backbone_stage,
                          work_dir, seed, progress)
    report["backbone"] = _summary(stage.run(backbone_step(bundle, preset, dataset)), stage.seconds)
    for index, later in enumerate(preset.later_passes):
        stage = TrainingStage(later.name, {"dit": bundle.dit, "text": bundle.text_encoder}, later.stage, work_dir,
                              seed + 2 + index, progress)
        drawn = dataset if later.translation_share is None else favour_translation(dataset, later.translation_share)
        step = backbone_step(bundle, preset, drawn, later.batch or None, later.loss_weights, later.size_weights)
        report[later.name] = _summary(stage.run(step), stage.seconds)
    report["seconds"] = round(sum(part["seconds"] for part in report.values() if isinstance(part, dict)), 1)
    bundle.info = {"training": report}
    return bundle.eval()


LORA_CLIPS = 256          # clips of each kind for a LoRA on one subject (at most the preset's)
LORA_STEPS = 300


def fine_tune_lora(bundle: ModelBundle, preset: Preset, work_dir: Path, rank: int, seed: int = 0,
                   subject: Optional[tuple[str, str]] = None, steps: Optional[int] = None,
                   progress: bool = True) -> tuple[dict, dict]:
    """Fine-tune the backbone of a trained bundle with LoRA adapters of ``rank``: on the preset's data, or on
    clips of one (colour, shape) ``subject``. Returns the adapters' layers (for ``runtime.lora.save_lora``) and a
    report; the bundle is left as it was."""
    work_dir = Path(work_dir)
    name = "latents.safetensors" if subject is None else f"latents-{'-'.join(subject)}.safetensors"
    counts = preset.dataset if subject is None else {
        kind: {preset.world.size: min(LORA_CLIPS, sum(sizes.values()))} for kind, sizes in preset.dataset.items()}
    dataset = build_latent_dataset(bundle.autoencoder, counts, preset.world, seed + 1, work_dir / name,
                                   progress=progress, subject=subject)
    steps = steps or LORA_STEPS
    config = replace(preset.backbone_stage, steps=steps, learning_rate=1e-3, warmup_steps=min(20, steps // 5),
                     ema_decay=None)
    add_lora(bundle.dit, rank)
    bundle.text_encoder.requires_grad_(False)
    label = f"lora_rank{rank}" + ("" if subject is None else "_" + "_".join(subject))
    stage = TrainingStage(label, {"dit": bundle.dit}, config, work_dir, seed, progress)
    history = stage.run(backbone_step(bundle, preset, dataset))
    layers = lora_layers(bundle.dit)
    remove_lora(bundle.dit)
    bundle.text_encoder.requires_grad_(True)
    report = {"rank": rank, "subject": " ".join(subject) if subject else "the preset's data",
              **_summary(history, stage.seconds)}
    return layers, report


def _summary(history: list, seconds: float) -> dict:
    tail = history[-max(1, len(history) // 20):]
    return {"steps": len(history), "first_loss": round(history[0]["loss"], 5),
            "final_loss": round(sum(h["loss"] for h in tail) / len(tail), 5), "seconds": round(seconds, 1)}


# ---- 1. autoencoder ---------------------------------------------------------------------------------------------

KL_WEIGHT = 1e-4


def autoencoder_clips(preset: Preset, generator: torch.Generator) -> list:
    """One batch for the autoencoder stages at one frame size drawn from ``preset.autoencoder_sizes``: (frames
    [N, T, H, W, 3], object coverage [N, T, H, W]) for still images (one-frame clips, as many as cover the area
    of ``autoencoder_batch[0]`` images at the world's size), then for videos (at the world's size)."""
    images, videos = preset.autoencoder_batch
    sizes = preset.autoencoder_sizes or (preset.world.size,)
    width, height = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
    world = preset.world.at_size(width, height)
    base_width, base_height = preset.world.size
    images = max(1, round(images * base_width * base_height / (width * height)))
    rendered = toyworld.render_images(toyworld.sample_scenes(images, generator), world)
    clips = [(rendered.rgb.unsqueeze(1), rendered.alpha.unsqueeze(1))]
    if videos:
        rendered = toyworld.render_videos(toyworld.sample_scenes(videos, generator, with_motion=True), preset.world)
        clips.append((rendered.rgb, rendered.alpha))
    return clips


TEMPORAL_WEIGHT = 1.0  # the frame-to-frame change of decoded videos against that of the clip (L1)


def temporal_loss(decoded: torch.Tensor, pixels: torch.Tensor, group: int = 1, seam_weight: float = 0.0
                  ) -> torch.Tensor:
    """L1 between the decoded and the true change from each frame to the next, [N, 3, T, H, W] (0 for images):
    a seam between frames is a change the clip does not have. The steps into the first frame of each frame group
    of ``group`` (0 -> 1, 4 -> 5, ...: where the autoencoder's seams are) count 1 + ``seam_weight`` times."""
    if pixels.shape[2] < 2:
        return decoded.new_zeros(())
    error = (decoded.diff(dim=2) - pixels.diff(dim=2)).abs().mean(dim=(0, 1, 3, 4))     # [T - 1]
    weight = 1.0 + seam_weight * (torch.arange(error.shape[0]) % group == 0).float()
    return (error * weight).sum() / weight.sum()


def autoencoder_step(bundle: ModelBundle, preset: Preset):
    autoencoder = bundle.autoencoder

    def step(index: int, generator: torch.Generator) -> dict:
        clips = autoencoder_clips(preset, generator)
        reconstruction = temporal = kl = 0.0
        for rgb, _ in clips:
            pixels = to_pixels(rgb)
            mean, log_variance = autoencoder.encode_distribution(pixels)
            noise = torch.randn(mean.shape, generator=generator)
            decoded = autoencoder.decode_raw(mean + torch.exp(0.5 * log_variance) * noise)
            reconstruction = reconstruction + F.l1_loss(decoded, pixels) + F.mse_loss(decoded, pixels)
            temporal = temporal + temporal_loss(decoded, pixels)
            kl = kl + 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).mean()
        return {"loss": reconstruction + TEMPORAL_WEIGHT * temporal + KL_WEIGHT * kl,
                "reconstruction": reconstruction, "temporal": temporal, "kl": kl}

    return step


OBJECT_WEIGHT = 8.0  # decoder stage: an object pixel counts 1 + 8 x its coverage (the background is most pixels)
HUE_WEIGHT = 1.0     # decoder stage: weight of the hue term
BLEED_WEIGHT = 4.0   # decoder stage: weight of the chroma error off the object (colour bled past its edge)
LATENT_JITTER = 0.1  # decoder stage: the most a clip's latents are disturbed, x each channel's spread
SEAM_WEIGHT = 3.0    # decoder stage: the temporal loss at the steps into each frame group counts 1 + this


def jitter_latents(mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Posterior means [N, C, F, h, w] disturbed as sampled latents are: an offset per latent frame and channel
    (latent frames that do not quite agree, which decode as a jump into each frame group) and noise per element,
    both at a strength drawn per clip from 0 .. LATENT_JITTER x the channel's spread. Decoding them to the clean
    frames teaches the decoder to keep a clip's frames together where its latent frames disagree a little."""
    spread = mean.std(dim=(0, 2, 3, 4), keepdim=True)
    strength = torch.rand((mean.shape[0], 1, 1, 1, 1), generator=generator) * LATENT_JITTER
    offsets = torch.randn((*mean.shape[:3], 1, 1), generator=generator)
    noise = torch.randn(mean.shape, generator=generator)
    return mean + strength * spread * (offsets + noise)


def colour_bleed(decoded: torch.Tensor, pixels: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """The mean error of the chroma off the object ([N, 3, T, H, W] frames, coverage [N, 1, T, H, W]): the
    object's colour smeared past its edge. The object weighting above makes it cheap, and silhouettes (control,
    shape) count it as object."""
    outside = 1.0 - coverage
    error = (chroma(decoded) - chroma(pixels)).norm(dim=1, keepdim=True)
    return (error * outside).sum() / outside.sum().clamp_min(1e-6)


def chroma(pixels: torch.Tensor) -> torch.Tensor:
    """The part of each colour off the grey axis, [N, 3, ...] -> [N, 3, ...]: its direction is the hue."""
    return pixels - pixels.mean(dim=1, keepdim=True)


def decoder_step(bundle: ModelBundle, preset: Preset):
    """Reconstruction from the (fixed) encoder's posterior means, with the object's colour made to count.

    The object is a small part of each frame, and a shaded object's hue turns on a few hundredths of a channel
    (red drifting to orange costs almost nothing in a plain pixel loss). So the loss is

        sum(w * (|d - x| + (d - x)^2)) / sum(w)  +  HUE_WEIGHT * sum(a * |off_hue(d, x)|) / sum(a)
        +  BLEED_WEIGHT * sum((1 - a) * |chroma(d) - chroma(x)|) / sum(1 - a)

    with d decoded from the posterior means disturbed by :func:`jitter_latents`, x the clean frames, a = the
    object's coverage of the pixel, w = 1 + OBJECT_WEIGHT * a, chroma(x) = x - mean over RGB (the
    part off the grey axis, whose direction is the hue) and off_hue(d, x) the part of chroma(d) across the
    direction of chroma(x): about |chroma(d)| x the hue error in radians, and its gradient stays bounded where
    the decoded colour is nearly grey. The price is paid in the background: on the toyworld preset (160 images,
    round trip through posterior means) the object goes from 25.0 dB after the autoencoder stage to 30.0 dB after
    this one, the background from 33.2 dB to 29.2 dB.
    """
    autoencoder = bundle.autoencoder

    def step(index: int, generator: torch.Generator) -> dict:
        reconstruction = hue = temporal = bleed = 0.0
        for rgb, coverage in autoencoder_clips(preset, generator):
            pixels = to_pixels(rgb)
            with torch.no_grad():
                mean, _ = autoencoder.encode_distribution(pixels)
            decoded = autoencoder.decode_raw(jitter_latents(mean, generator))
            coverage = coverage.unsqueeze(1)  # [N, 1, T, H, W]
            weight = 1.0 + OBJECT_WEIGHT * coverage
            error = (decoded - pixels).abs() + (decoded - pixels).square()
            reconstruction = reconstruction + (error * weight).sum() / (weight.sum() * error.shape[1])
            temporal = temporal + temporal_loss(decoded, pixels, autoencoder.config.temporal_group, SEAM_WEIGHT)
            hue_direction = F.normalize(chroma(pixels), dim=1, eps=1e-6)
            decoded_chroma = chroma(decoded)
            along = (decoded_chroma * hue_direction).sum(dim=1, keepdim=True) * hue_direction
            off_hue = (decoded_chroma - along).norm(dim=1, keepdim=True)
            hue = hue + (off_hue * coverage).sum() / coverage.sum().clamp_min(1e-6)
            bleed = bleed + colour_bleed(decoded, pixels, coverage)
        return {"loss": reconstruction + HUE_WEIGHT * hue + TEMPORAL_WEIGHT * temporal + BLEED_WEIGHT * bleed,
                "reconstruction": reconstruction, "hue": hue, "temporal": temporal, "bleed": bleed}

    return step


# ---- 2. latent statistics ---------------------------------------------------------------------------------------

@torch.no_grad()
def measure_latent_statistics(bundle: ModelBundle, preset: Preset, seed: int) -> None:
    """Per-channel mean and std of raw latents of images, videos and views, stored in the autoencoder."""
    generator = torch.Generator().manual_seed(seed + 7)
    count = preset.statistics_clips
    world = preset.world
    clips = [toyworld.render_images(toyworld.sample_scenes(count, generator), world).rgb.unsqueeze(1),
             toyworld.render_videos(toyworld.sample_scenes(count // 8, generator, with_motion=True), world).rgb,
             toyworld.render_views(toyworld.sample_scenes(count // 4, generator), world).rgb.flatten(0, 1)[:, None]]
    channels = bundle.autoencoder.config.latent_channels
    latents = []
    for rgb in clips:
        for chunk in rgb.split(64):
            mean, _ = bundle.autoencoder.encode_distribution(to_pixels(chunk))
            latents.append(mean.transpose(0, 1).reshape(channels, -1))
    latents = torch.cat(latents, dim=1)
    bundle.autoencoder.set_latent_statistics(latents.mean(dim=1), latents.std(dim=1).clamp_min(1e-3))


# ---- 3. splat decoder -------------------------------------------------------------------------------------------

RENDER_LOSS_WEIGHT = 1.0
LATENT_NOISE = 0.1  # generated latents are not exact encodings: train on slightly perturbed ones


def splat_decoder_step(bundle: ModelBundle, preset: Preset):
    """Input views are the rig's 4; the held-out views sit halfway between them (the odd views of 8)."""
    autoencoder, decoder = bundle.autoencoder, bundle.splat_decoder
    world8 = replace(preset.world, views=8)
    rig = preset.world.rig_cameras()

    def step(index: int, generator: torch.Generator) -> dict:
        scenes = toyworld.sample_scenes(preset.splat_batch, generator, include_held_out=True)
        views = toyworld.render_views(scenes, world8)
        inputs, held_out = slice(0, None, 2), slice(1, None, 2)
        rgb = views.rgb[:, inputs]  # [N, 4, H, W, 3]
        n, v = rgb.shape[:2]
        with torch.no_grad():
            mean, _ = encode_clips(autoencoder, rgb.flatten(0, 1).unsqueeze(1))
            latents = mean.view(n, v, *mean.shape[1:]).squeeze(3).transpose(1, 2)
            latents = latents + LATENT_NOISE * torch.randn(latents.shape, generator=generator)
        gaussians = decoder.gaussians(decoder(latents), rig)
        alpha = views.alpha[:, inputs]
        covered = (alpha > 0.5).float()
        depth_loss = ((gaussians["depth"] - views.depth[:, inputs]).abs() * covered).sum() / covered.sum().clamp_min(1)
        colour_loss = ((gaussians["colors"] - views.colour[:, inputs]).abs().mean(-1) * alpha).sum() \
            / alpha.sum().clamp_min(1)
        opacity_loss = F.binary_cross_entropy(gaussians["opacities"][..., 0].clamp(1e-5, 1 - 1e-5), alpha)
        render_loss = 0.0
        held_out_cameras = views.cameras[held_out]
        for item, scene in enumerate(scenes):
            splats = Splats(
                positions=gaussians["positions"][item].reshape(1, -1, 3),
                scales=gaussians["scales"][item].reshape(1, -1, 3),
                rotations=gaussians["rotations"][item].reshape(1, -1, 4),
                opacities=gaussians["opacities"][item].reshape(1, -1, 1),
                sh=rgb_to_sh0(gaussians["colors"][item].reshape(1, -1, 1, 3)))
            background = (toyworld.BACKGROUNDS[scene.background],) * 3
            image = render(splats, held_out_cameras, RenderConfig(background=background)).color
            render_loss = render_loss + F.l1_loss(image, views.rgb[item, held_out])
        render_loss = render_loss / len(scenes)
        loss = depth_loss + colour_loss + 0.5 * opacity_loss + RENDER_LOSS_WEIGHT * render_loss
        return {"loss": loss, "depth": depth_loss, "colour": colour_loss, "opacity": opacity_loss,
                "render": render_loss}

    return step


# ---- 5. backbone ------------------------------------------------------------------------------------------------

FILLER_WORDS = ("please", "nice", "beautiful", "lovely", "shiny", "cool", "detailed", "simple")


def backbone_step(bundle: ModelBundle, preset: Preset, dataset: dict, batch_sizes: Optional[dict] = None,
                  loss_weights: Optional[dict] = None, size_weights: Optional[dict] = None):
    """One rectified-flow step on clips of every kind, ``batch_sizes`` (default the preset's backbone batch) clips
    of each at the preset's frame size (scaled to the drawn bucket's area); the loss sums each kind's mean loss
    times its ``loss_weights`` entry (unlisted: 1). Each kind's size bucket is drawn as often as it holds clips,
    or as ``size_weights[kind]`` says ({(width, height): relative weight}, unlisted sizes never)."""
    batch_sizes = preset.backbone_batch if batch_sizes is None else batch_sizes
    loss_weights = loss_weights or {}
    size_weights = size_weights or {}
    for kind, weights in size_weights.items():
        sizes = {tuple(bucket.size) for bucket in dataset.get(kind, ())}
        cached = ", ".join(size_name(size) for size in sorted(sizes)) or "none"
        unknown = [size_name(size) for size in weights if tuple(size) not in sizes]
        if unknown or any(weight < 0 for weight in weights.values()):
            raise ValueError(f"size_weights for {kind} must weigh its cached sizes ({cached}) by numbers of 0 or "
                             f"more; got {', '.join(unknown) or 'a negative weight'}")
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"size_weights for {kind} draw none of its cached sizes ({cached})")
    dit, text_encoder, tokenizer = bundle.dit, bundle.text_encoder, bundle.tokenizer
    patch = dit.config.patch_size
    tasks = preset.tasks
    factor = bundle.autoencoder.config.spatial_factor
    base_width, base_height = preset.world.size
    reference_tokens = preset.defaults.shift_reference_tokens
    rays = {}  # rig rays by latent size

    def plucker(width: int, height: int) -> torch.Tensor:
        if (width, height) not in rays:
            cameras = preset.world.at_size(width, height).rig_cameras()
            rays[width, height] = cameras.resized(width // factor, height // factor).plucker_rays().permute(1, 0, 2, 3)
        return rays[width, height]

    def given_mask(kind: str, batch: int, frames: int, augmented: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
        given = torch.zeros(batch, frames, dtype=torch.bool)
        u = torch.rand(batch, generator=generator)
        if kind == "video":
            given[u < tasks.image_to_video, 0] = True
            extension = (u >= tasks.image_to_video) & (u < tasks.image_to_video + tasks.extension)
            given[extension, :max(1, frames // 2)] = True
            low = tasks.image_to_video + tasks.extension
            interpolation = (u >= low) & (u < low + tasks.interpolation)
            given[interpolation, 0] = True
            given[interpolation, -1] = True
        elif kind == "3d":
            given[u < tasks.image_to_3d, 0] = True
        given[augmented, 0] = True  # clips out of the toy world teach following the given frame, never text alone
        return given

    def control_channels(maps: Optional[torch.Tensor], generator: torch.Generator) -> Optional[torch.Tensor]:
        """Cached [B, 2, F, h, w] depth and mask values -> control channels with flags: for ``tasks.control`` of
        the clips depth, the mask or both (a third each), else nothing."""
        if maps is None or not dit.config.control_channels:
            return None
        batch = maps.shape[0]
        u = torch.rand(batch, 2, generator=generator)
        on = u[:, 0] < tasks.control
        choice = (u[:, 1] * 3).long()                   # 0: depth, 1: mask, 2: both
        flags = torch.stack([on & (choice != 1), on & (choice != 0)], dim=1).float()[:, :, None, None, None]
        values = maps * flags
        return torch.stack([values[:, 0], flags[:, 0].expand_as(values[:, 0]),
                            values[:, 1], flags[:, 1].expand_as(values[:, 1])], dim=1)

    def step(index: int, generator: torch.Generator) -> dict:
        metrics, total = {}, 0.0
        for kind in KINDS:
            base_batch = batch_sizes.get(kind, 0)
            if base_batch == 0 or kind not in dataset:
                continue
            buckets = dataset[kind]
            chances = [float(size_weights[kind].get(tuple(b.size), 0)) if kind in size_weights else float(len(b))
                       for b in buckets]
            bucket = buckets[int(torch.multinomial(torch.tensor(chances), 1,
                                                   generator=generator))]
            width, height = bucket.size
            batch = max(2, round(base_batch * base_width * base_height / (width * height)))
            drawn = bucket.sample(batch, generator)
            x0 = drawn.latents
            captions = [augment_caption(c, tasks, generator) for c in drawn.captions]
            text = text_encoder.encode(tokenizer, captions)
            frames = x0.shape[2]
            given = given_mask(kind, batch, frames, drawn.augmented, generator)
            control = control_channels(drawn.control, generator)
            tokens_per_frame = (x0.shape[3] // patch[1]) * (x0.shape[4] // patch[2])
            shift = default_shift(tokens_per_frame, frames, reference_tokens)
            sigma = sample_training_sigmas(batch, generator, shift=shift)
            noise = torch.randn(x0.shape, generator=generator)
            hold = given[:, None, :, None, None]
            x = torch.where(hold, x0, add_noise(x0, noise, sigma.view(-1, 1, 1, 1, 1)))
            camera = plucker(width, height).unsqueeze(0).expand(batch, -1, -1, -1, -1) if kind == "3d" else None
            modality = torch.full((batch,), modality_index(kind), dtype=torch.long)
            v = dit(x, torch.where(given, 0.0, sigma[:, None]), text, modality, camera,  # given frames at sigma 0
                    control=control)
            free = (~hold).float().expand_as(v)
            loss = ((v - velocity_target(x0, noise)).square() * free).sum() / free.sum().clamp_min(1)
            metrics[kind] = loss
            total = total + loss_weights.get(kind, 1.0) * loss
        return {"loss": total, **metrics}

    return step


def augment_caption(caption: str, tasks: TaskMixture, generator: torch.Generator) -> str:
    """Caption dropout (-> "") and, sometimes, an unknown word inserted at a random place."""
    u = torch.rand(3, generator=generator)
    if u[0] < tasks.caption_dropout:
        return ""
    if u[1] < tasks.unknown_word:
        words = caption.split()
        position = int(u[2] * (len(words) + 1))
        filler = FILLER_WORDS[int(torch.randint(len(FILLER_WORDS), (1,), generator=generator))]
        words.insert(position, filler)
        return " ".join(words)
    return caption
