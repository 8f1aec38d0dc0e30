"""`unidit serve` under torchrun (host/lockstep.py): rank 0 serves, rank 1 executes every prompt with it."""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unidit.host.run import run_workflow

REPOSITORY = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WORKFLOW = REPOSITORY / "workflows/api/Text to image.json"

pytestmark = pytest.mark.skipif(shutil.which("torchrun", path=str(VENV_BIN)) is None,
                                reason="torchrun is not in this venv")


class TorchrunServer:
    """``torchrun --nproc-per-node 2 -m unidit.host.cli serve --port 0`` in ``folder``, its URL read from
    what rank 0 prints."""

    def __init__(self, folder: Path, split: str, timeout: float = 90):
        (folder / "tmp").mkdir()
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(folder / "tmp")}
        environment.pop("WORLD_SIZE", None)
        self.process = subprocess.Popen(
            [str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "unidit.host.cli",
             "serve", "--port", "0", "--parallel", split], cwd=folder, env=environment, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            match = re.search(r"serving the ComfyUI editor at (http://\S+)", line)
            self.url = match.group(1) if match else None

    def post(self, path: str, body: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        data = urllib.request.urlopen(request, timeout=30).read()
        return json.loads(data) if data else None

    def queue_prompt(self, steps: int, seed: int) -> str:
        prompt = json.loads(WORKFLOW.read_text())
        prompt["5"]["inputs"].update(steps=steps, seed=seed)
        return self.post("/prompt", {"prompt": prompt})["prompt_id"]

    def history(self, prompt_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = json.loads(urllib.request.urlopen(f"{self.url}/history/{prompt_id}", timeout=30).read())
            if prompt_id in entries:
                return entries[prompt_id]
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def stop(self, timeout: float = 30) -> int:
        """Ctrl+C, as a terminal sends it: SIGINT to torchrun, which passes it on to both ranks."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def test_serve_under_torchrun_runs_prompts_in_lockstep_interrupts_and_stops(tmp_path):
    server = TorchrunServer(tmp_path, "sequence")
    try:
        first = server.history(server.queue_prompt(steps=6, seed=1))
        assert first["status"]["status_str"] == "success", first["status"]
        assert len(list((tmp_path / "tmp").glob("unidit-rank1-*"))) == 1   # where rank 1 writes its files
        # An interrupt stops both ranks at the same step: the next prompt still runs in step on both.
        long_prompt = server.queue_prompt(steps=400, seed=2)
        time.sleep(1.5)
        server.post("/interrupt", {})
        interrupted = server.history(long_prompt)
        assert [event for event, _ in interrupted["status"]["messages"]][-1] == "execution_interrupted"
        server.post("/free", {"unload_models": True, "free_memory": True})   # on every rank
        after = server.history(server.queue_prompt(steps=6, seed=3))
        assert after["status"]["status_str"] == "success", after["status"]
    finally:
        server.stop()
    assert server.process.returncode is not None
    assert not list((tmp_path / "tmp").glob("unidit-rank*"))   # rank 1's scratch folder is gone
    written = sorted(path.name for path in (tmp_path / "output").rglob("*") if path.is_file())
    assert written == ["image_00001_.png", "image_00002_.png"]   # rank 0's outputs only
    prompt_file = tmp_path / "one_process.json"
    prompt = json.loads(WORKFLOW.read_text())
    prompt["5"]["inputs"].update(steps=6, seed=1)
    prompt_file.write_text(json.dumps(prompt))
    run_workflow(prompt_file, tmp_path / "one_process", input_dir=tmp_path / "input", progress=False)
    (expected,) = (tmp_path / "one_process").rglob("*.png")
    served = np.asarray(Image.open(tmp_path / "output/UniDiT/image_00001_.png"), dtype=np.int16)
    assert np.abs(served - np.asarray(Image.open(expected), dtype=np.int16)).max() <= 1
