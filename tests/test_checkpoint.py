import json
import struct

import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes

from unidit.runtime.checkpoint import CheckpointError, read_bundle, save_bundle
from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit_testing import TINY_DIT, make_text, tiny_dit


def forward(model):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 2, 8, 8, generator=generator)
    return model(x, torch.tensor([0.4, 0.8]), make_text(2), torch.tensor([0, 1]))


def save_tiny(path, model=None, **kwargs):
    model = model or tiny_dit()
    save_bundle(path, {"dit": model}, {"dit": model.config.to_dict()}, metadata={"note": "test"}, **kwargs)
    return model


def test_save_then_load_reproduces_outputs_exactly(tmp_path):
    model = save_tiny(tmp_path / "m.safetensors")
    bundle = read_bundle(tmp_path / "m.safetensors")
    assert bundle.metadata == {"note": "test"}
    loaded = bundle.load_into("dit", UniDiT(DiTConfig.from_dict(bundle.config["dit"]))).eval()
    assert torch.equal(forward(loaded), forward(model))
    assert all(key.startswith("dit.") for key in _header(tmp_path / "m.safetensors") if key != "__metadata__")


def test_half_precision_storage_is_mapped_as_stored_and_computes_in_fp32(tmp_path):
    model = save_tiny(tmp_path / "m.safetensors", dtype=torch.float16)
    bundle = read_bundle(tmp_path / "m.safetensors")
    loaded = bundle.load_into("dit", UniDiT(DiTConfig.from_dict(bundle.config["dit"]))).eval()
    assert loaded.blocks[0].attn.qkv.weight.dtype == torch.float16  # a view of the file, not a converted copy
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight.half())
    loaded.float()
    assert loaded.blocks[0].attn.qkv.weight.dtype == torch.float32
    assert torch.allclose(forward(loaded), forward(model), atol=1e-2)


def test_format_1_bundles_with_per_patch_embedders_still_load(tmp_path):
    model = tiny_dit()
    state = {f"dit.{key}".replace("patch_embed.", "patch_embed.1x2x2.").replace("camera_embed.", "camera_embed.1x2x2.")
             .replace("final_head.", "final_head.1x2x2."): tensor for key, tensor in model.state_dict().items()}
    config = {**model.config.to_dict(), "patch_sizes": [[1, 2, 2]]}
    del config["patch_size"]
    header = {"format": "unidit.bundle", "format_version": "1", "config": json.dumps({"dit": config})}
    (tmp_path / "old.safetensors").write_bytes(save_safetensors_bytes(state, metadata=header))
    bundle = read_bundle(tmp_path / "old.safetensors")
    loaded = bundle.load_into("dit", UniDiT(DiTConfig.from_dict(bundle.config["dit"]))).eval()
    assert torch.equal(forward(loaded), forward(model))


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    save_tiny(tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError):
        save_tiny(tmp_path / "m.safetensors")
    save_tiny(tmp_path / "m.safetensors", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_pickle_checkpoint_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(tiny_dit().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"model\.pt: this is a pickle-based PyTorch checkpoint.*arbitrary code"):
        read_bundle(path)
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="pickle"):
        read_bundle(legacy)


def test_truncated_file_names_the_file_and_the_first_missing_tensor(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tiny(path)
    header = _header(path)
    data = path.read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    cut = len(data) - 1000
    path.write_bytes(data[:cut])
    available = cut - 8 - header_length
    first_bad = min((info["data_offsets"][1], key) for key, info in header.items()
                    if key != "__metadata__" and info["data_offsets"][1] > available)[1]
    with pytest.raises(CheckpointError, match=rf"m\.safetensors: the file is truncated: tensor '{first_bad}'"):
        read_bundle(path)
    path.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="m.safetensors.*truncated"):
        read_bundle(path)


def test_mismatched_shapes_name_the_key_and_both_shapes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tiny(path)
    wider = UniDiT(DiTConfig(**{**TINY_DIT, "mlp_hidden": 96}))
    with pytest.raises(CheckpointError, match=r"m\.safetensors: tensor 'dit\.blocks\.0\.mlp\.gate_value\.weight' "
                                              r"has shape \(256, 64\) in the file but the model expects \(192, 64\)"):
        read_bundle(path).load_into("dit", wider)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tiny(path)
    deeper = UniDiT(DiTConfig(**{**TINY_DIT, "depth": 3}))
    with pytest.raises(CheckpointError, match=r"tensor 'dit\.blocks\.2\.[a-z_.]+' is missing from the file"):
        read_bundle(path).load_into("dit", deeper)
    shallower = UniDiT(DiTConfig(**{**TINY_DIT, "depth": 1}))
    with pytest.raises(CheckpointError, match=r"tensor 'dit\.blocks\.1\.[a-z_.]+' with shape .* is not part of"):
        read_bundle(path).load_into("dit", shallower)


def test_other_safetensors_files_and_missing_components_are_explained(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a UniDiT bundle"):
        read_bundle(tmp_path / "other.safetensors")
    save_tiny(tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="no 'vae' component"):
        read_bundle(tmp_path / "m.safetensors").component("vae")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        read_bundle(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        read_bundle(tmp_path / "absent.safetensors")


def _header(path):
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + length])
