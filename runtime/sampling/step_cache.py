"""First-block step caching: skip most of the backbone on denoiser calls whose input has barely changed.

Between neighbouring sampler calls a diffusion transformer's blocks change the tokens in nearly the same way.
On every call the first block runs, and its residual (its output minus its input) is compared with the previous
call's by relative L1 change,

    change = mean |r - r_previous| / mean |r_previous|,    r = first block's output - its input

and the changes since the last full computation are summed. While that sum is below the threshold, the other
blocks are skipped: the residual they added at the last full computation (last block's output minus the first
block's) is added to this call's first-block output. Otherwise every block runs, that residual is refreshed and
the sum restarts at 0. The first ``WARMUP_CALLS`` = 3 calls of each entry always run in full (heun: the whole
first step and the first call of the second). This is FBCache (ParaAttention's "first block cache") with
TeaCache's accumulated change.

Why the first block's residual rather than its output, or its modulated input (TeaCache's signal): measured on
the shipped bundle, text -> image and text -> video, 4 prompts each, heun, 24 steps, guidance 4, warm-up 3 calls,
PSNR of the decoded frames against the uncached run (image / video):

    signal                  threshold   calls skipped   PSNR dB
    first block's residual    0.05      0.65 / 0.68     50.3 / 42.2
    first block's output      0.07      0.62 / 0.62     49.8 / 38.6
    modulated input           0.07      0.61 / 0.64     49.7 / 38.7
    first block's residual    0.07      0.71 / 0.72     44.5 / 39.1
    first block's output      0.10      0.70 / 0.72     43.1 / 34.8
    modulated input           0.10      0.70 / 0.70     44.3 / 38.5
    first block's residual    0.10      0.77 / 0.78     41.1 / 36.5
    first block's output      0.14      0.76 / 0.76     40.8 / 33.1
    modulated input           0.14      0.76 / 0.76     40.7 / 34.2

For as many skipped calls or more, the residual keeps the results closest: on videos by 3.4 to 4.3 dB over the
output and 0.6 to 3.5 dB over the modulated input, on images by up to 1.4 dB. It is also read from outside the
blocks, so one helper serves every backbone. A warm-up of 2 calls instead of 3 skips about one call more per run for
13 dB less on images (residual at 0.05: 0.68 / 0.70 skipped at 37.1 / 42.4 dB); 4 calls change nothing at 0.05 on
images and lose 0.8 dB on videos.

A :class:`StepCache` belongs to one sampling run: ``generate()`` makes a new one from the ``SamplerConfig`` and
hands it to the denoiser in ``DenoiserConditioning.step_cache``; it never lives on the (shared, resident) model.
Its entries are keyed by the block stack (Wan 2.2 A14B's two experts each have their own) and the batch layout,
the shape of the tokens: a guided call (conditional and unconditional branches, one batch of 2B) and a
conditional-only call (B items, where guidance is inactive) never reuse each other's residuals, and within a
guided batch each item keeps its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..parallel import sum_over_sequence

WARMUP_CALLS = 3   # calls of each entry that always run in full (module docstring)


@dataclass
class _Entry:
    """What one (block stack, batch layout) remembers: the previous call's first-block residual, the change
    summed since the last full computation, and the residual of the other blocks at that computation."""

    previous: Optional[torch.Tensor] = None
    accumulated: float = 0.0
    residual: Optional[torch.Tensor] = None
    calls: int = 0


@dataclass
class StepCache:
    """The step cache of one sampling run. ``threshold`` > 0: the summed relative L1 change of the first block's
    residual below which the other blocks are skipped (larger skips more). ``calls`` and ``skipped`` count the
    denoiser calls seen and those that reused the cached residual."""

    threshold: float
    warmup_calls: int = WARMUP_CALLS
    calls: int = 0
    skipped: int = 0
    _entries: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"a step cache needs a positive, finite threshold, got {self.threshold!r} "
                             f"(0 turns caching off: make no cache)")
        if self.warmup_calls < 1:
            raise ValueError(f"the first call of a run must run in full: warmup_calls >= 1, got {self.warmup_calls}")

    def should_skip(self, key, signal: torch.Tensor) -> bool:
        """Record this call's first-block residual ``signal`` under ``key``; True when the other blocks may be
        skipped."""
        entry = self._entries.setdefault(key, _Entry())
        self.calls += 1
        entry.calls += 1
        if entry.previous is not None:
            # Summed over the ranks of a sequence-parallel forward, so that they all skip, or run, the same blocks.
            difference, size = sum_over_sequence(torch.stack([(signal - entry.previous).abs().sum(dtype=torch.float32),
                                                              entry.previous.abs().sum(dtype=torch.float32)]))
            entry.accumulated += float(difference / size.clamp_min(1e-12))
        entry.previous = signal
        skip = (entry.calls > self.warmup_calls and entry.residual is not None
                and entry.accumulated < self.threshold)
        if skip:
            self.skipped += 1
        return skip

    def reuse(self, key, first: torch.Tensor) -> torch.Tensor:
        """The last block's output estimated from this call's first-block output and the cached residual."""
        return first + self._entries[key].residual

    def refresh(self, key, first: torch.Tensor, last: torch.Tensor) -> None:
        """After a full computation: store the residual of the blocks after the first, restart the sum."""
        entry = self._entries[key]
        entry.residual = last - first
        entry.accumulated = 0.0


def run_blocks(blocks: Sequence[torch.nn.Module], tokens: torch.Tensor,
               run_block: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
               cache: Optional[StepCache]) -> torch.Tensor:
    """``tokens`` through every block in order, ``run_block(block, tokens)`` each; with a step cache the first
    block always runs and the others only when the cache says their residual may have changed. Without a cache
    this is exactly the plain loop."""
    if cache is None:
        for block in blocks:
            tokens = run_block(block, tokens)
        return tokens
    key = (id(blocks), tuple(tokens.shape))
    first = run_block(blocks[0], tokens)
    if cache.should_skip(key, first - tokens):
        return cache.reuse(key, first)
    tokens = first
    for block in blocks[1:]:
        tokens = run_block(block, tokens)
    cache.refresh(key, first, tokens)
    return tokens
