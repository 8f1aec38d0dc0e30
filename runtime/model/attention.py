"""Attention dispatch: one function, backends chosen by name.

Layout everywhere: q [B, H, Sq, D], k and v [B, H, Sk, D]; ``mask`` broadcasts to [B, H, Sq, Sk] and is either
boolean (True = attend) or a float bias added to the scores (-inf = ignore), or None.

Backends:
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` — the default, exact, on every device (it picks
  FlashAttention-2 / cuDNN / memory-efficient kernels on CUDA and a flash-style kernel on CPU);
- ``flash_attn``: the ``flash-attn`` package (CUDA, fp16/bf16, head dim <= 256), when importable
  (``pip install 'comfyui-unidit[flash]'``); a boolean key-padding mask (padded text) goes through its varlen
  kernel with the padding removed; it takes no float bias;
- ``chunked``: exact attention in query x key blocks with an online softmax, so memory stays bounded by the
  block sizes for very long sequences on devices where SDPA would materialise the full score matrix.

More backends can be registered (the ComfyUI bridge adds ComfyUI's own optimised attention). A backend that
cannot take a call falls back to ``sdpa`` with one warning per backend and reason, never a crash.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class AttentionBackend:
    """A named attention implementation.

    ``available()`` says whether it can run in this process at all (its package imports, say);
    ``refuses(q, k, v, mask)`` returns why it cannot take this particular call, or None when it can.
    """

    name: str
    run: AttentionFn
    available: Callable[[], bool]
    refuses: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], Optional[str]]
    description: str


_BACKENDS: dict[str, AttentionBackend] = {}
_warned: set[tuple[str, str]] = set()


def register_backend(backend: AttentionBackend) -> None:
    """Add (or replace) a backend by name."""
    _BACKENDS[backend.name] = backend


def backend_names(available_only: bool = False) -> list[str]:
    """Names of the registered backends, the default first."""
    names = [name for name, backend in _BACKENDS.items() if not available_only or backend.available()]
    return sorted(names, key=lambda name: (name != "sdpa", name))


def check_backend_name(name: str) -> str:
    """Return ``name`` if it is a registered backend, else raise a ValueError that lists the choices."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {backend_names()}")
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None,
              backend: str = "sdpa") -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(D)) v`` with the named backend (see the module docstring)."""
    chosen = _BACKENDS[check_backend_name(backend)]
    if chosen.name != "sdpa":
        reason = "it is not available in this environment" if not chosen.available() else chosen.refuses(q, k, v, mask)
        if reason is not None:
            _warn_once(chosen.name, reason)
            chosen = _BACKENDS["sdpa"]
    return chosen.run(q, k, v, mask)


def _warn_once(name: str, reason: str) -> None:
    if (name, reason) not in _warned:
        _warned.add((name, reason))
        log.warning("attention backend %r cannot take this call (%s); using 'sdpa' instead", name, reason)


# --- sdpa ------------------------------------------------------------------------------------------------------

def _sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


register_backend(AttentionBackend("sdpa", _sdpa, lambda: True, lambda q, k, v, mask: None,
                                  "PyTorch scaled_dot_product_attention (default, every device)"))


# --- flash_attn ------------------------------------------------------------------------------------------------

def _flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401  (importable is what matters)
    except Exception:  # ImportError, or a broken CUDA build raising at import
        return False
    return True


def _flash_attn_refuses(q, k, v, mask):
    if not q.is_cuda:
        return "flash_attn runs on CUDA only"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"flash_attn needs fp16 or bf16, got {q.dtype}"
    if mask is not None and (mask.dtype != torch.bool or key_padding(mask, q, k) is None):
        return "flash_attn takes key-padding masks only (no float bias, no per-query mask)"
    if q.shape[-1] > 256:
        return f"flash_attn supports head dim <= 256, got {q.shape[-1]}"
    return None


def key_padding(mask: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> Optional[torch.Tensor]:
    """The [B, Sk] keys-to-attend of a boolean mask that is the same for every head and query, else None."""
    batch, keys = q.shape[0], k.shape[2]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2] != 1 or mask.shape[3] != keys:
        return None
    return mask[:, 0, 0].expand(batch, keys)


def _flash_attn(q, k, v, mask):
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # flash-attn takes [B, S, H, D]
    if mask is None:
        return flash_attn_func(q, k, v).transpose(1, 2)
    # Padded keys: every item's real keys packed one after the other, with cumulative lengths.
    keep = key_padding(mask, q.transpose(1, 2), k.transpose(1, 2))                       # [B, Sk]
    batch, queries = q.shape[:2]
    key_lengths = keep.sum(dim=1, dtype=torch.int32)
    cu_keys = torch.nn.functional.pad(key_lengths.cumsum(0, dtype=torch.int32), (1, 0))
    cu_queries = torch.arange(0, (batch + 1) * queries, queries, dtype=torch.int32, device=q.device)
    out = flash_attn_varlen_func(q.reshape(batch * queries, *q.shape[2:]), k[keep], v[keep], cu_queries, cu_keys,
                                 queries, int(key_lengths.max()))
    # An item without any key to attend gets zeros (as the chunked backend gives).
    out = out.view(batch, queries, *q.shape[2:]).masked_fill((key_lengths == 0)[:, None, None, None], 0.0)
    return out.transpose(1, 2)


register_backend(AttentionBackend("flash_attn", _flash_attn, _flash_attn_available, _flash_attn_refuses,
                                  "flash-attn package (CUDA, fp16/bf16)"))


# --- chunked ---------------------------------------------------------------------------------------------------

CHUNK_QUERIES = 1024
CHUNK_KEYS = 4096


def chunked_attention(q, k, v, mask=None, chunk_queries: int = CHUNK_QUERIES, chunk_keys: int = CHUNK_KEYS):
    """Exact attention in blocks of queries and keys, merging key blocks with a running log-sum-exp.

    Peak extra memory is one [B, H, chunk_queries, chunk_keys] score block. Rows whose keys are all masked out
    give zeros (SDPA gives NaN there).
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    batch, heads, num_queries, _ = q.shape
    num_keys = k.shape[2]
    if mask is not None:
        mask = mask.expand(batch, heads, num_queries, num_keys)
    outputs = []
    for q_start in range(0, num_queries, chunk_queries):
        q_block = q[:, :, q_start:q_start + chunk_queries].float() * scale
        rows = q_block.shape[2]
        running_max = q_block.new_full((batch, heads, rows, 1), -math.inf)
        running_sum = q_block.new_zeros((batch, heads, rows, 1))
        accumulator = q_block.new_zeros((batch, heads, rows, v.shape[-1]))
        for k_start in range(0, num_keys, chunk_keys):
            scores = q_block @ k[:, :, k_start:k_start + chunk_keys].float().transpose(-1, -2)
            if mask is not None:
                block_mask = mask[:, :, q_start:q_start + rows, k_start:k_start + chunk_keys]
                if block_mask.dtype == torch.bool:
                    scores = scores.masked_fill(~block_mask, -math.inf)
                else:
                    scores = scores + block_mask.float()
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
            safe_max = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            weights = torch.exp(scores - safe_max)
            correction = torch.exp(running_max - safe_max)
            running_sum = running_sum * correction + weights.sum(dim=-1, keepdim=True)
            accumulator = accumulator * correction + weights @ v[:, :, k_start:k_start + chunk_keys].float()
            running_max = new_max
        outputs.append(accumulator / running_sum.clamp_min(torch.finfo(torch.float32).tiny))
    return torch.cat(outputs, dim=2).to(q.dtype)


register_backend(AttentionBackend("chunked", chunked_attention, lambda: True, lambda q, k, v, mask: None,
                                  "exact blockwise attention with bounded memory (very long sequences)"))
