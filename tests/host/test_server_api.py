"""`unidit serve`'s API against ComfyUI's shapes: node definitions, queue and history, priorities, interrupt,
caching across prompts, settings and user data, uploads and views, templates, extensions, WebSocket messages."""
import asyncio
import io
import json
import urllib.parse
import struct
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
import torch
from PIL import Image

from unidit.nodes import NODE_CLASS_MAPPINGS
from unidit.runtime import comfy_bridge
from unidit.host.frontend import FRONTEND_VERSION
from unidit.runtime.store import STORE
from server_testing import TEST_NODES, multipart, running_server, solid_prompt
from unidit_testing import tiny_bundle

ROOT = Path(__file__).resolve().parents[2]
GATE = threading.Event()  # Gate nodes wait for it


class Gate:
    """Holds the worker until GATE is set (checking for interrupts meanwhile)."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "wait"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("INT", {"default": 0})}}

    def wait(self, key):
        while not GATE.wait(0.01):
            comfy_bridge.check_interrupt()
        return (torch.zeros(1, 4, 4, 3),)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    (root / "models").mkdir()
    tiny_bundle().save(root / "models" / "tiny.safetensors")
    with running_server(root, {**TEST_NODES, "Gate": Gate},
                        models_directories=[root / "models"]) as served:
        yield served


@pytest.fixture
def gate_closed():
    GATE.clear()
    yield
    GATE.set()


def gated_prompt(key: int, prefix: str = "gated") -> dict:
    return {"1": {"class_type": "Gate", "inputs": {"key": key}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def wait_until_running(server, prompt_id: str) -> None:
    for _ in range(2000):
        running = server.get("/api/queue").json()["queue_running"]
        if running and running[0][1] == prompt_id:
            return
        threading.Event().wait(0.005)
    raise TimeoutError(prompt_id)


# ---- node definitions -----------------------------------------------------------------------------------------

def test_object_info_lists_every_node_in_comfyui_shape(server):
    info = server.get("/api/object_info").json()
    assert set(NODE_CLASS_MAPPINGS) | {"LoadImage", "SaveImage", "PreviewImage"} <= set(info)
    sampler = info["UniDiTSampler"]
    assert list(sampler)[:11] == ["input", "input_order", "output", "output_is_list", "output_name", "name",
                                  "display_name", "description", "python_module", "category", "output_node"]
    assert sampler["input_order"]["required"] == list(NODE_CLASS_MAPPINGS["UniDiTSampler"].INPUT_TYPES()["required"])
    assert sampler["name"] == "UniDiTSampler" and sampler["display_name"] == "UniDiT Sampler"
    assert sampler["python_module"] == "custom_nodes.unidit" and sampler["output_node"] is False
    assert sampler["output"] == ["LATENT"] and sampler["output_is_list"] == [False]
    assert info["UniDiTLoader"]["output_tooltips"] and "output_tooltips" not in info["SaveImage"]
    assert info["SaveImage"]["python_module"] == "nodes" and info["SaveImage"]["output_node"] is True
    examples = sorted(path.name for path in (ROOT / "workflows" / "input").glob("*.png"))
    assert info["LoadImage"]["input"]["required"]["image"] == [examples, {"image_upload": True}]


def test_object_info_of_one_class_and_of_an_unknown_one(server):
    one = server.get("/object_info/SaveImage").json()
    assert list(one) == ["SaveImage"] and one["SaveImage"]["input_order"] == {
        "required": ["images", "filename_prefix"], "hidden": ["prompt", "extra_pnginfo"]}
    assert server.get("/api/object_info/Nope").json() == {}


# ---- prompts, queue, history ----------------------------------------------------------------------------------

def test_a_prompt_runs_and_its_history_entry_has_comfyui_shape(server):
    prompt_id = server.queue_prompt(solid_prompt(10, 20, 30, "api/solid"), client_id="nobody")
    entry = server.wait_for_history(prompt_id)
    assert list(entry) == ["prompt", "outputs", "status", "meta"]
    number, same_id, prompt, extra_data, outputs = entry["prompt"]
    assert same_id == prompt_id and outputs == ["2"] and prompt["1"]["inputs"]["red"] == 10
    assert extra_data["client_id"] == "nobody" and isinstance(extra_data["create_time"], int)
    image = entry["outputs"]["2"]["images"][0]
    assert image["subfolder"] == "api" and image["type"] == "output" and image["filename"].startswith("solid_")
    pixels = Image.open(server.folders["output"] / "api" / image["filename"]).convert("RGB").getpixel((3, 3))
    assert pixels == (10, 20, 30)
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached",
                                                           "execution_success"]
    assert entry["meta"] == {"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}}
    assert server.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}
    latest = server.get("/api/history?max_items=1").json()
    assert list(latest) == [prompt_id]
    server.post("/api/history", {"delete": [prompt_id]})
    assert server.get(f"/api/history/{prompt_id}").json() == {}


def test_a_client_may_choose_a_new_prompt_id(server):
    chosen = server.post("/api/prompt", {"prompt": solid_prompt(3, 3, 3, "chosen"), "prompt_id": "job-42"})
    assert chosen.status == 200 and chosen.json()["prompt_id"] == "job-42"
    server.wait_for_history("job-42")
    again = server.post("/api/prompt", {"prompt": solid_prompt(4, 4, 4, "chosen"), "prompt_id": "job-42"})
    assert again.status == 400 and again.json()["error"]["type"] == "invalid_prompt_id"


def test_history_pages_like_comfyui(server):
    ids = [server.queue_prompt(solid_prompt(index, 9, 9, "paging")) for index in range(3)]
    server.wait_for_history(ids[-1])
    everything = list(server.get("/api/history").json())
    assert everything[-3:] == ids
    assert list(server.get("/api/history?max_items=2").json()) == ids[1:]  # max_items alone: the last ones
    start = len(everything) - 3
    assert list(server.get(f"/api/history?max_items=2&offset={start}").json()) == ids[:2]
    assert server.get(f"/api/history?offset={len(everything)}").json() == {}


def test_priorities_delete_and_cancel_like_comfyui(server, gate_closed):
    running = server.queue_prompt(gated_prompt(1))
    wait_until_running(server, running)
    normal = server.queue_prompt(gated_prompt(2))
    front = server.queue_prompt(gated_prompt(3), front=True)
    numbered = server.post("/api/prompt", {"prompt": gated_prompt(4), "number": -100}).json()
    assert numbered["number"] == -100.0
    queue = server.get("/api/queue").json()
    assert [item[1] for item in queue["queue_running"]] == [running]
    assert [item[1] for item in queue["queue_pending"]] == [numbered["prompt_id"], front, normal]
    assert all(len(item) == 5 for item in queue["queue_pending"])
    assert server.post("/api/queue", {"delete": [front]}).status == 200
    jobs = server.get("/api/jobs?status=pending,in_progress").json()
    assert {job["id"]: job["status"] for job in jobs["jobs"]} == {
        running: "in_progress", normal: "pending", numbered["prompt_id"]: "pending"}
    assert jobs["pagination"] == {"offset": 0, "limit": None, "total": 3, "has_more": False}
    assert server.post(f"/api/jobs/{normal}/cancel").json() == {"cancelled": True}
    assert server.post(f"/api/jobs/{normal}/cancel").json() == {"cancelled": False}
    GATE.set()
    server.wait_for_history(numbered["prompt_id"])
    history = server.get("/api/history").json()
    assert running in history and numbered["prompt_id"] in history
    assert front not in history and normal not in history
    assert list(history).index(running) < list(history).index(numbered["prompt_id"])


def test_clearing_the_queue_leaves_the_running_prompt(server, gate_closed):
    running = server.queue_prompt(gated_prompt(5))
    wait_until_running(server, running)
    waiting = [server.queue_prompt(gated_prompt(6 + i)) for i in range(3)]
    assert server.post("/queue", {"clear": True}).status == 200
    assert server.get("/queue").json()["queue_pending"] == []
    GATE.set()
    assert server.wait_for_history(running)["status"]["status_str"] == "success"
    assert all(server.get(f"/history/{prompt_id}").json() == {} for prompt_id in waiting)


def test_interrupt_stops_the_running_prompt_and_the_history_says_so(server, gate_closed):
    prompt_id = server.queue_prompt(gated_prompt(20))
    wait_until_running(server, prompt_id)
    assert server.post("/api/interrupt", {"prompt_id": "someone-else"}).status == 200
    assert server.post("/api/interrupt", {"prompt_id": prompt_id}).status == 200
    entry = server.wait_for_history(prompt_id)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    job = server.get(f"/api/jobs/{prompt_id}").json()
    assert job["status"] == "cancelled" and job["workflow"]["prompt"]["1"]["class_type"] == "Gate"


def test_outputs_are_cached_across_prompts_until_free_memory(server):
    prompt = solid_prompt(1, 2, 3, "cache/solid")
    first = server.wait_for_history(server.queue_prompt(prompt))
    second = server.wait_for_history(server.queue_prompt(prompt))
    cached = dict(second["status"]["messages"])["execution_cached"]["nodes"]
    assert cached == ["1", "2"] and second["outputs"] == first["outputs"]
    assert server.post("/api/free", {"unload_models": True, "free_memory": True}).status == 200
    third = server.wait_for_history(server.queue_prompt(prompt))  # /free applies before the next prompt
    assert dict(third["status"]["messages"])["execution_cached"]["nodes"] == []
    assert third["outputs"]["2"]["images"][0]["filename"] != first["outputs"]["2"]["images"][0]["filename"]


def test_jobs_list_and_detail_have_the_frontend_schema(server):
    prompt_id = server.queue_prompt(solid_prompt(50, 60, 70, "jobs/solid"),
                                    extra_data={"extra_pnginfo": {"workflow": {"id": "wf-1"}}})
    server.wait_for_history(prompt_id)
    listing = server.get("/api/jobs?status=completed,failed,cancelled&limit=200&offset=0").json()
    job = next(job for job in listing["jobs"] if job["id"] == prompt_id)
    assert job["status"] == "completed" and job["workflow_id"] == "wf-1"
    assert job["outputs_count"] == 1 and job["previewable_outputs_count"] == 1
    assert job["preview_output"]["nodeId"] == "2" and job["preview_output"]["mediaType"] == "images"
    assert job["execution_start_time"] <= job["execution_end_time"]
    detail = server.get(f"/api/jobs/{prompt_id}").json()
    assert detail["outputs"]["2"]["images"][0]["subfolder"] == "jobs"
    assert detail["execution_status"]["status_str"] == "success"
    assert server.get("/api/jobs/not-a-job").status == 404


# ---- what the frontend reads at start -------------------------------------------------------------------------

def test_system_stats_features_users_and_startup_lists(server):
    stats = server.get("/api/system_stats").json()
    assert set(stats["system"]) >= {"os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version",
                                    "python_version", "pytorch_version", "embedded_python", "argv"}
    assert stats["system"]["required_frontend_version"] == FRONTEND_VERSION
    assert stats["devices"][0]["type"] in ("cpu", "cuda") and stats["system"]["ram_total"] > 0
    assert "--disable-api-nodes" in stats["system"]["argv"]  # the editor then makes no requests to comfy.org
    assert server.get("/api/features").json()["supports_preview_metadata"] is True
    assert server.get("/api/users").json() == {"storage": "server", "migrated": True}
    assert server.get("/api/embeddings").json() == [] and server.get("/api/i18n").json() == {}
    assert server.get("/api/global_subgraphs").json() == {}
    assert server.get("/api/experiment/models").json()[0]["name"] == "unidit"
    folders = server.get("/internal/folder_paths").json()["unidit"]
    assert folders and not any(folder.startswith("/") for folder in folders)
    assert server.get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true").json() == []


def test_the_editor_is_served_with_the_pack_extension(server):
    index = server.get("/")
    assert index.status == 200 and b'<div id="vue-app">' in index.body
    assert "no-store" in index.headers["cache-control"]
    assert server.get("/user.css").status == 200 and server.get("/api/userdata/user.css").body == b""
    assert server.get("/api/userdata/comfy.templates.json").json() == []  # the user has no node templates
    assert server.get("/scripts/app.js").status == 200
    assert server.get("/api/extensions").json() == ["/extensions/unidit/unidit.js"]
    viewer = server.get("/extensions/unidit/viewer/viewer.mjs")
    assert viewer.status == 200 and "javascript" in viewer.headers["content-type"]
    assert viewer.body == (ROOT / "web/viewer/viewer.mjs").read_bytes()


def test_example_workflows_are_templates(server):
    names = sorted(path.stem for path in (ROOT / "workflows").glob("*.json"))
    assert server.get("/api/workflow_templates").json() == {"unidit": names}
    template = server.get("/api/workflow_templates/unidit/Text%20to%20image.json")
    assert template.status == 200 and template.body == (ROOT / "workflows/Text to image.json").read_bytes()
    assert server.get("/workflow_templates/unidit/Text%20to%20image.json").status == 404  # only with /api
    for name in names:  # the editor shows every template with its thumbnail
        thumbnail = server.get(f"/api/workflow_templates/unidit/{urllib.parse.quote(name)}.jpg")
        assert thumbnail.status == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumbnail.body)).size == (256, 256)
    assert server.get("/api/workflow_templates/unidit/api%2FText%20to%20image.json").status == 404
    assert server.get("/templates/index.json").json() == [] and server.get("/templates/index.fr.json").json() == []
    assert server.get("/templates/index_logo.json").json() == {}
    assert server.get("/templates/default-1.webp").status == 404


# ---- settings and user data -----------------------------------------------------------------------------------

def test_settings_round_trip_and_persist_under_the_user_folder(server):
    assert server.post("/api/settings/Comfy.InstalledVersion", json.dumps("1.58.1")).status == 200
    assert server.post("/api/settings", {"Comfy.ColorPalette": "dark", "Comfy.Locale": "en"}).status == 200
    assert server.get("/api/settings/Comfy.ColorPalette").json() == "dark"
    assert server.get("/api/settings/Unknown.Setting").json() is None
    settings = server.get("/api/settings").json()
    assert settings["Comfy.InstalledVersion"] == "1.58.1" and settings["Comfy.Locale"] == "en"
    stored = json.loads((server.folders["user"] / "default" / "comfy.settings.json").read_text())
    assert stored == settings


def test_userdata_files_round_trip(server):
    workflow = json.dumps({"nodes": [], "links": []}).encode()
    saved = server.post("/api/userdata/workflows%2Fmine.json?overwrite=true&full_info=true", workflow)
    assert saved.status == 200 and saved.json()["path"] == "workflows/mine.json"
    assert saved.json()["size"] == len(workflow)
    assert server.get("/api/userdata/workflows%2Fmine.json").body == workflow
    assert server.post("/api/userdata/workflows%2Fmine.json?overwrite=false", b"{}").status == 409
    assert server.get("/api/userdata?dir=workflows").json() == ["mine.json"]
    assert server.get("/api/userdata?dir=workflows&split=true").json() == [["mine.json", "mine.json"]]
    moved = server.post("/api/userdata/workflows%2Fmine.json/move/workflows%2Fsub%2Ftheirs.json")
    assert moved.status == 200 and moved.json() == "workflows/sub/theirs.json"
    assert server.get("/api/userdata?dir=workflows&recurse=true").json() == ["sub/theirs.json"]
    listing = server.get("/api/v2/userdata?path=workflows").json()
    assert [(e["name"], e["type"]) for e in listing] == [("sub", "directory"), ("theirs.json", "file")]
    assert (server.folders["user"] / "default/workflows/sub/theirs.json").read_bytes() == workflow
    assert server.request("DELETE", "/api/userdata/workflows%2Fsub%2Ftheirs.json").status == 204
    assert server.get("/api/userdata/workflows%2Fsub%2Ftheirs.json").status == 404
    assert server.get("/api/userdata?dir=nothing-here").status == 404
    templates = b'[{"name": "mine", "data": "{}"}]'
    assert server.post("/api/userdata/comfy.templates.json", templates).status == 200
    assert server.get("/api/userdata/comfy.templates.json").body == templates
    assert server.request("DELETE", "/api/userdata/comfy.templates.json").status == 204


# ---- uploads and views ----------------------------------------------------------------------------------------

def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_then_view_with_comfyui_naming(server):
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    first = server.post("/upload/image", *multipart({"subfolder": "up"}, filename="pic.png", data=red))
    assert first.json() == {"name": "pic.png", "subfolder": "up", "type": "input"}
    again = server.post("/api/upload/image", *multipart({"subfolder": "up"}, filename="pic.png", data=red))
    assert again.json()["name"] == "pic.png"  # same content: reused
    other = server.post("/api/upload/image", *multipart({"subfolder": "up"}, filename="pic.png", data=blue))
    assert other.json()["name"] == "pic (1).png"
    replaced = server.post("/api/upload/image", *multipart({"subfolder": "up", "overwrite": "true"},
                                                           filename="pic.png", data=blue))
    assert replaced.json()["name"] == "pic.png"
    view = server.get("/api/view?filename=pic.png&subfolder=up&type=input")
    assert view.status == 200 and view.body == blue and view.headers["content-type"] == "image/png"
    assert server.get("/view?filename=pic%20(1).png%20[input]&subfolder=up").body == blue
    preview = server.get("/api/view?filename=pic.png&subfolder=up&type=input&preview=webp;50")
    assert preview.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(preview.body)).convert("RGB").getpixel((1, 1))[2] > 200
    to_output = server.post("/api/upload/image", *multipart({"type": "output"}, filename="out.png", data=red))
    assert to_output.json()["type"] == "output" and (server.folders["output"] / "out.png").read_bytes() == red


def test_an_upload_with_overwrite_replaces_an_input_but_never_an_output(server):
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    server.post("/api/upload/image", *multipart({"type": "output"}, filename="kept.png", data=red))
    replacing = server.post("/api/upload/image", *multipart({"type": "output", "overwrite": "true"},
                                                            filename="kept.png", data=blue))
    assert replacing.json() == {"name": "kept (1).png", "subfolder": "", "type": "output"}
    assert (server.folders["output"] / "kept.png").read_bytes() == red
    assert (server.folders["output"] / "kept (1).png").read_bytes() == blue
    server.post("/api/upload/image", *multipart({}, filename="mask.png", data=red))
    replaced = server.post("/api/upload/image", *multipart({"overwrite": "1"}, filename="mask.png", data=blue))
    assert replaced.json()["name"] == "mask.png" and (server.folders["input"] / "mask.png").read_bytes() == blue


def test_html_is_served_as_a_download_not_a_page(server):
    (server.folders["output"] / "page.html").write_text("<script>alert(1)</script>")
    response = server.get("/api/view?filename=page.html")
    assert response.status == 200 and response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")


# ---- WebSocket --------------------------------------------------------------------------------------------------

async def collect_until_done(ws, prompt_id: str) -> list:
    """Every message until the prompt's `executing` with node null: (type, data) or ("binary", bytes)."""
    messages = []
    while True:
        message = await asyncio.wait_for(ws.receive(), 30)
        if message.type == aiohttp.WSMsgType.BINARY:
            messages.append(("binary", message.data))
            continue
        event = json.loads(message.data)
        messages.append((event["type"], event["data"]))
        if event["type"] == "executing" and event["data"]["node"] is None \
                and event["data"]["prompt_id"] == prompt_id:
            return messages


def run_as_client(server, client_id: str, prompt: dict) -> tuple[str, list]:
    """Queue ``prompt`` as WebSocket client ``client_id``; its id and every message it got until it was done."""
    async def run():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/ws?clientId={client_id}")
            await ws.receive_json()
            response = await session.post(f"{server.url}/api/prompt", json={"prompt": prompt, "client_id": client_id})
            prompt_id = (await response.json())["prompt_id"]
            return prompt_id, await collect_until_done(ws, prompt_id)

    return asyncio.run(run())


def test_websocket_sequence_previews_and_reconnect(server):
    async def run():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/ws?clientId=viewer-1")
            first = await ws.receive_json()
            assert first == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                        "sid": "viewer-1"}}
            prompt = {"1": {"class_type": "Previewing", "inputs": {"steps": 2}}}
            response = await session.post(f"{server.url}/prompt", json={"prompt": prompt, "client_id": "viewer-1"})
            prompt_id = (await response.json())["prompt_id"]
            messages = await collect_until_done(ws, prompt_id)
            kinds = [kind for kind, _ in messages if kind != "status"]
            assert kinds == ["execution_start", "execution_cached", "progress_state", "executing",
                             "progress_state", "progress", "binary", "progress_state", "progress", "binary",
                             "executed", "progress_state", "execution_success", "executing"]
            assert [kind for kind, _ in messages][-2:] == ["status", "executing"]
            frame = next(data for kind, data in messages if kind == "binary")
            assert struct.unpack(">II", frame[:8]) == (1, 1)  # PREVIEW_IMAGE, JPEG
            assert Image.open(io.BytesIO(frame[8:])).convert("RGB").getpixel((8, 8))[0] > 200
            executed = next(data for kind, data in messages if kind == "executed")
            assert executed == {"node": "1", "display_node": "1", "output": {"text": ["2 steps"]},
                                "prompt_id": prompt_id}
            await ws.close()

            # the same client id again, now declaring preview metadata: binary frames of type 4
            ws = await session.ws_connect(f"{server.url}/ws?clientId=viewer-1")
            assert (await ws.receive_json())["data"]["sid"] == "viewer-1"
            await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            assert (await ws.receive_json())["type"] == "feature_flags"
            prompt["1"]["inputs"]["steps"] = 3
            response = await session.post(f"{server.url}/prompt", json={"prompt": prompt, "client_id": "viewer-1"})
            prompt_id = (await response.json())["prompt_id"]
            frames = [data for kind, data in await collect_until_done(ws, prompt_id) if kind == "binary"]
            assert len(frames) == 3
            kind, length = struct.unpack(">II", frames[0][:8])
            metadata = json.loads(frames[0][8:8 + length])
            assert kind == 4 and metadata["node_id"] == "1" and metadata["prompt_id"] == prompt_id
            assert metadata["image_type"] == "image/jpeg"
            await ws.close()

    asyncio.run(run())


def test_a_pack_workflow_runs_with_sampler_previews_and_free_unloads_the_model(server):
    prompt = json.loads((ROOT / "workflows/api/Text to image.json").read_text())
    prompt["1"]["inputs"].update(bundle="tiny.safetensors", device="cpu", dtype="fp32")
    prompt["3"]["inputs"].update(width=32, height=32)
    prompt["5"]["inputs"]["steps"] = 2
    assert "tiny.safetensors" in server.get("/api/object_info/UniDiTLoader").json()["UniDiTLoader"]["input"][
        "required"]["bundle"][0]

    prompt_id, messages = run_as_client(server, "pack-user", prompt)
    assert [data["value"] for kind, data in messages if kind == "progress" and data["node"] == "5"] == [1, 2]
    assert sum(kind == "binary" for kind, _ in messages) == 2
    image = server.wait_for_history(prompt_id)["outputs"]["7"]["images"][0]
    assert Image.open(server.folders["output"] / image["subfolder"] / image["filename"]).size == (32, 32)
    assert len(STORE) >= 1
    assert server.post("/api/free", {"unload_models": True}).status == 200
    for _ in range(500):
        if len(STORE) == 0:
            break
        threading.Event().wait(0.01)
    assert len(STORE) == 0


def test_a_failing_prompt_reports_its_error_without_server_paths(server):
    prompt = solid_prompt(1, 1, 1, "../../escape")

    prompt_id, messages = run_as_client(server, "failing", prompt)
    error = next(data for kind, data in messages if kind == "execution_error")
    assert error["node_id"] == "2" and error["node_type"] == "SaveImage"
    assert "must stay inside the output folder" in error["exception_message"]
    text = json.dumps(messages) + server.get(f"/api/history/{prompt_id}").body.decode()
    assert str(server.folders["output"].parent) not in text and str(ROOT) not in text
    assert server.wait_for_history(prompt_id)["status"]["status_str"] == "error"


def test_a_second_connection_with_the_same_client_id_takes_over(server):
    async def run():
        async with aiohttp.ClientSession() as session:
            old = await session.ws_connect(f"{server.url}/ws?clientId=tab")
            await old.receive_json()
            new = await session.ws_connect(f"{server.url}/ws?clientId=tab")
            assert (await new.receive_json())["data"]["sid"] == "tab"
            for index in range(2):  # the second prompt after the old connection closed
                response = await session.post(f"{server.url}/prompt", json={
                    "prompt": solid_prompt(index, 0, 0, "takeover"), "client_id": "tab"})
                prompt_id = (await response.json())["prompt_id"]
                kinds = [kind for kind, _ in await collect_until_done(new, prompt_id)]
                assert "execution_success" in kinds
                if index == 0:
                    await old.close()
            await new.close()

    asyncio.run(run())


def test_a_client_that_reconnects_mid_run_is_told_the_running_node(server, gate_closed):
    async def run():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/ws?clientId=flaky")
            await ws.receive_json()
            response = await session.post(f"{server.url}/prompt", json={"prompt": gated_prompt(99),
                                                                       "client_id": "flaky"})
            prompt_id = (await response.json())["prompt_id"]
            await asyncio.to_thread(wait_until_running, server, prompt_id)
            while (await ws.receive_json())["type"] != "executing":
                pass
            await ws.close()
            ws = await session.ws_connect(f"{server.url}/ws?clientId=flaky")
            first, second = await ws.receive_json(), await ws.receive_json()
            GATE.set()
            rest = await collect_until_done(ws, prompt_id)
            await ws.close()
            return prompt_id, first, second, rest

    prompt_id, first, second, rest = asyncio.run(run())
    assert first["type"] == "status" and first["data"]["sid"] == "flaky"
    assert second == {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": prompt_id}}
    assert [kind for kind, _ in rest][-3:] == ["execution_success", "status", "executing"]


def test_serve_without_the_editor_names_the_extra_to_install(monkeypatch, tmp_path, capsys):
    from unidit.host.cli import main

    monkeypatch.setitem(sys.modules, "comfyui_frontend_package", None)  # as if not installed
    folders = [f"--{kind}-directory={tmp_path / kind}" for kind in ("output", "input", "temp", "user")]
    assert main(["serve", "--port", "0", *folders]) == 2
    assert "pip install 'comfyui-unidit[serve]'" in capsys.readouterr().err
