"""The resident model store: a process-wide registry of loaded bundles.

A bundle is loaded once per (file identity, dtype, device) and stays resident between runs; nodes pass around
:class:`ModelHandle` s, light keys into the store, never the tensors (so caches hold handles, not copies).
Loads are counted, so tests and benchmarks can prove that a second run reloads nothing. Inside ComfyUI the
modules are registered with ComfyUI's memory manager (``comfy_bridge.ManagedModules``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import comfy_bridge
from .bundle import SHIPPED_BUNDLE, ModelBundle
from .model.attention import check_backend_name

log = logging.getLogger("unidit")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ModelHandle:
    """What a UNIDIT_MODEL socket carries: which file, on which device, in which dtype, with which attention."""

    path: str
    size: int
    modified_ns: int
    device: str
    dtype: str
    attention: str

    @property
    def key(self) -> tuple:
        return (self.path, self.size, self.modified_ns, self.dtype, self.device)

    @property
    def name(self) -> str:
        return Path(self.path).name


class ModelStore:
    def __init__(self):
        self._bundles: dict = {}
        self._managed: dict = {}
        self._lock = threading.RLock()
        self.loads = 0  # bundle files read from disk since the process started

    def handle(self, path: os.PathLike | str, device: str = "auto", dtype: str = "auto",
               attention: str = "sdpa") -> ModelHandle:
        """A handle for ``path`` (resolved, with its size and modification time as the file identity)."""
        resolved = Path(os.path.realpath(path))
        if not resolved.is_file():
            raise FileNotFoundError(f"model bundle {Path(path).name!r} not found")
        stat = resolved.stat()
        chosen_device = str(comfy_bridge.default_device()) if device == "auto" else device
        chosen_dtype = resolve_dtype(dtype, chosen_device)
        check_backend_name(attention)
        return ModelHandle(str(resolved), stat.st_size, stat.st_mtime_ns, chosen_device, chosen_dtype, attention)

    def bundle(self, handle: ModelHandle) -> ModelBundle:
        """The loaded bundle of ``handle``, loading it on first use; ready on its device."""
        with self._lock:
            bundle = self._bundles.get(handle.key)
            if bundle is None:
                started = time.perf_counter()
                bundle = ModelBundle.load(handle.path, device=handle.device, dtype=DTYPES[handle.dtype])
                self._bundles[handle.key] = bundle
                self._managed[handle.key] = comfy_bridge.ManagedModules(bundle.modules(), torch.device(handle.device))
                self.loads += 1
                log.info("UniDiT: loaded %s on %s as %s in %.2f s (%.1fM parameters)", handle.name, handle.device,
                         handle.dtype, time.perf_counter() - started, bundle.parameter_count() / 1e6)
            self._managed[handle.key].ready()
            bundle.dit.set_attention_backend(handle.attention)
            return bundle

    def __len__(self) -> int:
        """How many bundles are resident."""
        return len(self._bundles)

    def is_loaded(self, handle: ModelHandle) -> bool:
        return handle.key in self._bundles

    def unload(self, handle: ModelHandle | None = None) -> int:
        """Drop one bundle (or all); returns how many were dropped."""
        with self._lock:
            keys = [handle.key] if handle is not None else list(self._bundles)
            dropped = 0
            for key in keys:
                if self._bundles.pop(key, None) is not None:
                    self._managed.pop(key).release()
                    dropped += 1
            if dropped and torch.cuda.is_available():
                torch.cuda.empty_cache()
            return dropped


STORE = ModelStore()


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" is fp32 on the CPU (half precision is very slow there) and bf16 (else fp16) on CUDA."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {list(DTYPES)}")
    return dtype


def available_bundles() -> dict:
    """Bundle files by name from every model folder (first folder wins on a name clash)."""
    found = {}
    for folder in comfy_bridge.model_directories(SHIPPED_BUNDLE.parent):
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                found.setdefault(path.name, path)
    return found
