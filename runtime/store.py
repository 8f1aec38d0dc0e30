"""The resident model store: a process-wide registry of loaded models of every family.

A model is loaded once per (files, dtype, device) and stays resident between runs; nodes pass around
:class:`ModelHandle` s, light keys into the store, never the tensors (so caches hold handles, not copies). A
file's identity is its resolved path, size and modification time (for a diffusers folder: its files'), so a
replaced file loads afresh. Loads are counted, so tests and benchmarks can prove that a second run reloads
nothing. Inside ComfyUI the modules are registered with ComfyUI's memory manager (``comfy_bridge.ManagedModules``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from . import comfy_bridge
from .families import FamilyModel, ModelFiles, load_model
from .model.attention import check_backend_name

log = logging.getLogger("unidit")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class FileIdentity:
    role: str          # "diffusion_model", "text_encoder", "vae", "low_noise"
    path: str
    size: int
    modified_ns: int

    @classmethod
    def of(cls, role: str, path: Path) -> "FileIdentity":
        resolved = Path(os.path.realpath(path))
        if resolved.is_dir():
            files = [p for p in resolved.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            modified = max((p.stat().st_mtime_ns for p in files), default=resolved.stat().st_mtime_ns)
            return cls(role, str(resolved), size, modified)
        if not resolved.is_file():
            raise FileNotFoundError(f"model file {Path(path).name!r} not found")
        stat = resolved.stat()
        return cls(role, str(resolved), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class ModelHandle:
    """What a UNIDIT_MODEL socket carries: which files, on which device, in which dtype, with which attention."""

    files: tuple[FileIdentity, ...]
    device: str
    dtype: str
    attention: str

    @property
    def key(self) -> tuple:
        return (self.files, self.dtype, self.device)

    @property
    def name(self) -> str:
        return " + ".join(Path(f.path).name for f in self.files)

    def model_files(self) -> ModelFiles:
        return ModelFiles(**{f.role: Path(f.path) for f in self.files})


class ModelStore:
    def __init__(self):
        self._models: dict = {}
        self._managed: dict = {}
        self._lock = threading.RLock()
        self.loads = 0  # models read from disk since the process started

    def handle(self, files: Union[ModelFiles, os.PathLike, str], device: str = "auto", dtype: str = "auto",
               attention: str = "sdpa") -> ModelHandle:
        """A handle for a model's files (one bundle path, or :class:`ModelFiles`)."""
        if not isinstance(files, ModelFiles):
            files = ModelFiles(Path(files))
        identities = tuple(FileIdentity.of(role, path) for role, path in files.paths().items())
        chosen_device = str(comfy_bridge.default_device()) if device == "auto" else device
        chosen_dtype = resolve_dtype(dtype, chosen_device)
        check_backend_name(attention)
        return ModelHandle(identities, chosen_device, chosen_dtype, attention)

    def model(self, handle: ModelHandle) -> FamilyModel:
        """The loaded model of ``handle``, loading it on first use; ready on its device."""
        with self._lock:
            model = self._models.get(handle.key)
            if model is None:
                started = time.perf_counter()
                model = load_model(handle.model_files(), device=handle.device, dtype=DTYPES[handle.dtype])
                self._models[handle.key] = model
                self._managed[handle.key] = comfy_bridge.ManagedModules(model.modules(), torch.device(handle.device))
                self.loads += 1
                log.info("UniDiT: loaded %s (%s) on %s as %s in %.2f s (%.1fM parameters)", handle.name,
                         model.capabilities.family, handle.device, handle.dtype, time.perf_counter() - started,
                         model.parameter_count() / 1e6)
            self._managed[handle.key].ready()
            model.set_attention_backend(handle.attention)
            return model

    def __len__(self) -> int:
        """How many models are resident."""
        return len(self._models)

    def is_loaded(self, handle: ModelHandle) -> bool:
        return handle.key in self._models

    def unload(self, handle: ModelHandle | None = None) -> int:
        """Drop one model (or all); returns how many were dropped."""
        with self._lock:
            keys = [handle.key] if handle is not None else list(self._models)
            dropped = 0
            for key in keys:
                if self._models.pop(key, None) is not None:
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
