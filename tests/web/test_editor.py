"""The ComfyUI editor served by `unidit serve` (the pinned comfyui-frontend-package), in headless Chromium, used as
a person would on a first start (tests/js/editor.mjs): the whole session runs with no failed request and no
console error; the template browser shows the pack's workflows with their thumbnails; every example workflow
loads with no missing node and no node or group over another; pressing Run on text -> image shows the generated image in its Save node; a later
start in a new browser profile opens the pack's text -> image workflow (not the frontend's default graph, whose
nodes `unidit serve` does not have). The screenshot is kept in test-artifacts/editor/ for a person to look at.

The server is the `unidit serve` command, with its own folders, running the shipped demo bundle
(models/unidit-toyworld.safetensors). UNIDIT_TEST_MODELS=DIR makes it use the bundle of that name in DIR
instead (a stand-in while the shipped one is being trained).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from unidit.runtime.bundle import SHIPPED_BUNDLE
from browser_testing import ARTIFACTS, REPO, require_browser, run_browser_script

WORKFLOWS = sorted(path.stem for path in (REPO / "workflows").glob("*.json"))
QUEUED = "Text to image"
SERVING = re.compile(r"serving the ComfyUI editor at (http://\S+)")


def start_server(root: Path, models: str | None, log) -> tuple[subprocess.Popen, str]:
    """`unidit serve` on a free loopback port, its folders under ``root``, its log to the file ``log``; returns
    the process and its URL."""
    unidit = Path(sys.executable).with_name("unidit")
    if not unidit.is_file():
        pytest.fail(f"the editor test runs the `unidit` command, expected at {unidit}: pip install -e '.[serve]'")
    command = [str(unidit), "serve", "--port", "0"]
    command += [f"--{kind}-directory={root / kind}" for kind in ("output", "input", "temp", "user")]
    command += ["--models", models] if models else []
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline()  # the server prints its URL once it listens
    found = SERVING.search(line)
    if found is None:
        server.kill()
        pytest.fail(f"`unidit serve` did not start: {line!r}\n{(root / 'server.log').read_text()[-3000:]}")
    return server, found.group(1)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """What editor.mjs saw, the server's history afterwards, and how the server stopped."""
    models = os.environ.get("UNIDIT_TEST_MODELS")
    if models is None and not SHIPPED_BUNDLE.is_file():
        pytest.fail(f"the editor test runs the shipped bundle, and {SHIPPED_BUNDLE} is missing: train it with "
                    f"`unidit train --preset toyworld` (or set UNIDIT_TEST_MODELS to a folder holding a stand-in "
                    f"bundle named {SHIPPED_BUNDLE.name})")
    require_browser("the editor test")
    root = tmp_path_factory.mktemp("editor")
    screenshot = ARTIFACTS / "editor" / f"{QUEUED}.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with (root / "server.log").open("w") as log:
        server, url = start_server(root, models, log)
        try:
            seen = run_browser_script("editor.mjs", [url + "/", screenshot, QUEUED, *WORKFLOWS], timeout=900)
            history = get_json(url + "/api/history")
        finally:
            server.send_signal(signal.SIGINT)
            stopped = server.wait(30)
    print(f"screenshot of the editor after queueing {QUEUED}: {screenshot}")
    yield {"seen": seen, "history": history, "root": root, "stopped": stopped,
           "stdout": server.stdout.read(), "log": (root / "server.log").read_text()}


def test_the_session_has_no_failed_request_and_no_console_error(session):
    seen = session["seen"]
    assert seen["started"] and seen["error"] is None, seen["error"]
    assert seen["failedRequests"] == [], seen["failedRequests"]
    assert seen["consoleErrors"] == [] and seen["pageErrors"] == [], (seen["consoleErrors"], seen["pageErrors"])
    assert seen["otherOrigins"] == [], "the editor asked other sites (there is no network in CI)"
    assert all(line.startswith("POST ") for line in seen["unreadBodies"]), seen["unreadBodies"]


def test_the_first_start_shows_the_packs_templates_with_their_thumbnails(session):
    browser = session["seen"]["templateBrowser"]
    assert browser, "the template browser did not open on the first start"
    assert all(name in browser["text"] for name in WORKFLOWS), browser["text"]
    assert browser["loadedImages"] == browser["images"] == len(WORKFLOWS)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_example_workflow_loads_with_no_missing_node(session, name):
    loaded = session["seen"]["workflows"][name]
    assert loaded.get("error") is None, loaded
    assert loaded["missingNodeTypes"] == [] and not loaded["missingNotice"], loaded
    assert loaded["unregistered"] == [] and loaded["dialogs"] == [], loaded
    assert loaded["nodes"] == loaded["expectedNodes"]
    assert loaded["overlaps"] == [], "nodes or groups overlap in the editor"


def test_run_shows_the_generated_image_in_its_node(session):
    queued = session["seen"]["queued"]
    assert queued["missingNodeTypes"] == [] and "src" in queued, queued
    assert queued["type"] == "UniDiTSaveImage"
    shown = urllib.parse.parse_qs(urllib.parse.urlsplit(queued["src"]).query)
    (prompt_id, entry), = session["history"].items()  # the one prompt the editor queued
    assert entry["status"]["status_str"] == "success"
    assert entry["prompt"][3]["extra_pnginfo"]["workflow"]["nodes"], "the editor sends its workflow along"
    image = entry["outputs"][queued["id"]]["images"][0]
    assert (shown["filename"][0], shown["subfolder"][0], shown["type"][0]) == \
        (image["filename"], image["subfolder"], "output")
    with Image.open(session["root"] / "output" / image["subfolder"] / image["filename"]) as saved:
        assert saved.size == (queued["width"], queued["height"])
    assert Path(session["seen"]["screenshot"]).stat().st_size > 0


def test_a_later_start_in_a_new_browser_opens_the_packs_text_to_image_workflow(session):
    later = session["seen"]["laterStart"]
    assert later, session["seen"]["error"]
    starter = json.loads((REPO / "workflows" / "Text to image.json").read_text())
    assert sorted(later["types"]) == sorted(node["type"] for node in starter["nodes"]), later
    assert later["unregistered"] == [] and not later["missingNotice"] and later["dialogs"] == [], later


def test_the_server_stops_cleanly_on_ctrl_c(session):
    assert session["stopped"] == 0, session["log"][-3000:]
    assert "stopping" in session["stdout"]
