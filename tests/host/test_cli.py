"""`unidit` command-line arguments and workflow files that are refused before anything runs, and runs that fail
with the reason (exit status 1 or 2, a message on stderr, never a traceback)."""
import json
from pathlib import Path

import pytest

from unidit.host.cli import main


@pytest.mark.parametrize("argv, message", [
    (["bench", "cache", "--threshold", "0"], "--threshold must be a finite number > 0"),
    (["bench", "cache", "--threshold", "nan"], "--threshold must be a finite number > 0"),
    (["bench", "render", "--threshold", "0.05"], "--threshold applies to `unidit bench cache` only"),
    (["bench", "cache", "--family", "wan"], "--family and --blocks-resident apply to `unidit bench forward` only"),
    (["bench", "render", "--blocks-resident", "2"], "--family and --blocks-resident apply to `unidit bench forward`"),
])
def test_bench_options_that_do_not_fit_are_refused_with_the_reason(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[2]
TEXT_TO_IMAGE = ROOT / "workflows" / "api" / "Text to image.json"


def run_cli(tmp_path, workflow, *options) -> list:
    return ["run", str(workflow), "--out", str(tmp_path / "out"), "--input", str(tmp_path / "in"), *options]


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder, "is a folder; give a workflow .json file"),
    (lambda folder: write(folder / "deep.json", nested(100_000)), "deep.json is nested too deeply"),
    (lambda folder: write(folder / "deepish.json", nested(70)), "deepish.json is nested too deeply"),
    (lambda folder: write(folder / "latin1.json", b'{"a": "\xe9"}'), "latin1.json is not JSON"),
    (lambda folder: write(folder / "list.json", "[1, 2]"), "is not a workflow (expected a JSON object)"),
    (lambda folder: write(folder / "links.json", json.dumps({"nodes": [], "links": [[1, 2]]})),
     "a link of a UI workflow is [id, origin_id, origin_slot, target_id, target_slot, type]"),
    (lambda folder: write(folder / "slot.json", json.dumps({"nodes": [], "links": [[1, 2, "0", 3, 0, "IMAGE"]]})),
     "whole-number ids and slots"),
    (lambda folder: write(folder / "node.json", json.dumps({"nodes": [{"id": [1], "type": "X"}], "links": []})),
     "needs an 'id' (a number) and a 'type'"),
    (lambda folder: write(folder / "sockets.json", json.dumps({"nodes": [{"id": 1, "type": "SaveImage",
                                                                          "inputs": [{"link": 1}]}], "links": []})),
     "node 1: 'inputs' must be a list"),
])
def test_run_refuses_what_is_not_a_workflow_with_the_reason_and_no_traceback(tmp_path, capsys, make, message):
    target = make(tmp_path)
    assert main(run_cli(tmp_path, target)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("override, message", [
    ("5.sed=3", "node 5 (UniDiTSampler) has no input 'sed'; its inputs are: model, positive, latent, seed, steps"),
    ("UniDiTSampler.Steps=3", "has no input 'Steps'"),
    ("7.filename_prefix.x=y", "no node match '7.filename_prefix'"),
])
def test_set_with_an_input_the_node_does_not_have_is_refused(tmp_path, capsys, override, message):
    assert main(run_cli(tmp_path, TEXT_TO_IMAGE, "--set", override)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bundle_with_nan_weights_is_an_error_not_a_black_image(tmp_path, capsys, monkeypatch):
    import torch

    from unidit_testing import tiny_bundle

    bundle = tiny_bundle()
    with torch.no_grad():
        next(bundle.dit.parameters()).fill_(float("nan"))
    (tmp_path / "models").mkdir()
    bundle.save(tmp_path / "models" / "broken.safetensors")
    monkeypatch.chdir(tmp_path)
    status = main(run_cli(tmp_path, TEXT_TO_IMAGE, "--models", str(tmp_path / "models"), "--set",
                          "1.bundle=broken.safetensors", "--set", "5.steps=2", "--set", "3.width=32", "--set",
                          "3.height=32"))
    err = capsys.readouterr().err
    assert status == 1
    assert "error in node 5 (UniDiTSampler): NonFiniteOutput: The sampled latents of" in err
    assert "came out as NaN or infinity" in err and "try the Loader's dtype fp32 or bf16" in err
    assert not list((tmp_path / "out").rglob("*.png"))
