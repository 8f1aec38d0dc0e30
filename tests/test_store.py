"""The resident store and device memory: a node asks ComfyUI's memory manager for the parts it uses and the room
its computation needs (checked against a recording stand-in for ComfyUI's modules); standalone, a VRAM budget
swaps blocks; devices this machine lacks are refused with our message."""
import sys
import types

import pytest
import torch

from unidit.runtime import comfy_bridge
from unidit.runtime.families import ModelFiles
from unidit.runtime.store import ModelStore, check_device
from wan_testing import FILES


@pytest.fixture
def recording_comfyui(monkeypatch):
    """comfy.model_management and comfy.model_patcher as far as the bridge uses them, recording every call."""
    calls = []

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size

    management = types.SimpleNamespace(
        unet_offload_device=lambda: torch.device("cpu"), get_torch_device=lambda: torch.device("cpu"),
        module_size=lambda module: sum(p.numel() * p.element_size() for p in module.parameters()),
        load_models_gpu=lambda models, memory_required=0: calls.append(
            ([type(m.model).__name__ for m in models], memory_required)),
        current_loaded_models=[])
    comfy = types.ModuleType("comfy")
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_management", management)
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", types.SimpleNamespace(ModelPatcher=ModelPatcher))
    return calls


def wan_files(root, version="2.1"):
    names = FILES[version]
    return ModelFiles(root / "diffusion_models" / names.diffusion_model, root / "text_encoders" / names.text_encoder,
                      root / "vae" / names.vae)


def test_nodes_ask_comfyuis_manager_for_the_parts_they_use_and_the_room_they_need(recording_comfyui, wan_models):
    store = ModelStore()
    handle = store.handle(wan_files(wan_models), "cpu", "fp32")
    model = store.model(handle, parts=())                   # the loader: loads, puts nothing on the device
    assert recording_comfyui == [] and store.loads == 1
    shape = (1, 16, 21, 60, 104)                           # 81 frames at 832x480
    store.model(handle, ("text_encoder",))
    store.model(handle, ("denoiser",), shape)
    store.model(handle, ("autoencoder",), shape)
    assert [names for names, _ in recording_comfyui] == [["UMT5TextEncoder"], ["WanDenoiser"], ["WanVAE"]]
    text_room, denoiser_room, decode_room = (room for _, room in recording_comfyui)
    assert text_room == 0
    tokens = 2 * 21 * 30 * 52                               # both guidance branches, 1 x 2 x 2 patches
    assert denoiser_room == tokens * (6 * 256 + 2 * 384) * 4 == model.activation_bytes("denoiser", shape)
    assert decode_room == model.activation_bytes("autoencoder", shape) > 0
    store.model(handle, ("denoiser",), shape, guided=False)
    assert recording_comfyui[-1][1] == denoiser_room // 2
    assert store.loads == 1                                 # one load for every call


def test_the_patchers_carry_each_parts_size_and_devices(recording_comfyui, wan_models):
    managed = comfy_bridge.ManagedModules({"denoiser": torch.nn.Linear(4, 4)}, torch.device("cpu"))
    (patcher,) = managed._patchers.values()
    assert patcher.size == 4 * 4 * 4 + 4 * 4 and patcher.offload_device == torch.device("cpu")


def test_standalone_a_vram_budget_is_ignored_on_the_cpu_and_devices_this_machine_lacks_are_refused(wan_models):
    with pytest.raises(ValueError, match="no CUDA device"):
        check_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        check_device("tpu")
    token = comfy_bridge.use_host(comfy_bridge.HostServices(
        compute=comfy_bridge.ComputeOptions("cpu", vram_budget_gb=0.001)))
    try:
        store = ModelStore()
        handle = store.handle(wan_files(wan_models), "auto")
        assert handle.device == "cpu" and handle.dtype == "fp32"
        store.model(handle, parts=())
        assert store._swaps[handle.key] == []              # the CPU is its own host memory: nothing to swap
    finally:
        comfy_bridge.release_host(token)
    with pytest.raises(ValueError, match="positive number of GB"):
        comfy_bridge.ComputeOptions(vram_budget_gb=0)


def test_comfyuis_flags_choose_previews_and_precision(monkeypatch):
    import enum

    class LatentPreviewMethod(enum.Enum):   # as comfy/cli_args.py has it
        NoPreviews = "none"
        Auto = "auto"
        Latent2RGB = "latent2rgb"
        TAESD = "taesd"

    args = types.SimpleNamespace(preview_method=LatentPreviewMethod.NoPreviews, fp8_e4m3fn_unet=True, bf16_unet=True)
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.cli_args", types.SimpleNamespace(args=args))
    expected = {LatentPreviewMethod.NoPreviews: "none", LatentPreviewMethod.Auto: "latent2rgb",
                LatentPreviewMethod.Latent2RGB: "latent2rgb", LatentPreviewMethod.TAESD: "decode"}
    for method, name in expected.items():
        args.preview_method = method
        assert comfy_bridge.preview_method() == name
    assert comfy_bridge.unet_precision() == ("bf16", torch.float8_e4m3fn)
    args.bf16_unet, args.fp8_e4m3fn_unet = False, False
    assert comfy_bridge.unet_precision() == (None, None)
