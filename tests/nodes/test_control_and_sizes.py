"""UniDiT Control puts depth and mask maps on a latent for models trained with them and refuses clearly on others;
UniDiT Sampler says on the node when a size is outside the sizes the model was trained at."""
from pathlib import Path

import pytest
import torch

from unidit.runtime import comfy_bridge
from unidit.runtime.bundle import SHIPPED_BUNDLE, ModelBundle
from unidit.runtime.control import CONTROL_CHANNELS
from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit.runtime.store import STORE
from unidit.host.executor import Executor, validate_prompt
from unidit.host.run import standalone_nodes
from unidit.host.workflow import apply_overrides, load_workflow
from unidit.nodes import UniDiTControl, UniDiTEmptyVideoLatent
from unidit_testing import TINY_DIT, randomize, tiny_bundle

ROOT = Path(__file__).resolve().parents[2]


def run_text_to_image(tmp_path, overrides, extra_nodes=None, sampler_latent=None):
    services = comfy_bridge.HostServices(output_directory=tmp_path, input_directory=ROOT / "workflows" / "input")
    executor = Executor(standalone_nodes(), services)
    prompt = load_workflow(ROOT / "workflows" / "api" / "Text to image.json")
    prompt.update(extra_nodes or {})
    if sampler_latent:
        prompt["5"]["inputs"]["latent"] = sampler_latent
    token = comfy_bridge.use_host(services)   # the input images Load Image lists
    try:
        prompt = apply_overrides(prompt, ["5.steps=1", *overrides], executor.nodes)
        validation = validate_prompt(prompt, executor.nodes)
    finally:
        comfy_bridge.release_host(token)
    assert not validation.node_errors, validation.node_errors
    events = []
    result = executor.execute(validation.prompt, "p", validation.outputs, emit=lambda e, d: events.append((e, d)))
    return result, events


def sampler_notes(events):
    return [d["output"]["text"] for e, d in events if e == "executed" and d["node"] == "5"]


def test_the_sampler_warns_on_the_node_outside_the_trained_sizes(tmp_path):
    trained = ModelBundle.load(SHIPPED_BUNDLE).defaults.sizes()
    assert (128, 96) not in trained
    result, events = run_text_to_image(tmp_path / "a", ["3.width=128", "3.height=96"])
    assert result.status == "success"
    (note,) = sampler_notes(events)
    assert len(note) == 1 and "128x96" in note[0] and "pick one" in note[0]
    assert all(f"{width}x{height}" in note[0].split("; at")[0] for width, height in trained)
    result, events = run_text_to_image(tmp_path / "b", [])
    assert result.status == "success" and sampler_notes(events) == [[]]


def test_control_on_a_model_without_control_maps_fails_with_what_to_do(tmp_path):
    path = tmp_path / "plain.safetensors"
    tiny_bundle().save(path, dtype=torch.float32)
    handle = STORE.handle(path, "cpu", "fp32")
    (latent,) = UniDiTEmptyVideoLatent().create(handle, 32, 32, 5, 8.0, 1)
    with pytest.raises(ValueError, match="not trained to follow control maps.*unplug UniDiT Control"):
        UniDiTControl().control(handle, latent, mask=torch.ones(1, 32, 32))


@pytest.fixture
def control_bundle(tmp_path):
    bundle = tiny_bundle()
    bundle.dit = randomize(UniDiT(DiTConfig(**TINY_DIT, control_channels=CONTROL_CHANNELS)), 3).eval()
    path = tmp_path / "control.safetensors"
    bundle.save(path, dtype=torch.float32)
    return path


def test_the_control_node_puts_depth_and_a_trajectory_on_a_video_latent(control_bundle):
    handle = STORE.handle(control_bundle, "cpu", "fp32")
    (latent,) = UniDiTEmptyVideoLatent().create(handle, 32, 32, 5, 8.0, 1)
    depth = torch.zeros(1, 32, 32, 3)
    depth[:, 8:24, 8:24] = 0.8
    masks = torch.zeros(5, 32, 32)
    for frame in range(5):
        masks[frame, 12:20, 4 * frame:4 * frame + 8] = 1.0      # moving right
    (controlled,) = UniDiTControl().control(handle, latent, depth=depth, mask=masks)
    control = controlled["unidit"]["control"]
    assert control.shape == (1, CONTROL_CHANNELS, 2, 8, 8)
    assert control[0, 1].eq(1).all() and control[0, 3].eq(1).all()
    assert control[0, 0, :, 2:6, 2:6].allclose(torch.tensor(0.8))
    columns = control[0, 2].sum(dim=1)                      # [frames, w]: the mask's weight per column
    assert columns[1].argmax() > columns[0].argmax()       # latent frame 1 (frames 1..4) is further right
    with pytest.raises(ValueError, match="needs a depth map, a mask or both"):
        UniDiTControl().control(handle, latent)
