"""LoRA fine-tuning of the backbone: frozen linear layers plus trainable low-rank updates.

    y = W x + b + (alpha / rank) * B (A x),   A: [rank, in] (random), B: [out, rank] (zero at the start)

B starts at zero, so a freshly wrapped model computes exactly what the base model does. After training the
updates are taken out as a LoRA file's layers (:func:`lora_layers`, written and applied by ``runtime/lora.py``)
and the wrappers removed (:func:`remove_lora`), leaving the base model as it was.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# The backbone's linear layers that LoRA adapts: attention projections and the MLP of every block.
DEFAULT_TARGETS = ("attn.qkv", "attn.out", "text_attn.q", "text_attn.kv", "text_attn.out", "mlp.gate_value",
                   "mlp.out")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.base = base
        self.scale = alpha / rank
        self.down = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                             dtype=base.weight.dtype))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                           dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        for parameter in base.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.down.T @ self.up.T) * self.scale


def add_lora(model: nn.Module, rank: int, alpha: float | None = None,
             targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[LoRALinear]:
    """Freeze ``model`` and wrap every Linear whose name ends with one of ``targets``; returns the wrappers
    (their ``down`` and ``up`` are the only trainable parameters)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full_name = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and full_name.endswith(targets):
                wrapper = LoRALinear(child, rank, float(alpha if alpha is not None else rank))
                setattr(module, child_name, wrapper)
                wrapped.append(wrapper)
    if not wrapped:
        raise ValueError(f"no linear layer matches the LoRA targets {targets}")
    return wrapped


def lora_layers(model: nn.Module) -> dict:
    """The trained updates by layer name: {name: (down [rank, in], up [out, rank], alpha)}."""
    return {name: (module.down.detach().clone(), module.up.detach().clone(), module.scale * module.down.shape[0])
            for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def remove_lora(model: nn.Module) -> int:
    """Put every wrapped layer back as it was (the updates discarded); returns how many were unwrapped."""
    count = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.base)
                count += 1
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return count
