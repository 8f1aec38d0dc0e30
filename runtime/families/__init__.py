"""Model families: one interface for every model the engine runs.

A loaded model (:class:`FamilyModel`) answers four roles, whatever its family:

    denoiser(x, sigma, conditioning) -> v        x [B, C, F, h, w] noisy latents; sigma [B, F] the noise level of
                                                 every frame (a frame at sigma = 0 is given: clean conditioning);
                                                 v = noise - x0, the flow convention of sampling/flow.py;
                                                 its backbone runs its blocks through sampling/step_cache.py's
                                                 run_blocks with ``conditioning.step_cache`` (None: every block)
    text_encoder.encode(prompts) -> TextConditioning,  text_encoder.unknown_words(prompt) -> [words]
    autoencoder.encode(pixels [B, 3, T, H, W] in -1..1) -> latents [B, C, F, h, w] (normalised);  .decode(latents)
                                                 (with ``tile_size=`` in pixels when ``spatial_tiles``)
    splat_decoder.decode(view latents, cameras) -> Splats                    (families that generate 3D only)

and says what it can do in :class:`Capabilities`: modalities, given frames, camera conditioning, latent channels
and factors, the frame rule, the sizes it was trained at and its generation defaults. The sampler, the nodes,
``unidit run/serve`` and the store see only this; a node asks which family it holds only to say what it cannot do.

A family registers a :class:`Family`: ``detect`` recognises a checkpoint by its keys, ``load`` infers the config
from tensor shapes and builds the parts. :func:`load_model` picks the family of a set of files.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..model.config import modality_index
from ..sampling.step_cache import StepCache
from ..text.conditioning import TextConditioning
from ..weights import CheckpointError, Weights
from .defaults import GenerationDefaults


MODALITY_NAMES = {"image": "images", "video": "videos", "3d": "3D assets"}


@dataclass(frozen=True)
class Capabilities:
    """What a loaded model can do, and the shapes of its latents."""

    family: str                              # shown in messages, e.g. "Wan 2.1 T2V 1.3B"
    modalities: tuple[str, ...]              # what it generates: "image", "video", "3d"
    given_frames: bool                       # can hold given frames (image -> video, image -> 3D)
    camera_conditioning: bool                # takes camera rays for 3D views
    latent_channels: int
    spatial_factor: int                      # pixels per latent pixel
    temporal_factor: int                     # a clip has 1 + temporal_factor * k frames -> 1 + k latent frames
    patch: tuple[int, int, int]              # (frames, y, x) latent cells per token
    trained_sizes: tuple[tuple[int, int], ...] = ()   # (width, height) it was trained at
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)
    given_frames_hint: str = ""              # why given frames are not supported, and what to use instead
    spatial_tiles: bool = False              # the autoencoder can work in overlapping spatial tiles
    control: tuple[str, ...] = ()            # control maps it was trained to follow (runtime/control.py)

    @property
    def size_multiple(self) -> int:
        """Widths and heights must be multiples of this (autoencoder factor x patch)."""
        return self.spatial_factor * math.lcm(self.patch[1], self.patch[2])

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of ``frames`` pixel frames (1 + temporal_factor * k)."""
        t = self.temporal_factor
        if frames < 1 or (frames - 1) % t:
            examples = ", ".join(str(1 + t * k) for k in range(4))
            raise ValueError(f"{self.family} makes clips of 1 + {t}k frames ({examples}, ...), got {frames}")
        return 1 + (frames - 1) // t

    def tokens_per_frame(self, latent_height: int, latent_width: int) -> int:
        return (latent_height // self.patch[1]) * (latent_width // self.patch[2])

    def check_modality(self, modality: str) -> None:
        modality_index(modality)  # raises for an unknown name, with the list
        if modality not in self.modalities:
            makes = " and ".join(MODALITY_NAMES[m] for m in self.modalities)
            raise ValueError(f"{self.family} cannot make {MODALITY_NAMES[modality]}; it makes {makes}. "
                             f"{'3D needs a UniDiT bundle.' if modality == '3d' else ''}".strip())

    def check_given_frames(self) -> None:
        if not self.given_frames:
            raise ValueError(f"{self.family} was not trained to hold given frames, so it cannot condition on an "
                             f"image. {self.given_frames_hint}".strip())

    def check_control(self) -> None:
        if not self.control:
            raise ValueError(f"{self.family} was not trained to follow control maps (depth, masks); unplug UniDiT "
                             f"Control, or use the UniDiT demo model v2, which takes them")

    def size_warning(self, width: int, height: int) -> Optional[str]:
        """A note when (width, height) is not a trained size, else None."""
        if not self.trained_sizes or (width, height) in self.trained_sizes:
            return None
        sizes = ", ".join(f"{w}x{h}" for w, h in self.trained_sizes)
        return (f"{self.family} was trained at {sizes} (width x height); at {width}x{height} it may make empty or "
                f"deformed pictures: pick one of those sizes")


@dataclass(frozen=True)
class MemoryCost:
    """Device memory a run needs beside the weights, in units of the compute dtype's size: per token of one
    denoiser forward (both guidance branches count), and per output pixel of one decoded chunk (the autoencoder
    decodes one latent frame at a time, or whole clips when ``decodes_whole_clips``)."""

    per_token: int
    per_decoded_pixel: int
    decodes_whole_clips: bool = False


@dataclass
class DenoiserConditioning:
    """What the denoiser is conditioned on besides the noisy latents and their noise levels."""

    text: TextConditioning
    modality: str                              # "image" | "video" | "3d"
    plucker: Optional[torch.Tensor] = None     # [B, 6, F, h, w] camera rays of 3D views, or None
    step_cache: Optional[StepCache] = None     # the sampling run's first-block cache (sampling/step_cache.py)
    control: Optional[torch.Tensor] = None     # [B, 4, F, h, w] control maps (runtime/control.py), or None


class FamilyModel:
    """A loaded model of any family: its parts, what it can do, its compute device and dtype."""

    def __init__(self, capabilities: Capabilities, denoiser: nn.Module, text_encoder: nn.Module,
                 autoencoder: nn.Module, memory: MemoryCost, splat_decoder: Optional[nn.Module] = None,
                 rig: Optional[Callable] = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, info: Optional[dict] = None):
        self.capabilities = capabilities
        self.memory = memory
        self.denoiser = denoiser
        self.text_encoder = text_encoder
        self.autoencoder = autoencoder
        self.splat_decoder = splat_decoder
        self._rig = rig
        self.device = torch.device(device)
        self.dtype = dtype
        self.info = info or {}

    @property
    def defaults(self) -> GenerationDefaults:
        return self.capabilities.defaults

    def modules(self) -> dict[str, nn.Module]:
        parts = {"denoiser": self.denoiser, "text_encoder": self.text_encoder, "autoencoder": self.autoencoder}
        if self.splat_decoder is not None:
            parts["splat_decoder"] = self.splat_decoder
        return parts

    def parameter_count(self) -> int:
        return sum(p.numel() for module in self.modules().values() for p in module.parameters())

    def activation_bytes(self, part: str, samples_shape: tuple, guided: bool = True) -> int:
        """Device memory beyond the weights that ``part`` needs for latents of ``samples_shape`` [B, C, F, h, w]
        (the room to ask a memory manager for)."""
        b, _, f, h, w = samples_shape
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        if part == "denoiser":
            tokens = b * (2 if guided else 1) * f * self.capabilities.tokens_per_frame(h, w)
            return tokens * self.memory.per_token * itemsize
        if part == "autoencoder":
            t = self.capabilities.temporal_factor
            frames = 1 + t * (f - 1) if self.memory.decodes_whole_clips else t
            pixels = b * frames * h * w * self.capabilities.spatial_factor ** 2
            return pixels * self.memory.per_decoded_pixel * itemsize
        return 0

    def block_lists(self) -> list:
        """The denoiser's lists of identical transformer blocks (one per expert), for block swap."""
        return self.denoiser.block_lists()

    def with_loras(self, loras: list) -> "FamilyModel":
        """A view of this model whose denoiser applies ``loras`` [(LoRAWeights, strength)] on every call; the
        model itself, shared by every run, is not changed."""
        from ..lora import LoRADenoiser

        active = [(lora, strength) for lora, strength in loras if strength != 0]
        if not active:
            return self
        entries = [(lora, strength, targets) for lora, strength in active
                   for targets in self.denoiser.lora_targets() if set(lora.layers) <= set(targets)]
        view = copy.copy(self)
        view.denoiser = LoRADenoiser(self.denoiser, entries)
        return view

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> TextConditioning:
        return self.text_encoder.encode(list(prompts))

    def unknown_words(self, prompt: str) -> list[str]:
        return self.text_encoder.unknown_words(prompt)

    def rig(self, width: int, height: int, preset: Optional[str] = None, views: Optional[int] = None):
        """The cameras of a 3D view rig at the given image size."""
        if self._rig is None:
            self.capabilities.check_modality("3d")
        return self._rig(width, height, preset, views)

    def set_attention_backend(self, name: str) -> None:
        self.denoiser.set_attention_backend(name)


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model: a single bundle, or a diffusion model with its text encoder and VAE (each a
    ``.safetensors`` file or a diffusers folder). ``low_noise`` is the second expert of a two-expert model."""

    diffusion_model: Path
    text_encoder: Optional[Path] = None
    vae: Optional[Path] = None
    low_noise: Optional[Path] = None

    def paths(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in ("diffusion_model", "text_encoder", "vae", "low_noise")
                if getattr(self, name) is not None}


@dataclass(frozen=True)
class Family:
    """A registered family: ``detect(weights)`` returns a description of the checkpoint when it is one of this
    family's diffusion models (else None); ``load(files, placement)`` builds the model."""

    name: str
    detect: Callable[[Weights], Optional[str]]
    load: Callable[[ModelFiles, "Placement"], FamilyModel]


@dataclass(frozen=True)
class Placement:
    """Where a model computes and where its weights wait: ``device`` and ``dtype`` of the computation;
    ``weights_device`` (default: ``device``) holds the weights until a memory manager moves them; ``matrix_dtype``
    stores the diffusion model's matrices narrower than they are in the file (ComfyUI's --fp8_e4m3fn-unet)."""

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    weights_device: Optional[torch.device] = None
    matrix_dtype: Optional[torch.dtype] = None

    @property
    def weights_on(self) -> torch.device:
        return self.weights_device if self.weights_device is not None else self.device


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    _FAMILIES[family.name] = family


def families() -> dict[str, Family]:
    """The registered families, the built-in ones (UniDiT bundles, Wan) first."""
    if not _FAMILIES:
        from . import unidit, wan

        register_family(unidit.FAMILY)
        register_family(wan.FAMILY)
    return _FAMILIES


def detect_family(weights: Weights) -> tuple[Family, str]:
    """The family of a diffusion-model checkpoint and its description; a clear error when none knows it."""
    for family in families().values():
        description = family.detect(weights)
        if description is not None:
            return family, description
    sample = ", ".join(sorted(weights)[:3])
    raise CheckpointError(f"{weights.name}: not a diffusion model UniDiT can run (its tensors start {sample} ...). "
                          f"UniDiT runs its own bundles and Wan 2.1 / 2.2 diffusion models.")


def load_model(files: ModelFiles, placement: Optional[Placement] = None) -> FamilyModel:
    """Load the model in ``files`` with the family that recognises its diffusion model (on the CPU in fp32 unless
    ``placement`` says otherwise)."""
    from ..weights import open_weights

    family, _ = detect_family(open_weights(files.diffusion_model))
    return family.load(files, placement or Placement())
