"""LoRA at inference: low-rank updates added to a resident model's linear layers without changing its weights.

    y = W x + b + sum over the applied LoRAs of  strength * scale * up (down x)

``down`` is [rank, in], ``up`` [out, rank]; ``scale`` is alpha / rank when the file gives an alpha, else 1 (as
ComfyUI reads them). The updates run as forward hooks on the denoiser's linear layers for the duration of one
denoiser call (:class:`LoRADenoiser`), so the base weights are never touched: strength 0 or an unplugged LoRA
gives the base model's output bit for bit, and LoRAs switch without reloading anything.

File layouts read (safetensors only), with the layer names mapped onto the denoiser's own:
- ours, written by ``unidit train --lora-rank`` (:func:`save_lora`): ``<layer>.lora_down.weight``,
  ``<layer>.lora_up.weight``, ``<layer>.alpha``, metadata ``format`` = "unidit.lora";
- diffusers / PEFT: ``<prefix><layer>.lora_A.weight`` (down) and ``.lora_B.weight`` (up), the prefix one of
  ``diffusion_model.``, ``transformer.``, ``base_model.model.`` ...; a PEFT folder's ``adapter_config.json`` gives
  ``lora_alpha`` and ``r``; diffusers' layer names (``attn1.to_q`` ...) are renamed by the family;
- kohya: ``lora_unet_<layer with dots as underscores>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``.
Text-encoder layers (kohya ``lora_te``, ``text_encoder.``) are skipped with a warning: LoRAs here adapt the
diffusion model.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn

from .checkpoint import writable_path, write_tensors
from .weights import CheckpointError, open_weights, read_json

log = logging.getLogger("unidit")

FORMAT = "unidit.lora"
_SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_A.weight": "down",
             ".lora_B.weight": "up", ".lora_A.default.weight": "down", ".lora_B.default.weight": "up",
             ".alpha": "alpha"}
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "unet.", "dit.")
_TEXT_PREFIXES = ("lora_te", "text_encoder.", "text_encoders.", "te.")


@dataclass
class LoRAWeights:
    """One LoRA file's updates by layer name of the target denoiser: (down [r, in], up [out, r], scale)."""

    name: str
    layers: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)     # the file's safetensors metadata (ours: base, rank, subject)

    @property
    def rank(self) -> int:
        return max((down.shape[0] for down, _, _ in self.layers.values()), default=0)


def read_lora(path: Union[str, os.PathLike], targets: dict[str, nn.Module],
              rename: Callable[[str], str] = lambda name: name) -> LoRAWeights:
    """The LoRA at ``path`` (a .safetensors file or a PEFT folder) matched to ``targets`` (the denoiser's linear
    layers by name); ``rename`` maps another layout's layer names (diffusers') to the targets'."""
    path = Path(path)
    weights = open_weights(path)
    config_alpha = None
    if path.is_dir() and (path / "adapter_config.json").is_file():
        config = read_json(path / "adapter_config.json")
        if "lora_alpha" in config and "r" in config:
            config_alpha = float(config["lora_alpha"])
    kohya = {name.replace(".", "_"): name for name in targets}
    parts: dict[str, dict] = {}
    skipped_text, unknown = 0, []
    for key in weights:
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            if key.endswith(("scaled_fp8", ".diff", ".diff_b", ".dora_scale")):
                raise CheckpointError(f"{path.name}: tensor '{key}' is of a kind UniDiT does not apply (full-weight "
                                      f"differences or DoRA); only low-rank down/up pairs are supported")
            continue
        layer = key[:-len(suffix)]
        if layer.startswith(_TEXT_PREFIXES):
            skipped_text += 1
            continue
        name = _layer_name(layer, kohya, rename)
        if name is None or name not in targets:
            unknown.append(layer)
            continue
        parts.setdefault(name, {})[_SUFFIXES[suffix]] = key
    if not parts:
        sample = ", ".join(unknown[:3]) or "none"
        raise CheckpointError(f"{path.name}: none of its layers is a layer of this model (its first ones: {sample}); "
                              f"is it a LoRA for another model?")
    if unknown:
        log.warning("UniDiT: %s: %d layers are not in this model and are skipped (e.g. %s)", path.name,
                    len(unknown), unknown[0])
    if skipped_text:
        log.warning("UniDiT: %s also adapts the text encoder (%d tensors); only the diffusion model's layers are "
                    "applied", path.name, skipped_text)
    lora = LoRAWeights(path.name, metadata=dict(weights.metadata))
    for name, found in parts.items():
        if "down" not in found or "up" not in found:
            raise CheckpointError(f"{path.name}: layer '{name}' has only a {'down' if 'down' in found else 'up'} "
                                  f"matrix; a LoRA needs both")
        down, up = weights[found["down"]].float(), weights[found["up"]].float()
        down, up = down.flatten(1), up.flatten(1)   # 1x1 convolution layouts
        target = targets[name]
        rank = down.shape[0]
        if up.shape[1] != rank or tuple(down.shape[1:]) != (target.in_features,) or up.shape[0] != target.out_features:
            raise CheckpointError(f"{path.name}: layer '{name}' has down {tuple(down.shape)} and up {tuple(up.shape)}, "
                                  f"but the model's layer maps {target.in_features} to {target.out_features}")
        alpha = float(weights[found["alpha"]].float().reshape(-1)[0]) if "alpha" in found else config_alpha
        lora.layers[name] = (down, up, alpha / rank if alpha is not None else 1.0)
    return lora


def _layer_name(layer: str, kohya: dict, rename: Callable[[str], str]) -> Optional[str]:
    if layer.startswith("lora_unet_"):
        return kohya.get(layer[len("lora_unet_"):])
    for prefix in _PREFIXES:
        if layer.startswith(prefix):
            layer = layer[len(prefix):]
            break
    return rename(layer + ".weight")[:-len(".weight")]


def save_lora(path: Union[str, os.PathLike], layers: dict, metadata: Optional[dict] = None,
              overwrite: bool = False) -> Path:
    """Write ``layers`` {name: (down [r, in], up [out, r], alpha)} in our layout."""
    path = writable_path(path, "LoRA files", overwrite)
    tensors = {}
    for name, (down, up, alpha) in layers.items():
        tensors[f"{name}.lora_down.weight"] = down.detach().float().cpu().contiguous()
        tensors[f"{name}.lora_up.weight"] = up.detach().float().cpu().contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha))
    return write_tensors(path, tensors, {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}})


class LoRADenoiser(nn.Module):
    """A denoiser with LoRAs applied during each call: ``loras`` is [(LoRAWeights, strength, target layers)]."""

    def __init__(self, base: nn.Module, loras: Iterable[tuple[LoRAWeights, float, dict]]):
        super().__init__()
        self.base = base
        self.loras = [(lora, strength, targets) for lora, strength, targets in loras if strength != 0]
        self._on_device: dict = {}

    def forward(self, *args, **kwargs):
        hooks = []
        try:
            for index, (lora, strength, targets) in enumerate(self.loras):
                for name, (down, up, scale) in lora.layers.items():
                    hooks.append(targets[name].register_forward_hook(self._update(index, name, strength * scale)))
            return self.base(*args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()

    def _update(self, index: int, name: str, factor: float):
        def hook(module, inputs, output):
            (x,) = inputs
            down, up = self._weights(index, name, x)
            return output + factor * ((x @ down.T) @ up.T)
        return hook

    def _weights(self, index: int, name: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (index, name, like.device, like.dtype)
        if key not in self._on_device:
            down, up, _ = self.loras[index][0].layers[name]
            self._on_device[key] = (down.to(like.device, like.dtype), up.to(like.device, like.dtype))
        return self._on_device[key]

    def set_attention_backend(self, name: str) -> None:
        self.base.set_attention_backend(name)

    def block_lists(self) -> list:
        return self.base.block_lists()

    def lora_targets(self) -> list[dict]:
        return self.base.lora_targets()


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers of a backbone by name: what a LoRA may adapt."""
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
