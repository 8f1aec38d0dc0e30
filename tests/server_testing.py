"""Helpers for the tests of `unidit serve` (importable because pytest puts tests/ on the path): a server in a
background thread with temporary folders, raw HTTP requests (sent byte for byte, so hostile paths reach the
server unchanged), a tiny image node that makes a real file cheaply, and a node that reports progress with
previews as the sampler does."""
from __future__ import annotations

import contextlib
import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from unidit.runtime import comfy_bridge
from unidit.host.run import standalone_nodes
from unidit.host.server import ServerConfig, serve_in_background


class SolidImage:
    """A 1 x height x width image of one colour (0..255 per channel)."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        channel = ("INT", {"default": 0, "min": 0, "max": 255})
        return {"required": {"red": channel, "green": channel, "blue": channel,
                             "size": ("INT", {"default": 8, "min": 1, "max": 64})}}

    def make(self, red, green, blue, size):
        colour = torch.tensor([red, green, blue], dtype=torch.float32) / 255
        return (colour.expand(1, size, size, 3).clone(),)


class Previewing:
    """Reports ``steps`` steps of progress, each with a preview image (red), as the sampler does."""

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 2, "min": 1, "max": 10})}}

    def run(self, steps):
        progress = comfy_bridge.Progress(steps)
        for step in range(steps):
            progress.update(step + 1, Image.new("RGB", (16, 16), (255, 0, 0)))
        return {"ui": {"text": [f"{steps} steps"]}}


class Invert:
    """IMAGE -> IMAGE, to build long chains of valid links."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image):
        return (1 - image,)


TEST_NODES = {**standalone_nodes(), "SolidImage": SolidImage, "Previewing": Previewing, "Invert": Invert}


def chain(length: int) -> dict:
    """A solid image, ``length - 1`` Inverts one after the other, and a Save Image: ``length + 1`` nodes."""
    prompt = {"0": {"class_type": "SolidImage", "inputs": {"red": 1, "green": 1, "blue": 1, "size": 1}}}
    for index in range(1, length):
        prompt[str(index)] = {"class_type": "Invert", "inputs": {"image": [str(index - 1), 0]}}
    prompt["out"] = {"class_type": "SaveImage", "inputs": {"images": [str(length - 1), 0], "filename_prefix": "c"}}
    return prompt


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class ServedHost:
    url: str
    folders: dict      # output, input, temp, user -> Path
    host: object       # the HostServer

    @property
    def address(self) -> str:
        return self.url.split("//", 1)[1]

    def request(self, method: str, path: str, body=None, headers: Optional[dict] = None) -> Response:
        """One raw HTTP request; ``body`` may be bytes or a JSON-able value."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        connection = http.client.HTTPConnection(self.address, timeout=60)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, headers: Optional[dict] = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body=None, headers: Optional[dict] = None) -> Response:
        return self.request("POST", path, body, headers)

    def queue_prompt(self, prompt: dict, **fields) -> str:
        response = self.post("/api/prompt", {"prompt": prompt, **fields})
        assert response.status == 200, response.body
        return response.json()["prompt_id"]

    def wait_for_history(self, prompt_id: str, timeout: float = 60) -> dict:
        """The history entry of ``prompt_id`` once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/api/history/{prompt_id}").json()
            if prompt_id in entry:
                return entry[prompt_id]
            time.sleep(0.02)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


@contextlib.contextmanager
def running_server(root: Path, nodes: Optional[dict] = None, **config):
    """A `unidit serve` on an ephemeral loopback port, its folders under ``root``."""
    folders = {name: root / name for name in ("output", "input", "temp", "user")}
    settings = ServerConfig(port=0, output_directory=folders["output"], input_directory=folders["input"],
                            temp_directory=folders["temp"], user_directory=folders["user"], **config)
    with serve_in_background(settings, nodes if nodes is not None else TEST_NODES) as host:
        yield ServedHost(host.url, folders, host)


def solid_prompt(red: int, green: int, blue: int, prefix: str = "solid", size: int = 8) -> dict:
    return {"1": {"class_type": "SolidImage", "inputs": {"red": red, "green": green, "blue": blue, "size": size}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def multipart(fields: dict, file_field: str = "image", filename: str = "a.png", data: bytes = b"x",
              boundary: str = "unidit-test-boundary") -> tuple[bytes, dict]:
    """A multipart/form-data body with text ``fields`` and one file."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        {"Content-Type": f"multipart/form-data; boundary={boundary}"}
