"""Four WebSocket clients submit 25 prompts each at once: all 100 run, each client hears only about its own
prompts and in ComfyUI's order, the history holds all of them, and no output file is overwritten."""
import asyncio
import json

import aiohttp
import pytest
from PIL import Image

from server_testing import running_server, solid_prompt

CLIENTS, PROMPTS = 4, 25
PER_PROMPT = ("execution_start", "execution_cached", "progress_state", "executing", "executed", "progress",
              "execution_success", "execution_error", "execution_interrupted")


def colour(client: int, index: int) -> tuple:
    return (client * 60, index * 10, 7)


async def one_client(url: str, client: int) -> tuple[list, list]:
    """Queue this client's prompts (all with the same file prefix) and record every message until each is done."""
    client_id = f"client-{client}"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
            assert (await ws.receive_json())["data"]["sid"] == client_id
            prompt_ids = []
            for index in range(PROMPTS):
                response = await session.post(f"{url}/prompt", json={
                    "prompt": solid_prompt(*colour(client, index), prefix="shared/img"), "client_id": client_id})
                assert response.status == 200
                prompt_ids.append((await response.json())["prompt_id"])
            messages, done = [], set()
            while done != set(prompt_ids):
                message = await asyncio.wait_for(ws.receive(), 60)
                event = json.loads(message.data)
                messages.append((event["type"], event["data"]))
                if event["type"] == "executing" and event["data"]["node"] is None:
                    done.add(event["data"]["prompt_id"])
            return prompt_ids, messages


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("concurrent")) as server:
        async def all_clients():
            return await asyncio.gather(*(one_client(server.url, client) for client in range(CLIENTS)))

        yield server, asyncio.run(all_clients())


def test_every_client_hears_only_its_own_prompts_in_comfyui_order(run):
    _, results = run
    for prompt_ids, messages in results:
        mine = set(prompt_ids)
        assert {data["prompt_id"] for kind, data in messages if kind in PER_PROMPT} == mine
        for prompt_id in prompt_ids:
            indexed = [(i, kind, data) for i, (kind, data) in enumerate(messages)
                       if kind in PER_PROMPT and data.get("prompt_id") == prompt_id]
            kinds = [kind for _, kind, data in indexed]
            assert kinds[:2] == ["execution_start", "execution_cached"]
            assert kinds[-2:] == ["execution_success", "executing"] and indexed[-1][2]["node"] is None
            assert [data["node"] for _, kind, data in indexed if kind == "executing"] == ["1", "2", None]
            assert kinds.count("executed") == 1
            success, done = indexed[-2][0], indexed[-1][0]
            between = [kind for kind, _ in messages[success + 1:done]]
            assert between and between[-1] == "status"  # the shorter queue, then "done" (ComfyUI step 6 and 7)


def test_history_holds_all_prompts_and_no_file_was_overwritten(run):
    server, results = run
    history = server.get("/api/history").json()
    files = []
    for client, (prompt_ids, _) in enumerate(results):
        for index, prompt_id in enumerate(prompt_ids):
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success"
            image = entry["outputs"]["2"]["images"][0]
            path = server.folders["output"] / image["subfolder"] / image["filename"]
            assert Image.open(path).convert("RGB").getpixel((4, 4)) == colour(client, index)
            files.append(path)
    assert len(history) == CLIENTS * PROMPTS
    assert len(set(files)) == CLIENTS * PROMPTS
    written = sorted((server.folders["output"] / "shared").iterdir())
    assert written == sorted(files)
    assert [p.name for p in written] == [f"img_{n:05d}_.png" for n in range(1, CLIENTS * PROMPTS + 1)]
