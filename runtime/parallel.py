"""Parallel inference over ``torch.distributed``: CFG-parallel and Ulysses sequence parallelism.

Under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set), :func:`init_parallel` joins the
process group (gloo on the CPU; NCCL on CUDA, each rank on cuda:LOCAL_RANK) and splits the world:

    world = cfg x sequence            rank = cfg_rank * sequence + sequence_rank

- **CFG-parallel** (cfg = 2): while guidance is active, CFG rank 0 computes the conditional branch and CFG rank 1
  the unconditional one, instead of one batch of both; ``all_gather`` gives both to both, and every rank combines
  them the same way (``sampling/guidance.py``). Outside the guidance interval (or at scale 1) both ranks compute
  the conditional branch.
- **Sequence parallelism** (Ulysses, over the ``sequence`` ranks of a group): every rank holds 1/W of each frame's
  tokens, [B, F, S] -> [B, F, S/W], so per-frame modulation still sees whole frames of its slice. Before
  self-attention one all-to-all turns [B, H, F*S/W, D] on each rank into [B, H/W, F*S, D] (every token, a share
  of the heads); after it, one all-to-all turns it back. Cross-attention, norms and MLPs stay local. The
  backbones take their slice (:meth:`SequenceShard.take`, RoPE table included) after the patch embedding and
  gather the tokens (:meth:`SequenceShard.gather`) after the output head. Each frame's tokens and the heads must
  divide by W.

``auto`` (the default) is CFG 2 x sequence W/2 on an even world, sequence parallelism on an odd one. Every rank
executes the same work in lockstep; a control group (gloo, no timeout to speak of) carries the host's messages:
:func:`broadcast_from_leader` and :func:`any_rank`.

Without torchrun nothing here is active: :func:`context` is None, every helper is the identity, and the models
run exactly as in one process.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist

from .model.attention import attention

SPLITS = ("auto", "cfg", "sequence")
SPLIT_ENVIRONMENT = "UNIDIT_PARALLEL"       # default of --parallel
CONTROL_TIMEOUT = timedelta(days=365)       # followers of `unidit serve` wait this long for the next prompt


class ParallelError(RuntimeError):
    """A world size or shape that the chosen split cannot use."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ParallelError(f"unknown parallel split {split!r}; choose one of {list(SPLITS)}")
    return split


def split_world(world_size: int, split: str = "auto") -> tuple[int, int]:
    """(cfg ranks, sequence ranks) of a world of ``world_size`` processes; their product is the world size."""
    check_split(split)
    if world_size < 1:
        raise ParallelError(f"world size must be at least 1, got {world_size}")
    if split == "cfg":
        if world_size != 2:
            raise ParallelError(f"--parallel cfg runs the conditional and unconditional branches on 2 processes, "
                                f"not {world_size}; use --parallel sequence (all {world_size} share every frame's "
                                f"tokens) or auto (CFG 2 x sequence N/2 on an even number N of processes)")
        return 2, 1
    if split == "sequence" or world_size % 2:
        return 1, world_size
    return 2, world_size // 2


@dataclass(frozen=True)
class RankGroup:
    """A process group and this rank's place in it; ``device`` is where its backend takes tensors."""

    size: int
    rank: int
    group: Optional[dist.ProcessGroup]
    device: torch.device

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on all), in rank order."""
        if self.size == 1:
            return [tensor]
        local = tensor.to(self.device).contiguous()
        gathered = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(gathered, local, group=self.group)
        return [t.to(tensor.device) for t in gathered]

    def all_to_all(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` [W, ...]: slice w goes to rank w; returns [W, ...] whose slice w came from rank w."""
        if self.size == 1:
            return tensor
        local = tensor.to(self.device).contiguous()
        received = torch.empty_like(local)
        dist.all_to_all_single(received, local, group=self.group)
        return received.to(tensor.device)


LOCAL = RankGroup(1, 0, None, torch.device("cpu"))


@dataclass(frozen=True)
class ParallelContext:
    """This process's place in the world: its rank, device, and the groups it belongs to."""

    world_size: int
    rank: int
    local_rank: int
    device: torch.device
    cfg: RankGroup          # the ranks that compute the two branches of guidance together (size 1 or 2)
    sequence: RankGroup     # the ranks that share the tokens of one forward
    control: RankGroup      # every rank, gloo, for the host's messages

    @property
    def is_leader(self) -> bool:
        """Rank 0 prints, writes the outputs and (``unidit serve``) serves."""
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes: CFG {self.cfg.size} x sequence {self.sequence.size}"


_context: Optional[ParallelContext] = None


def context() -> Optional[ParallelContext]:
    """The process-wide parallel context, or None when this process runs alone."""
    return _context


def init_parallel(split: Optional[str] = None) -> Optional[ParallelContext]:
    """Join torchrun's process group and split it (``split``: auto, cfg or sequence; default the environment's
    ``UNIDIT_PARALLEL``, else auto). Returns None, changing nothing, when WORLD_SIZE is unset or 1."""
    global _context
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    split = check_split(split or os.environ.get(SPLIT_ENVIRONMENT) or "auto")
    if world_size == 1:
        return None
    cfg, sequence = split_world(world_size, split)
    if _context is not None:
        raise ParallelError("the process group is already set up")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ParallelError(f"WORLD_SIZE is {world_size} but {', '.join(missing)} is not set: launch with torchrun "
                            f"(torchrun --nproc-per-node {world_size} -m unidit.host.cli ...)")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ParallelError(f"process {local_rank} of this machine has no GPU of its own: it has "
                                f"{torch.cuda.device_count()}; start at most that many (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    # Every rank creates every group, in the same order (torch.distributed's rule).
    cfg_groups = [_new_group([c * sequence + s for c in range(cfg)]) for s in range(sequence)]
    sequence_groups = [_new_group([c * sequence + s for s in range(sequence)]) for c in range(cfg)]
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    cfg_rank, sequence_rank = divmod(rank, sequence)
    _context = ParallelContext(
        world_size, rank, local_rank, device,
        cfg=RankGroup(cfg, cfg_rank, cfg_groups[sequence_rank], device),
        sequence=RankGroup(sequence, sequence_rank, sequence_groups[cfg_rank], device),
        control=RankGroup(world_size, rank, control, torch.device("cpu")))
    return _context


def _new_group(ranks: list[int]) -> Optional[dist.ProcessGroup]:
    return dist.new_group(ranks) if len(ranks) > 1 else None


@contextlib.contextmanager
def alone():
    """Inside the block this process computes as if it ran alone (for ``unidit bench parallel``, which times one
    process against the group in the same processes); the other ranks must not make collective calls meanwhile."""
    global _context
    saved, _context = _context, None
    try:
        yield
    finally:
        _context = saved


def shutdown() -> None:
    """Leave the process group (at the end of ``unidit run`` / ``serve``)."""
    global _context
    if _context is not None:
        _context = None
        dist.destroy_process_group()


# ---- CFG-parallel ------------------------------------------------------------------------------------------------

def cfg_pair() -> Optional[RankGroup]:
    """The two ranks that split guidance's branches (rank 0: conditional, rank 1: unconditional), or None."""
    return _context.cfg if _context is not None and _context.cfg.size == 2 else None


# ---- sequence parallelism ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SequenceShard:
    """This rank's share of one forward's tokens: tokens [rank * S/W, (rank + 1) * S/W) of each of the ``frames``
    frames of S = ``tokens_per_frame`` tokens. With one rank (W = 1) every method is the identity."""

    frames: int
    tokens_per_frame: int
    ranks: RankGroup = LOCAL

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        """[..., F * S, X] in frame-major order (tokens, or the RoPE table) -> this rank's [..., F * S/W, X]."""
        if self.ranks.size == 1:
            return tensor
        share = self.tokens_per_frame // self.ranks.size
        start = self.ranks.rank * share
        frames = tensor.unflatten(-2, (self.frames, self.tokens_per_frame))          # [..., F, S, X]
        return frames[..., start:start + share, :].flatten(-3, -2)                 # [..., F * S/W, X]

    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every rank's [B, F * S/W, X] -> the whole [B, F * S, X]; inverse of :meth:`take`."""
        if self.ranks.size == 1:
            return tokens
        shares = [t.unflatten(1, (self.frames, -1)) for t in self.ranks.all_gather(tokens)]  # [B, F, S/W, X] each
        return torch.cat(shares, dim=2).flatten(1, 2)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
        """Self-attention of this rank's tokens over every rank's tokens (Ulysses): q, k, v [B, H, n, D] with n =
        F * S/W local tokens (RoPE already applied) -> [B, H, n, D]. One all-to-all exchanges heads for tokens,
        attention runs on [B, H/W, W * n, D], one all-to-all exchanges them back. The keys arrive in rank order,
        not frame order; attention does not depend on the order of its keys."""
        w = self.ranks.size
        if w == 1:
            return attention(q, k, v, None, backend)
        qkv = torch.stack([q, k, v]).unflatten(2, (w, -1)).movedim(2, 0)           # [W, 3, B, H/W, n, D]
        q, k, v = self.ranks.all_to_all(qkv).movedim(0, 3).flatten(3, 4)            # [3, B, H/W, W * n, D]
        out = attention(q, k, v, None, backend)                                    # [B, H/W, W * n, D]
        out = self.ranks.all_to_all(out.unflatten(2, (w, -1)).movedim(2, 0))        # [W, B, H/W, n, D]
        return out.movedim(0, 1).flatten(1, 2)                                     # [B, H, n, D]


def sum_over_sequence(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks that share a forward's tokens (the identity without sequence parallelism):
    what a decision taken from a shard of the tokens must agree on, e.g. the step cache's change."""
    ranks = _context.sequence if _context is not None else LOCAL
    if ranks.size == 1:
        return values
    total = values.to(ranks.device).contiguous()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ranks.group)
    return total.to(values.device)


def sequence_shard(frames: int, tokens_per_frame: int, heads: int) -> SequenceShard:
    """How this rank splits a forward of ``frames`` x ``tokens_per_frame`` tokens and ``heads`` attention heads;
    the identity without sequence parallelism. Raises :class:`ParallelError` when the shape does not divide."""
    ranks = _context.sequence if _context is not None else LOCAL
    w = ranks.size
    if w > 1 and tokens_per_frame % w:
        raise ParallelError(f"sequence parallelism over {w} processes splits every frame's tokens evenly, but a frame "
                            f"has {tokens_per_frame} tokens: choose a width and height whose token count per frame "
                            f"divides by {w}, or on 2 processes use --parallel cfg")
    if w > 1 and heads % w:
        raise ParallelError(f"sequence parallelism over {w} processes splits the {heads} attention heads evenly: use "
                            f"a number of processes that divides {heads}, or on 2 processes --parallel cfg")
    return SequenceShard(frames, tokens_per_frame, ranks)


# ---- the host's messages ----------------------------------------------------------------------------------------

def broadcast_from_leader(message: Any = None) -> Any:
    """Rank 0's ``message`` (any picklable object), on every rank; ``message`` is ignored on the others. Without a
    parallel context: ``message``."""
    if _context is None:
        return message
    holder = [message]
    dist.broadcast_object_list(holder, src=0, group=_context.control.group)
    return holder[0]


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (every rank must ask at the same point); ``flag`` in one process."""
    if _context is None:
        return flag
    value = torch.tensor([int(bool(flag))])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_context.control.group)
    return bool(value.item())
