"""LoRA fine-tuning of the backbone: frozen linear layers plus trainable low-rank updates.

    y = W x + b + (alpha / rank) * B (A x),   A: [rank, in] (random), B: [out, rank] (zero at the start)

B starts at zero, so a freshly wrapped model computes exactly what the base model does. After training the
updates are merged back (W <- W + (alpha / rank) B A), leaving a plain model of the original shape that saves
into an ordinary bundle.
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

    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function."""
        linear = nn.Linear(self.base.in_features, self.base.out_features, device=self.base.weight.device,
                           dtype=self.base.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.base.weight + self.scale * self.up @ self.down)
            linear.bias.copy_(self.base.bias)
        return linear


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


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRA wrapper in ``model`` by its merged Linear; returns how many were merged."""
    count = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
                count += 1
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return count
