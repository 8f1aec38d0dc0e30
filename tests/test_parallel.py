"""Parallel inference (runtime/parallel.py): how worlds split, and that 2 (and 4) gloo processes give the outputs of
one process, for both families."""

import pytest
import torch

from parallel_testing import FAMILIES, family_outputs, ranks_compute
from unidit.runtime import parallel
from unidit.runtime.bench.parallel import run_on_local_ranks

TOLERANCE = 1e-5


def test_worlds_split_into_cfg_and_sequence_ranks():
    assert parallel.split_world(2) == (2, 1)               # auto: CFG first, it needs almost no communication
    assert parallel.split_world(4) == (2, 2)
    assert parallel.split_world(8, "auto") == (2, 4)
    assert parallel.split_world(3) == (1, 3)               # odd: every rank shares the tokens
    assert parallel.split_world(2, "sequence") == (1, 2)
    assert parallel.split_world(4, "sequence") == (1, 4)
    assert parallel.split_world(2, "cfg") == (2, 1)
    with pytest.raises(parallel.ParallelError, match="cfg runs the conditional and unconditional branches on 2"):
        parallel.split_world(4, "cfg")
    with pytest.raises(parallel.ParallelError, match="unknown parallel split 'ring'"):
        parallel.split_world(2, "ring")


def test_without_torchrun_nothing_is_split(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parallel.init_parallel("sequence") is None and parallel.context() is None
    shard = parallel.sequence_shard(frames=2, tokens_per_frame=9, heads=3)   # nothing to divide in one process
    tokens = torch.randn(1, 18, 8)
    assert shard.take(tokens) is tokens and shard.gather(tokens) is tokens
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(parallel.ParallelError, match="launch with torchrun"):
        parallel.init_parallel()


@pytest.fixture(scope="module")
def one_process():
    """Both families' outputs in this process, as they are computed without torchrun."""
    return {family: family_outputs(family) for family in FAMILIES}


def computed_on_ranks(tmp_path, world_size: int, split: str) -> dict:
    result = tmp_path / f"{split}-{world_size}.pt"
    run_on_local_ranks(ranks_compute, world_size, (split, str(result)), timeout=120)
    return torch.load(result)


def assert_same_outputs(parallel_outputs: dict, one_process: dict, families=FAMILIES) -> None:
    for family in families:
        for name, expected in one_process[family].items():
            difference = (parallel_outputs[family][name] - expected).abs().max().item()
            assert difference <= TOLERANCE, f"{family} {name}: max |difference| {difference}"
            assert expected.abs().max() > 0.1  # the outputs are not trivially zero


def test_sequence_parallel_matches_one_process_for_both_families(tmp_path, one_process):
    computed = computed_on_ranks(tmp_path, 2, "sequence")
    assert computed["split"] == "2 processes: CFG 1 x sequence 2"
    assert_same_outputs(computed["outputs"], one_process)
    assert "a frame has 9 tokens" in computed["errors"]["tokens"]
    assert "splits the 3 attention heads evenly" in computed["errors"]["heads"]


def test_cfg_parallel_matches_batched_guidance_for_both_families(tmp_path, one_process):
    computed = computed_on_ranks(tmp_path, 2, "cfg")
    assert computed["split"] == "2 processes: CFG 2 x sequence 1"
    assert_same_outputs(computed["outputs"], one_process)


def test_cfg_and_sequence_parallel_together_on_four_processes(tmp_path, one_process):
    computed = computed_on_ranks(tmp_path, 4, "auto")
    assert computed["split"] == "4 processes: CFG 2 x sequence 2"
    assert_same_outputs(computed["outputs"], one_process)
