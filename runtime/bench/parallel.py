"""`unidit bench parallel`: one guided denoiser evaluation (the conditional and unconditional branches of a random
UniDiT, fp32, CPU) in one process and in two gloo processes, with sequence parallelism and with CFG parallelism.

For each split: ``max_abs_diff`` against the one-process output (it must stay at fp32 rounding, <= 1e-5), the
median milliseconds, and ``overhead`` = 2 x two-process time / one-process time - 1 (0 would be perfect scaling),
the median over rounds that alternate: rank 0 alone (``parallel.alone``, rank 1 waiting), then both ranks, so
that a busy machine slows both alike. ``cpu_overhead`` = CPU seconds of both processes / CPU seconds of one - 1:
the extra work (copies, the exchanges), which other jobs on the machine do not change. Every process runs one
thread. The two processes are started here with
torchrun's environment on a free local port (:func:`run_on_local_ranks`).
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from .. import parallel
from ..families import DenoiserConditioning
from ..families.unidit import UniDiTDenoiser
from ..model.config import DiTConfig
from ..model.dit import UniDiT
from ..sampling.guidance import conditional_and_unconditional
from ..text.conditioning import TextConditioning
from .synthetic import randomize_module
from .timing import median, time_call

CONFIG = dict(latent_channels=16, hidden_size=384, depth=4, num_heads=6, mlp_hidden=1024, text_dim=256)
LATENT = (1, 16, 4, 32, 32)     # [B, C, F, h, w]: 4 frames of 16 x 16 tokens (patch 2) = 1024 tokens
TEXT_TOKENS = 24
REPEATS = 7


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_rank(rank: int, function: Callable, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    function(*args)


def run_on_local_ranks(function: Callable, world_size: int, args: tuple = (), timeout: float = 300.0) -> None:
    """Run ``function(*args)`` in ``world_size`` new processes on this machine, each with torchrun's environment
    (RANK, WORLD_SIZE, ... on a free port) and one thread; waits for all of them. A failure in any process is
    raised here (the others are ended); after ``timeout`` seconds every process is killed and TimeoutError
    raised. ``function`` must be importable by name (a module-level function)."""
    processes = torch.multiprocessing.start_processes(_as_rank, args=(function, world_size, free_port(), args),
                                                      nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not processes.join(timeout=max(0.05, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{world_size} processes running {function.__name__} did not finish in "
                                   f"{timeout:.0f} s")
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
                process.join()


def _case():
    """The denoiser, its inputs and the guided evaluation, identical in every process (seeded)."""
    dit = randomize_module(UniDiT(DiTConfig(**CONFIG)), seed=0).eval()
    denoiser = UniDiTDenoiser(dit)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(LATENT, generator=generator)
    sigma = torch.full(LATENT[:1] + LATENT[2:3], 0.6)
    mask = torch.ones(1, TEXT_TOKENS, dtype=torch.bool)

    def text() -> TextConditioning:
        return TextConditioning(torch.randn(1, TEXT_TOKENS, CONFIG["text_dim"], generator=generator), mask,
                                torch.randn(1, CONFIG["text_dim"], generator=generator))

    cond, uncond = text(), text()

    def model(x, sigma, text):
        return denoiser(x, sigma.expand(x.shape[0], -1), DenoiserConditioning(text, "video"))

    @torch.no_grad()
    def evaluate() -> torch.Tensor:
        return torch.cat(conditional_and_unconditional(model, x, sigma, cond, uncond))

    return evaluate


def _seconds(evaluate: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one evaluation in this process."""
    cpu = time.process_time()
    wall = time_call(evaluate)
    return wall, time.process_time() - cpu


def _two_processes(split: str, repeats: int, result: str) -> None:
    """In each of the two processes: alternate rounds of rank 0 alone (rank 1 waits) and both ranks together."""
    context = parallel.init_parallel(split)
    try:
        evaluate = _case()

        def alone(measure):
            with parallel.alone():
                return measure()

        together, one_output = evaluate(), alone(evaluate) if context.is_leader else None   # and warm-ups
        one_process, two_processes = [], []
        for _ in range(repeats):
            dist.barrier(group=context.control.group)
            if context.is_leader:
                one_process.append(alone(lambda: _seconds(evaluate)))
            dist.barrier(group=context.control.group)
            two_processes.append(_seconds(evaluate))
        every_rank = [None, None]
        dist.all_gather_object(every_rank, two_processes, group=context.control.group)
        if context.is_leader:
            torch.save({"max_abs_diff": float((together - one_output).abs().max()), "one_process": one_process,
                        "two_processes": every_rank}, result)
    finally:
        parallel.shutdown()


def run(progress: bool = True, repeats: int = REPEATS) -> dict:
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for split in ("sequence", "cfg"):
            result = Path(folder) / f"{split}.pt"
            run_on_local_ranks(_two_processes, 2, (split, repeats, str(result)))
            measured = torch.load(result)
            rounds = list(zip(measured["one_process"], *measured["two_processes"]))   # (wall, cpu) x 3 per round
            figures[split] = {
                "max_abs_diff": measured["max_abs_diff"],
                "overhead": round(median([2 * rank0[0] / one[0] - 1 for one, rank0, _ in rounds]), 3),
                "cpu_overhead": round(median([(rank0[1] + rank1[1]) / one[1] - 1 for one, rank0, rank1 in rounds]), 3),
                "one_process_ms": round(median([one[0] for one, _, _ in rounds]) * 1000, 1),
                "ms": round(median([rank0[0] for _, rank0, _ in rounds]) * 1000, 1)}
            if progress:
                print(f"{split}: {figures[split]}", flush=True)
    tokens = LATENT[2] * (LATENT[3] // 2) * (LATENT[4] // 2)
    return {"sequence_max_abs_diff": figures["sequence"]["max_abs_diff"],
            "sequence_overhead": figures["sequence"]["overhead"],
            "cfg_max_abs_diff": figures["cfg"]["max_abs_diff"],
            "cfg_overhead": figures["cfg"]["overhead"],
            "sequence_cpu_overhead": figures["sequence"]["cpu_overhead"],
            "cfg_cpu_overhead": figures["cfg"]["cpu_overhead"],
            "one_process_ms": figures["sequence"]["one_process_ms"],
            "sequence_ms": figures["sequence"]["ms"],
            "cfg_ms": figures["cfg"]["ms"],
            "config": {**CONFIG, "latent": list(LATENT), "tokens": tokens, "text_tokens": TEXT_TOKENS,
                       "batch": "conditional + unconditional", "dtype": "float32", "threads_per_process": 1,
                       "backend": "gloo", "rounds": repeats}}
