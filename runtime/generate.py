"""Generation with a model of any family: empty latents, image conditioning, sampling, decoding to frames and
splats.

These are the calls that the nodes, ``unidit demo`` and ``unidit eval`` make. They take a
:class:`~.families.FamilyModel`, tensors and dataclasses; frames are float [N, T, H, W, 3] in 0..1 (sRGB), like
ComfyUI's IMAGE.

A model that computes NaN or infinity (broken weights, fp16 overflow) would otherwise yield black frames that
look like a result: sampled latents, decoded frames and splats are checked and :class:`NonFiniteOutput` names
the step and what to try.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
from einops import rearrange

from . import memory_budget
from .control import control_latent
from .families import DenoiserConditioning, FamilyModel
from .gaussians.camera import Cameras
from .gaussians.splats import Splats
from .model.config import modality_index
from .sampling.guidance import GuidanceConfig, guided_velocity
from .sampling.noise import seeded_noise
from .sampling.sampler import SamplerConfig, StepCallback, sample
from .text.conditioning import TextConditioning

log = logging.getLogger("unidit")


class NonFiniteOutput(RuntimeError):
    """A model computed NaN or infinite values."""


def require_finite(values: torch.Tensor, what: str, model: FamilyModel) -> None:
    """Raise :class:`NonFiniteOutput` when ``values`` hold NaN or infinity (``what`` produced them)."""
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    raise NonFiniteOutput(
        f"{what} of {model.capabilities.family} came out as NaN or infinity ({bad} of {values.numel()} values), so "
        f"there is no result to save. The model's weights may hold non-finite values (a damaged or badly converted "
        f"file: check it with another workflow or load another copy), or {model.dtype} overflowed: try the Loader's "
        f"dtype fp32 or bf16.".replace("torch.", ""))


@dataclass
class Latents:
    """A batch of latent volumes and what they mean.

    samples [B, C, F, h, w]; modality "image" | "video" | "3d"; given [B, F] bool: frames held at ``clean``
    [B, C, F, h, w] during sampling (image -> video, image -> 3D); cameras: the V = F cameras of 3D views at
    pixel resolution; fps of videos; control: [B, 4, F, h, w] control maps (runtime/control.py) or None.
    """

    samples: torch.Tensor
    modality: str
    given: torch.Tensor
    clean: Optional[torch.Tensor] = None
    cameras: Optional[Cameras] = None
    fps: Optional[float] = None
    control: Optional[torch.Tensor] = None

    def __post_init__(self):
        modality_index(self.modality)
        b, _, f = self.samples.shape[:3]
        if tuple(self.given.shape) != (b, f):
            raise ValueError(f"given mask must be [{b}, {f}], got {tuple(self.given.shape)}")
        if self.control is not None and (self.control.shape[0] != b or self.control.shape[2:] !=
                                         self.samples.shape[2:]):
            raise ValueError(f"control maps {list(self.control.shape)} do not match the latent "
                             f"{list(self.samples.shape)}")
        if self.modality == "3d" and (self.cameras is None or len(self.cameras) != f):
            raise ValueError(f"3D latents need one camera per view ({f})")

    @property
    def batch_size(self) -> int:
        return self.samples.shape[0]

    @property
    def frames(self) -> int:
        return self.samples.shape[2]

    def pixel_size(self, model: FamilyModel) -> tuple[int, int]:
        factor = model.capabilities.spatial_factor
        return self.samples.shape[-1] * factor, self.samples.shape[-2] * factor


def empty_latents(model: FamilyModel, modality: str, width: int, height: int, batch_size: int = 1,
                  frames: int = 1, rig: Optional[str] = None, views: Optional[int] = None,
                  fps: Optional[float] = None) -> Latents:
    """Zeros for ``batch_size`` items: an image, a video of ``frames`` pixel frames (1 + 4k) or the ``views``
    views of a camera rig. Width and height must be multiples of the autoencoder's factor times the patch size."""
    capabilities = model.capabilities
    capabilities.check_modality(modality)
    multiple = capabilities.size_multiple
    if width % multiple or height % multiple or width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive multiples of {multiple} for {capabilities.family}, got "
                         f"{width}x{height}")
    cameras = None
    if modality == "image":
        latent_frames = 1
    elif modality == "video":
        latent_frames = capabilities.latent_frames(frames)
    else:
        cameras = model.rig(width, height, rig, views)
        latent_frames = len(cameras)
    factor = capabilities.spatial_factor
    samples = torch.zeros(batch_size, capabilities.latent_channels, latent_frames, height // factor, width // factor)
    given = torch.zeros(batch_size, latent_frames, dtype=torch.bool)
    return Latents(samples, modality, given, None, cameras, fps if modality == "video" else None)


@torch.no_grad()
def encode_frames(model: FamilyModel, frames: torch.Tensor) -> torch.Tensor:
    """Frames [N, T, H, W, 3] in 0..1 -> normalised latents [N, C, 1 + (T - 1) / temporal factor, h, w]."""
    pixels = frames.permute(0, 4, 1, 2, 3).to(model.device, model.dtype) * 2 - 1
    return model.autoencoder.encode(pixels).float().cpu()


def fit_frames(model: FamilyModel, frames: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Frames [N, H, W, 3] centre-cropped to the model's size multiple (as ComfyUI's VAE Encode crops)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what} must be an IMAGE batch [N, H, W, 3] (RGB), got shape {tuple(frames.shape)}")
    multiple = model.capabilities.size_multiple
    height, width = frames.shape[1:3]
    fitted_h, fitted_w = height // multiple * multiple, width // multiple * multiple
    if fitted_h == 0 or fitted_w == 0:
        raise ValueError(f"{what} of {width}x{height} are smaller than {model.capabilities.family}'s size multiple "
                         f"({multiple})")
    if (fitted_h, fitted_w) != (height, width):
        log.info("UniDiT: %s cropped from %dx%d to %dx%d (multiples of %d)", what, width, height, fitted_w, fitted_h,
                 multiple)
        top, left = (height - fitted_h) // 2, (width - fitted_w) // 2
        frames = frames[:, top:top + fitted_h, left:left + fitted_w]
    return frames.clamp(0, 1)


def encode_latents(model: FamilyModel, frames: torch.Tensor, modality: str, fps: Optional[float] = None,
                   rig: Optional[str] = None) -> Latents:
    """IMAGE frames [N, H, W, 3] (0..1) -> latents: N images (a batch of N), one clip of N frames (1 + 4k; the
    frames beyond the last whole group are dropped) or the N views of a 3D rig. Sampling them with denoise < 1
    is image -> image, video -> video or views -> views."""
    capabilities = model.capabilities
    capabilities.check_modality(modality)
    frames = fit_frames(model, frames)
    count, height, width = frames.shape[:3]
    cameras = None
    if modality == "image":
        samples = encode_frames(model, frames.unsqueeze(1))
    elif modality == "video":
        usable = 1 + (count - 1) // capabilities.temporal_factor * capabilities.temporal_factor
        if usable != count:
            log.warning("UniDiT: a clip of %d frames is encoded as its first %d (clips have 1 + %dk frames)", count,
                        usable, capabilities.temporal_factor)
        samples = encode_frames(model, frames[:usable].unsqueeze(0))
    else:
        cameras = model.rig(width, height, rig, views=count)
        samples = encode_frames(model, frames.unsqueeze(1)).transpose(0, 2)   # [1, C, V, h, w]: views along F
    given = torch.zeros(samples.shape[0], samples.shape[2], dtype=torch.bool)
    return Latents(samples, modality, given, None, cameras, fps if modality == "video" else None)


def parse_positions(text: str) -> list[int]:
    """ "0, -1" -> [0, -1]: frame (or view) indices, negative ones counted from the end."""
    try:
        positions = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"positions must be whole numbers separated by commas, like '0, -1'; got {text!r}") from None
    if not positions:
        raise ValueError("give at least one position, like '0' (the first frame) or '0, -1' (first and last)")
    return positions


def give_frames(model: FamilyModel, latents: Latents, images: torch.Tensor, positions: list[int]) -> Latents:
    """Hold ``images`` [N, H, W, 3] at pixel frames ``positions`` of a video (or views of 3D latents) while sampling.

    One image per position serves the whole batch; with one position, N may also equal the batch size (an image
    per item). A video's latent frame 0 is pixel frame 0 alone and latent frame j >= 1 stands for pixel frames
    4j - 3 .. 4j (temporal factor 4), so an image at pixel frame p > 0 is encoded as a still clip [image x 5] whose
    second latent frame is the one placed at latent frame ceil(p / 4): a keyframe there shows the image.
    """
    if latents.modality == "image":
        raise ValueError("an image latent has no other frames to generate: use UniDiT Encode with the Sampler's "
                         "denoise below 1 for image -> image, or a video or 3D latent for keyframes")
    capabilities = model.capabilities
    capabilities.check_given_frames()
    factor = capabilities.temporal_factor if latents.modality == "video" else 1
    pixel_frames = 1 + (latents.frames - 1) * factor
    what = "frames" if latents.modality == "video" else "views"
    slots = []
    for position in positions:
        if not -pixel_frames <= position < pixel_frames:
            raise ValueError(f"position {position} is outside this latent's {pixel_frames} {what} "
                             f"(0 .. {pixel_frames - 1}, or -1 for the last)")
        pixel = position % pixel_frames
        slots.append((pixel + factor - 1) // factor)
    if len(set(slots)) != len(slots):
        raise ValueError(f"positions {positions} fall on the same latent frame: video frames are encoded in groups "
                         f"of {factor} after the first, so keyframes must be at least {factor} frames apart")
    per_item = len(positions) == 1 and images.shape[0] == latents.batch_size
    if images.shape[0] != len(positions) and not per_item:
        raise ValueError(f"{images.shape[0]} images for {len(positions)} positions: give one image per position "
                         f"(or, for one position, one per item of the batch of {latents.batch_size})")
    width, height = latents.pixel_size(model)
    if images.shape[1:3] != (height, width):
        images = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                                                 antialias=True, align_corners=False).permute(0, 2, 3, 1)
    images = images.clamp(0, 1)
    clean = latents.clean.clone() if latents.clean is not None else torch.zeros_like(latents.samples)
    given = latents.given.clone()
    for index, slot in enumerate(slots):
        image = images if per_item else images[index:index + 1]
        if slot == 0 or latents.modality == "3d":     # a view, like a video's first frame, is encoded alone
            encoded = encode_frames(model, image.unsqueeze(1))[:, :, 0]
        else:
            encoded = encode_frames(model, image.unsqueeze(1).expand(-1, 1 + factor, -1, -1, -1))[:, :, -1]
        clean[:, :, slot] = encoded.expand(latents.batch_size, -1, -1, -1)
        given[:, slot] = True
    return replace(latents, clean=clean, given=given)


def condition_on_image(model: FamilyModel, latents: Latents, images: torch.Tensor) -> Latents:
    """Make ``images`` [N, H, W, 3] (0..1) the given first frame (video) or first view (3D): one image for the
    whole batch, or one per item."""
    return give_frames(model, latents, images, [0])


def attach_control(model: FamilyModel, latents: Latents, depth: Optional[torch.Tensor] = None,
                   mask: Optional[torch.Tensor] = None) -> Latents:
    """Put control maps on image or video latents: ``depth`` and ``mask`` [N, H, W] in 0..1 (runtime/control.py),
    either or both; a map with channels [N, H, W, C] (an IMAGE) counts by its grey level. One map serves every
    item and frame; N = batch size gives each image its own; for a video N = its pixel frames gives each frame its
    own (a trajectory, for every item)."""
    model.capabilities.check_control()
    if latents.modality == "3d":
        raise ValueError("control maps steer images and videos; 3D views take none (condition view 0 on an image "
                         "made with control instead)")
    b, _, f, h, w = latents.samples.shape
    pixel_frames = 1 + model.capabilities.temporal_factor * (f - 1)
    maps = {}
    for kind, value in (("depth", depth), ("mask", mask)):
        if value is None:
            continue
        value = value.float()
        if value.ndim == 4:
            value = value[..., :3].mean(dim=-1)                              # an IMAGE: its grey level
        if value.ndim != 3:
            raise ValueError(f"the {kind} map must be [N, H, W] or an IMAGE [N, H, W, C], got {list(value.shape)}")
        n = value.shape[0]
        if n == 1:
            maps[kind] = value[None].expand(b, -1, -1, -1)                      # every item, every frame
        elif latents.modality == "image" and n == b:
            maps[kind] = value[:, None]                                        # one per image
        elif latents.modality == "video" and n == pixel_frames:
            maps[kind] = value[None].expand(b, -1, -1, -1)                      # one per frame: a trajectory
        else:
            wanted = f"1 or {b} (one per image)" if latents.modality == "image" else \
                f"1 or {pixel_frames} (one per frame)"
            raise ValueError(f"{n} {kind} maps for {latents.modality} latents of batch {b}: give {wanted}")
    control = control_latent(maps, f, h, w, model.capabilities.temporal_factor)
    return replace(latents, control=control)


def continue_clip(model: FamilyModel, clip: torch.Tensor, overlap: int, frames: int,
                  fps: Optional[float] = None, batch_size: int = 1) -> Latents:
    """A video latent of ``frames`` frames whose first ``overlap`` frames (1 + 4k) are the last ones of ``clip``
    [T, H, W, 3], encoded together so that their motion carries on; join the sampled result with
    :func:`join_latents` (or, decoded, with :func:`join_clips`)."""
    capabilities = model.capabilities
    capabilities.check_given_frames()
    capabilities.latent_frames(overlap)
    if overlap > clip.shape[0]:
        raise ValueError(f"an overlap of {overlap} frames needs a clip of at least {overlap}; this one has "
                         f"{clip.shape[0]}")
    if overlap >= frames:
        raise ValueError(f"the new clip ({frames} frames) must be longer than the overlap ({overlap}) to add "
                         f"anything")
    tail = fit_frames(model, clip[-overlap:], "the clip's frames")
    height, width = tail.shape[1:3]
    latents = empty_latents(model, "video", width, height, batch_size, frames=frames, fps=fps)
    encoded = encode_frames(model, tail.unsqueeze(0))          # [1, C, 1 + (overlap - 1) / 4, h, w]
    given_frames = encoded.shape[2]
    clean = torch.zeros_like(latents.samples)
    clean[:, :, :given_frames] = encoded
    given = latents.given.clone()
    given[:, :given_frames] = True
    return replace(latents, clean=clean, given=given)


def join_latents(first: Latents, second: Latents) -> Latents:
    """One video latent: ``first``'s latent frames, then ``second``'s after the given ones it starts with (the
    overlap :func:`continue_clip` encoded from ``first``'s last frames). Decoded once, the causal decoder carries
    on from ``first``'s own latents into ``second``'s new ones: ``first``'s frames come out as they were, and no
    frame goes through the autoencoder twice (joining decoded clips shows that round trip as a jump)."""
    for name, latents in (("first", first), ("second", second)):
        if latents.modality != "video":
            raise ValueError(f"the {name} latent is {latents.modality}; join two video latents")
    if first.samples.shape[1:2] + first.samples.shape[3:] != second.samples.shape[1:2] + second.samples.shape[3:]:
        raise ValueError(f"the latents differ in channels or size ({list(first.samples.shape)} and "
                         f"{list(second.samples.shape)}); join clips of one model at one size")
    if first.batch_size != second.batch_size:
        raise ValueError(f"the latents hold {first.batch_size} and {second.batch_size} clips; join as many as "
                         f"there are")
    leading = second.given.int().cumprod(dim=1).sum(dim=1)     # given latent frames at the start, per clip
    overlap = int(leading[0])
    if overlap == 0 or not bool((leading == overlap).all()):
        raise ValueError("the second latent does not start with given frames: make it with UniDiT Continue Clip "
                         "from the first clip's decoded frames, and sample it")
    if overlap >= second.frames:
        raise ValueError("the second latent is all overlap: it adds no frames to the first")

    def clean_of(latents: Latents) -> torch.Tensor:
        return latents.clean if latents.clean is not None else torch.zeros_like(latents.samples)

    return Latents(torch.cat([first.samples, second.samples[:, :, overlap:]], dim=2), "video",
                   torch.cat([first.given, second.given[:, overlap:]], dim=1),
                   torch.cat([clean_of(first), clean_of(second)[:, :, overlap:]], dim=2), fps=first.fps)


def join_clips(first: torch.Tensor, second: torch.Tensor, overlap: int) -> torch.Tensor:
    """``first`` then ``second`` [T, H, W, 3] without the ``overlap`` frames that ``second`` repeats (a cut: where
    ``second`` is a decoded continuation, its copy of the overlap went through the autoencoder, which shows as a
    small jump; :func:`join_latents` avoids it)."""
    if first.shape[1:] != second.shape[1:]:
        raise ValueError(f"the clips differ in size ({first.shape[2]}x{first.shape[1]} and "
                         f"{second.shape[2]}x{second.shape[1]}); join clips of the same size")
    if not 0 <= overlap < second.shape[0]:
        raise ValueError(f"overlap must be 0 .. {second.shape[0] - 1} frames for a second clip of "
                         f"{second.shape[0]}, got {overlap}")
    return torch.cat([first, second[overlap:]])


def generate(model: FamilyModel, latents: Latents, positive: TextConditioning,
             negative: Optional[TextConditioning], guidance: GuidanceConfig, sampler: SamplerConfig, seed: int,
             callback: Optional[StepCallback] = None, cancel: Optional[Callable[[], bool]] = None) -> Latents:
    """Sample latents. Item i of the batch uses seed ``seed + i``; a prompt batch of 1 serves every item.

    With ``sampler.denoise`` < 1 the input ``latents.samples`` are the starting point (image-to-image). Given
    frames enter the denoiser at noise level 0 and are held at their clean latents. With
    ``sampler.cache_threshold`` > 0 the run has its own first-block step cache (sampling/step_cache.py).
    """
    capabilities = model.capabilities
    capabilities.check_modality(latents.modality)
    if latents.samples.shape[1] != capabilities.latent_channels:
        raise ValueError(f"these latents have {latents.samples.shape[1]} channels but {capabilities.family} uses "
                         f"{capabilities.latent_channels}: make the latent with the same model")
    if bool(latents.given.any()):
        capabilities.check_given_frames()
    if latents.control is not None:
        capabilities.check_control()
    b = latents.batch_size
    step_cache = sampler.step_cache()   # this run's alone: never kept on the shared model
    velocity = guided_denoiser(model, latents, positive, negative, guidance, step_cache)
    device = model.device

    shape = tuple(latents.samples.shape[1:])
    noise = seeded_noise([seed + i for i in range(b)], shape, device=device)
    sigmas = sampler.sigmas(capabilities.tokens_per_frame(shape[2], shape[3]), latents.frames,
                            family_shift=capabilities.defaults.shift,
                            reference_tokens=capabilities.defaults.shift_reference_tokens)
    init = latents.samples.to(device) if sampler.denoise < 1 else None
    given = latents.given.to(device)
    clean = None if latents.clean is None else latents.clean.to(device)
    with torch.no_grad():
        result = sample(velocity, noise, sigmas, sampler.solver, init=init, given=given, clean=clean,
                        callback=callback, cancel=cancel)
    if step_cache is not None:
        log.info("UniDiT step cache: %d of %d denoiser calls reused the cached residual (threshold %g)",
                 step_cache.skipped, step_cache.calls, step_cache.threshold)
    require_finite(result, "The sampled latents", model)
    return replace(latents, samples=result.cpu())


def guided_denoiser(model: FamilyModel, latents: Latents, positive: TextConditioning,
                    negative: Optional[TextConditioning], guidance: GuidanceConfig,
                    step_cache=None) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The guided velocity ``(x [B, C, F, h, w], sigma) -> v`` of ``model`` for latents laid out like ``latents``:
    its given frames at noise level 0, its cameras' rays for 3D views, the prompt batch matched to B."""
    capabilities = model.capabilities
    b = latents.batch_size
    device, dtype = model.device, model.dtype
    positive = _match_batch(positive, b, "prompt").to(device, dtype)
    negative = None if negative is None else _match_batch(negative, b, "negative prompt").to(device, dtype)
    given = latents.given.to(device)
    plucker = None
    if latents.modality == "3d" and capabilities.camera_conditioning:
        h, w = latents.samples.shape[-2:]
        rays = latents.cameras.resized(w, h).plucker_rays()  # [V, 6, h, w]
        plucker = rays.permute(1, 0, 2, 3).unsqueeze(0).expand(b, -1, -1, -1, -1).to(device, dtype)
    control = None if latents.control is None else latents.control.to(device, dtype)

    def velocity_of(x, sigma, text):
        """The denoiser on a batch of ``repeats`` x B items (conditional and unconditional branches)."""
        repeats = x.shape[0] // b
        sigmas = torch.where(given, 0.0, float(sigma)).repeat(repeats, 1)  # [B * repeats, F]
        rays = None if plucker is None else plucker.repeat(repeats, 1, 1, 1, 1)
        maps = None if control is None else control.repeat(repeats, 1, 1, 1, 1)   # both guidance branches
        conditioning = DenoiserConditioning(text, latents.modality, rays, step_cache, maps)
        return model.denoiser(x.to(dtype), sigmas, conditioning).float()

    return guided_velocity(velocity_of, positive, negative, guidance)


@torch.no_grad()
def decode_frames(model: FamilyModel, latents: Latents, tile_size: Optional[int] = None) -> torch.Tensor:
    """Latents -> frames [B, T, H, W, 3] in 0..1. 3D views decode one by one as images (T = views).

    ``tile_size`` (pixels) decodes in overlapping spatial tiles, bounding memory at large sizes (autoencoders with
    ``capabilities.spatial_tiles``)."""
    capabilities = model.capabilities
    if latents.samples.shape[1] != capabilities.latent_channels:
        raise ValueError(f"these latents have {latents.samples.shape[1]} channels but {capabilities.family}'s "
                         f"autoencoder takes {capabilities.latent_channels}: decode with the model that made them")
    tiles = {}
    if tile_size:
        if not capabilities.spatial_tiles:
            raise ValueError(f"{capabilities.family}'s autoencoder decodes whole frames; set tile_size to 0")
        tiles = {"tile_size": tile_size, "tile_overlap": max(capabilities.spatial_factor, tile_size // 4)}
    b, _, f, h, w = latents.samples.shape
    count = f if latents.modality == "3d" else 1 + capabilities.temporal_factor * (f - 1)
    size = capabilities.spatial_factor
    memory_budget.require_frames(b, count, w * size, h * size, "The decoded frames",
                                 "the width, height, frames, views or batch size")
    samples = latents.samples.to(model.device, model.dtype)
    if latents.modality == "3d":
        views = rearrange(samples, "b c v h w -> (b v) c 1 h w")
        pixels = model.autoencoder.decode(views, **tiles)
        frames = rearrange(pixels, "(b v) c 1 h w -> b v h w c", b=samples.shape[0])
    else:
        frames = rearrange(model.autoencoder.decode(samples, **tiles), "b c t h w -> b t h w c")
    require_finite(frames, "The decoded frames", model)
    return ((frames.float() + 1) / 2).clamp(0, 1).cpu()


@torch.no_grad()
def decode_splats(model: FamilyModel, latents: Latents, min_opacity: float = 0.05) -> Splats:
    """3D view latents -> one splat per item, in the world frame of the rig's cameras (float32, CPU)."""
    if latents.modality != "3d":
        raise ValueError(f"only 3D latents decode to splats; these are {latents.modality} latents")
    if model.splat_decoder is None:
        raise ValueError(f"{model.capabilities.family} has no splat decoder; 3D needs a UniDiT bundle")
    samples = latents.samples.to(model.device, model.dtype)
    decoder = model.splat_decoder
    per_pixel = decoder.gaussians(decoder(samples), latents.cameras)
    for name, values in per_pixel.items():  # before the faint ones are dropped: NaN opacities would drop silently
        require_finite(values, f"The decoded splat's {name}", model)
    splats = decoder.keep_opaque(per_pixel, samples.shape[0], min_opacity)
    return splats.to(device="cpu", dtype=torch.float32)


def _match_batch(text: TextConditioning, batch: int, what: str) -> TextConditioning:
    if len(text) == batch:
        return text
    if len(text) == 1:
        return text.repeat(batch)
    raise ValueError(f"{len(text)} {what}s for a batch of {batch}: give one or one per item")
