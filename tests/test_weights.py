"""Weights on disk: memory-mapped reading in the stored dtype, shard indexes, key renaming, strict filling of meta
modules (with ComfyUI's scaled fp8), the refusals with their messages, and the streaming writer."""
import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from unidit.runtime.bench.synthetic import write_random_checkpoint
from unidit.runtime.model import ops
from unidit.runtime.weights import (CheckpointError, fill_module, meta_tensors, open_weights, place_module,
                                    write_safetensors)


class Small(nn.Module):
    def __init__(self, linear=ops.Linear):
        super().__init__()
        self.proj = linear(4, 3)
        self.norm = ops.RMSNorm(3)


def small_state(seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return {"proj.weight": torch.randn(3, 4, generator=generator).to(dtype),
            "proj.bias": torch.randn(3, generator=generator).to(dtype), "norm.weight": torch.ones(3, dtype=dtype)}


def meta_small(**kwargs):
    with torch.device("meta"):
        return Small(**kwargs)


def test_tensors_are_views_of_the_mapped_file_in_their_stored_dtype(tmp_path):
    state = {"a": torch.randn(5, 7).bfloat16(), "b": torch.arange(6, dtype=torch.int64), "c": torch.zeros(0)}
    save_file(state, tmp_path / "f.safetensors", metadata={"note": "x"})
    weights = open_weights(tmp_path / "f.safetensors")
    assert set(weights) == {"a", "b", "c"} and weights.metadata == {"note": "x"}
    assert weights.dtype("a") == torch.bfloat16 and weights.shape("a") == (5, 7)
    for key, tensor in state.items():
        assert torch.equal(weights[key], tensor) and weights[key].dtype == tensor.dtype
    size = (tmp_path / "f.safetensors").stat().st_size
    assert weights["a"].untyped_storage().nbytes() == size  # one mapping of the whole file, no copy


def test_a_sharded_folder_reads_through_its_index(tmp_path):
    save_file(small_state(), tmp_path / "part-1.safetensors")
    save_file({"extra": torch.ones(2)}, tmp_path / "part-2.safetensors")
    index = {"weight_map": {**{k: "part-1.safetensors" for k in small_state()}, "extra": "part-2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = open_weights(tmp_path)
    assert set(weights) == {*small_state(), "extra"} and len(weights.files()) == 2
    index["weight_map"]["extra"] = "part-1.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="places 'extra' in this shard but it is not there"):
        open_weights(tmp_path)
    index["weight_map"]["extra"] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="names shard '../elsewhere.safetensors'.*not in the folder"):
        open_weights(tmp_path)


def test_renaming_and_prefixes(tmp_path):
    save_file({f"model.diffusion_model.{k}": v for k, v in small_state().items()}, tmp_path / "p.safetensors")
    weights = open_weights(tmp_path / "p.safetensors")
    assert weights.common_prefix(("vae.", "model.diffusion_model.")) == "model.diffusion_model."
    stripped = weights.without_prefix("model.diffusion_model.")
    assert set(stripped) == set(small_state()) and torch.equal(stripped["proj.bias"], small_state()["proj.bias"])
    with pytest.raises(CheckpointError, match="both map to 'same'"):
        weights.renamed(lambda key: "same")


def test_filling_a_meta_module_is_strict_and_names_the_key(tmp_path):
    save_file(small_state(dtype=torch.float16), tmp_path / "ok.safetensors")
    module = fill_module(meta_small(), open_weights(tmp_path / "ok.safetensors"), "ok.safetensors")
    assert meta_tensors(module) == [] and module.proj.weight.dtype == torch.float16
    x = torch.randn(2, 4)
    expected = small_state(dtype=torch.float16)
    assert torch.allclose(module.proj(x), x @ expected["proj.weight"].float().T + expected["proj.bias"].float())

    missing = {k: v for k, v in small_state().items() if k != "proj.bias"}
    save_file(missing, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="missing.safetensors: tensor 'part.proj.bias' is missing from the file"):
        fill_module(meta_small(), open_weights(tmp_path / "missing.safetensors"), "missing.safetensors", "part")
    save_file({**small_state(), "proj.weight": torch.zeros(3, 5)}, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match="'proj.weight' has shape \\(3, 5\\) in the file but the model expects "
                                              "\\(3, 4\\)"):
        fill_module(meta_small(), open_weights(tmp_path / "shape.safetensors"), "shape.safetensors")
    save_file({**small_state(), "surplus": torch.zeros(1)}, tmp_path / "extra.safetensors")
    with pytest.raises(CheckpointError, match="'surplus' with shape \\(1,\\) in the file is not part of the model"):
        fill_module(meta_small(), open_weights(tmp_path / "extra.safetensors"), "extra.safetensors")


def test_scaled_fp8_weights_dequantise_on_use_and_only_layers_that_can_take_a_scale_accept_one(tmp_path):
    state = small_state()
    scale = state["proj.weight"].abs().max() / 448
    fp8 = (state["proj.weight"] / scale).to(torch.float8_e4m3fn)
    save_file({**state, "proj.weight": fp8, "proj.scale_weight": scale.reshape(1), "proj.scale_input": torch.ones(1),
               "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, tmp_path / "s.safetensors")
    module = fill_module(meta_small(), open_weights(tmp_path / "s.safetensors"), "s.safetensors")
    assert module.proj.weight.dtype == torch.float8_e4m3fn and float(module.proj.scale_weight) == float(scale)
    x = torch.randn(2, 4)
    assert torch.allclose(module.proj(x), x @ (fp8.float() * scale).T + state["proj.bias"], atol=1e-6)
    with pytest.raises(CheckpointError, match="'proj.scale_weight' scales a layer that cannot take scaled fp8"):
        fill_module(meta_small(linear=nn.Linear), open_weights(tmp_path / "s.safetensors"), "s.safetensors")


def test_placing_a_module_narrows_only_floats_wider_than_the_compute_dtype(tmp_path):
    state = {**small_state(dtype=torch.float32), "norm.weight": torch.ones(3, dtype=torch.float16)}
    save_file(state, tmp_path / "mixed.safetensors")
    module = fill_module(meta_small(), open_weights(tmp_path / "mixed.safetensors"), "mixed")
    place_module(module, "cpu", torch.bfloat16)
    assert module.proj.weight.dtype == torch.bfloat16 and module.norm.weight.dtype == torch.float16
    module = fill_module(meta_small(), open_weights(tmp_path / "mixed.safetensors"), "mixed")
    place_module(module, "cpu", torch.float32)  # computing in fp32 changes nothing: no copies
    assert module.proj.weight.dtype == torch.float32 and module.norm.weight.dtype == torch.float16
    assert module.proj.weight.untyped_storage().nbytes() == (tmp_path / "mixed.safetensors").stat().st_size


def test_pickles_truncations_and_other_files_are_refused_with_the_reason(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 zip of pickles")
    with pytest.raises(CheckpointError, match="model.pt: this is a pickle-based PyTorch checkpoint.*arbitrary code"):
        open_weights(tmp_path / "model.pt")
    save_file(small_state(), tmp_path / "cut.safetensors")
    data = (tmp_path / "cut.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match="cut.safetensors: the file is truncated: tensor"):
        open_weights(tmp_path / "cut.safetensors")
    (tmp_path / "text.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        open_weights(tmp_path / "text.safetensors")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "pytorch_model.bin").write_bytes(b"\x80\x02 pickle")
    with pytest.raises(CheckpointError, match="no .safetensors weights in this folder .*pytorch_model.bin"):
        open_weights(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        open_weights(tmp_path / "absent.safetensors")


def test_the_streaming_writer_writes_files_that_safetensors_and_our_reader_read_alike(tmp_path):
    tensors = [("x", (3, 2), torch.bfloat16), ("y", (5,), torch.float32), ("z", (2, 2), torch.float8_e4m3fn)]
    made = {}

    def make(name, shape):
        made[name] = torch.randn(shape, generator=torch.Generator().manual_seed(len(name)))
        return made[name]

    write_safetensors(tmp_path / "w.safetensors", tensors, make, {"kind": "test"})
    reference, ours = load_file(tmp_path / "w.safetensors"), open_weights(tmp_path / "w.safetensors")
    for name, shape, dtype in tensors:
        assert reference[name].dtype == ours.dtype(name) == dtype and tuple(ours.shape(name)) == shape
        assert torch.equal(reference[name].float(), ours[name].float())
        assert torch.equal(ours[name].float(), made[name].to(dtype).float())
    assert ours.metadata == {"kind": "test"}
    # a module's random checkpoint fills that module (built on meta) strictly, under a prefix too
    write_random_checkpoint(meta_small(), tmp_path / "r.safetensors", torch.float16, prefix="m.")
    filled = fill_module(meta_small(), open_weights(tmp_path / "r.safetensors").without_prefix("m."), "r")
    assert filled.norm.weight.dtype == torch.float16 and 0.5 < float(filled.norm.weight.float().mean()) < 1.5


def test_a_header_whose_sizes_disagree_with_shapes_is_refused(tmp_path):
    save_file({"a": torch.zeros(4, 4)}, tmp_path / "ok.safetensors")
    data = bytearray((tmp_path / "ok.safetensors").read_bytes())
    header = data[8:8 + int.from_bytes(data[:8], "little")].decode()
    lying = header.replace('"shape":[4,4]', '"shape":[4,5]').encode()
    assert len(lying) == len(header)
    (tmp_path / "lying.safetensors").write_bytes(bytes(data[:8]) + lying + bytes(data[8 + len(lying):]))
    with pytest.raises(CheckpointError, match="tensor 'a' occupies 64 bytes but its shape \\[4, 5\\] and dtype F32 "
                                              "need 80; the file is damaged"):
        open_weights(tmp_path / "lying.safetensors")
