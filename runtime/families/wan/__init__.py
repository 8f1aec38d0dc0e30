"""The Wan 2.1 / 2.2 family, from the three files ComfyUI users keep in ``models/``:

    diffusion_models/  wan2.1_t2v_1.3B_fp16.safetensors, wan2.2_ti2v_5B_fp16.safetensors, ... (``dit.py``)
    text_encoders/     umt5_xxl_fp16.safetensors, umt5_xxl_fp8_e4m3fn_scaled.safetensors   (``umt5.py``)
    vae/               wan_2.1_vae.safetensors (16 channels), wan2.2_vae.safetensors (48)  (``vae.py``)

or from diffusers folders (``transformer/``, ``text_encoder/`` + ``tokenizer/``, ``vae/``). Wan 2.1 T2V makes
images (one frame) and videos; Wan 2.2 TI2V-5B also makes image -> video, holding the first latent frame at noise
level 0. Wan 2.2 A14B is two experts of the 14B shape: the high-noise one denoises at noise levels at or above
the boundary (0.875), the low-noise one below; both stay resident.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ...weights import CheckpointError, Weights
from .. import (Capabilities, DenoiserConditioning, Family, FamilyModel, GenerationDefaults, MemoryCost, ModelFiles,
                Placement)
from ...lora import linear_layers
from .dit import WanDiT, describe, diffusers_to_original, infer_config, load_wan_dit, original_weights

# The official negative prompt of Wan's sampling configs ("garish colours, overexposed, static, blurry details,
# subtitles, ... walking backwards"), which ComfyUI's and diffusers' Wan examples use too.
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                   "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                   "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
EXPERT_BOUNDARY = 0.875   # Wan 2.2 T2V A14B: the high-noise expert at sigma >= this, the low-noise one below


class WanDenoiser(nn.Module):
    """One Wan diffusion model, or two experts switched at a noise-level boundary, behind the family interface."""

    def __init__(self, high_noise: WanDiT, low_noise: Optional[WanDiT] = None, boundary: float = EXPERT_BOUNDARY):
        super().__init__()
        self.high_noise, self.low_noise, self.boundary = high_noise, low_noise, boundary

    def expert(self, sigma: torch.Tensor) -> WanDiT:
        """The model for these per-frame levels: the free frames' level decides (given frames sit at 0)."""
        if self.low_noise is None or float(sigma.max()) >= self.boundary:
            return self.high_noise
        return self.low_noise

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, conditioning: DenoiserConditioning) -> torch.Tensor:
        text = conditioning.text
        context = text.tokens * text.mask[..., None].to(text.tokens.dtype)   # padding rows are zeros, as Wan pads
        return self.expert(sigma)(x, sigma, context, conditioning.step_cache)

    def experts(self) -> list[WanDiT]:
        return [model for model in (self.high_noise, self.low_noise) if model is not None]

    def set_attention_backend(self, name: str) -> None:
        for model in self.experts():
            model.set_attention_backend(name)

    def block_lists(self) -> list:
        return [model.blocks for model in self.experts()]

    def lora_targets(self) -> list[dict]:
        """Each expert's linear layers (a LoRA applies to every expert whose layers it names)."""
        return [linear_layers(model) for model in self.experts()]

    @staticmethod
    def lora_name(name: str) -> str:
        return diffusers_to_original(name)


def capabilities(dit: WanDiT, vae, description: str) -> Capabilities:
    """What a Wan model can do, with the official sampling defaults of its variant."""
    config = dit.config
    common = dict(latent_channels=vae.latent_channels, spatial_factor=vae.spatial_factor,
                  temporal_factor=vae.temporal_factor, patch=config.patch_size, camera_conditioning=False,
                  modalities=("image", "video"), spatial_tiles=True)
    if config.in_channels == 48:   # Wan 2.2 TI2V-5B: 720p, 24 fps, image -> video by a given first frame
        defaults = GenerationDefaults(width=1280, height=704, frames=121, fps=24.0, steps=50, guidance=5.0,
                                      given_frames_guidance=5.0, solver="euler", shift=5.0,
                                      negative_prompt=NEGATIVE_PROMPT)
        return Capabilities(family=description, given_frames=True, trained_sizes=((1280, 704), (704, 1280)),
                            defaults=defaults, **common)
    sizes = ((832, 480), (480, 832)) if config.dim < 5120 else ((1280, 720), (720, 1280), (832, 480), (480, 832))
    defaults = GenerationDefaults(width=832, height=480, frames=81, fps=16.0, steps=50, guidance=5.0,
                                  given_frames_guidance=5.0, solver="euler", shift=5.0,
                                  negative_prompt=NEGATIVE_PROMPT)
    return Capabilities(family=description, given_frames=False, trained_sizes=sizes, defaults=defaults,
                        given_frames_hint="For image -> video use Wan 2.2 TI2V-5B (wan2.2_ti2v_5B).", **common)


def detect(weights: Weights) -> Optional[str]:
    original = original_weights(weights)
    return None if original is None else describe(infer_config(original))


def load(files: ModelFiles, placement: Placement) -> FamilyModel:
    from .umt5 import load_umt5
    from .vae import load_wan_vae

    name = files.diffusion_model.name
    if files.text_encoder is None or files.vae is None:
        raise CheckpointError(f"{name} is a Wan diffusion model: it needs a text encoder (umt5_xxl, from "
                              f"models/text_encoders) and a VAE (wan_2.1_vae or wan2.2_vae, from models/vae); load it "
                              f"with UniDiT Loader (separate files)")
    where, dtype = placement.weights_on, placement.dtype
    dit = load_wan_dit(files.diffusion_model, where, dtype, matrix_dtype=placement.matrix_dtype)
    description = describe(dit.config)
    low_noise = None
    if files.low_noise is not None:
        low_noise = load_wan_dit(files.low_noise, where, dtype, matrix_dtype=placement.matrix_dtype)
        if low_noise.config != dit.config:
            raise CheckpointError(f"{files.low_noise.name} ({describe(low_noise.config)}) cannot be the low-noise "
                                  f"expert of {name} ({description}): the two experts must have the same shape")
        description = f"Wan 2.2 A14B (experts {name} + {files.low_noise.name})"
    vae = load_wan_vae(files.vae, where, dtype)
    if vae.latent_channels != dit.config.in_channels:
        wanted = "wan2.2_vae (48 channels)" if dit.config.in_channels == 48 else "wan_2.1_vae (16 channels)"
        raise CheckpointError(f"the VAE {files.vae.name} makes {vae.latent_channels}-channel latents but the diffusion "
                              f"model {name} ({description}) takes {dit.config.in_channels}: use {wanted}")
    text_encoder = load_umt5(files.text_encoder, where, dtype)
    if text_encoder.width != dit.config.text_dim:
        raise CheckpointError(f"the text encoder {files.text_encoder.name} gives {text_encoder.width}-wide tokens but "
                              f"the diffusion model {name} ({description}) takes {dit.config.text_dim}: use "
                              f"umt5_xxl (the T5 encoder Wan was trained with)")
    # Per token: about six [tokens, dim] tensors and two [tokens, ffn] (the FFN's hidden and its GELU), as
    # ComfyUI's estimate for Wan; per decoded pixel: the VAE decoder's full-resolution activations, ~6 KB.
    memory = MemoryCost(per_token=6 * dit.config.dim + 2 * dit.config.ffn_dim, per_decoded_pixel=3000)
    return FamilyModel(capabilities(dit, vae, description), WanDenoiser(dit, low_noise), text_encoder, vae, memory,
                       device=placement.device, dtype=dtype, info={"family": description})


FAMILY = Family("wan", detect, load)
