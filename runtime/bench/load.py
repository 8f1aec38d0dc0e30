"""`unidit bench load`: load a full-size Wan 2.1 1.3B diffusion model stored in bf16, and measure the memory.

The bench writes a synthetic checkpoint (random weights, the real key layout and shapes: 1.42 B parameters,
2.84 GB) into a temporary folder, then a fresh Python process loads it the way the Loader does
(``load_wan_dit``: modules on the meta device, filled in place from the memory-mapped file, kept in bf16 and
computed in fp32) and reads every weight once, so that the whole model is resident. Reported:

- ``seconds``: the load call; ``resident_seconds``: the load plus reading every page of every weight;
- ``peak_rss_ratio``: the process's peak resident memory while loading, above what it held before the load
  (Python, torch and the engine imported), divided by the file's size. Loading that copied or expanded the
  weights would show 2.0 (a copy) or 3.0 (bf16 expanded to fp32) and more;
- ``baseline_rss_gb`` and ``peak_rss_gb``: the process's resident memory before and at its peak.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..families.wan.dit import WanDiT, WanDiTConfig
from .synthetic import write_random_checkpoint

WAN_1_3B = WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, in_channels=16, out_channels=16)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(path: str) -> dict:
    """Runs in a fresh process: load ``path`` and read every weight, with the memory before and at the peak."""
    from ..families.wan.dit import load_wan_dit

    baseline = _status_kb("VmRSS")
    started = time.perf_counter()
    model = load_wan_dit(path, compute_dtype=torch.float32)
    loaded = time.perf_counter() - started
    with torch.no_grad():
        for parameter in model.parameters():  # one element per 4 KB page: every page is read, nothing is copied
            flat = parameter.view(-1)
            flat[::max(1, 4096 // flat.element_size())].float().sum()
    resident = time.perf_counter() - started
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
    return {"seconds": loaded, "resident_seconds": resident, "baseline_kb": baseline, "peak_kb": _status_kb("VmHWM"),
            "parameters": sum(p.numel() for p in model.parameters()), "dtypes": dtypes}


def run(progress: bool = True) -> dict:
    def say(message):
        if progress:
            print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="unidit-bench-load-") as folder:
        path = Path(folder) / "wan2.1_t2v_1.3B_bf16.safetensors"
        say(f"writing a synthetic Wan 2.1 1.3B bf16 checkpoint to {folder} ...")
        with torch.device("meta"):
            skeleton = WanDiT(WAN_1_3B)
        started = time.perf_counter()
        write_random_checkpoint(skeleton, path, torch.bfloat16, prefix="model.diffusion_model.")
        size = path.stat().st_size
        say(f"wrote {size / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s; loading it in a fresh process ...")
        code = f"import json; from {__name__} import measure; print(json.dumps(measure({str(path)!r})))"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the loading process failed:\n{result.stderr[-2000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    increase = (figures["peak_kb"] - figures["baseline_kb"]) * 1024
    return {
        "seconds": round(figures["seconds"], 2),
        "resident_seconds": round(figures["resident_seconds"], 2),
        "peak_rss_ratio": round(increase / size, 3),
        "file_gb": round(size / 1e9, 3),
        "baseline_rss_gb": round(figures["baseline_kb"] * 1024 / 1e9, 3),
        "peak_rss_gb": round(figures["peak_kb"] * 1024 / 1e9, 3),
        "parameters_b": round(figures["parameters"] / 1e9, 3),
        "weight_dtypes": figures["dtypes"],
        "model": "Wan 2.1 T2V 1.3B shape (dim 1536, 30 blocks, 12 heads), random bf16 weights, original layout",
    }
