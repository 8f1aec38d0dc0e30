"""Weights on disk: memory-mapped safetensors files and sharded folders, read without copies.

- :class:`TensorFile` maps one ``.safetensors`` file into memory (``mmap``, copy-on-write). Its tensors are views
  of the mapping in their stored dtype (fp32, fp16, bf16, fp8...): nothing is read until it is used, nothing is
  converted, and the page cache backs the memory.
- :class:`Weights` is a name -> tensor mapping over one file or several (a diffusers folder's shards with their
  ``*.safetensors.index.json``), optionally with a key prefix stripped or keys renamed. Families read
  checkpoints through it.
- :func:`fill_module` puts such tensors into a module built on the meta device, strictly: every parameter must
  be there with its shape, nothing unknown may be left over. ComfyUI's scaled-fp8 files carry a per-weight
  ``<layer>.scale_weight``; it is attached to its layer (see ``model/ops.py``), which dequantises on use.
- :func:`write_safetensors` writes a file one tensor at a time (the benchmarks' and tests' synthetic checkpoints).

Only safetensors is read: a pickle (``.pt``, ``.ckpt``, ``.bin``) can run code while it loads, so it is refused
with a message saying so. A truncated file fails with a message naming the file and the first tensor it cuts.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Union

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """Weights that cannot be loaded; the message names the file and says what is wrong."""


# safetensors dtype names -> torch dtypes
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")
SCALE_SUFFIXES = (".scale_weight", ".scale_input")   # ComfyUI's scaled fp8: per-layer scales
SCALED_FP8_MARKER = "scaled_fp8"                      # a tensor whose presence marks a scaled-fp8 file


def refuse_pickle(path: Path, head: bytes) -> None:
    """Raise for a pickle-based PyTorch checkpoint (by its first bytes: a zip archive or a raw pickle)."""
    if head[:2] == b"PK" or (len(head) > 1 and head[0] == 0x80 and head[1] in range(2, 6)):
        raise CheckpointError(f"{path.name}: this is a pickle-based PyTorch checkpoint. UniDiT loads only "
                              f".safetensors files, because loading a pickle can run arbitrary code. Convert it to "
                              f"safetensors in an environment you trust, or download the .safetensors version.")


def parse_header(path: Path, head: bytes, file_size: int) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset of its data section, checked against the file's size.

    ``head`` holds at least the file's first 8 bytes and as much of the header as was read."""
    name = path.name
    refuse_pickle(path, head)
    if file_size < 8 or len(head) < 8:
        raise CheckpointError(f"{name}: {file_size} bytes is too short for a safetensors file (truncated?)")
    (header_length,) = struct.unpack("<Q", head[:8])
    if header_length > file_size - 8:
        raise CheckpointError(f"{name}: the header claims {header_length} bytes but the file has {file_size - 8} "
                              f"after the length; the file is truncated or not safetensors")
    if len(head) < 8 + header_length:
        raise ValueError("parse_header needs the whole header")
    try:
        header = json.loads(head[8:8 + header_length])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{name}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: not a safetensors file (its header is not a JSON object)")
    available = file_size - 8 - header_length
    entries = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            dtype = info["dtype"]
            shape = [int(v) for v in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{name}: tensor '{key}' has a malformed header entry") from None
        if dtype not in DTYPES:
            raise CheckpointError(f"{name}: tensor '{key}' has dtype {dtype}, which UniDiT cannot read")
        needed = torch.empty(0, dtype=DTYPES[dtype]).element_size() * _numel(shape)
        if min(shape, default=0) < 0 or begin < 0 or end - begin != needed:
            raise CheckpointError(f"{name}: tensor '{key}' occupies {end - begin} bytes but its shape {shape} and dtype "
                                  f"{dtype} need {needed}; the file is damaged")
        entries.append((end, key))
    for end, key in sorted(entries):
        if end > available:
            raise CheckpointError(f"{name}: the file is truncated: tensor '{key}' needs bytes up to {end} of the "
                                  f"data section, which has only {available}; copy or download the file again")
    return header, 8 + header_length


class TensorFile:
    """One safetensors file, memory-mapped. ``tensor(key)`` is a view of the mapping in the stored dtype."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as handle:
            head = handle.read(8)
            if len(head) == 8:
                (length,) = struct.unpack("<Q", head)
                if length <= size - 8:
                    head += handle.read(length)
        header, self._data_start = parse_header(self.path, head, size)
        self.metadata: dict = header.pop("__metadata__", None) or {}
        self._entries: dict = header
        self._bytes: Optional[torch.Tensor] = None
        self._size = size

    def _mapping(self) -> torch.Tensor:
        """The whole file as a uint8 tensor backed by a private (copy-on-write) memory map, created on first use."""
        if self._bytes is None:
            storage = torch.UntypedStorage.from_file(str(self.path), shared=False, nbytes=self._size)
            self._bytes = torch.empty(0, dtype=torch.uint8).set_(storage)
        return self._bytes

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key]["shape"])

    def dtype(self, key: str) -> torch.dtype:
        return DTYPES[self._entries[key]["dtype"]]

    def tensor(self, key: str) -> torch.Tensor:
        entry = self._entries[key]
        dtype = DTYPES[entry["dtype"]]
        begin, end = (self._data_start + int(v) for v in entry["data_offsets"])
        raw = self._mapping()[begin:end]
        if begin % torch.empty(0, dtype=dtype).element_size():  # unaligned (other writers may do this): one copy
            raw = raw.clone()
        return raw.view(dtype).view(entry["shape"])  # sizes were checked against the header (parse_header)


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


class Weights(Mapping):
    """Tensors by name, from one or more :class:`TensorFile` s, read lazily (``weights[key]`` maps, never copies).

    ``name`` describes the source in messages (a file name, or a folder's).
    """

    def __init__(self, files: dict[str, TensorFile], name: str, metadata: Optional[dict] = None):
        self._where = files       # key -> the file holding it
        self.name = name
        self.metadata = metadata if metadata is not None else {}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._where[key].tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        return self._where[key].shape(key)

    def dtype(self, key: str) -> torch.dtype:
        return self._where[key].dtype(key)

    def files(self) -> list[Path]:
        return sorted({file.path for file in self._where.values()})

    def nbytes(self) -> int:
        return sum(path.stat().st_size for path in self.files())

    def prefixes(self) -> set[str]:
        return {key.split(".", 1)[0] for key in self}

    def renamed(self, rename: Callable[[str], Optional[str]]) -> "Weights":
        """The same tensors under new names; ``rename`` returns None to drop a key. Two keys may not collide."""
        moved: dict[str, TensorFile] = {}
        renamed_keys: dict = {}
        for key, file in self._where.items():
            new = rename(key)
            if new is None:
                continue
            if new in moved:
                raise CheckpointError(f"{self.name}: tensors '{renamed_keys[new]}' and '{key}' both map to '{new}'")
            moved[new] = _Renamed(file, key) if new != key else file
            renamed_keys[new] = key
        return Weights(moved, self.name, self.metadata)

    def without_prefix(self, prefix: str) -> "Weights":
        """Keys that start with ``prefix``, with it removed (the others are dropped)."""
        return self.renamed(lambda key: key[len(prefix):] if key.startswith(prefix) else None)

    def common_prefix(self, candidates: tuple[str, ...]) -> str:
        """The first of ``candidates`` that every key (but the scaled-fp8 marker) starts with, else ""."""
        keys = [key for key in self if not key.endswith(SCALED_FP8_MARKER)]
        for prefix in candidates:
            if keys and all(key.startswith(prefix) for key in keys):
                return prefix
        return ""


class _Renamed:
    """A file's tensor under another name (used by :meth:`Weights.renamed`)."""

    def __init__(self, file: TensorFile, key: str):
        self.file, self.key, self.path = file, key, file.path

    def tensor(self, _name):
        return self.file.tensor(self.key)

    def shape(self, _name):
        return self.file.shape(self.key)

    def dtype(self, _name):
        return self.file.dtype(self.key)


def open_weights(path: Union[str, os.PathLike]) -> Weights:
    """A ``.safetensors`` file, or a folder holding one model as safetensors: sharded with an index
    (``*.safetensors.index.json``, as diffusers and transformers save large models) or as one or more files."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            with open(path, "rb") as handle:
                refuse_pickle(path, handle.read(8))
            raise CheckpointError(f"{path.name}: a {path.suffix} file; UniDiT loads only .safetensors files, because "
                                  f"loading a pickle can run arbitrary code")
        file = TensorFile(path)
        return Weights({key: file for key in file.keys()}, path.name, file.metadata)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such file or folder")
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise CheckpointError(f"{path.name}: holds several shard indexes ({', '.join(i.name for i in indexes)}); "
                              f"keep one model per folder")
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{path.name}/{indexes[0].name}: not a readable shard index ({error})") from None
        opened: dict[str, TensorFile] = {}
        where: dict[str, TensorFile] = {}
        for key, shard in weight_map.items():
            shard_path = path / shard
            if Path(shard).name != shard or not shard_path.is_file():
                raise CheckpointError(f"{path.name}: the index names shard {shard!r} for '{key}', which is not in "
                                      f"the folder")
            file = opened.setdefault(shard, TensorFile(shard_path))
            if key not in file:
                raise CheckpointError(f"{path.name}/{shard}: the index places '{key}' in this shard but it is not "
                                      f"there")
            where[key] = file
        return Weights(where, path.name)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        hint = (f" (it has {', '.join(pickles)}: pickle files, which UniDiT does not load because they can run code)"
                if pickles else "")
        raise CheckpointError(f"{path.name}: no .safetensors weights in this folder{hint}")
    where = {}
    for file_path in files:
        file = TensorFile(file_path)
        for key in file.keys():
            if key in where:
                raise CheckpointError(f"{path.name}: tensor '{key}' is in both {where[key].path.name} and "
                                      f"{file_path.name}")
            where[key] = file
    return Weights(where, path.name)


def read_json(path: Path) -> dict:
    """A JSON config file as a dict, with a clear error."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{Path(path).parent.name}/{Path(path).name}: cannot read ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{Path(path).name}: expected a JSON object")
    return data


def write_safetensors(path: os.PathLike, tensors: Iterable[tuple[str, tuple, torch.dtype]], make,
                      metadata: Optional[dict] = None) -> Path:
    """Write a safetensors file one tensor at a time: ``make(name, shape)`` returns each tensor (any float dtype;
    stored as the dtype given with it). Peak memory is one tensor, whatever the file's size."""
    entries, header, offset = list(tensors), {}, 0
    for name, shape, dtype in entries:
        size = torch.empty(0, dtype=dtype).element_size()
        for dim in shape:
            size *= int(dim)
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = {key: str(value) for key, value in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path = Path(path)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for name, shape, dtype in entries:
            tensor = make(name, tuple(shape)).to(dtype).contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return path


def fill_module(module: nn.Module, weights: Mapping[str, torch.Tensor], source: str,
                component: str = "") -> nn.Module:
    """Put ``weights`` into ``module`` in place, keeping each tensor as it is (dtype and storage: a memory-mapped
    tensor stays mapped). ``module`` is usually built on the meta device.

    Strict: a parameter or persistent buffer missing from ``weights`` or of another shape, and a tensor in
    ``weights`` that the module does not have, are errors naming the key (``component`` prefixes it in messages).
    A ``<layer>.scale_weight`` (ComfyUI's scaled fp8) is attached to its layer, which must accept it
    (``model/ops.py``); ``<layer>.scale_input`` and the ``scaled_fp8`` marker are not needed and are skipped.
    """
    label = f"{component}." if component else ""
    expected = dict(module.named_parameters())
    expected.update(_persistent_buffers(module))
    for key, current in expected.items():
        if key not in weights:
            raise CheckpointError(f"{source}: tensor '{label}{key}' is missing from the file (the model expects shape "
                                  f"{tuple(current.shape)}); is this the right file for this part?")
        shape = tuple(weights.shape(key)) if hasattr(weights, "shape") else tuple(weights[key].shape)
        if shape != tuple(current.shape):
            raise CheckpointError(f"{source}: tensor '{label}{key}' has shape {shape} in the file but the model "
                                  f"expects {tuple(current.shape)}")
    for key in weights:
        if key in expected or key.endswith(SCALED_FP8_MARKER) or key.endswith(".scale_input"):
            continue
        if key.endswith(".scale_weight") and key[:-len("scale_weight")] + "weight" in expected:
            continue
        shape = tuple(weights.shape(key)) if hasattr(weights, "shape") else tuple(weights[key].shape)
        raise CheckpointError(f"{source}: tensor '{label}{key}' with shape {shape} in the file is not part of the "
                              f"model; is this the right file for this part?")
    for key, current in expected.items():
        owner, leaf = _owner(module, key)
        tensor = weights[key]
        if leaf in owner._parameters:
            owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
        else:
            owner._buffers[leaf] = tensor
        scale_key = key[:-len("weight")] + "scale_weight" if key.endswith("weight") else None
        if scale_key is not None and scale_key in weights:
            if not hasattr(owner, "scale_weight"):
                raise CheckpointError(f"{source}: '{label}{scale_key}' scales a layer that cannot take scaled fp8 "
                                      f"weights")
            owner.scale_weight = weights[scale_key].float().reshape(())
    return module


def place_module(module: nn.Module, device, compute_dtype: torch.dtype,
                 matrix_dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Move a filled module to ``device``, keeping each tensor's stored dtype unless it is a float wider than
    ``compute_dtype`` (an fp32 file computed in bf16 is stored in bf16: half the memory, the same results, since
    every layer casts to bf16 anyway). Narrower weights (fp16, bf16, fp8) stay as they are. ``matrix_dtype`` (an
    fp8 type, as ComfyUI's --fp8_e4m3fn-unet) stores the weight matrices of the layers that cast per call
    (``model/ops.py``: linear, convolution) in it; norms, biases and modulation tables keep their dtype."""
    width = torch.empty(0, dtype=compute_dtype).element_size()
    matrix_width = torch.empty(0, dtype=matrix_dtype).element_size() if matrix_dtype is not None else None
    matrices = {id(m.weight) for m in module.modules()
                if hasattr(m, "comfy_cast_weights") and getattr(m, "weight", None) is not None and m.weight.ndim >= 2}

    def placed(tensor: torch.Tensor) -> torch.Tensor:
        if (matrix_width is not None and id(tensor) in matrices and tensor.element_size() > matrix_width):
            return tensor.to(device=device, dtype=matrix_dtype)
        if tensor.is_floating_point() and tensor.element_size() > width:
            return tensor.to(device=device, dtype=compute_dtype)
        return tensor.to(device=device)

    return module._apply(placed)


def _persistent_buffers(module: nn.Module) -> dict:
    found = {}
    for name, sub in module.named_modules():
        for leaf, buffer in sub._buffers.items():
            if buffer is not None and leaf not in sub._non_persistent_buffers_set:
                found[f"{name}.{leaf}" if name else leaf] = buffer
    return found


def _owner(module: nn.Module, key: str) -> tuple[nn.Module, str]:
    path, _, leaf = key.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def meta_tensors(module: nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (nothing filled them)."""
    names = [name for name, p in module.named_parameters() if p.is_meta]
    names += [name for name, b in module.named_buffers() if b.is_meta]
    return names
