"""Generation with a model bundle: empty latents, image conditioning, sampling, decoding to frames and splats.

These are the calls that the nodes, ``unidit demo`` and ``unidit eval`` make. They take tensors and
dataclasses; frames are float [N, T, H, W, 3] in 0..1 (sRGB), like ComfyUI's IMAGE.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from .bundle import ModelBundle
from .gaussians.camera import Cameras
from .gaussians.splats import Splats
from .model.config import modality_index
from .sampling.guidance import GuidanceConfig, guided_velocity
from .sampling.noise import seeded_noise
from .sampling.sampler import SamplerConfig, StepCallback, sample
from .text.conditioning import TextConditioning


@dataclass
class Latents:
    """A batch of latent volumes and what they mean.

    samples [B, C, F, h, w]; modality "image" | "video" | "3d"; given [B, F] bool: frames held at ``clean``
    [B, C, F, h, w] during sampling (image -> video, image -> 3D); cameras: the V = F cameras of 3D views at
    pixel resolution; fps of videos.
    """

    samples: torch.Tensor
    modality: str
    given: torch.Tensor
    clean: Optional[torch.Tensor] = None
    cameras: Optional[Cameras] = None
    fps: Optional[float] = None

    def __post_init__(self):
        modality_index(self.modality)
        b, _, f = self.samples.shape[:3]
        if tuple(self.given.shape) != (b, f):
            raise ValueError(f"given mask must be [{b}, {f}], got {tuple(self.given.shape)}")
        if self.modality == "3d" and (self.cameras is None or len(self.cameras) != f):
            raise ValueError(f"3D latents need one camera per view ({f})")

    @property
    def batch_size(self) -> int:
        return self.samples.shape[0]

    @property
    def frames(self) -> int:
        return self.samples.shape[2]

    def pixel_size(self, bundle: ModelBundle) -> tuple[int, int]:
        factor = bundle.autoencoder.config.spatial_factor
        return self.samples.shape[-1] * factor, self.samples.shape[-2] * factor


def empty_latents(bundle: ModelBundle, modality: str, width: int, height: int, batch_size: int = 1,
                  frames: int = 1, rig: Optional[str] = None, views: Optional[int] = None,
                  fps: Optional[float] = None) -> Latents:
    """Zeros for ``batch_size`` items: an image, a video of ``frames`` pixel frames (1 + 4k) or the ``views``
    views of a camera rig. Width and height must be multiples of the autoencoder's factor times the patch size."""
    config = bundle.autoencoder.config
    multiple = config.spatial_factor * max(p[1] for p in bundle.dit.config.patch_sizes)
    if width % multiple or height % multiple or width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive multiples of {multiple}, got {width}x{height}")
    cameras = None
    if modality == "image":
        latent_frames = 1
    elif modality == "video":
        latent_frames = config.latent_frames(frames)
    elif modality == "3d":
        cameras = bundle.rig(width, height, rig, views)
        latent_frames = len(cameras)
    else:
        modality_index(modality)  # raises with the list of modalities
    samples = torch.zeros(batch_size, config.latent_channels, latent_frames, height // config.spatial_factor,
                          width // config.spatial_factor)
    given = torch.zeros(batch_size, latent_frames, dtype=torch.bool)
    return Latents(samples, modality, given, None, cameras, fps if modality == "video" else None)


@torch.no_grad()
def encode_frames(bundle: ModelBundle, frames: torch.Tensor) -> torch.Tensor:
    """Frames [N, T, H, W, 3] in 0..1 -> normalised latents [N, C, 1 + (T - 1) / 4, h, w]."""
    pixels = frames.permute(0, 4, 1, 2, 3).to(bundle.device, bundle.dtype) * 2 - 1
    return bundle.autoencoder.encode(pixels).float().cpu()


def condition_on_image(bundle: ModelBundle, latents: Latents, images: torch.Tensor) -> Latents:
    """Make ``images`` [N, H, W, 3] (0..1) the given first frame (video) or first view (3D) of every item.

    N = 1 conditions the whole batch on one image; otherwise N must equal the batch size.
    """
    if latents.modality == "image":
        raise ValueError("image conditioning needs video or 3D latents; an image latent has no frame to generate")
    width, height = latents.pixel_size(bundle)
    if images.shape[1:3] != (height, width):
        images = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                                                 antialias=True, align_corners=False).permute(0, 2, 3, 1)
    encoded = encode_frames(bundle, images.unsqueeze(1).clamp(0, 1))  # [N, C, 1, h, w]
    if encoded.shape[0] not in (1, latents.batch_size):
        raise ValueError(f"{encoded.shape[0]} images for a batch of {latents.batch_size}: give one image or one "
                         f"per item")
    encoded = encoded.expand(latents.batch_size, -1, -1, -1, -1)
    clean = latents.clean.clone() if latents.clean is not None else torch.zeros_like(latents.samples)
    clean[:, :, :1] = encoded
    given = latents.given.clone()
    given[:, 0] = True
    return replace(latents, clean=clean, given=given)


def generate(bundle: ModelBundle, latents: Latents, positive: TextConditioning,
             negative: Optional[TextConditioning], guidance: GuidanceConfig, sampler: SamplerConfig, seed: int,
             callback: Optional[StepCallback] = None, cancel: Optional[Callable[[], bool]] = None) -> Latents:
    """Sample latents. Item i of the batch uses seed ``seed + i``; a prompt batch of 1 serves every item.

    With ``sampler.denoise`` < 1 the input ``latents.samples`` are the starting point (image-to-image).
    """
    b = latents.batch_size
    device, dtype = bundle.device, bundle.dtype
    positive = _match_batch(positive, b, "prompt").to(device, dtype)
    negative = None if negative is None else _match_batch(negative, b, "negative prompt").to(device, dtype)
    modality = torch.full((b,), modality_index(latents.modality), dtype=torch.long, device=device)
    given = latents.given.to(device)
    plucker = None
    if latents.modality == "3d":
        h, w = latents.samples.shape[-2:]
        rays = latents.cameras.resized(w, h).plucker_rays()  # [V, 6, h, w]
        plucker = rays.permute(1, 0, 2, 3).unsqueeze(0).expand(b, -1, -1, -1, -1).to(device, dtype)

    def model(x, sigma, text):
        repeats = x.shape[0] // b
        sigmas = torch.full((x.shape[0],), float(sigma), device=device)
        return bundle.dit(x, sigmas, text, modality.repeat(repeats), given.repeat(repeats, 1),
                          None if plucker is None else plucker.repeat(repeats, 1, 1, 1, 1)).float()

    shape = tuple(latents.samples.shape[1:])
    noise = seeded_noise([seed + i for i in range(b)], shape, device=device)
    tokens = latents.frames * (shape[2] // 2) * (shape[3] // 2)
    sigmas = sampler.sigmas(tokens // latents.frames, latents.frames)
    velocity = guided_velocity(model, positive, negative, guidance)
    init = latents.samples.to(device) if sampler.denoise < 1 else None
    clean = None if latents.clean is None else latents.clean.to(device)
    with torch.no_grad():
        result = sample(velocity, noise, sigmas, sampler.solver, init=init, given=given, clean=clean,
                        callback=callback, cancel=cancel)
    return replace(latents, samples=result.cpu())


@torch.no_grad()
def decode_frames(bundle: ModelBundle, latents: Latents) -> torch.Tensor:
    """Latents -> frames [B, T, H, W, 3] in 0..1. 3D views decode one by one as images (T = views)."""
    samples = latents.samples.to(bundle.device, bundle.dtype)
    if latents.modality == "3d":
        b, c, v, h, w = samples.shape
        views = samples.transpose(1, 2).reshape(b * v, c, 1, h, w)
        pixels = bundle.autoencoder.decode(views)[:, :, 0]  # [B*V, 3, H, W]
        frames = pixels.view(b, v, *pixels.shape[1:]).permute(0, 1, 3, 4, 2)
    else:
        frames = bundle.autoencoder.decode(samples).permute(0, 2, 3, 4, 1)
    return ((frames.float() + 1) / 2).clamp(0, 1).cpu()


@torch.no_grad()
def preview_image(bundle: ModelBundle, samples: torch.Tensor):
    """A quick look at latents [B, C, F, h, w]: frame (or view) 0 of item 0, decoded, as a PIL image."""
    from PIL import Image

    pixels = bundle.autoencoder.decode(samples[:1, :, :1].to(bundle.device, bundle.dtype))[0, :, 0]
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


@torch.no_grad()
def decode_splats(bundle: ModelBundle, latents: Latents, min_opacity: float = 0.05) -> Splats:
    """3D view latents -> one splat per item, in the world frame of the rig's cameras (float32, CPU)."""
    if latents.modality != "3d":
        raise ValueError(f"only 3D latents decode to splats; these are {latents.modality} latents")
    samples = latents.samples.to(bundle.device, bundle.dtype)
    splats = bundle.splat_decoder.decode(samples, latents.cameras, min_opacity=min_opacity)
    return splats.to(device="cpu", dtype=torch.float32)


def _match_batch(text: TextConditioning, batch: int, what: str) -> TextConditioning:
    if len(text) == batch:
        return text
    if len(text) == 1:
        return text.repeat(batch)
    raise ValueError(f"{len(text)} {what}s for a batch of {batch}: give one or one per item")
