"""Optional ``torch.compile`` of a backbone's transformer blocks, with a fallback.

Each block's forward is compiled in place (parameter names and the state dict do not change). Compiling happens
at the first call, which is also when a missing compiler shows (no C++ compiler for the CPU backend, no Triton on
CUDA): then the blocks go back to running eagerly, with one warning that says why, and the run goes on.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

log = logging.getLogger("unidit")


class CompiledBlocks:
    """The compiled forwards of ``blocks`` and the way back to eager (:meth:`fall_back`)."""

    def __init__(self, blocks: nn.ModuleList, backend: str = "inductor"):
        self.blocks = blocks
        self.eager = [block.forward for block in blocks]
        self.failed = None
        for block, eager in zip(blocks, self.eager):
            block.forward = self._guarded(torch.compile(eager, backend=backend), eager)

    def _guarded(self, compiled, eager):
        def forward(*args, **kwargs):
            if self.failed is not None:
                return eager(*args, **kwargs)
            try:
                return compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as error:   # compiler missing or unable: run eagerly
                self.fall_back(error)
                return eager(*args, **kwargs)
        return forward

    def fall_back(self, error: Exception) -> None:
        self.failed = error
        for block, eager in zip(self.blocks, self.eager):
            block.forward = eager
        reason = getattr(error, "inner_exception", None) or error.__cause__ or error   # the compiler's own error
        lines = str(reason).strip().splitlines()
        log.warning("UniDiT: torch.compile of the transformer blocks failed (%s: %s); running them uncompiled",
                    type(reason).__name__, lines[0][:200] if lines else "")


def compile_blocks(blocks: nn.ModuleList, backend: str = "inductor") -> CompiledBlocks:
    return CompiledBlocks(blocks, backend)
