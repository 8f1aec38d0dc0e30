"""Malformed and hostile requests to `unidit serve`: each gets the right status (ComfyUI's where it has one) with a
JSON error body, never a 5xx, no absolute server path in the answer, nothing written outside the served
folders, and the server keeps serving."""
import json
import os
import sys
from pathlib import Path

import pytest

from server_testing import TEST_NODES, chain, multipart, running_server, solid_prompt

ROOT = Path(__file__).resolve().parents[2]


class BrokenDeclaration:
    """A node whose INPUT_TYPES fails (naming a private path)."""

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        raise RuntimeError("cannot list /srv/private/models")


class BrokenSignature:
    """An output node whose IS_CHANGED fails: an error outside any node's run."""

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    @classmethod
    def IS_CHANGED(cls, value):
        raise RuntimeError("cannot stat /srv/private/state.bin")

    def run(self, value):
        return {}


HOSTILE_NODES = {**TEST_NODES, "BrokenDeclaration": BrokenDeclaration,
                 "BrokenSignature": BrokenSignature}
PRIVATE = "/srv/private"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A server with small body limits, and links inside its folders that point outside them."""
    root = tmp_path_factory.mktemp("hostile")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    with running_server(root / "served", HOSTILE_NODES, max_json_size_mb=1,
                        max_upload_size_mb=2) as server:
        for folder in (server.folders["output"], server.folders["input"], server.folders["user"] / "default"):
            (folder / "linkdir").symlink_to(outside, target_is_directory=True)
            (folder / "link.txt").symlink_to(outside / "secret.txt")
        (server.folders["user"] / "default" / "plain.txt").write_text("plain")
        (server.folders["output"] / "plain.txt").write_text("plain")
        yield server, root, outside


def prompt_body(prompt, **fields) -> dict:
    return {"prompt": prompt, **fields}


def with_inputs(node_id: str, **inputs) -> dict:
    prompt = solid_prompt(1, 2, 3)
    prompt[node_id]["inputs"].update(inputs)
    return prompt


CYCLE = {"1": {"class_type": "Invert", "inputs": {"image": ["2", 0]}},
         "2": {"class_type": "Invert", "inputs": {"image": ["1", 0]}},
         "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
JSON = {"Content-Type": "application/json"}
UPLOAD = "/api/upload/image"


def multipart_raw(*part_headers: bytes, data: bytes = b"xyz") -> tuple[bytes, dict]:
    """A multipart body whose first part has exactly these header lines, then a well-formed image part."""
    first = b"--B\r\n" + b"\r\n".join(part_headers) + b"\r\n\r\n" + data + b"\r\n"
    image = b'--B\r\nContent-Disposition: form-data; name="image"; filename="fine.png"\r\n\r\nxyz\r\n'
    return first + image + b"--B--\r\n", {"Content-Type": "multipart/form-data; boundary=B"}


REBINDING = {"Host": "evil.example", "Origin": "http://evil.example"}

CASES = [
    # id, method, path, body, headers, status, text the body must contain
    ("prompt: invalid JSON", "POST", "/api/prompt", b"{not json", JSON, 400, "invalid_json"),
    ("prompt: empty body", "POST", "/api/prompt", b"", JSON, 400, "invalid_json"),
    ("prompt: body is a list", "POST", "/api/prompt", [1, 2], None, 400, "invalid_request"),
    ("prompt: no prompt", "POST", "/api/prompt", {"client_id": "x"}, None, 400, "no_prompt"),
    ("prompt: prompt is a list", "POST", "/api/prompt", prompt_body([1, 2]), None, 400, "invalid_prompt"),
    ("prompt: number is a string", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3), number="3"), None,
     400, "invalid_number"),
    ("prompt: number overflows to infinity", "POST", "/api/prompt", b'{"prompt": {}, "number": 1e400}', JSON, 400,
     "invalid_number"),
    ("prompt: number too large for a float", "POST", "/api/prompt", b'{"prompt": {}, "number": 1' + b"0" * 400 + b"}",
     JSON, 400, "invalid_number"),
    ("prompt: NaN in the body", "POST", "/api/prompt", b'{"prompt": {}, "number": NaN}', JSON, 400,
     "invalid_json"),
    ("prompt: 5000-digit integer", "POST", "/api/prompt", b'{"prompt": {}, "number": ' + b"9" * 5000 + b"}",
     JSON, 400, "invalid_json"),
    ("prompt: inputs is a list", "POST", "/api/prompt",
     prompt_body({"1": {"class_type": "SaveImage", "inputs": [1]}}), None, 400, "invalid_prompt"),
    ("prompt: node is a string", "POST", "/api/prompt", prompt_body({"1": "SaveImage"}), None, 400,
     "invalid_prompt"),
    ("prompt: unknown class", "POST", "/api/prompt", prompt_body({"1": {"class_type": "Nope", "inputs": {}}}),
     None, 400, "missing_node_type"),
    ("prompt: no class_type", "POST", "/api/prompt", prompt_body({"1": {"inputs": {}}}), None, 400,
     "missing_node_type"),
    ("prompt: no output node", "POST", "/api/prompt", prompt_body({"1": solid_prompt(1, 2, 3)["1"]}), None, 400,
     "prompt_no_outputs"),
    ("prompt: missing input", "POST", "/api/prompt",
     prompt_body({"2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}), None, 400,
     "required_input_missing"),
    ("prompt: value above max", "POST", "/api/prompt", prompt_body(with_inputs("1", red=300)), None, 400,
     "value_bigger_than_max"),
    ("prompt: value below min", "POST", "/api/prompt", prompt_body(with_inputs("1", size=0)), None, 400,
     "value_smaller_than_min"),
    ("prompt: wrong value type", "POST", "/api/prompt", prompt_body(with_inputs("1", red="red")), None, 400,
     "invalid_input_type"),
    ("prompt: Infinity as a value", "POST", "/api/prompt",
     b'{"prompt": {"1": {"class_type": "SolidImage", "inputs": {"red": Infinity}}}}', JSON, 400, "invalid_json"),
    ("prompt: link to a missing node", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["9", 0])), None,
     400, "bad_linked_input"),
    ("prompt: link to a missing slot", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["1", 5])), None,
     400, "bad_linked_input"),
    ("prompt: wrong slot type", "POST", "/api/prompt",
     prompt_body({"1": {"class_type": "LoadImage", "inputs": {"image": "unidit_example.png"}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 1], "filename_prefix": "x"}}}), None,
     400, "return_type_mismatch"),
    ("prompt: image not in the input folder", "POST", "/api/prompt",
     prompt_body({"1": {"class_type": "LoadImage", "inputs": {"image": "../../outside/secret.txt"}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}), None,
     400, "custom_validation_failed"),
    ("prompt: cycle", "POST", "/api/prompt", prompt_body(CYCLE), None, 400, "dependency_cycle"),
    ("prompt: node that cannot declare inputs", "POST", "/api/prompt",
     prompt_body({"1": {"class_type": "BrokenDeclaration", "inputs": {}}}), None, 400,
     "exception_during_validation"),
    ("prompt: more nodes than the cap", "POST", "/api/prompt", prompt_body(chain(10_001)), None, 400,
     "prompt_too_large"),
    ("prompt: bad partial targets", "POST", "/api/prompt",
     prompt_body(solid_prompt(1, 2, 3), partial_execution_targets="2"), None, 400, "partial_execution_targets"),
    ("prompt: extra_data is a list", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3), extra_data=[]),
     None, 400, "extra_data"),
    ("prompt: client_id is a number", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3), client_id=7), None,
     400, "client_id"),
    ("prompt: prompt_id with a path", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3), prompt_id="../x"),
     None, 400, "invalid_prompt_id"),
    ("prompt: 100k nested lists", "POST", "/api/prompt", b"[" * 100_000 + b"]" * 100_000, JSON, 400,
     "nested too deeply"),
    ("prompt: 100 nested objects", "POST", "/api/prompt",
     b'{"prompt": ' + b'{"a": ' * 100 + b"1" + b"}" * 101, JSON, 400, "nested too deeply"),
    ("prompt: body over the JSON limit", "POST", "/api/prompt", b'{"prompt": "' + b"x" * 1_200_000 + b'"}', JSON,
     413, "request_too_large"),
    ("queue: delete is not a list", "POST", "/api/queue", {"delete": "x"}, None, 400, "delete"),
    ("history: clear with bad JSON", "POST", "/api/history", b"{", JSON, 400, "invalid_json"),
    ("history: max_items not a number", "GET", "/api/history?max_items=ten", None, None, 400, "max_items"),
    ("free: flag is not a boolean", "POST", "/api/free", {"unload_models": "yes"}, None, 400, "unload_models"),
    ("settings: body is a list", "POST", "/api/settings", [1], None, 400, "invalid_request"),
    ("jobs: unknown status", "GET", "/api/jobs?status=bogus", None, None, 400, "bogus"),
    ("jobs: zero limit", "GET", "/api/jobs?limit=0", None, None, 400, "limit"),
    ("jobs: cancel with objects", "POST", "/api/jobs/cancel", {"job_ids": [{}]}, None, 400, "job_ids"),
    ("view: parent in filename", "GET", "/api/view?filename=../../outside/secret.txt", None, None, 400, ""),
    ("view: encoded parent", "GET", "/api/view?filename=%2e%2e%2f%2e%2e%2foutside%2fsecret.txt", None, None, 400,
     ""),
    ("view: absolute filename", "GET", "/api/view?filename=/etc/passwd", None, None, 400, ""),
    ("view: backslash parent", "GET", "/api/view?filename=..%5c..%5csecret.txt", None, None, 400, ""),
    ("view: parent subfolder", "GET", "/api/view?filename=secret.txt&subfolder=../../outside", None, None, 403, ""),
    ("view: absolute subfolder", "GET", "/view?filename=passwd&subfolder=/etc", None, None, 403, ""),
    ("view: double-encoded subfolder", "GET", "/api/view?filename=secret.txt&subfolder=%252e%252e", None, None,
     404, ""),
    ("view: unknown type", "GET", "/api/view?filename=x.png&type=models", None, None, 400, "invalid_type"),
    ("view: link to a file outside", "GET", "/api/view?filename=link.txt", None, None, 403, ""),
    ("view: subfolder linking outside", "GET", "/api/view?filename=secret.txt&subfolder=linkdir&type=input",
     None, None, 403, ""),
    ("view: NUL in filename", "GET", "/api/view?filename=a%00.png", None, None, 400, ""),
    ("view: 5000-character filename", "GET", "/api/view?filename=" + "a" * 5000, None, None, 400, "invalid_path"),
    ("upload: parent in file name", "POST", UPLOAD, *multipart({}, filename="../../evil.png"), 400, ""),
    ("upload: backslash file name", "POST", UPLOAD, *multipart({}, filename="..\\\\evil.png"), 400, ""),
    ("upload: parent subfolder", "POST", UPLOAD, *multipart({"subfolder": "../../outside"}), 400, ""),
    ("upload: absolute subfolder", "POST", UPLOAD, *multipart({"subfolder": "/tmp"}), 400, ""),
    ("upload: subfolder linking outside", "POST", UPLOAD, *multipart({"subfolder": "linkdir"}), 400, ""),
    ("upload: unknown type", "POST", UPLOAD, *multipart({"type": "models"}), 400, "invalid_type"),
    ("upload: not multipart", "POST", UPLOAD, {"image": "x"}, None, 400, "multipart"),
    ("upload: no image field", "POST", UPLOAD, *multipart({}, file_field="file"), 400, "image"),
    ("upload: over the size limit", "POST", UPLOAD, *multipart({}, data=b"x" * 3_000_000), 413, ""),
    ("userdata: encoded parent", "GET", "/api/userdata/..%2F..%2F..%2Foutside%2Fsecret.txt", None, None, 403, ""),
    ("userdata: encoded dots", "GET", "/api/userdata/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fsecret.txt", None, None,
     403, ""),
    ("userdata: double-encoded", "GET", "/api/userdata/..%252F..%252Fsecret.txt", None, None, 404, ""),
    ("userdata: absolute path", "POST", "/api/userdata/%2Ftmp%2Fevil.json", b"{}", None, 403, ""),
    ("userdata: link to a file outside", "GET", "/api/userdata/link.txt", None, None, 403, ""),
    ("userdata: write through a link", "POST", "/api/userdata/linkdir%2Fplanted.txt", b"x", None, 403, ""),
    ("userdata: move outside", "POST", "/api/userdata/comfy.settings.json/move/..%2F..%2Fstolen.json", None, None,
     403, ""),
    ("userdata: list a parent", "GET", "/api/userdata?dir=../..", None, None, 403, ""),
    ("userdata: list without dir", "GET", "/api/userdata", None, None, 400, ""),
    ("userdata: 5000-character name", "POST", "/api/userdata/" + "a" * 5000, b"x", None, 400, "invalid_path"),
    ("userdata: a file used as a folder", "POST", "/api/userdata/plain.txt%2Fx", b"x", None, 400, ""),
    ("v2 userdata: parent path", "GET", "/api/v2/userdata?path=..%2F..", None, None, 400, ""),
    ("origin: another site", "GET", "/api/queue", None, {"Origin": "http://evil.example"}, 403, "forbidden_origin"),
    ("origin: another port", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3)),
     {"Origin": "http://127.0.0.1:1"}, 403, "forbidden_origin"),
    ("origin: null", "POST", "/api/interrupt", b"", {"Origin": "null"}, 403, "forbidden_origin"),
    ("origin: websocket from another site", "GET", "/ws?clientId=x", None,
     {"Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 403, "forbidden_origin"),
    ("origin: cross-site fetch", "GET", "/api/settings", None, {"Sec-Fetch-Site": "cross-site"}, 403,
     "forbidden_origin"),
    ("origin: DNS rebinding, a read", "GET", "/api/history", None, {"Host": "evil.example:8188"}, 403,
     "forbidden_host"),
    ("origin: DNS rebinding, a write from the rebound page", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3)),
     REBINDING, 403, "forbidden_host"),
    ("origin: DNS rebinding, a file", "GET", "/api/view?filename=plain.txt", None, {"Host": "evil.example"}, 403,
     "forbidden_host"),
    ("origin: DNS rebinding, the websocket", "GET", "/ws?clientId=x", None,
     {**REBINDING, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 403, "forbidden_host"),
    ("origin: DNS rebinding, the editor page", "GET", "/", None, {"Host": "attacker.test"}, 403, "forbidden_host"),
    ("origin: a loopback look-alike name", "GET", "/api/queue", None, {"Host": "127.0.0.1.evil.example"}, 403,
     "forbidden_host"),
    ("origin: no port means port 80", "POST", "/api/prompt", prompt_body(solid_prompt(1, 2, 3)),
     {"Origin": "http://127.0.0.1"}, 403, "forbidden_origin"),
    ("origin: localhost without a port", "POST", "/api/interrupt", b"", {"Origin": "http://localhost"}, 403,
     "forbidden_origin"),
    ("origin: https on the same name", "GET", "/api/settings", None, {"Origin": "https://127.0.0.1"}, 403,
     "forbidden_origin"),
    ("origin: port out of range", "GET", "/api/queue", None, {"Origin": "http://127.0.0.1:99999"}, 400,
     "Malformed Host or Origin"),
    ("range: past the end of the file", "GET", "/api/view?filename=plain.txt", None, {"Range": "bytes=999-"}, 416,
     "range_not_satisfiable"),
    ("range: not a byte range", "GET", "/api/view?filename=plain.txt", None, {"Range": "bytes=abc"}, 416,
     "range_not_satisfiable"),
    ("range: several ranges", "GET", "/api/view?filename=plain.txt", None, {"Range": "bytes=0-1,3-4"}, 416,
     "range_not_satisfiable"),
    ("range: end before start", "GET", "/api/view?filename=plain.txt", None, {"Range": "bytes=4-1"}, 416,
     "range_not_satisfiable"),
    ("range: a 5000-digit start", "GET", "/api/view?filename=plain.txt", None, {"Range": "bytes=" + "9" * 5000 + "-"},
     416, "range_not_satisfiable"),
    ("range: past the end of a user file", "GET", "/api/userdata/plain.txt", None, {"Range": "bytes=100-"}, 416,
     "range_not_satisfiable"),
    ("range: past the end of an editor file", "GET", "/index.html", None, {"Range": "bytes=99999999-"}, 416,
     "range_not_satisfiable"),
    ("upload: control byte in a part's file name", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="image"; filename="a\x01.png"'), 400, "Malformed multipart"),
    ("upload: control byte in a part's header name", "POST", UPLOAD,
     *multipart_raw(b'Content-Disp\x01osition: form-data; name="type"'), 400, "Malformed multipart"),
    ("upload: NUL in a part's header", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="sub\x00folder"'), 400, "Malformed multipart"),
    ("upload: bare CR in a part's header", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="subfolder"\rX: y'), 400, "Malformed multipart"),
    ("upload: control byte in a part's type", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="subfolder"', b"Content-Type: text/\x02plain"), 400,
     "Malformed multipart"),
    ("upload: unknown transfer encoding", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="image"; filename="b.png"',
                    b"Content-Transfer-Encoding: rot13"), 400, "unknown content transfer encoding"),
    ("upload: unknown charset", "POST", UPLOAD,
     *multipart_raw(b'Content-Disposition: form-data; name="subfolder"', b"Content-Type: text/plain; charset=utf-99"),
     400, "Malformed multipart"),
    ("prompt: link index is text", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["1", "0"])), None, 400,
     "bad_linked_input"),
    ("prompt: link index is a float", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["1", 0.0])), None,
     400, "bad_linked_input"),
    ("prompt: link index is a boolean", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["1", False])),
     None, 400, "bad_linked_input"),
    ("prompt: link node id is a number", "POST", "/api/prompt", prompt_body(with_inputs("2", images=[1, 0])), None,
     400, "bad_linked_input"),
    ("prompt: link of three items", "POST", "/api/prompt", prompt_body(with_inputs("2", images=["1", 0, 0])), None,
     400, "bad_linked_input"),
    ("prompt: a list as a widget value", "POST", "/api/prompt", prompt_body(with_inputs("1", red=[1, 2])), None, 400,
     "bad_linked_input"),
    ("route: unknown", "GET", "/api/does/not/exist", None, None, 404, "not_found"),
    ("route: unknown POST", "POST", "/api/does/not/exist", b"{}", None, 404, "not_found"),
    ("route: wrong method", "PUT", "/api/prompt", b"{}", None, 405, "method_not_allowed"),
    ("websocket: no upgrade", "GET", "/ws?clientId=x", None, None, 400, "bad_request"),
]


@pytest.mark.parametrize("name, method, path, body, headers, status, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_request_gets_a_json_error(world, name, method, path, body, headers, status, expected):
    server, root, outside = world
    response = server.request(method, path, body, headers)
    assert response.status == status < 500, response.body[:300]
    assert_json_error(response, expected, root)
    assert server.get("/api/queue").status == 200


def assert_json_error(response, expected: str, root: Path) -> None:
    """A JSON error body in the host's shape that contains ``expected`` and no server path."""
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"type", "message", "details"}
    text = response.body.decode()
    assert expected in text
    for secret in (str(root), str(ROOT), sys.prefix, os.path.realpath(root), PRIVATE):
        assert secret not in text


def test_nothing_was_written_outside_and_the_server_still_runs_prompts(world):
    server, root, outside = world
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert sorted(p.name for p in root.iterdir()) == ["outside", "served"]
    prompt_id = server.queue_prompt(solid_prompt(9, 9, 9, "after"))
    assert server.wait_for_history(prompt_id)["status"]["status_str"] == "success"


def test_a_broken_node_is_left_out_of_object_info_and_asking_for_it_is_a_json_500(world):
    """A node whose declaration fails is the server's fault, not the client's: a 500 that names no path."""
    server, root, _ = world
    info = server.get("/api/object_info")
    assert info.status == 200 and "BrokenDeclaration" not in info.json() and "SaveImage" in info.json()
    broken = server.get("/api/object_info/BrokenDeclaration")
    assert broken.status == 500
    assert_json_error(broken, "internal_error", root)


def test_an_error_outside_any_node_is_reported_and_the_worker_goes_on(world):
    server, _, _ = world
    broken = server.queue_prompt({"1": {"class_type": "BrokenSignature", "inputs": {"value": 1}}})
    entry = server.wait_for_history(broken)
    assert entry["status"]["status_str"] == "error"
    event, error = entry["status"]["messages"][-1]
    assert event == "execution_error" and error["exception_type"] == "InternalError"
    assert PRIVATE not in json.dumps(entry)
    after = server.queue_prompt(solid_prompt(5, 5, 5, "after-broken"))
    assert server.wait_for_history(after)["status"]["status_str"] == "success"


def test_a_long_but_valid_chain_runs(world):
    server, _, _ = world
    prompt_id = server.queue_prompt(chain(50))
    assert server.wait_for_history(prompt_id)["status"]["status_str"] == "success"


def test_a_client_id_that_is_not_an_id_gets_a_fresh_one(world):
    import asyncio

    import aiohttp

    server, _, _ = world

    async def first_message(client_id: str) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.url}/ws", params={"clientId": client_id}) as ws:
                return await ws.receive_json()

    for hostile in ("../../x", "a" * 500, "<script>"):
        sid = asyncio.run(first_message(hostile))["data"]["sid"]
        assert sid != hostile and len(sid) == 32
    assert asyncio.run(first_message("fine-id"))["data"]["sid"] == "fine-id"
    assert json.loads(server.get("/api/prompt").body) == {"exec_info": {"queue_remaining": 0}}


def test_a_full_queue_answers_429_and_the_history_keeps_only_the_newest(tmp_path):
    with running_server(tmp_path, max_queue=0, max_history=2) as server:
        response = server.post("/api/prompt", {"prompt": solid_prompt(1, 2, 3)})
        assert response.status == 429 and response.json()["error"]["type"] == "queue_full"
        assert response.json()["node_errors"] == {}
        server.host.queue.max_pending = 10
        ids = [server.queue_prompt(solid_prompt(index, 0, 0, "bounded")) for index in range(4)]
        server.wait_for_history(ids[-1])
        assert list(server.get("/api/history").json()) == ids[-2:]
