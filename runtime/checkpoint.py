"""The single-file checkpoint format: one ``.safetensors`` bundle per model.

- Tensors are named ``<component>.<parameter>``; components are ``dit`` (backbone), ``vae`` (autoencoder),
  ``splat`` (splat decoder) and ``text`` (text encoder).
- The safetensors metadata (strings) holds ``format`` = "unidit.bundle", ``format_version``, ``config`` (JSON:
  one config dict per component) and optional extras such as ``tokenizer`` (the tokenizer's JSON).
- Only safetensors is loaded: a pickle (``.pt``, ``.ckpt``, ``.bin``) can run code while it loads, so it is
  refused with a message saying so. A truncated file, and missing, unexpected or mis-shaped tensors, fail with
  a message naming the file and the first bad key (with both shapes).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

FORMAT = "unidit.bundle"
FORMAT_VERSION = "1"
COMPONENTS = ("dit", "vae", "splat", "text")


class CheckpointError(ValueError):
    """A bundle that cannot be loaded; the message names the file and says what is wrong."""


@dataclass
class Bundle:
    """The contents of a bundle file: tensors per component, the configs and the other metadata."""

    path: Path
    config: dict
    metadata: dict
    tensors: dict

    def component(self, name: str) -> dict:
        if name not in self.tensors:
            raise CheckpointError(f"{self.path.name}: the bundle has no '{name}' component "
                                  f"(it has {sorted(self.tensors)})")
        return self.tensors[name]

    def load_into(self, name: str, module: nn.Module) -> nn.Module:
        """Copy component ``name`` into ``module`` strictly (see :func:`load_state`)."""
        load_state(module, self.component(name), self.path, name)
        return module


def save_bundle(path: Union[str, os.PathLike], components: Mapping[str, Union[nn.Module, Mapping[str, torch.Tensor]]],
                config: Mapping[str, dict], metadata: Optional[Mapping[str, str]] = None,
                dtype: Optional[torch.dtype] = None, overwrite: bool = False) -> Path:
    """Write modules or state dicts as one bundle; floating tensors are stored as ``dtype`` when given.

    The file appears atomically (written beside it, then renamed); an existing file is kept unless
    ``overwrite``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name}: bundles are .safetensors files")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or remove it first")
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
    data = save_safetensors_bytes(tensors, metadata=header)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_bundle(path: Union[str, os.PathLike]) -> Bundle:
    """Read a bundle into CPU tensors, checking the container before any tensor is parsed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    data = path.read_bytes()
    header = _check_container(path, data)
    metadata = header.get("__metadata__", {}) or {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: a safetensors file, but not a UniDiT bundle "
                              f"(its metadata has no format = {FORMAT!r})")
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path.name}: the config in its metadata is not valid JSON ({error})") from None
    try:
        flat = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path.name}: cannot read tensors ({error})") from None
    tensors: dict = {}
    for key, tensor in flat.items():
        component, _, name = key.partition(".")
        tensors.setdefault(component, {})[name] = tensor
    extra = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "config")}
    return Bundle(path, config, extra, tensors)


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], path: Union[str, os.PathLike],
               component: str) -> None:
    """Copy ``state`` into ``module``; any missing, unexpected or mis-shaped tensor is an error."""
    name = Path(path).name
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{name}: tensor '{component}.{key}' is missing from the file "
                                  f"(the model expects shape {tuple(tensor.shape)})")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{name}: tensor '{component}.{key}' has shape {tuple(state[key].shape)} in the "
                                  f"file but the model expects {tuple(tensor.shape)}; the file was saved for "
                                  f"another configuration")
    for key, tensor in state.items():
        if key not in expected:
            raise CheckpointError(f"{name}: tensor '{component}.{key}' with shape {tuple(tensor.shape)} in the "
                                  f"file is not part of the model")
    module.load_state_dict(dict(state), strict=True)


def _check_container(path: Path, data: bytes) -> dict:
    """Parse and check the safetensors header: refuse pickles, name the first truncated tensor."""
    name = path.name
    if data[:2] == b"PK" or (len(data) > 1 and data[0] == 0x80 and data[1] in range(2, 6)):
        raise CheckpointError(f"{name}: this is a pickle-based PyTorch checkpoint. UniDiT loads only .safetensors "
                              f"files, because loading a pickle can run arbitrary code. Convert it to safetensors "
                              f"in an environment you trust, or use a .safetensors bundle.")
    if len(data) < 8:
        raise CheckpointError(f"{name}: {len(data)} bytes is too short for a safetensors file (truncated?)")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > len(data) - 8:
        raise CheckpointError(f"{name}: the header claims {header_length} bytes but the file has "
                              f"{len(data) - 8} after the length; the file is truncated or not safetensors")
    try:
        header = json.loads(data[8:8 + header_length])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{name}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: not a safetensors file (its header is not a JSON object)")
    available = len(data) - 8 - header_length
    entries = [(info["data_offsets"][1], key) for key, info in header.items() if key != "__metadata__"]
    for end, key in sorted(entries):
        if end > available:
            raise CheckpointError(f"{name}: the file is truncated: tensor '{key}' needs bytes up to {end} of the "
                                  f"data section, which has only {available}; copy or download the file again")
    return header
