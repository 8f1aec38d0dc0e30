"""Parallel inference (runtime/parallel.py): how worlds split, and that 2 (and 4) gloo processes give the outputs of
one process, for both families, and for a whole `unidit run` under torchrun."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from parallel_testing import FAMILIES, family_outputs, ranks_compute
from unidit.runtime import parallel
from unidit.runtime.bench.parallel import run_on_local_ranks

REPOSITORY = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
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


# ---- `unidit run` under torchrun --------------------------------------------------------------------------------

def run_command(command: list, folder: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``command`` in ``folder`` with its own, empty temporary folder ``folder/tmp``."""
    (folder / "tmp").mkdir()
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(folder / "tmp")}
    environment.pop("WORLD_SIZE", None)
    completed = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True,
                               timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def one_process_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_process")
    run_command([str(VENV_BIN / "unidit"), "run", str(REPOSITORY / "workflows/api/Text to image.json"), "--out",
                 "out", "--set", "5.steps=8"], folder)
    (image,) = (folder / "out").rglob("*.png")
    return image


@pytest.mark.skipif(shutil.which("torchrun", path=str(VENV_BIN)) is None, reason="torchrun is not in this venv")
@pytest.mark.parametrize("split", ["cfg", "sequence"])
def test_unidit_run_under_torchrun_writes_one_output_equal_to_one_process(tmp_path, one_process_image, split):
    completed = run_command([str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m",
                             "unidit.host.cli", "run", str(REPOSITORY / "workflows/api/Text to image.json"),
                             "--out", "out", "--set", "5.steps=8", "--parallel", split], tmp_path)
    written = sorted(path for path in tmp_path.rglob("*")
                     if path.is_file() and path.relative_to(tmp_path).parts[0] not in ("input", "tmp"))
    # One file: rank 1's went to a scratch folder (in TMPDIR), deleted when it finished.
    assert [path.relative_to(tmp_path) for path in written] == [Path("out/UniDiT/image_00001_.png")]
    assert not list((tmp_path / "tmp").glob("unidit-rank*"))
    assert completed.stdout.split() == ["out/UniDiT/image_00001_.png"]   # listed once, by rank 0
    parallel_pixels = np.asarray(Image.open(written[0]), dtype=np.int16)
    one_process_pixels = np.asarray(Image.open(one_process_image), dtype=np.int16)
    # Within one level of 255 per channel (fp32 rounding may tip a pixel over a rounding edge); in practice the
    # files are the same bytes.
    assert np.abs(parallel_pixels - one_process_pixels).max() <= 1
    assert parallel_pixels.std() > 5  # a picture, not a flat field
