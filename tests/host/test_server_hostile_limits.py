"""Hostile prompts and files that aim at the server's resources, not its parsers: prompts too large to validate,
prompts that would need more memory than the machine has, images just under Pillow's decompression-bomb limit.
Each is refused (or runs) in bounded time and memory, and the server goes on serving the others."""
from __future__ import annotations

import inspect
import io
import threading
import time

import pytest
from PIL import Image

from unidit.runtime import memory_budget
from unidit.runtime.comfy_bridge import ComputeOptions
from unidit.host.validation import MAX_PROMPT_NODES, validate_prompt
from server_testing import TEST_NODES, chain, multipart, running_server, solid_prompt

BUDGET_GB = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server whose generations may use half a gigabyte."""
    with running_server(tmp_path_factory.mktemp("limits"), compute=ComputeOptions(memory_budget_gb=BUDGET_GB),
                        max_json_size_mb=32) as served:
        yield served


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def wide(count: int) -> dict:
    """``count`` nodes: one image, and outputs that all save it."""
    prompt = {"0": {"class_type": "SolidImage", "inputs": {"red": 1, "green": 1, "blue": 1, "size": 1}}}
    for index in range(1, count):
        prompt[str(index)] = {"class_type": "SaveImage", "inputs": {"images": ["0", 0], "filename_prefix": "w"}}
    return prompt


def failing_fan(count: int) -> dict:
    """A chain of half the nodes, the last one broken, feeding the other half: every output fails and depends on
    every node of the chain (the case that makes node_errors quadratic when gathered output by output)."""
    half = count // 2
    prompt = {"0": {"class_type": "SolidImage", "inputs": {"red": 1, "green": 1, "blue": 1, "size": 1}}}
    for index in range(1, half):
        prompt[str(index)] = {"class_type": "Invert", "inputs": {"image": [str(index - 1), 0]}}
    prompt["0"]["inputs"]["size"] = 0  # below min: the root of the chain has an error
    for index in range(half, count):
        prompt[str(index)] = {"class_type": "SaveImage", "inputs": {"images": [str(half - 1), 0],
                                                                    "filename_prefix": "f"}}
    return prompt


# ---- validation time -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [lambda count: chain(count - 1), wide, failing_fan], ids=["chain", "wide",
                                                                                              "failing fan"])
def test_a_prompt_of_the_largest_accepted_size_validates_in_well_under_two_seconds(shape):
    prompt = shape(MAX_PROMPT_NODES)
    assert len(prompt) == MAX_PROMPT_NODES
    started = time.perf_counter()
    validation = validate_prompt(prompt, TEST_NODES)
    seconds = time.perf_counter() - started
    assert seconds < 2.0, f"{seconds:.2f} s"
    if shape is failing_fan:
        assert not validation.ok and list(validation.node_errors) == ["0"]
        assert len(validation.node_errors["0"]["dependent_outputs"]) == 100  # listed up to 100
        assert validation.node_errors["0"]["dependent_outputs"][:2] == [str(MAX_PROMPT_NODES // 2),
                                                                         str(MAX_PROMPT_NODES // 2 + 1)]
    else:
        assert validation.ok, validation.error


def test_a_long_chain_validates_and_runs_without_recursion(tmp_path):
    with running_server(tmp_path) as served:
        prompt_id = served.queue_prompt(chain(5000))
        entry = served.wait_for_history(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success"


def test_ten_prompts_of_40000_nodes_are_refused_quickly_while_a_normal_prompt_completes(server):
    normal = {}

    def run_normal():
        normal["id"] = server.queue_prompt(solid_prompt(7, 7, 7, "meanwhile"))
        normal["entry"] = server.wait_for_history(normal["id"])

    seconds = []
    worker = threading.Thread(target=run_normal)
    worker.start()
    for index in range(10):
        body = {"prompt": chain(39_999) if index % 2 else wide(40_000)}
        started = time.perf_counter()
        response = server.post("/api/prompt", body)
        seconds.append(time.perf_counter() - started)
        assert response.status == 400, response.body[:200]
        assert response.json()["error"]["type"] == "prompt_too_large"
        assert "40000 nodes" in response.json()["error"]["message"]
    worker.join(60)
    assert normal["entry"]["status"]["status_str"] == "success"
    assert max(seconds) < 2.0, seconds


# ---- memory ----------------------------------------------------------------------------------------------------

def generation(width: int, height: int, frames: int, batch: int, steps: int = 1) -> dict:
    return {
        "1": {"class_type": "UniDiTLoader", "inputs": {"bundle": "unidit-toyworld.safetensors", "device": "cpu",
                                                       "dtype": "auto", "attention": "sdpa"}},
        "2": {"class_type": "UniDiTTextEncode", "inputs": {"model": ["1", 0], "text": "a red cube"}},
        "3": {"class_type": "UniDiTEmptyVideoLatent", "inputs": {"model": ["1", 0], "width": width, "height": height,
                                                                 "frames": frames, "fps": 8.0,
                                                                 "batch_size": batch}},
        "4": {"class_type": "UniDiTSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "latent": ["3", 0],
                                                        "seed": 0, "steps": steps, "solver": "euler", "shift": 0.0,
                                                        "denoise": 1.0}},
        "5": {"class_type": "UniDiTDecode", "inputs": {"model": ["1", 0], "latent": ["4", 0]}},
        "6": {"class_type": "UniDiTSaveVideo", "inputs": {"images": ["5", 0], "fps": 8.0, "format": "webp",
                                                          "filename_prefix": "big"}},
    }


def test_a_prompt_within_every_widgets_limits_but_over_the_memory_budget_is_refused_before_it_runs(server):
    response = server.post("/api/prompt", {"prompt": generation(2048, 2048, 257, 64)})
    assert response.status == 400
    body = response.json()
    (error,) = body["node_errors"]["3"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert "The decoded videos (64 x 257 frames of 2048x2048) need about 1542.0 GB, over the memory budget of " \
           "0.5 GB" in error["details"]  # 64 x 257 x 2048 x 2048 pixels x 24 bytes
    assert "Lower the width, height, frames or batch size" in error["details"]


@pytest.mark.parametrize("node, inputs, words", [
    ("UniDiTEmptyImageLatent", {"width": 2048, "height": 2048, "batch_size": 64}, "The decoded images (64 x 1 frame"),
    ("UniDiTEmpty3DLatent", {"width": 2048, "height": 2048, "views": 16, "rig": "orbit", "batch_size": 64},
     "The decoded views (64 x 16 frames"),
    ("UniDiTRenderSplat", {"frames": 360, "width": 2048, "height": 2048, "elevation": 20.0, "distance": 2.0,
                           "background": "white"}, "The turntable renders (1 x 360 frames"),
    ("UniDiTSplatToMesh", {"resolution": 512, "threshold": 0.5, "target_faces": 0}, "A 512^3 density grid"),
])
def test_every_node_that_sets_a_size_checks_it_against_the_budget(node, inputs, words):
    cls = TEST_NODES[node]
    options = {**ComputeOptions().__dict__, "memory_budget_gb": BUDGET_GB}
    from unidit.runtime import comfy_bridge

    token = comfy_bridge.use_host(comfy_bridge.HostServices(compute=ComputeOptions(**options)))
    try:
        parameters = {k: v for k, v in inputs.items() if k in inspect.signature(cls.VALIDATE_INPUTS).parameters}
        verdict = cls.VALIDATE_INPUTS(**parameters)
        assert isinstance(verdict, str) and words in verdict and "memory budget of 0.5 GB" in verdict
        small = {k: (16 if isinstance(v, int) and k != "batch_size" else v) for k, v in parameters.items()}
        assert cls.VALIDATE_INPUTS(**small) is True
    finally:
        comfy_bridge.release_host(token)


def test_a_node_that_checks_its_own_sizes_still_refuses_values_out_of_range():
    """ComfyUI skips min/max for inputs VALIDATE_INPUTS takes, so those nodes check them themselves."""
    cls = TEST_NODES["UniDiTEmptyImageLatent"]
    assert cls.VALIDATE_INPUTS(width=4096, height=64, batch_size=1) == "width: Value 4096 bigger than max of 2048"
    assert cls.VALIDATE_INPUTS(width=64, height=64, batch_size=0) == "batch_size: Value 0 smaller than min of 1"


def test_a_prompt_that_passes_validation_but_not_the_models_budget_fails_at_its_node_and_the_server_goes_on(server):
    """2048x2048 decodes to 100 MB of frames (within the budget), but the sampler's activations need more."""
    prompt_id = server.queue_prompt(generation(2048, 2048, 1, 1))
    entry = server.wait_for_history(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    error = dict(entry["status"]["messages"])["execution_error"]
    assert error["node_id"] == "4" and error["exception_type"] == "OverMemoryBudget"
    assert "The denoiser of" in error["exception_message"] and "memory budget of 0.5 GB" in error["exception_message"]
    after = server.queue_prompt(solid_prompt(3, 3, 3, "after-budget"))
    assert server.wait_for_history(after)["status"]["status_str"] == "success"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_an_image_over_the_decoding_limit_is_refused_before_it_is_decoded(server):
    side = 6000  # 36 megapixels: under Pillow's bomb limit (179), over ours (32)
    body, headers = multipart({}, filename="huge.png", data=png(side, side))
    upload = server.post("/api/upload/image", body, headers)
    assert upload.status == 200
    before = resident_bytes()
    for query in ("preview=webp;90", "channel=rgb", "channel=a"):
        response = server.get(f"/api/view?filename=huge.png&type=input&{query}")
        assert response.status == 400 and response.json()["error"]["type"] == "image_too_large"
        assert "6000x6000 (36.0 megapixels); images of at most 33.6 megapixels are decoded" in response.json()[
            "error"]["message"]
    assert resident_bytes() - before < 50 * 1024 ** 2
    load = server.queue_prompt({"1": {"class_type": "LoadImage", "inputs": {"image": "huge.png"}},
                                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    error = dict(server.wait_for_history(load)["status"]["messages"])["execution_error"]
    assert error["exception_type"] == "OverMemoryBudget" and "huge.png is 6000x6000" in error["exception_message"]


def test_memory_returns_to_its_baseline_after_a_large_image_is_uploaded_and_previewed(server):
    side = 5600  # 31 megapixels: just within the limit, 125 MB as RGBA
    body, headers = multipart({}, filename="large.png", data=png(side, side))
    server.post("/api/upload/image", body, headers)
    server.get("/api/view?filename=large.png&type=input&preview=webp;50")  # warm up the codecs
    baseline = resident_bytes()
    for _ in range(2):
        assert server.post("/api/upload/image", body, headers).status == 200
        for query in ("preview=webp;50", "channel=rgb"):
            response = server.get(f"/api/view?filename=large.png&type=input&{query}")
            assert response.status == 200 and len(response.body) > 1000
    grown = resident_bytes() - baseline
    print(f"resident memory after 2 uploads and 4 previews of a {side}x{side} image: {grown / 1024 ** 2:+.0f} MB")
    assert grown < 64 * 1024 ** 2, f"{grown / 1024 ** 2:.0f} MB more than before"


def test_the_budget_comes_from_the_environment_first(monkeypatch):
    monkeypatch.setenv(memory_budget.ENVIRONMENT, "2")
    assert memory_budget.budget_bytes() == 2 * 1024 ** 3
    monkeypatch.setenv(memory_budget.ENVIRONMENT, "lots")
    with pytest.raises(ValueError, match="is not a number of GB"):
        memory_budget.budget_bytes()
    monkeypatch.setenv(memory_budget.ENVIRONMENT, "-1")
    with pytest.raises(ValueError, match="positive number of GB"):
        memory_budget.budget_bytes()
    monkeypatch.delenv(memory_budget.ENVIRONMENT)
    assert memory_budget.budget_bytes() == int(memory_budget.machine_memory() * 0.75)
