"""Block swap: run a transformer whose blocks do not all fit on the device.

The first ``resident`` blocks keep their weights on the device. The others keep theirs in host memory (pinned
once, when the swap is set up, on CUDA) and take turns in two device-side staging slots, each the size of one
block: while block i computes in one slot, block i + 1's weights are copied into the other on a side stream
(non-blocking), and block i + 1 waits for that copy before it starts. Device memory is the resident blocks plus
two slots, host memory the offloaded blocks, whatever the number of steps: nothing is allocated per step.

Every block of a backbone has the same parameter shapes, which is what lets any offloaded block use either slot.
The swap works through forward pre-hooks on the blocks, so the model code runs unchanged; blocks that do not run
in a call (a step cache skipping them) are simply not fetched. The results are those of the all-resident model,
bit for bit: the same weights, in the same dtype, in the same operations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn


def block_bytes(block: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in block.parameters())


@dataclass
class SwapPlan:
    """How many blocks stay resident, and what that costs on the device."""

    blocks: int
    resident: int
    block_bytes: int

    @property
    def offloaded(self) -> int:
        return self.blocks - self.resident

    @property
    def device_bytes(self) -> int:
        """Resident blocks plus the two staging slots (when anything is offloaded)."""
        return self.block_bytes * (self.resident + (2 if self.offloaded else 0))

    @classmethod
    def for_budget(cls, blocks: nn.ModuleList, budget_bytes: int) -> "SwapPlan":
        """The most resident blocks whose weights, with the staging slots, fit ``budget_bytes`` (at least 0)."""
        size = block_bytes(blocks[0])
        if size * len(blocks) <= budget_bytes:
            return cls(len(blocks), len(blocks), size)
        return cls(len(blocks), max(0, min(len(blocks), budget_bytes // size - 2)), size)


class BlockSwap:
    """Installs the swap on ``blocks`` (see the module docstring); :meth:`remove` puts every block back on the
    device. ``resident`` may be 0 (every block streams) up to ``len(blocks)`` (nothing to do)."""

    def __init__(self, blocks: nn.ModuleList, resident: int, device):
        self.blocks, self.device = blocks, torch.device(device)
        self.plan = SwapPlan(len(blocks), max(0, min(resident, len(blocks))), block_bytes(blocks[0]))
        self._hooks = []
        self.copies = 0   # blocks copied into a slot so far (for tests and benchmarks)
        if not self.plan.offloaded:
            blocks.to(self.device)
            return
        shapes = [(name, p.shape, p.dtype) for name, p in blocks[0].named_parameters()]
        for block in blocks[1:]:
            if [(name, p.shape, p.dtype) for name, p in block.named_parameters()] != shapes:
                raise ValueError("block swap needs blocks of identical parameter shapes and dtypes")
        cuda = self.device.type == "cuda"
        self._host: dict[int, dict[str, torch.Tensor]] = {}
        for index in range(self.plan.resident, len(blocks)):
            self._host[index] = {}
            for name, parameter in blocks[index].named_parameters():
                host = parameter.detach().to("cpu")
                self._host[index][name] = host.pin_memory() if cuda else host
        for index in range(self.plan.resident):
            blocks[index].to(self.device)
        self._slots = [{name: torch.empty(shape, dtype=dtype, device=self.device) for name, shape, dtype in shapes}
                       for _ in range(2)]
        self._in_slot: list[Optional[int]] = [None, None]
        self._ready: list[Optional[torch.cuda.Event]] = [None, None]
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        for index in range(self.plan.resident, len(blocks)):
            self._point(index, self._slots[(index - self.plan.resident) % 2])
            self._hooks.append(blocks[index].register_forward_pre_hook(self._before(index)))

    def _slot_of(self, index: int) -> int:
        return (index - self.plan.resident) % 2

    def _point(self, index: int, slot: dict) -> None:
        """Make block ``index``'s parameters views of ``slot``'s tensors."""
        for name, parameter in self.blocks[index].named_parameters():
            parameter.data = slot[name]

    def _fetch(self, index: int) -> None:
        """Start copying block ``index``'s host weights into its slot (on the side stream on CUDA)."""
        slot = self._slot_of(index)
        if self._in_slot[slot] == index:
            return
        stream = self._stream
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(self.device))  # the slot's previous block has finished
            with torch.cuda.stream(stream):
                self._copy(index, slot)
            self._ready[slot] = torch.cuda.Event()
            self._ready[slot].record(stream)
        else:
            self._copy(index, slot)
        self._in_slot[slot] = index
        self.copies += 1

    def _copy(self, index: int, slot: int) -> None:
        for name, target in self._slots[slot].items():
            target.copy_(self._host[index][name], non_blocking=True)

    def _before(self, index: int):
        def hook(module, args):
            self._fetch(index)                                    # already under way when it was prefetched
            slot = self._slot_of(index)
            if self._ready[slot] is not None:
                torch.cuda.current_stream(self.device).wait_event(self._ready[slot])
            following = index + 1
            if following < len(self.blocks):                      # the next block into the other slot
                self._fetch(following)
        return hook

    def remove(self) -> None:
        """Undo the swap: every block's own weights back on the device, hooks and slots gone."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for index, tensors in getattr(self, "_host", {}).items():
            for name, parameter in self.blocks[index].named_parameters():
                parameter.data = tensors[name].to(self.device)
        self._host, self._slots = {}, []
