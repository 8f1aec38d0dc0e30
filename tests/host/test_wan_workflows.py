"""The Wan example workflows run with tiny Wan checkpoints placed as ComfyUI users place the real ones
(models/diffusion_models, models/text_encoders, models/vae): through `unidit run`'s machinery in both formats,
through `unidit run` on the command line, and queued on `unidit serve`; their outputs open with the frames and
sizes asked for. The sizes are overridden to small ones (the examples ask for 480p and 720p)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unidit.host.run import run_workflow, standalone_nodes
from unidit.host.workflow import apply_overrides, load_workflow
from unidit.runtime.media.video import decode_video
from server_testing import running_server

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"Wan 2.1 text to video": ["3.width=64", "3.height=48", "3.frames=9", "5.steps=2"],
         "Wan 2.1 text to image": ["3.width=64", "3.height=48", "5.steps=2"],
         "Wan 2.2 image to video": ["4.width=64", "4.height=64", "4.frames=5", "7.steps=2"]}
EXPECTED = {"Wan 2.1 text to video": ("mp4", (9, 48, 64)), "Wan 2.1 text to image": ("png", (1, 48, 64)),
            "Wan 2.2 image to video": ("mp4", (5, 64, 64))}


@pytest.fixture(scope="module")
def models(wan_models):
    return wan_models


def frames_of(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(Image.open(path).convert("RGB"))[None]
    return decode_video(path.read_bytes())[0].numpy()


def check_output(paths: list, name: str) -> np.ndarray:
    kind, shape = EXPECTED[name]
    [path] = [p for p in paths if p.suffix == f".{kind}"]
    frames = frames_of(path)
    assert frames.shape[:3] == shape, (path.name, frames.shape)
    return frames


@pytest.mark.parametrize("fmt", ["ui", "api"])
@pytest.mark.parametrize("name", list(SMALL))
def test_wan_workflow_runs_with_unidit_run(name, fmt, models, tmp_path):
    path = ROOT / "workflows" / (f"api/{name}.json" if fmt == "api" else f"{name}.json")
    out = tmp_path / "output"
    result = run_workflow(path, out, SMALL[name], tmp_path / "input", [models], progress=False)
    assert result.status == "success", result.error
    paths = [out / e["subfolder"] / e["filename"] for ui in result.outputs.values() for e in ui.get("images", [])]
    frames = check_output(paths, name)
    if name == "Wan 2.2 image to video":
        # the first frame is the input image through the VAE round trip (random tiny VAE: only its size is sure)
        assert frames.shape[1:3] == (64, 64)


def test_the_command_line_runs_a_wan_workflow_and_names_missing_files(models, tmp_path):
    workflow = ROOT / "workflows" / "Wan 2.1 text to image.json"
    command = [sys.executable, "-m", "unidit.host.cli", "run", str(workflow),
               "--models", str(models), "--out", str(tmp_path / "out"), "--input", str(tmp_path / "in")]
    done = subprocess.run(command + [f"--set={o}" for o in SMALL["Wan 2.1 text to image"]], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [png] = [Path(line) for line in done.stdout.splitlines() if line.endswith(".png")]
    assert frames_of(png).shape[:3] == (1, 48, 64)
    # without the model folder the workflow is refused before anything runs, naming the file that is missing
    missing = subprocess.run(command[:5] + ["--out", str(tmp_path / "out2"), "--input", str(tmp_path / "in")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "wan2.1_t2v_1.3B_fp16.safetensors" in missing.stderr
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").rglob("*.png"))


def test_wan_workflows_queue_on_unidit_serve(models, tmp_path):
    with running_server(tmp_path, models_directories=[models]) as server:
        info = server.get("/api/object_info/UniDiTPartsLoader").json()["UniDiTPartsLoader"]["input"]["required"]
        assert "wan2.2_ti2v_5B_fp16.safetensors" in info["diffusion_model"][0]
        assert info["vae"][0] == ["wan2.2_vae.safetensors", "wan_2.1_vae.safetensors"]
        for name in SMALL:
            prompt = apply_overrides(load_workflow(ROOT / "workflows" / "api" / f"{name}.json"), SMALL[name],
                                     standalone_nodes())
            entry = server.wait_for_history(server.queue_prompt(prompt), timeout=300)
            assert entry["status"]["status_str"] == "success", entry["status"]
            paths = [server.folders["output"] / e["subfolder"] / e["filename"]
                     for output in entry["outputs"].values() for e in output.get("images", [])]
            check_output(paths, name)
