"""`unidit submit` against a running `unidit serve`: UI and API workflows run, their outputs are downloaded
byte for byte, and failures exit non-zero with the server's own message."""
import json
import re
from pathlib import Path

import pytest

from unidit.runtime.host.cli import main
from unidit.runtime.host.submit import submit
from server_testing import running_server, solid_prompt


def ui_workflow(prefix: str) -> dict:
    """Load Image -> Save Image in the editor's format (core nodes only, so it runs on ComfyUI too)."""
    return {
        "last_node_id": 2, "last_link_id": 1, "version": 0.4, "groups": [], "config": {}, "extra": {},
        "nodes": [
            {"id": 1, "type": "LoadImage", "pos": [0, 0], "size": [300, 300], "flags": {}, "order": 0, "mode": 0,
             "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0},
                                       {"name": "MASK", "type": "MASK", "links": None}],
             "properties": {}, "widgets_values": ["unidit_example.png", "image"]},
            {"id": 2, "type": "SaveImage", "pos": [400, 0], "size": [300, 300], "flags": {}, "order": 1, "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "outputs": [], "properties": {},
             "widgets_values": [prefix]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("submit")) as served:
        yield served


def write(tmp_path: Path, name: str, workflow: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(workflow))
    return path


def test_a_ui_workflow_runs_and_its_outputs_download_byte_for_byte(server, tmp_path):
    workflow = write(tmp_path, "load_save.json", ui_workflow("plain"))
    result = submit(workflow, server.url, tmp_path / "out", ["2.filename_prefix=submitted/copy"], progress=False)
    assert result.status == "success" and len(result.files) == 1
    downloaded = result.files[0]
    assert downloaded == tmp_path / "out" / "submitted" / "copy_00001_.png"
    assert downloaded.read_bytes() == (server.folders["output"] / "submitted" / downloaded.name).read_bytes()
    history = server.get(f"/api/history/{result.prompt_id}").json()[result.prompt_id]
    assert history["prompt"][3]["extra_pnginfo"]["workflow"]["nodes"][1]["type"] == "SaveImage"


def test_the_cli_prints_the_downloaded_paths_and_keeps_identical_files(server, tmp_path, capsys):
    workflow = write(tmp_path, "solid.json", solid_prompt(200, 100, 0, "cli/solid"))
    out = tmp_path / "out"
    assert main(["submit", str(workflow), "--server", server.url, "--out", str(out)]) == 0
    shown = capsys.readouterr()
    first = shown.out.split()
    assert first == [str(out / "cli" / "solid_00001_.png")]
    assert "#1 SolidImage" in shown.err and "#2 SaveImage" in shown.err
    assert Path(first[0]).read_bytes() == (server.folders["output"] / "cli" / "solid_00001_.png").read_bytes()
    # the same prompt again is cached on the server: the same file is reported and kept, nothing is duplicated
    assert main(["submit", str(workflow), "--server", server.url, "--out", str(out)]) == 0
    shown = capsys.readouterr()
    assert shown.out.split() == first and "cached: 1, 2" in shown.err
    assert sorted(p.name for p in (out / "cli").iterdir()) == ["solid_00001_.png"]


def test_the_cli_shows_progress_from_the_websocket(server, tmp_path, capsys):
    workflow = write(tmp_path, "count.json", {"1": {"class_type": "Previewing", "inputs": {"steps": 7},
                                                    "_meta": {"title": "Count to seven"}}})
    assert main(["submit", str(workflow), "--server", server.url, "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr()
    assert shown.out == "" and "#1 Count to seven" in shown.err
    assert re.search(r"#1: .*/7 ", shown.err), shown.err  # a bar for node 1, of the 7 steps the server reported


def test_a_failing_workflow_exits_non_zero_with_the_servers_error(server, tmp_path, capsys):
    workflow = write(tmp_path, "escape.json", ui_workflow("../../escape"))
    assert main(["submit", str(workflow), "--server", server.url, "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "error in node 2 (SaveImage)" in error and "must stay inside the output folder" in error


def test_a_rejected_workflow_exits_non_zero_with_the_node_errors(server, tmp_path, capsys):
    workflow = write(tmp_path, "too_red.json", solid_prompt(999, 0, 0))
    assert main(["submit", str(workflow), "--server", server.url, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "Prompt outputs failed validation" in error
    assert "node 1 (SolidImage): Value 999 bigger than max of 255 [red]" in error


def test_a_node_the_server_lacks_is_named(server, tmp_path, capsys):
    workflow = ui_workflow("x")
    workflow["nodes"][0]["type"] = "SomeoneElsesNode"
    path = write(tmp_path, "missing.json", workflow)
    assert main(["submit", str(path), "--server", server.url]) == 2
    assert "'SomeoneElsesNode', which is not installed" in capsys.readouterr().err


def test_an_unreachable_server_is_reported(tmp_path, capsys):
    path = write(tmp_path, "solid.json", solid_prompt(1, 2, 3))
    assert main(["submit", str(path), "--server", "http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "cannot reach the server" in capsys.readouterr().err
