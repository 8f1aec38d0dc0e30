"""Sampling previews: what a user sees while a model samples.

- ``latent2rgb``: a linear map from the latent's channels to RGB, as ComfyUI's latent previews, fitted once per
  model from its own autoencoder: a fixed set of pictures (discs of random colours on random backgrounds) is
  encoded, and the map from each latent pixel to the mean colour of the pixels it covers (with a bias) is solved
  by least squares. One small matrix product per step, for any family.
- ``decode``: the autoencoder decodes the first frame: the real picture, at the cost of a decoder pass per step.
- ``none``: nothing is computed.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from einops import rearrange

from .families import FamilyModel

PREVIEW_METHODS = ("none", "latent2rgb", "decode")
PREVIEW_SIZE = 512          # longest side of a preview, as ComfyUI's
FIT_PICTURES = 24           # calibration pictures of the projection
_projections: "weakref.WeakKeyDictionary[FamilyModel, torch.Tensor]" = weakref.WeakKeyDictionary()


def calibration_pictures(side: int, count: int = FIT_PICTURES) -> torch.Tensor:
    """[count, 3, side, side] in 0..1: a disc of one random colour on a background of another (seeded)."""
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    background, disc = torch.rand(2, count, 3, 1, 1, generator=generator)
    centre = torch.rand(2, count, 1, 1, generator=generator) * 1.2 - 0.6
    radius = torch.rand(count, 1, 1, generator=generator) * 0.6 + 0.2
    inside = ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 < radius ** 2).float()[:, None]         # [count, 1, s, s]
    return background * (1 - inside) + disc * inside


@torch.no_grad()
def latent_rgb_projection(model: FamilyModel) -> torch.Tensor:
    """[C + 1, 3]: latent channels (and a bias) -> RGB in 0..1, fitted on :func:`calibration_pictures` (cached per
    model)."""
    if model not in _projections:
        factor, multiple = model.capabilities.spatial_factor, model.capabilities.size_multiple
        pictures = calibration_pictures(max(multiple, 64 // multiple * multiple))                  # [N, 3, s, s]
        latents = model.autoencoder.encode((pictures[:, :, None] * 2 - 1).to(model.device, model.dtype))
        features = rearrange(latents[:, :, 0].float().cpu(), "n c h w -> (n h w) c")
        colours = rearrange(F.avg_pool2d(pictures, factor), "n c h w -> (n h w) c")
        design = torch.cat([features, torch.ones(len(features), 1)], dim=1)                       # [N h w, C + 1]
        _projections[model] = torch.linalg.lstsq(design, colours, driver="gelsd").solution        # [C + 1, 3]
    return _projections[model]


@torch.no_grad()
def latent_rgb(model: FamilyModel, latents: torch.Tensor) -> torch.Tensor:
    """Latent frames [C, h, w] -> an RGB picture [h, w, 3] in 0..1 through the fitted projection."""
    projection = latent_rgb_projection(model)
    flat = latents.float().cpu().flatten(1).T                                                     # [h * w, C]
    rgb = flat @ projection[:-1] + projection[-1]
    return rgb.view(*latents.shape[1:], 3).clamp(0, 1)


@torch.no_grad()
def preview_image(model: FamilyModel, samples: torch.Tensor, method: str):
    """Frame (or view) 0 of item 0 of latents [B, C, F, h, w] as a PIL image by ``method``, or None for "none"."""
    from PIL import Image

    if method not in PREVIEW_METHODS:
        raise ValueError(f"unknown preview method {method!r}; choose one of {list(PREVIEW_METHODS)}")
    if method == "none":
        return None
    if method == "decode":
        pixels = model.autoencoder.decode(samples[:1, :, :1].to(model.device, model.dtype))[0, :, 0]
        return Image.fromarray((((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0))
                               .cpu().numpy())
    rgb = latent_rgb(model, samples[0, :, 0])
    image = Image.fromarray((rgb * 255).round().byte().cpu().numpy())
    scale = min(model.capabilities.spatial_factor, PREVIEW_SIZE / max(image.size))   # shown at about pixel size
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    return image
