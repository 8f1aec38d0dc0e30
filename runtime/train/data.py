"""Training data from the toy world: pixel batches for the autoencoder and the splat decoder, and the cached
latent dataset with captions that the backbone learns from.

Latents are cached once (posterior mean and log-variance of every clip) because rendering and encoding cost
far more than a backbone step; each training step then draws a fresh posterior sample from them. Images and
videos are cached at several frame sizes (one bucket per size), with their depth and mask control maps at latent
size; some videos and view sets are augmented out of the toy world (textured backgrounds, colour jitter) and
only ever used with their first frame given, so that image-conditioned generation follows any input.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..control import control_latent, depth_image
from ..vae.autoencoder import CausalVideoAutoencoder
from . import toyworld
from .toyworld import ToyWorldConfig


def to_pixels(rgb: torch.Tensor) -> torch.Tensor:
    """Toy-world frames [N, T, H, W, 3] in 0..1 -> autoencoder input [N, 3, T, H, W] in -1..1."""
    return rgb.permute(0, 4, 1, 2, 3) * 2 - 1


Size = tuple[int, int]  # (width, height) of the frames


@dataclass
class LatentBatch:
    """Clips drawn from one bucket: latents [B, C, F, h, w], captions, control maps [B, 2, F, h, w] (depth,
    mask) or None, and which clips are augmented out of the toy world [B] (bool)."""

    latents: torch.Tensor
    captions: list
    control: Optional[torch.Tensor]
    augmented: torch.Tensor


@dataclass
class LatentSet:
    """Cached latents of one kind of clip at one frame size: mean and log-variance [N, C, F, h, w] (fp16), N
    captions, control maps [N, 2, F, h, w] (fp16, or None) and the augmented flags [N]; ``weights`` [N] make some
    items likelier to be drawn (None: all alike)."""

    size: Size
    mean: torch.Tensor
    log_variance: torch.Tensor
    captions: list
    control: Optional[torch.Tensor]
    augmented: torch.Tensor
    weights: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.mean.shape[0]

    def favouring(self, chosen: torch.Tensor, share: float) -> "LatentSet":
        """This set drawn so that the ``chosen`` items [N] (bool) make up ``share`` of the draws (when there are
        both kinds; 1: the chosen only), each chosen item as likely as another."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be above 0 and at most 1, got {share}")
        count = int(chosen.sum())
        if count in (0, len(self)):
            return replace(self, weights=None)
        weights = torch.where(chosen, share / count, (1 - share) / (len(self) - count)).double()
        return replace(self, weights=weights)

    def sample(self, count: int, generator: torch.Generator) -> LatentBatch:
        """``count`` random items: normalised latents drawn from their posteriors, with their captions and maps."""
        if self.weights is None:
            index = torch.randint(len(self), (count,), generator=generator)
        else:
            index = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        mean, log_variance = self.mean[index].float(), self.log_variance[index].float()
        noise = torch.randn(mean.shape, generator=generator)
        control = None if self.control is None else self.control[index].float()
        return LatentBatch(mean + torch.exp(0.5 * log_variance) * noise, [self.captions[i] for i in index.tolist()],
                           control, self.augmented[index])


KINDS = ("image", "video", "3d")


@torch.no_grad()
def encode_clips(autoencoder: CausalVideoAutoencoder, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised posterior mean and log-variance of clips [N, T, H, W, 3] (views count as T = 1 clips each)."""
    mean, log_variance = autoencoder.encode_distribution(to_pixels(rgb))
    return autoencoder.normalize(mean), log_variance - 2 * torch.log(autoencoder.latent_scale)


AUGMENTED_FRACTION = {"video": 0.25, "3d": 0.2}  # clips augmented out of the toy world, by kind


def size_name(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


@torch.no_grad()
def build_latent_dataset(autoencoder: CausalVideoAutoencoder, counts: dict, world: ToyWorldConfig, seed: int,
                         path: Path, chunk: int = 64, progress: bool = True,
                         subject: Optional[tuple[str, str]] = None) -> dict:
    """Render and encode ``counts[kind][(width, height)]`` clips of each kind ("image", "video", "3d") into
    ``path`` (reused if it exists); returns {kind: [LatentSet, one per size]}. Held-out colour/shape pairs are
    excluded, unless ``subject`` (colour, shape) asks for clips of that one pair. 3D view sets are rendered by the
    rig at ``world``'s size only."""
    if path.exists():
        return load_latent_dataset(path)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    tensors, captions = {}, {}
    bar = tqdm(total=sum(n for sizes in counts.values() for n in sizes.values()), desc="latent dataset",
               disable=not progress, dynamic_ncols=True)
    for kind in KINDS:
        for size, count in counts.get(kind, {}).items():
            if kind == "3d" and tuple(size) != world.size:
                raise ValueError(f"3D view sets are rendered at the rig's size {size_name(world.size)}, not "
                                 f"{size_name(size)}")
            sized = world.at_size(*size)
            parts: dict[str, list] = {"mean": [], "log_variance": [], "control": [], "augmented": []}
            texts = []
            for start in range(0, count, chunk):
                number = min(chunk, count - start)
                scenes = toyworld.sample_scenes(number, generator, with_motion=kind == "video", subject=subject)
                augmented = torch.rand(number, generator=generator) < AUGMENTED_FRACTION.get(kind, 0.0)
                if subject is not None:
                    augmented[:] = False
                texts += [toyworld.caption(scene, generator, background=not bool(flag))
                          for scene, flag in zip(scenes, augmented)]
                if kind == "image":
                    rendered = toyworld.render_images(scenes, sized)
                    rgb, alpha, depth = (x.unsqueeze(1) for x in (rendered.rgb, rendered.alpha, rendered.depth))
                    colour = rendered.colour.unsqueeze(1)
                elif kind == "video":
                    rendered = toyworld.render_videos(scenes, sized)
                    rgb, alpha, depth, colour = rendered.rgb, rendered.alpha, rendered.depth, rendered.colour
                else:
                    rendered = toyworld.render_views(scenes, sized)  # [N, V, H, W, 3]: each view an image
                    rgb, alpha, colour = rendered.rgb, rendered.alpha, rendered.colour
                for item in torch.nonzero(augmented).flatten().tolist():
                    rgb[item] = augment_clip(colour[item], alpha[item], generator)
                if kind == "3d":
                    mean, log_variance = encode_clips(autoencoder, rgb.flatten(0, 1).unsqueeze(1))
                    # back to one item per scene with the views along F
                    mean = mean.view(number, -1, *mean.shape[1:]).squeeze(3).transpose(1, 2)
                    log_variance = log_variance.view(number, -1, *log_variance.shape[1:]).squeeze(3).transpose(1, 2)
                else:
                    mean, log_variance = encode_clips(autoencoder, rgb)
                    maps = {"depth": depth_image(depth, alpha), "mask": alpha}
                    channels = control_latent(maps, mean.shape[2], mean.shape[3], mean.shape[4],
                                              autoencoder.config.temporal_group)
                    parts["control"].append(channels[:, 0::2].half().contiguous())  # values; flags come per step
                parts["mean"].append(mean.half().contiguous())
                parts["log_variance"].append(log_variance.half().contiguous())
                parts["augmented"].append(augmented.to(torch.uint8))
                bar.update(number)
            key = f"{kind}.{size_name(size)}"
            for name, values in parts.items():
                if values:
                    tensors[f"{key}.{name}"] = torch.cat(values)
            captions[key] = texts
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"captions": json.dumps(captions),
                                                 "seconds": f"{time.perf_counter() - started:.1f}"})
    temporary.replace(path)
    return load_latent_dataset(path)


TEXTURE_CELLS = (2, 5)          # a textured background: random colours on a coarse grid, smoothly upsampled
TEXTURE_SATURATION = 0.25
COLOUR_JITTER = 0.15            # brightness and contrast factors within 1 +- this
HUE_JITTER_DEG = 8.0            # small enough that every colour keeps its name


def augment_clip(colour: torch.Tensor, alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A clip [T, H, W, 3] moved out of the toy world, the same for every frame: the object (its own colour
    [T, H, W, 3] and coverage [T, H, W]) over a smooth random texture instead of a plain grey, then a small hue
    turn and brightness/contrast jitter. Returns sRGB 0..1."""
    t, height, width, _ = colour.shape
    cells = int(torch.randint(TEXTURE_CELLS[0], TEXTURE_CELLS[1] + 1, (1,), generator=generator))
    grey = torch.rand(1, 1, cells, cells, generator=generator)
    tint = (torch.rand(1, 3, cells, cells, generator=generator) - 0.5) * 2 * TEXTURE_SATURATION
    texture = (grey + tint).clamp(0.0, 1.0)
    texture = F.interpolate(texture, size=(height, width), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    texture = texture[0].permute(1, 2, 0)                                          # [H, W, 3]
    a = alpha.unsqueeze(-1)
    rgb = a * colour + (1 - a) * texture
    u = torch.rand(3, generator=generator) * 2 - 1
    rgb = rotate_hue(rgb, float(u[0]) * HUE_JITTER_DEG)
    mean = rgb.mean()
    rgb = (rgb - mean) * (1 + COLOUR_JITTER * float(u[1])) + mean * (1 + COLOUR_JITTER * float(u[2]))
    return rgb.clamp(0.0, 1.0)


def rotate_hue(rgb: torch.Tensor, degrees: float) -> torch.Tensor:
    """Turn every colour [..., 3] about the grey axis by ``degrees`` (greys stay)."""
    angle = math.radians(degrees)
    axis = torch.full((3,), 1 / math.sqrt(3))
    cos, sin = math.cos(angle), math.sin(angle)
    # Rodrigues: v cos + (k x v) sin + k (k . v)(1 - cos)
    along = (rgb * axis).sum(-1, keepdim=True) * axis
    return rgb * cos + torch.cross(axis.expand_as(rgb), rgb, dim=-1) * sin + along * (1 - cos)


def favour_translation(dataset: dict, share: float) -> dict:
    """``dataset`` with its videos drawn so that translations ("moving left", ...) make up ``share`` of them."""
    return {kind: [clips.favouring(torch.tensor([toyworld.parse_caption(caption).get("motion") == "translate"
                                                 for caption in clips.captions]), share) if kind == "video" else clips
                   for clips in sets]
            for kind, sets in dataset.items()}


def dataset_seconds(path: Path) -> float:
    """How long building the cached dataset took."""
    with safe_open(str(path), "pt") as handle:
        return float(handle.metadata()["seconds"])


def load_latent_dataset(path: Path) -> dict:
    """{kind: [LatentSet, one per frame size]} of a cached dataset."""
    dataset: dict = {}
    with safe_open(str(path), "pt") as handle:
        captions = json.loads(handle.metadata()["captions"])
        names = set(handle.keys())
        if not all("." in key for key in captions):
            raise ValueError(f"{path} holds latents cached by an older recipe (no frame-size buckets); delete it, or "
                             f"train into a new --work folder, and the dataset is rebuilt")
        for key, texts in captions.items():
            kind, size = key.split(".")
            width, height = (int(v) for v in size.split("x"))
            control = handle.get_tensor(f"{key}.control") if f"{key}.control" in names else None
            dataset.setdefault(kind, []).append(LatentSet(
                (width, height), handle.get_tensor(f"{key}.mean"), handle.get_tensor(f"{key}.log_variance"), texts,
                control, handle.get_tensor(f"{key}.augmented").bool()))
    return dataset
