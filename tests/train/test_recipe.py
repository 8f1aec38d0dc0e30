"""The training recipe end to end on the tiny preset, through the CLI a user runs: every stage trains and its loss
falls, the bundle is written, and `unidit eval` scores it."""
import json
import math

import pytest

from unidit.runtime.bundle import ModelBundle
from unidit.runtime.host.cli import main

STAGES = ("autoencoder", "decoder", "splat_decoder", "backbone")


@pytest.fixture(scope="module")
def tiny_bundle_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    out = folder / "unidit-tiny.safetensors"
    assert main(["train", "--preset", "tiny", "--work", str(folder / "work"), "--out", str(out)]) == 0
    return out


def test_the_tiny_preset_trains_and_every_loss_falls(tiny_bundle_file):
    report = ModelBundle.load(tiny_bundle_file).info["training"]
    assert report["preset"] == "tiny"
    for stage in STAGES:
        assert report[stage]["final_loss"] < report[stage]["first_loss"], (stage, report[stage])
    assert report["backbone"]["final_loss"] < 0.8 * report["backbone"]["first_loss"]
    assert report["autoencoder"]["final_loss"] < 0.5 * report["autoencoder"]["first_loss"]


def test_training_again_reuses_the_finished_stages(tiny_bundle_file, capsys):
    work = tiny_bundle_file.parent / "work"
    again = tiny_bundle_file.parent / "again.safetensors"
    capsys.readouterr()
    assert main(["train", "--preset", "tiny", "--work", str(work), "--out", str(again)]) == 0
    first, second = ModelBundle.load(tiny_bundle_file), ModelBundle.load(again)
    assert first.info == second.info  # the same histories: nothing was trained twice
    for name, tensor in first.dit.state_dict().items():
        assert tensor.equal(second.dit.state_dict()[name]), name
    assert main(["train", "--preset", "tiny", "--work", str(work), "--out", str(again)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_eval_scores_the_tiny_bundle_end_to_end(tiny_bundle_file, capsys):
    capsys.readouterr()
    assert main(["eval", str(tiny_bundle_file), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["prompts"] >= 48 and scores["steps"] == 8
    for key in ("color_accuracy", "shape_accuracy", "video_motion", "held_out_color_accuracy",
                "held_out_shape_accuracy"):
        assert 0.0 <= scores[key] <= 1.0, key
    for key in ("splat_view_psnr", "i2v_first_frame_psnr", "i23d_view0_psnr"):
        assert math.isfinite(scores[key]) and 10.0 < scores[key] < 60.0, (key, scores[key])
    # The given frame is clamped to the input's latent, so video frame 0 and 3D view 0 decode to the same image.
    assert scores["i2v_first_frame_psnr"] == pytest.approx(scores["i23d_view0_psnr"], abs=0.05)
