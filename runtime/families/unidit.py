"""UniDiT's own bundles as a family: one ``.safetensors`` file holding the backbone, the causal video
autoencoder, the splat decoder and the text encoder with its tokenizer (``bundle.py``, ``checkpoint.py``)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..bundle import ModelBundle
from ..checkpoint import is_bundle
from ..control import CONTROL_KINDS
from ..lora import linear_layers
from ..model.config import modality_index
from ..model.dit import UniDiT
from ..text.conditioning import TextConditioning
from ..text.encoder import TextEncoder
from ..text.tokenizer import unknown_words
from ..weights import CheckpointError, Weights
from . import Capabilities, DenoiserConditioning, Family, FamilyModel, MemoryCost, ModelFiles, Placement


class UniDiTDenoiser(nn.Module):
    """The backbone behind the family interface: modality and camera rays come from the conditioning."""

    def __init__(self, dit: UniDiT):
        super().__init__()
        self.dit = dit

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, conditioning: DenoiserConditioning) -> torch.Tensor:
        modality = torch.full((x.shape[0],), modality_index(conditioning.modality), device=x.device)
        return self.dit(x, sigma, conditioning.text, modality, conditioning.plucker, conditioning.step_cache,
                        control=conditioning.control)

    def set_attention_backend(self, name: str) -> None:
        self.dit.set_attention_backend(name)

    def block_lists(self) -> list:
        return [self.dit.blocks]

    def lora_targets(self) -> list[dict]:
        return [linear_layers(self.dit)]

    @staticmethod
    def lora_name(name: str) -> str:
        return name


class BundleTextEncoder(nn.Module):
    """The bundle's text encoder with its word-level tokenizer."""

    def __init__(self, encoder: TextEncoder, tokenizer):
        super().__init__()
        self.encoder, self.tokenizer = encoder, tokenizer

    def encode(self, prompts: list[str]) -> TextConditioning:
        return self.encoder.encode(self.tokenizer, prompts)

    def unknown_words(self, prompt: str) -> list[str]:
        return unknown_words(self.tokenizer, prompt)


def model_from_bundle(bundle: ModelBundle, device: Optional[torch.device] = None) -> FamilyModel:
    """The family interface over a bundle's modules (no copies), computing on ``device`` (default: where the
    bundle's weights are)."""
    vae, dit = bundle.autoencoder.config, bundle.dit.config
    d = bundle.defaults
    capabilities = Capabilities(
        family="UniDiT", modalities=("image", "video", "3d"), given_frames=True, camera_conditioning=True,
        latent_channels=vae.latent_channels, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_group,
        patch=dit.patch_size, trained_sizes=d.sizes(), defaults=d,
        control=CONTROL_KINDS if dit.control_channels else ())
    text_encoder = BundleTextEncoder(bundle.text_encoder, bundle.tokenizer)
    # Per token: a few [tokens, width] tensors and the gated MLP's two [tokens, mlp] halves; per decoded pixel:
    # the frame decoder's full-resolution activations, for every frame of the clip at once (measured on the
    # shipped bundle in fp32: 0.7 to 1 KB per decoded pixel, 8 x its 32 full-resolution channels x 4 bytes).
    memory = MemoryCost(per_token=8 * dit.hidden_size + 3 * dit.mlp_hidden, per_decoded_pixel=8 * vae.channels[0],
                        decodes_whole_clips=True)
    return FamilyModel(capabilities, UniDiTDenoiser(bundle.dit), text_encoder, bundle.autoencoder, memory,
                       bundle.splat_decoder, rig=bundle.rig, device=device or bundle.device, dtype=bundle.dtype,
                       info=bundle.info)


def detect(weights: Weights) -> Optional[str]:
    return "UniDiT bundle" if is_bundle(weights) else None


def load(files: ModelFiles, placement: Placement) -> FamilyModel:
    extra = [name for name in ("text_encoder", "vae", "low_noise") if getattr(files, name) is not None]
    if extra:
        raise CheckpointError(f"{files.diffusion_model.name} is a UniDiT bundle, which holds its own text encoder and "
                              f"autoencoder; load it with UniDiT Loader (no {', '.join(extra)} needed)")
    bundle = ModelBundle.load(files.diffusion_model, device=placement.weights_on, dtype=placement.dtype)
    return model_from_bundle(bundle, placement.device)


FAMILY = Family("unidit", detect, load)
