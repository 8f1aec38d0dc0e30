"""Every example workflow, in both formats, runs with `unidit run`'s machinery on the shipped demo bundle, and
its outputs mean what the prompt says."""
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from plyfile import PlyData

from unidit.runtime.bundle import SHIPPED_BUNDLE
from unidit.runtime.media.video import decode_video
from unidit.runtime.train.toyworld import dominant_colour
from unidit.runtime.train.evaluate import object_mask, psnr
from unidit.host.run import run_workflow
from unidit_testing import glb_vertex_colours_present

ROOT = Path(__file__).resolve().parents[2]
CASES = [(name, fmt) for name in ("Text to image", "Text to video", "Text to 3D", "Image to video", "Image to 3D",
                                  "One prompt, three modalities", "Image to image", "Video extension",
                                  "First and last frame to video", "LoRA", "Text to 3D refined",
                                  "Turntable frames to mesh", "Depth control") for fmt in ("ui", "api")]


@pytest.fixture(scope="module", autouse=True)
def shipped_bundle():
    assert SHIPPED_BUNDLE.exists(), f"{SHIPPED_BUNDLE.name} is missing: train it with `unidit train --preset toyworld`"


def files_of(result, out: Path, kind: str) -> list:
    paths = []
    for ui in result.outputs.values():
        for entry in ui.get("images", []) + ui.get("unidit_3d", []):
            path = out / entry["subfolder"] / entry["filename"]
            if path.suffix.lstrip(".") == kind:
                paths.append(path)
    return paths


def load_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float() / 255


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp_min(1))


def check_colour(path: Path, colour: str):
    image = load_rgb(path)
    assert image.shape == (64, 64, 3)
    assert dominant_colour(image, object_mask(image)) == colour


def check_video(path: Path, frames: int):
    decoded, fps = decode_video(path.read_bytes())
    assert decoded.shape[0] == frames and fps > 0
    return decoded


def check_splat(path: Path):
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    assert names[:3] == ["x", "y", "z"] and "scale_0" in names and "rot_3" in names
    assert ply["vertex"].count > 100


def check_mesh(path: Path):
    mesh = trimesh.load(io.BytesIO(path.read_bytes()), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100 and glb_vertex_colours_present(path)


def check_textured_mesh(path: Path, colour: str):
    """One closed piece, standing up (taller than its footprint is off-centre), with a baked texture whose
    object colour is the asked one."""
    mesh = trimesh.load(io.BytesIO(path.read_bytes()), file_type="glb", force="mesh")
    texture = mesh.visual.material.baseColorTexture
    mesh.merge_vertices(merge_tex=True, merge_norm=True)   # the atlas's seams split vertices; join them by position
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    assert texture is not None
    pixels = torch.from_numpy(np.array(texture.convert("RGB"))).float() / 255
    assert dominant_colour(pixels, object_mask(pixels)) == colour


@pytest.mark.parametrize("name, fmt", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_workflow_runs_and_its_outputs_mean_what_was_asked(name, fmt, tmp_path):
    path = ROOT / "workflows" / (f"api/{name}.json" if fmt == "api" else f"{name}.json")
    out = tmp_path / "output"
    result = run_workflow(path, out, input_dir=tmp_path / "input", progress=False)
    assert result.status == "success", result.error
    if name == "Text to image":
        [png] = files_of(result, out, "png")
        check_colour(png, "red")  # the example asks for "a red cube"
        assert "prompt" in Image.open(png).text  # the prompt travels inside the PNG, as in ComfyUI
    elif name in ("Text to video", "Image to video"):
        [mp4] = files_of(result, out, "mp4")
        video = check_video(mp4, 9)
        assert (video[-1] - video[0]).abs().mean() > 0.005  # something moves
        if name == "Image to video":
            given = torch.from_numpy(np.array(Image.open(tmp_path / "input" / "unidit_example.png"))).float() / 255
            assert psnr(video[0], given[..., :3]) > 22  # frame 0 is the input image
    elif name in ("Text to 3D", "Image to 3D"):
        [ply] = files_of(result, out, "ply")
        [glb] = files_of(result, out, "glb")
        check_splat(ply)
        check_mesh(glb)
        if name == "Text to 3D":
            [turntable] = files_of(result, out, "webp")
            check_video(turntable, 24)
    elif name in ("Text to 3D refined", "Turntable frames to mesh"):
        [ply] = files_of(result, out, "ply")
        [glb] = files_of(result, out, "glb")
        check_splat(ply)
        check_textured_mesh(glb, "yellow" if name == "Text to 3D refined" else "purple")
    elif name == "One prompt, three modalities":
        assert [len(files_of(result, out, kind)) for kind in ("png", "mp4", "ply", "glb")] == [1, 1, 1, 1]
        image = load_rgb(files_of(result, out, "png")[0])
        video = check_video(files_of(result, out, "mp4")[0], 9)
        assert psnr(video[0], image) > 22       # the video starts from the image: one subject in both
        check_colour(files_of(result, out, "png")[0], "yellow")
        assert all(dominant_colour(frame, object_mask(frame)) == "yellow" for frame in video)
    elif name == "Image to image":
        [png] = files_of(result, out, "png")
        check_colour(png, "blue")                # "a blue cube" from a red one
        given, made = load_rgb(tmp_path / "input" / "unidit_example.png"), load_rgb(png)
        assert iou(object_mask(given), object_mask(made)) > 0.6   # where the input's object was
    elif name == "Video extension":
        [mp4] = files_of(result, out, "mp4")
        video = check_video(mp4, 17)
        steps = (video[1:] - video[:-1]).abs().flatten(1).mean(1)
        # No jump where the clips join beyond the model's own largest step (its autoencoder's frame groups make
        # the steps 0 -> 1 and 4 -> 5 of every clip about twice the others; the join starts such a group): joined
        # as latents and decoded once, this join is 0.93 to 0.97 times it. Joined as decoded frames (Join Clips),
        # where the second clip's copy of the overlap frame went through the autoencoder, it was up to 1.77 times.
        assert steps[8] <= 1.3 * torch.cat([steps[:8], steps[9:]]).max()
        assert all(dominant_colour(frame, object_mask(frame)) == "red" for frame in video)
    elif name == "First and last frame to video":
        [mp4] = files_of(result, out, "mp4")
        video = check_video(mp4, 9)
        assert psnr(video[0], load_rgb(tmp_path / "input" / "unidit_example.png")) > 22
        assert psnr(video[-1], load_rgb(tmp_path / "input" / "unidit_example_end.png")) > 22
    elif name == "Depth control":
        [png] = files_of(result, out, "png")
        check_colour(png, "green")
        depth = load_rgb(tmp_path / "input" / "unidit_depth_example.png")[..., 0]
        assert iou(object_mask(load_rgb(png)), depth > 0.2) > 0.7   # the object where the depth map puts it
    elif name == "LoRA":
        [png] = files_of(result, out, "png")
        check_colour(png, "purple")
        base = run_workflow(path, tmp_path / "base", ["2.strength=0"], input_dir=tmp_path / "input", progress=False)
        [base_png] = files_of(base, tmp_path / "base", "png")
        assert (load_rgb(png) - load_rgb(base_png)).abs().mean() > 0.01   # the LoRA changes the picture


def test_the_samplers_cache_threshold_widget_turns_step_caching_on(tmp_path, caplog):
    out = tmp_path / "output"
    with caplog.at_level("INFO", logger="unidit"):
        result = run_workflow(ROOT / "workflows" / "api" / "Text to image.json", out, ["5.cache_threshold=0.05"],
                              input_dir=tmp_path / "input", progress=False)
    assert result.status == "success", result.error
    [match] = [m for record in caplog.records
               if (m := re.search(r"step cache: (\d+) of (\d+) denoiser calls", record.getMessage()))]
    skipped, calls = int(match[1]), int(match[2])
    assert calls == 47 and 0 < skipped < calls   # heun, 24 steps: 47 calls
    check_colour(files_of(result, out, "png")[0], "red")


def test_a_sampler_without_guidance_uses_the_models_given_frames_guidance_on_given_frames(tmp_path):
    """Image -> video without a Guidance node samples at the model's given_frames_guidance (1.5 on the demo model),
    text -> image at its guidance (4): each equals the same workflow with a Guidance node of that scale."""
    import json

    def frames(name: str, scale=None) -> torch.Tensor:
        prompt = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
        [sampler] = [key for key, node in prompt.items() if node["class_type"] == "UniDiTSampler"]
        prompt[sampler]["inputs"]["steps"] = 3
        for node in prompt.values():        # every frame as a PNG: lossless, so equal samples give equal files
            if node["class_type"] == "UniDiTSaveVideo":
                node.update(class_type="UniDiTSaveImage", inputs={"images": node["inputs"]["images"],
                                                                    "filename_prefix": "frames"})
        if scale is not None:
            prompt[sampler]["inputs"]["guidance"] = ["99", 0]
            prompt["99"] = {"class_type": "UniDiTGuidance", "inputs": {"scale": scale, "start": 1.0, "end": 0.0,
                                                                       "rescale": 0.0}}
        else:
            prompt[sampler]["inputs"].pop("guidance", None)
        path = tmp_path / f"{name}-{scale}.json"
        path.write_text(json.dumps(prompt))
        out = tmp_path / f"out-{name}-{scale}"
        result = run_workflow(path, out, [], input_dir=tmp_path / "input", progress=False)
        assert result.status == "success", result.error
        return torch.stack([load_rgb(path) for path in sorted(files_of(result, out, "png"))])

    unguided = frames("Image to video")
    assert torch.equal(unguided, frames("Image to video", 1.5))
    assert not torch.equal(unguided, frames("Image to video", 4.0))
    assert torch.equal(frames("Text to image"), frames("Text to image", 4.0))
