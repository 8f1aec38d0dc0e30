"""The single-file checkpoint format: one ``.safetensors`` bundle per model.

- Tensors are named ``<component>.<parameter>``; components are ``dit`` (backbone), ``vae`` (autoencoder),
  ``splat`` (splat decoder) and ``text`` (text encoder).
- The safetensors metadata (strings) holds ``format`` = "unidit.bundle", ``format_version``, ``config`` (JSON:
  one config dict per component) and optional extras such as ``tokenizer`` (the tokenizer's JSON).
- Format 2 has one patch embedder and output head (``dit.patch_embed.weight``); format 1 keyed them by patch
  shape (``dit.patch_embed.1x4x4.weight``) and is read by renaming.
- Files are read memory-mapped through ``weights.py``, which refuses pickles and names the first tensor a
  truncated file cuts; missing, unexpected or mis-shaped tensors fail with a message naming the file and the key.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn
from safetensors.torch import save as save_safetensors_bytes

from .weights import CheckpointError, Weights, fill_module, open_weights

FORMAT = "unidit.bundle"
FORMAT_VERSION = "2"
COMPONENTS = ("dit", "vae", "splat", "text")
_FORMAT_1_PATCH_KEYS = re.compile(r"^dit\.(patch_embed|camera_embed|final_head)\.\d+x\d+x\d+\.")


@dataclass
class Bundle:
    """The contents of a bundle file: its tensors (memory-mapped), the configs and the other metadata."""

    path: Path
    config: dict
    metadata: dict
    weights: Weights

    def component(self, name: str) -> Weights:
        if name not in self.weights.prefixes():
            raise CheckpointError(f"{self.path.name}: the bundle has no '{name}' component "
                                  f"(it has {sorted(self.weights.prefixes())})")
        return self.weights.without_prefix(f"{name}.")

    def load_into(self, name: str, module: nn.Module) -> nn.Module:
        """Put component ``name`` into ``module`` strictly (see ``weights.fill_module``)."""
        return fill_module(module, self.component(name), self.path.name, name)


def save_bundle(path: Union[str, os.PathLike], components: Mapping[str, Union[nn.Module, Mapping[str, torch.Tensor]]],
                config: Mapping[str, dict], metadata: Optional[Mapping[str, str]] = None,
                dtype: Optional[torch.dtype] = None, overwrite: bool = False) -> Path:
    """Write modules or state dicts as one bundle; floating tensors are stored as ``dtype`` when given.

    The file appears atomically (written beside it, then renamed); an existing file is kept unless
    ``overwrite``.
    """
    path = writable_path(path, "bundles", overwrite)
    tensors = {}
    for name, component in components.items():
        if name not in COMPONENTS:
            raise CheckpointError(f"unknown component {name!r}; components are {list(COMPONENTS)}")
        state = component.state_dict() if isinstance(component, nn.Module) else component
        for key, tensor in state.items():
            tensor = tensor.detach().to("cpu")
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            tensors[f"{name}.{key}"] = tensor.contiguous()
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(dict(config))}
    for key, value in (metadata or {}).items():
        if key in header:
            raise CheckpointError(f"metadata key {key!r} is reserved")
        header[key] = str(value)
    return write_tensors(path, tensors, header)


def writable_path(path: Union[str, os.PathLike], kind: str, overwrite: bool) -> Path:
    """``path`` as a Path, once it is known to name a .safetensors file that may be written (``kind``: what is
    written, for the error)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name}: {kind} are .safetensors files")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or remove it first")
    return path


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``tensors`` as a safetensors file that appears atomically (written beside it, then renamed)."""
    data = save_safetensors_bytes(dict(tensors), metadata=dict(metadata))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def is_bundle(weights: Weights) -> bool:
    return weights.metadata.get("format") == FORMAT


def read_bundle(path: Union[str, os.PathLike]) -> Bundle:
    """Open a bundle: the container is checked before any tensor is touched; tensors stay memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    weights = open_weights(path)
    metadata = dict(weights.metadata)
    if not is_bundle(weights):
        raise CheckpointError(f"{path.name}: a safetensors file, but not a UniDiT bundle "
                              f"(its metadata has no format = {FORMAT!r})")
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path.name}: the config in its metadata is not valid JSON ({error})") from None
    version = metadata.get("format_version", "1")
    if version == "1":
        weights = weights.renamed(lambda key: _FORMAT_1_PATCH_KEYS.sub(r"dit.\1.", key))
    elif version != FORMAT_VERSION:
        raise CheckpointError(f"{path.name}: bundle format {version}; this UniDiT reads formats 1 and "
                              f"{FORMAT_VERSION} (update UniDiT)")
    extra = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "config")}
    return Bundle(path, config, extra, weights)
