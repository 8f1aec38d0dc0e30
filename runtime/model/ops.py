"""Layers whose weights stay in their stored dtype and are cast to the computation's dtype on every call.

A family's model code builds its layers from an ``ops`` namespace (this module by default, as ComfyUI's model
code takes ``operations``), so how weights are stored is the loader's business, not the model's:

- weights loaded from a bf16, fp16 or fp8 file keep that dtype in memory (a 1.3B-parameter bf16 model takes
  2.6 GB, not the 5.2 GB of fp32) and are cast, one layer at a time, to the dtype of the layer's input;
- ComfyUI's scaled-fp8 files store ``weight`` in float8_e4m3fn with a float32 ``scale_weight``: the dequantised
  weight is ``weight * scale_weight`` (``weights.fill_module`` attaches the scale);
- weights may live on another device than the input (they are moved with the cast). That is how ComfyUI's
  lowvram loading works with these layers: every layer says ``comfy_cast_weights``, so ComfyUI's memory manager
  may leave its weights in host memory when the device is short, and the layer streams them in per call.

When the stored dtype and device already match the input's, nothing is copied.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def cast_like(tensor: Optional[torch.Tensor], like: torch.Tensor, scale: Optional[torch.Tensor] = None):
    """``tensor`` on ``like``'s device in ``like``'s dtype (times ``scale`` when given), or None."""
    if tensor is None:
        return None
    out = tensor.to(device=like.device, dtype=like.dtype, non_blocking=True)
    if scale is not None:
        out = out * scale.to(device=like.device, dtype=like.dtype)
    return out


class CastWeights:
    """Marks a layer whose forward casts its weights to the input's device and dtype (ComfyUI reads this flag)."""

    comfy_cast_weights = False


class Linear(CastWeights, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.register_buffer("scale_weight", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, cast_like(self.weight, x, self.scale_weight), cast_like(self.bias, x))


class Conv2d(CastWeights, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, cast_like(self.weight, x), cast_like(self.bias, x))


class Conv3d(CastWeights, nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, cast_like(self.weight, x), cast_like(self.bias, x))


class Embedding(CastWeights, nn.Embedding):
    """Looks up rows in the stored dtype and casts only those rows (a 256k-word table is never converted)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.register_buffer("scale_weight", None, persistent=False)

    def forward(self, ids: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        rows = F.embedding(ids.to(self.weight.device), self.weight)
        like = torch.empty(0, device=ids.device, dtype=dtype or rows.dtype)
        return cast_like(rows, like, self.scale_weight)


class LayerNorm(CastWeights, nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype (as Wan's reference code does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        return F.layer_norm(y, self.normalized_shape, cast_like(self.weight, y), cast_like(self.bias, y),
                            self.eps).to(x.dtype)


class RMSNorm(CastWeights, nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension, in float32, returned in the input's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.square().mean(dim=-1, keepdim=True) + self.eps)
        return (y * cast_like(self.weight, y)).to(x.dtype)
