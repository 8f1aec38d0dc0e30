"""What the Loader nodes offer: bundles, and the parts of other families' models in ComfyUI's folder layout (files,
files in subfolders, diffusers part folders, and the parts of diffusers pipelines in models/diffusers)."""
import json

from safetensors.torch import save_file
import torch

from unidit.runtime import comfy_bridge
from unidit.runtime.bundle import SHIPPED_BUNDLE
from unidit.runtime.model_folders import available_bundles, available_parts


def touch_safetensors(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x": torch.zeros(1)}, path)


def diffusers_part(folder, shards=1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "Part"}))
    for index in range(shards):
        touch_safetensors(folder / f"diffusion_pytorch_model-0000{index + 1}-of-0000{shards}.safetensors")
    if shards > 1:
        (folder / "diffusion_pytorch_model.safetensors.index.json").write_text("{}")


def test_parts_are_listed_by_the_names_comfyui_shows(tmp_path):
    root = tmp_path / "models"
    touch_safetensors(root / "diffusion_models" / "wan2.1_t2v_1.3B_fp16.safetensors")
    touch_safetensors(root / "diffusion_models" / "wan" / "wan2.2_ti2v_5B_fp16.safetensors")
    diffusers_part(root / "diffusion_models" / "my_transformer", shards=3)
    (root / "diffusion_models" / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "diffusion_models" / "notes.txt").write_text("not a model")
    touch_safetensors(root / "vae" / "wan_2.1_vae.safetensors")
    pipeline = root / "diffusers" / "Wan2.1-T2V-1.3B-Diffusers"
    for part in ("transformer", "text_encoder", "vae"):
        diffusers_part(pipeline / part)
    (pipeline / "tokenizer").mkdir()
    (pipeline / "model_index.json").write_text("{}")
    token = comfy_bridge.use_host(comfy_bridge.HostServices(models_directories=[root]))
    try:
        models = available_parts("diffusion_models")
        vaes = available_parts("vae")
        encoders = available_parts("text_encoders")
    finally:
        comfy_bridge.release_host(token)
    # the shards of a diffusers folder are one entry, never offered one by one
    assert sorted(models) == ["Wan2.1-T2V-1.3B-Diffusers/transformer", "my_transformer/",
                              "wan/wan2.2_ti2v_5B_fp16.safetensors", "wan2.1_t2v_1.3B_fp16.safetensors"]
    assert models["my_transformer/"] == root / "diffusion_models" / "my_transformer"
    assert sorted(vaes) == ["Wan2.1-T2V-1.3B-Diffusers/vae", "wan_2.1_vae.safetensors"]
    assert sorted(encoders) == ["Wan2.1-T2V-1.3B-Diffusers/text_encoder"]


def test_bundles_come_from_the_models_folder_its_unidit_subfolder_and_the_pack(tmp_path):
    touch_safetensors(tmp_path / "mine.safetensors")
    touch_safetensors(tmp_path / "unidit" / "theirs.safetensors")
    token = comfy_bridge.use_host(comfy_bridge.HostServices(models_directories=[tmp_path]))
    try:
        bundles = available_bundles()
    finally:
        comfy_bridge.release_host(token)
    assert {"mine.safetensors", "theirs.safetensors", SHIPPED_BUNDLE.name} <= set(bundles)
    assert bundles[SHIPPED_BUNDLE.name] == SHIPPED_BUNDLE


def test_inside_comfyui_models_unidit_is_registered_and_created_when_the_pack_loads(tmp_path, monkeypatch):
    import sys
    import types

    registered = {"checkpoints": ([str(tmp_path / "checkpoints")], {".safetensors"})}
    folder_paths = types.SimpleNamespace(
        folder_names_and_paths=registered, models_dir=str(tmp_path),
        get_folder_paths=lambda kind: list(registered[kind][0]))
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    comfy_bridge.register_model_folder()
    assert (tmp_path / "unidit").is_dir()
    assert registered["unidit"] == ([str(tmp_path / "unidit")], {".safetensors"})
    assert comfy_bridge.model_folders("unidit") == [tmp_path / "unidit"]
