"""Training data from the toy world: pixel batches for the autoencoder and the splat decoder, and the cached
latent dataset with captions that the backbone learns from.

Latents are cached once (posterior mean and log-variance of every clip) because rendering and encoding cost
far more than a backbone step; each training step then draws a fresh posterior sample from them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..vae.autoencoder import CausalVideoAutoencoder
from . import toyworld
from .toyworld import ToyWorldConfig


def to_pixels(rgb: torch.Tensor) -> torch.Tensor:
    """Toy-world frames [N, T, H, W, 3] in 0..1 -> autoencoder input [N, 3, T, H, W] in -1..1."""
    return rgb.permute(0, 4, 1, 2, 3) * 2 - 1


@dataclass
class LatentSet:
    """Cached latents of one kind of clip: mean and log-variance [N, C, F, h, w] (fp16) and N captions."""

    mean: torch.Tensor
    log_variance: torch.Tensor
    captions: list

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, list]:
        """``count`` random items: normalised latents drawn from their posteriors, and their captions."""
        index = torch.randint(len(self), (count,), generator=generator)
        mean, log_variance = self.mean[index].float(), self.log_variance[index].float()
        noise = torch.randn(mean.shape, generator=generator)
        return mean + torch.exp(0.5 * log_variance) * noise, [self.captions[i] for i in index.tolist()]


KINDS = ("image", "video", "3d")


@torch.no_grad()
def encode_clips(autoencoder: CausalVideoAutoencoder, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised posterior mean and log-variance of clips [N, T, H, W, 3] (views count as T = 1 clips each)."""
    mean, log_variance = autoencoder.encode_distribution(to_pixels(rgb))
    return autoencoder.normalize(mean), log_variance - 2 * torch.log(autoencoder.latent_scale)


@torch.no_grad()
def build_latent_dataset(autoencoder: CausalVideoAutoencoder, counts: dict, world: ToyWorldConfig, seed: int,
                         path: Path, chunk: int = 64, progress: bool = True,
                         subject: Optional[tuple[str, str]] = None) -> dict:
    """Render and encode ``counts[kind]`` clips of each kind ("image", "video", "3d") into ``path`` (reused if
    it exists); returns {kind: LatentSet}. Held-out colour/shape pairs are excluded, unless ``subject`` (colour,
    shape) asks for clips of that one pair."""
    if path.exists():
        return load_latent_dataset(path)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    tensors, captions = {}, {}
    bar = tqdm(total=sum(counts.values()), desc="latent dataset", disable=not progress, dynamic_ncols=True)
    for kind in KINDS:
        means, log_variances, texts = [], [], []
        for start in range(0, counts.get(kind, 0), chunk):
            size = min(chunk, counts[kind] - start)
            scenes = toyworld.sample_scenes(size, generator, with_motion=kind == "video", subject=subject)
            texts += [toyworld.caption(scene, generator) for scene in scenes]
            if kind == "image":
                rgb = toyworld.render_images(scenes, world).rgb.unsqueeze(1)
            elif kind == "video":
                rgb = toyworld.render_videos(scenes, world).rgb
            else:
                views = toyworld.render_views(scenes, world).rgb  # [N, V, H, W, 3]: each view an image
                rgb = views.flatten(0, 1).unsqueeze(1)
            mean, log_variance = encode_clips(autoencoder, rgb)
            if kind == "3d":  # back to one item per scene with the views along F
                mean = mean.view(size, -1, *mean.shape[1:]).squeeze(3).transpose(1, 2)
                log_variance = log_variance.view(size, -1, *log_variance.shape[1:]).squeeze(3).transpose(1, 2)
            means.append(mean.half().contiguous())
            log_variances.append(log_variance.half().contiguous())
            bar.update(size)
        if means:
            tensors[f"{kind}.mean"] = torch.cat(means)
            tensors[f"{kind}.log_variance"] = torch.cat(log_variances)
            captions[kind] = texts
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"captions": json.dumps(captions),
                                                 "seconds": f"{time.perf_counter() - started:.1f}"})
    temporary.replace(path)
    return load_latent_dataset(path)


def dataset_seconds(path: Path) -> float:
    """How long building the cached dataset took."""
    with safe_open(str(path), "pt") as handle:
        return float(handle.metadata()["seconds"])


def load_latent_dataset(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        captions = json.loads(handle.metadata()["captions"])
        return {kind: LatentSet(handle.get_tensor(f"{kind}.mean"), handle.get_tensor(f"{kind}.log_variance"),
                                captions[kind]) for kind in captions}
