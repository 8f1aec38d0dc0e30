"""The training recipe end to end on the tiny preset, through the CLI a user runs: every stage trains and its loss
falls, the bundle is written, and `unidit eval` scores it."""
import json
import math

import pytest

from unidit.runtime.bundle import ModelBundle
from unidit.host.cli import main
from unidit.runtime.train.recipe import PRESETS

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
    motion = report["backbone_motion"]                       # the later pass, from the trained backbone
    assert motion["steps"] == 20 and math.isfinite(motion["final_loss"]) and motion["seconds"] > 0
    assert [later.name for later in PRESETS["tiny"].later_passes] == ["backbone_motion"]
    assert "backbone_polish" not in report                   # only the preset's passes run
    assert report["seconds"] >= sum(report[stage]["seconds"] for stage in (*STAGES, "backbone_motion"))


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
    for key in ("motion_direction_accuracy", "background_accuracy", "depth_control_iou",
                "depth_control_iou_autoencoder"):
        assert 0.0 <= scores[key] <= 1.0, key          # the tiny preset trains control maps too
    for key in ("color_accuracy_by_size", "shape_accuracy_by_size"):
        assert set(scores[key]) == {"48x48", "96x96", "128x128", "96x64"}
        assert all(0.0 <= value <= 1.0 for value in scores[key].values()), key
    for key in ("video_seam_ratio", "extension_seam", "extension_seam_frames"):
        assert math.isfinite(scores[key]) and scores[key] > 0, key
    assert scores["video_seam_ratio_ground_truth"] == pytest.approx(1.0, abs=0.1)   # no model: rendered clips
    assert 5.0 < scores["i2v_later_frames_psnr"] < 60.0
    # The given frame is clamped to the input's latent, so video frame 0 and 3D view 0 decode to the same image.
    assert scores["i2v_first_frame_psnr"] == pytest.approx(scores["i23d_view0_psnr"], abs=0.05)


def test_lora_training_writes_a_lora_file_that_the_lora_node_reads(tiny_bundle_file, capsys):
    from unidit.runtime.families import ModelFiles, load_model
    from unidit.runtime.lora import read_lora
    from unidit.runtime.weights import TensorFile

    work = tiny_bundle_file.parent / "lora"
    out = work / "red-cube.safetensors"
    args = ["train", "--preset", "tiny", "--work", str(work), "--from", str(tiny_bundle_file), "--lora-rank", "2",
            "--subject", "red cube", "--steps", "40", "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    # 40 steps of a rank-2 LoRA move the tiny model's loss less than its step-to-step noise: what the adapters do
    # is checked below (the eval's change at strength 1, none at 0); the shipped LoRA's effect is in the README.
    assert report["subject"] == "red cube" and report["steps"] == 40 and math.isfinite(report["final_loss"])
    model = load_model(ModelFiles(tiny_bundle_file))
    lora = read_lora(out, model.denoiser.lora_targets()[0])
    assert lora.rank == 2 and len(lora.layers) == 7 * 2
    assert TensorFile(out).metadata["format"] == "unidit.lora" and lora.metadata["subject"] == "red cube"
    assert main(["eval", str(tiny_bundle_file), "--lora", str(out), "--json", "--steps", "4"]) == 0
    effect = json.loads(capsys.readouterr().out)
    assert effect["subject"] == "a red cube" and effect["strength_0_bit_identical"] is True
    assert effect["mean_abs_change"] > 0 and 0 <= effect["lora_color_accuracy"] <= 1
    assert main(["eval", str(tiny_bundle_file), "--lora", str(tiny_bundle_file)]) == 2
    assert "none of its layers is a layer of this model" in capsys.readouterr().err
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args[:-2] + ["--subject", "red", "--out", str(work / "x.safetensors")]) == 2
    assert "a colour and a shape" in capsys.readouterr().err
    assert main(args[:-4] + ["--subject", "plaid cube", "--out", str(work / "y.safetensors")]) == 2
    assert "unknown subject plaid cube" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--subject", "red cube"]) == 2
    assert "add --lora-rank" in capsys.readouterr().err


def test_colour_bleed_counts_the_objects_colour_past_its_edge_and_nothing_else():
    import torch
    from scipy import ndimage

    from unidit.runtime.train import toyworld
    from unidit.runtime.train.recipe import colour_bleed

    rendered = toyworld.render_images([toyworld.Scene("sphere", "red", "medium", "grey")])
    pixels = rendered.rgb.permute(0, 3, 1, 2).unsqueeze(2) * 2 - 1           # [1, 3, 1, H, W], as the stage sees it
    coverage = rendered.alpha.reshape(1, 1, 1, *rendered.alpha.shape[-2:])
    assert float(colour_bleed(pixels, pixels, coverage)) == 0.0
    darker = torch.where(coverage > 0.99, pixels * 0.5, pixels)             # a change on the object only
    assert float(colour_bleed(darker, pixels, coverage)) < 1e-6
    grown = torch.from_numpy(ndimage.binary_dilation(coverage[0, 0, 0].numpy() > 0.5, iterations=2))
    object_colour = pixels[..., coverage[0, 0, 0] > 0.99].mean(dim=-1)       # [1, 3, 1]
    bled = torch.where(grown, object_colour[..., None, None], pixels)       # the object's colour 2 px past its edge
    ring = float((grown & (coverage[0, 0, 0] < 0.5)).float().sum()) / float((1 - coverage).sum())
    assert float(colour_bleed(bled, pixels, coverage)) > 0.5 * ring         # about |chroma of red| over the ring


def test_jittered_latents_shift_each_latent_frame_and_stay_within_the_jitter():
    import torch

    from unidit.runtime.train.recipe import LATENT_JITTER, jitter_latents

    mean = torch.randn(64, 8, 3, 6, 6) * torch.linspace(0.5, 2.0, 8)[None, :, None, None, None]
    jittered = jitter_latents(mean, torch.Generator().manual_seed(0))
    change = jittered - mean
    spread = mean.std(dim=(0, 2, 3, 4), keepdim=True)
    assert jittered.shape == mean.shape and not torch.equal(jittered, mean)
    # per clip, the change is strength x spread x (offset + noise) with strength <= LATENT_JITTER: its typical
    # size is below sqrt(2) x LATENT_JITTER x the channel's spread, and larger in the wider channels
    per_channel = (change / spread).square().mean(dim=(0, 2, 3, 4)).sqrt()
    assert float(per_channel.max()) < 2 ** 0.5 * LATENT_JITTER
    assert float(change[:, -1].abs().mean()) > 2.5 * float(change[:, 0].abs().mean())
    # each latent frame moves as a whole besides the noise: the spatial mean of the change differs by frame
    frame_shift = change.mean(dim=(3, 4))                                     # [N, C, F]
    assert float(frame_shift.std(dim=2).mean()) > 0.2 * float(change.std(dim=(3, 4)).mean())
    same = jitter_latents(mean, torch.Generator().manual_seed(0))
    assert torch.equal(same, jittered)                                        # drawn from the stage's generator
