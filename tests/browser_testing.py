"""Helpers for the browser tests (importable because pytest puts tests/ on the path): headless Chromium driven by
the Node scripts of tests/js with playwright-core, and the folder where screenshots are kept for a person to
look at."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JS_TOOLS = REPO / "tests" / "js"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SETUP_HINT = "run `bash scripts/test.sh`, which installs Chromium and the Node packages of tests/js"


def require_browser(purpose: str) -> str:
    """The path of `node`; fails the test (with how to set things up) when Chromium or playwright-core is
    missing."""
    node = shutil.which("node")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{purpose} needs Chromium at {CHROMIUM}: {SETUP_HINT}")
    if node is None or not (JS_TOOLS / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"{purpose} needs Node.js and tests/js/node_modules/playwright-core: {SETUP_HINT}")
    return node


def run_browser_script(script: str, arguments: list, timeout: float) -> object:
    """Run ``tests/js/<script>`` with ``arguments`` and return the JSON it prints; the test fails when the
    script does."""
    node = require_browser(script)
    done = subprocess.run([node, str(JS_TOOLS / script), *map(str, arguments)], capture_output=True, text=True,
                          timeout=timeout, cwd=JS_TOOLS, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert done.returncode == 0, f"{script} failed: {done.stderr[-3000:]}\n{SETUP_HINT} if Chromium is missing"
    return json.loads(done.stdout)
