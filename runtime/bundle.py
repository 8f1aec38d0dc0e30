"""A model bundle in memory: backbone, autoencoder, splat decoder, text encoder, tokenizer and defaults.

On disk it is one ``.safetensors`` file (``checkpoint.py``): tensors under ``dit.``, ``vae.``, ``splat.`` and
``text.``; the configs, the generation defaults and the tokenizer in the metadata.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

import torch
from tokenizers import Tokenizer

from .checkpoint import read_bundle, save_bundle
from .families.defaults import GenerationDefaults
from .gaussians.camera import Cameras, camera_rig
from .model.config import DiTConfig
from .model.dit import UniDiT
from .text.conditioning import TextConditioning
from .text.encoder import TextEncoder, TextEncoderConfig
from .text.tokenizer import tokenizer_from_json
from .weights import CheckpointError
from .vae.autoencoder import AutoencoderConfig, CausalVideoAutoencoder
from .vae.splat_decoder import SplatDecoder, SplatDecoderConfig

# The demo bundle shipped with the pack (trained by `unidit train --preset toyworld`): the embedded default.
SHIPPED_BUNDLE = Path(__file__).resolve().parents[1] / "models" / "unidit-toyworld.safetensors"


@dataclass
class ModelBundle:
    dit: UniDiT
    autoencoder: CausalVideoAutoencoder
    splat_decoder: SplatDecoder
    text_encoder: TextEncoder
    tokenizer: Tokenizer
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)
    info: dict = field(default_factory=dict)   # other metadata: provenance, training figures

    @classmethod
    def build(cls, dit: DiTConfig, autoencoder: AutoencoderConfig, splat: SplatDecoderConfig,
              text: TextEncoderConfig, tokenizer: Tokenizer, defaults: GenerationDefaults | None = None,
              info: dict | None = None) -> "ModelBundle":
        """Freshly initialised modules for the given configs."""
        return cls(UniDiT(dit), CausalVideoAutoencoder(autoencoder), SplatDecoder(splat), TextEncoder(text),
                   tokenizer, defaults or GenerationDefaults(), info or {})

    def modules(self) -> dict:
        """The bundle's modules by checkpoint component name."""
        return {"dit": self.dit, "vae": self.autoencoder, "splat": self.splat_decoder, "text": self.text_encoder}

    def configs(self) -> dict:
        return {"dit": self.dit.config.to_dict(), "vae": self.autoencoder.config.to_dict(),
                "splat": self.splat_decoder.config.to_dict(), "text": self.text_encoder.config.to_dict(),
                "defaults": asdict(self.defaults)}

    @property
    def device(self) -> torch.device:
        return self.dit.patch_embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.patch_embed.weight.dtype

    def to(self, device=None, dtype=None) -> "ModelBundle":
        for module in self.modules().values():
            module.to(device=device, dtype=dtype)
        return self

    def eval(self) -> "ModelBundle":
        for module in self.modules().values():
            module.eval()
        return self

    def parameter_count(self) -> int:
        return sum(p.numel() for module in self.modules().values() for p in module.parameters())

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> TextConditioning:
        return self.text_encoder.encode(self.tokenizer, prompts)

    def rig(self, width: int | None = None, height: int | None = None, preset: str | None = None,
            views: int | None = None) -> Cameras:
        """The cameras of a 3D view rig at the given image size (default: the trained rig and size)."""
        d = self.defaults
        return camera_rig(preset or d.rig, views or d.views, width or d.width, height or d.height, d.camera_radius,
                          d.fov_deg)

    def save(self, path: Union[str, os.PathLike], dtype: torch.dtype | None = torch.float16,
             overwrite: bool = False) -> Path:
        metadata = {"tokenizer": self.tokenizer.to_str(), "info": json.dumps(self.info)}
        return save_bundle(path, self.modules(), self.configs(), metadata, dtype=dtype, overwrite=overwrite)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], device="cpu", dtype: torch.dtype = torch.float32) -> "ModelBundle":
        bundle_file = read_bundle(path)
        name = bundle_file.path.name
        try:
            configs = bundle_file.config
            dit = UniDiT(DiTConfig.from_dict(configs["dit"]))
            autoencoder = CausalVideoAutoencoder(AutoencoderConfig.from_dict(configs["vae"]))
            splat = SplatDecoder(SplatDecoderConfig.from_dict(configs["splat"]))
            text = TextEncoder(TextEncoderConfig.from_dict(configs["text"]))
            defaults = GenerationDefaults.from_dict(configs.get("defaults", {}))
            tokenizer = tokenizer_from_json(bundle_file.metadata["tokenizer"])
        except KeyError as missing:
            raise CheckpointError(f"{name}: the bundle's metadata lacks {missing}; is it a complete UniDiT "
                                  f"bundle?") from None
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{name}: its config cannot be used: {error}") from None
        bundle = cls(dit, autoencoder, splat, text, tokenizer, defaults,
                     json.loads(bundle_file.metadata.get("info", "{}")))
        for component, module in bundle.modules().items():
            bundle_file.load_into(component, module)
        return bundle.to(device, dtype).eval()
