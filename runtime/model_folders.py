"""Which models the model folders hold, by the names the Loader nodes show.

Each kind of part has its folder, as in ComfyUI's ``models/``: ``unidit`` (UniDiT bundles; the pack's own
``models/`` is searched too), ``diffusion_models``, ``text_encoders``, ``vae`` and ``loras``. A part is a
``.safetensors`` file (in a subfolder too: "wan/wan2.1_t2v_1.3B_fp16.safetensors") or a diffusers folder (a ``config.json`` beside
its safetensors or shards), listed as "folder/". The roots of diffusers pipelines in ``models/diffusers`` offer
their ``transformer/``, ``text_encoder/`` and ``vae/``, e.g. "Wan2.1-T2V-1.3B-Diffusers/transformer".
The first folder that holds a name wins.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import comfy_bridge
from .bundle import SHIPPED_BUNDLE

PARTS = ("diffusion_models", "text_encoders", "vae")
DIFFUSERS_SUBFOLDERS = {"diffusion_models": "transformer", "text_encoders": "text_encoder", "vae": "vae"}


def is_model_folder(folder: Path) -> bool:
    """A diffusers/transformers component folder (a config and safetensors weights, or a shard index), or a PEFT
    adapter folder (adapter_config.json and its safetensors)."""
    config = (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()
    return config and (any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")))


def _walk(folder: Path, found: dict) -> None:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        relative = here.relative_to(folder).as_posix()
        if relative != "." and is_model_folder(here):
            found.setdefault(f"{relative}/", here)
            dirnames.clear()
            continue
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".safetensors"):
                key = name if relative == "." else f"{relative}/{name}"
                found.setdefault(key, here / name)


def available_bundles() -> dict[str, Path]:
    """UniDiT bundle files by name: ComfyUI's ``models/unidit`` (or ``--models`` folders) and the pack's models/."""
    found: dict[str, Path] = {}
    for folder in [*comfy_bridge.model_folders(comfy_bridge.MODEL_FOLDER), SHIPPED_BUNDLE.parent]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                found.setdefault(path.name, path)
    return found


def available_loras() -> dict[str, Path]:
    """LoRA files (and PEFT adapter folders) by name: ComfyUI's ``models/loras`` (or ``--models`` folders'
    ``loras/``) and the pack's ``models/loras/``."""
    found: dict[str, Path] = {}
    for folder in [*comfy_bridge.model_folders("loras"), SHIPPED_BUNDLE.parent / "loras"]:
        if folder.is_dir():
            _walk(folder, found)
    return found


def available_parts(kind: str) -> dict[str, Path]:
    """Diffusion models, text encoders or VAEs (``kind`` in ``PARTS``) by name."""
    if kind not in PARTS:
        raise ValueError(f"unknown kind of model part {kind!r}; kinds are {list(PARTS)}")
    found: dict[str, Path] = {}
    for folder in comfy_bridge.model_folders(kind):
        if folder.is_dir():
            _walk(folder, found)
    for root in comfy_bridge.model_folders("diffusers"):
        if not root.is_dir():
            continue
        for pipeline in sorted(p for p in root.iterdir() if p.is_dir()):
            component = pipeline / DIFFUSERS_SUBFOLDERS[kind]
            if is_model_folder(component):
                found.setdefault(f"{pipeline.name}/{component.name}", component)
    return found
