"""Timing helpers for benchmarks on shared, noisy machines: interleave candidates, take medians of ratios."""
from __future__ import annotations

import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable

import torch


def time_call(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run every candidate ``warmup`` times, then ``repeats`` rounds of one call each, alternating order.

    Returns the per-round seconds of each candidate, so ratios can be taken round by round.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_call(candidates[name]))
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count set to ``count`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def progress_printer(progress: bool) -> Callable[[str], None]:
    """A function that prints a progress line to stderr, or does nothing when ``progress`` is False."""
    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)
    return say
