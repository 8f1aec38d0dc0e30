"""The resident model store: a process-wide registry of loaded models of every family.

A model is loaded once per (files, dtype, device) and stays resident between runs; nodes pass around
:class:`ModelHandle` s, light keys into the store, never the tensors (so caches hold handles, not copies). A
file's identity is its resolved path, size and modification time (for a diffusers folder: its files'), so a
replaced file loads afresh. Loads are counted, so tests and benchmarks can prove that a second run reloads
nothing.

Device memory: a node asks for the parts it is about to use and the room its computation needs
(:meth:`ModelStore.model`). Inside ComfyUI the weights wait on ComfyUI's offload device and its memory manager
moves them (``comfy_bridge.ManagedModules``): it makes room first, loads a part partly when short (lowvram),
evicts parts for other models, honours --lowvram / --novram and the unet dtype flags, and ``/free`` unloads them.
Standalone the weights sit on the device; with a ``--vram-budget`` the diffusion model keeps as many blocks on
the device as fit and streams the others in (``model/block_swap.py``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import torch

from . import comfy_bridge, memory_budget
from .families import FamilyModel, ModelFiles, Placement, load_model
from .lora import read_lora
from .model.attention import check_backend_name
from .model.block_swap import BlockSwap, SwapPlan
from .model.compile import compile_blocks
from .previews import PREVIEW_METHODS

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
    matrix_dtype: Optional[str] = None   # the diffusion model's matrices stored narrower (ComfyUI's fp8 flags)
    preview: str = "auto"                # sampling previews: auto (the host's choice) or a previews.PREVIEW_METHODS
    compiled: bool = False               # torch.compile the transformer blocks
    loras: tuple = ()                    # (FileIdentity, strength) of the LoRAs applied, in order

    @property
    def key(self) -> tuple:
        return (self.files, self.dtype, self.device, self.matrix_dtype, self.compiled)

    @property
    def name(self) -> str:
        return " + ".join(Path(f.path).name for f in self.files)

    def with_lora(self, path: Path, strength: float) -> "ModelHandle":
        """This handle with one more LoRA (the base model stays the same resident model)."""
        return replace(self, loras=self.loras + ((FileIdentity.of("lora", path), float(strength)),))

    def model_files(self) -> ModelFiles:
        return ModelFiles(**{f.role: Path(f.path) for f in self.files})


class ModelStore:
    def __init__(self):
        self._models: dict = {}
        self._managed: dict = {}
        self._swaps: dict = {}
        self._loras: dict = {}
        self._lock = threading.RLock()
        self.loads = 0  # models read from disk since the process started

    def handle(self, files: Union[ModelFiles, os.PathLike, str], device: str = "auto", dtype: str = "auto",
               attention: str = "sdpa", preview: str = "auto", compiled: bool = False) -> ModelHandle:
        """A handle for a model's files (one bundle path, or :class:`ModelFiles`)."""
        if not isinstance(files, ModelFiles):
            files = ModelFiles(Path(files))
        identities = tuple(FileIdentity.of(role, path) for role, path in files.paths().items())
        chosen_device = str(comfy_bridge.default_device()) if device == "auto" else check_device(device)
        flag_dtype, matrix_dtype = comfy_bridge.unet_precision()
        chosen_dtype = resolve_dtype(flag_dtype if dtype == "auto" and flag_dtype else dtype, chosen_device)
        check_backend_name(attention)
        matrix = str(matrix_dtype).replace("torch.", "") if matrix_dtype is not None else None
        if preview != "auto" and preview not in PREVIEW_METHODS:
            raise ValueError(f"unknown preview method {preview!r}; choose auto or one of {list(PREVIEW_METHODS)}")
        return ModelHandle(identities, chosen_device, chosen_dtype, attention, matrix, preview, compiled)

    def model(self, handle: ModelHandle, parts: Optional[tuple] = None, samples_shape: Optional[tuple] = None,
              guided: bool = True) -> FamilyModel:
        """The loaded model of ``handle``, loading it on first use, with ``parts`` (names of
        ``FamilyModel.modules()``; default all) ready on the device, and room for their computation on latents of
        ``samples_shape`` (with both guidance branches when ``guided``). Nodes pass the parts they use, so the
        others can make room."""
        with self._lock:
            model = self._models.get(handle.key)
            if model is None:
                model = self._load(handle)
            chosen = tuple(model.modules()) if parts is None else parts
            room = sum(model.activation_bytes(part, samples_shape, guided) for part in chosen) if samples_shape else 0
            if room and model.device.type == "cpu" and not self._managed[handle.key].active:
                # standalone on the CPU the device's memory is the host's (in ComfyUI its manager decides)
                b, _, f, h, w = samples_shape
                size = model.capabilities.spatial_factor
                memory_budget.require(room, f"The {' and '.join(chosen)} of {model.capabilities.family} on {b} x {f} "
                                            f"latent frames of {w * size}x{h * size}",
                                      "the width, height, frames, views or batch size")
            self._managed[handle.key].ready(chosen, room)
            model.set_attention_backend(handle.attention)
            loras = [(self._lora(handle, model, identity), strength) for identity, strength in handle.loras]
            return model.with_loras(loras) if loras and "denoiser" in chosen else model

    def _lora(self, handle: ModelHandle, model: FamilyModel, identity: FileIdentity):
        """A LoRA file read for this model's layers (once per file version and model)."""
        key = (identity, handle.key)
        if key not in self._loras:
            targets = model.denoiser.lora_targets()[0]
            self._loras[key] = read_lora(identity.path, targets, model.denoiser.lora_name)
            log.info("UniDiT: LoRA %s: %d layers, rank %d", Path(identity.path).name,
                     len(self._loras[key].layers), self._loras[key].rank)
        return self._loras[key]

    def _load(self, handle: ModelHandle) -> FamilyModel:
        started = time.perf_counter()
        device = torch.device(handle.device)
        matrix = getattr(torch, handle.matrix_dtype) if handle.matrix_dtype else None
        placement = Placement(device, DTYPES[handle.dtype], comfy_bridge.weights_device(device), matrix)
        model = load_model(handle.model_files(), placement)
        self._swaps[handle.key] = self._swap_blocks(model, device)
        if handle.compiled:
            for blocks in model.block_lists():
                compile_blocks(blocks)
        self._models[handle.key] = model
        self._managed[handle.key] = comfy_bridge.ManagedModules(model.modules(), device)
        self.loads += 1
        log.info("UniDiT: loaded %s (%s) for %s as %s in %.2f s (%.1fM parameters)", handle.name,
                 model.capabilities.family, handle.device, handle.dtype, time.perf_counter() - started,
                 model.parameter_count() / 1e6)
        return model

    @staticmethod
    def _swap_blocks(model: FamilyModel, device: torch.device) -> list:
        """Standalone with a ``--vram-budget``: the diffusion model keeps the blocks that fit beside its other
        weights and the other parts on the device, and streams the rest in (``model/block_swap.py``)."""
        budget = comfy_bridge.host().compute.vram_budget_gb
        if comfy_bridge.in_comfyui() or budget is None or device.type == "cpu":
            return []
        lists = model.block_lists()
        block_weights = sum(p.numel() * p.element_size() for blocks in lists for p in blocks.parameters())
        total = sum(p.numel() * p.element_size() for module in model.modules().values() for p in module.parameters())
        per_list = max(0, int(budget * 1e9) - (total - block_weights)) // len(lists)
        swaps = []
        for blocks in lists:
            plan = SwapPlan.for_budget(blocks, per_list)
            if plan.offloaded:
                swaps.append(BlockSwap(blocks, plan.resident, device))
                log.info("UniDiT: %d of %d blocks on %s, the rest streamed in (--vram-budget %.1f GB)",
                         plan.resident, plan.blocks, device, budget)
        return swaps

    def __len__(self) -> int:
        """How many models are resident."""
        return len(self._models)

    def unload(self, handle: ModelHandle | None = None) -> int:
        """Drop one model (or all); returns how many were dropped."""
        with self._lock:
            keys = [handle.key] if handle is not None else list(self._models)
            dropped = 0
            self._loras = {k: v for k, v in self._loras.items() if k[1] not in keys}
            for key in keys:
                if self._models.pop(key, None) is not None:
                    self._managed.pop(key).release()
                    for swap in self._swaps.pop(key, []):
                        swap.remove()
                    dropped += 1
            if dropped and torch.cuda.is_available():
                torch.cuda.empty_cache()
            return dropped


STORE = ModelStore()


def check_device(device: str) -> str:
    """``device`` if this machine has it, else a ValueError saying what it has."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = device
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch has no CUDA device (torch "
                         f"{torch.__version__}); choose cpu" + (" or mps" if _mps_available() else ""))
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} asked for, but Apple's MPS is not available here; choose cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda (or cuda:N) or mps")
    return device


def available_devices() -> list[str]:
    """The device choices this machine has: auto and cpu, then cuda and mps where present."""
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if _mps_available() else [])


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" is fp32 on the CPU (half precision is very slow there) and bf16 (else fp16) on CUDA."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.startswith("mps"):
            return "fp16"
        return "fp32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {list(DTYPES)}")
    return dtype
