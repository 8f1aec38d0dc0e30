"""`unidit submit` against a running `unidit serve`: UI and API workflows run, their outputs are downloaded
byte for byte, and failures exit non-zero with the server's own message."""
import json
import re
from pathlib import Path

import pytest

from unidit.host.cli import main
from unidit.host.submit import submit
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


def hostile_server(history_entry, events: list, view_status: int = 200):
    """A server that speaks just enough of ComfyUI's API to take a prompt, then sends ``events`` on the WebSocket
    and ``history_entry`` as the prompt's history (both of any shape)."""
    import asyncio
    import contextlib
    import threading

    from aiohttp import web

    async def object_info(request):
        return web.json_response({"SaveImage": {"input": {"required": {"images": "not a declaration",
                                                                       "filename_prefix": ["STRING", {}]}}}})

    sockets = []

    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        await ws.receive()  # closed by the client at the end
        return ws

    async def prompt(request):
        for event in events:
            await sockets[-1].send_json(event)
        return web.json_response({"prompt_id": "p1", "number": 0, "node_errors": {}})

    async def history(request):
        return web.json_response(history_entry)

    async def view(request):
        return web.Response(status=view_status, body=b"bytes")

    app = web.Application()
    app.router.add_get("/object_info", object_info)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/history/{prompt_id}", history)
    app.router.add_get("/view", view)

    @contextlib.contextmanager
    def serving():
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.run_until_complete(runner.cleanup())
            loop.close()

    return serving()


DONE = {"type": "executing", "data": {"node": None, "prompt_id": "p1"}}


@pytest.mark.parametrize("history, events, status, message", [
    ([1, 2], [{"type": "progress", "data": {"node": "1"}}, DONE], 1, "the server reported an error"),
    ({"p1": {"outputs": [1], "status": "done"}}, [{"type": "progress", "data": {"value": "x", "max": None}}, DONE],
     1, "the server reported an error"),
    ({"p1": {"status": {"status_str": "error", "messages": [["execution_error", "boom"], "junk"]}}},
     [{"type": "execution_cached", "data": {"nodes": "all"}}, {"type": "executing", "data": {"node": 5}}, DONE],
     1, "the server reported an error"),
    ({"p1": {"status": {"status_str": "success"}, "outputs": {"1": {"images": [
        {"filename": "a.png", "subfolder": ["x"], "type": 7}]}}}}, [DONE], 0, ""),
])
def test_submit_passes_over_what_a_broken_server_sends_and_never_prints_a_traceback(tmp_path, capsys, history,
                                                                                     events, status, message):
    workflow = write(tmp_path, "solid.json", solid_prompt(1, 2, 3))
    with hostile_server(history, events) as url:
        code = main(["submit", str(workflow), "--server", url, "--out", str(tmp_path / "out"), "--timeout", "30"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code == status, err
    assert message in err
