"""Loading and unloading model bundles."""
from __future__ import annotations

from ..runtime.store import DTYPES, STORE, available_bundles
from .types import CATEGORY, MODEL

ATTENTION_CHOICES = ["sdpa", "flash_attn", "chunked", "comfy"]


class UniDiTLoader:
    DESCRIPTION = ("Loads a UniDiT model bundle (one .safetensors file: backbone, autoencoder, splat decoder, text "
                   "encoder). The weights stay resident between runs; queueing again does not reload them.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("A handle to the loaded model, for every other UniDiT node.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        bundles = sorted(available_bundles()) or ["unidit-toyworld.safetensors"]
        return {"required": {
            "bundle": (bundles, {"tooltip": "Bundle file from ComfyUI's models/unidit folder or the pack's models "
                                            "folder. unidit-toyworld is the demo model trained on coloured "
                                            "primitives."}),
            "device": (["auto", "cpu", "cuda"], {"default": "auto",
                                                 "tooltip": "auto: ComfyUI's device, or CUDA when available."}),
            "dtype": (["auto", *DTYPES], {"default": "auto",
                                          "tooltip": "auto: fp32 on the CPU (half precision is very slow there), "
                                                     "bf16 or fp16 on CUDA."}),
            "attention": (ATTENTION_CHOICES, {"default": "sdpa",
                                              "tooltip": "sdpa works everywhere. flash_attn needs the flash-attn "
                                                         "package and CUDA half precision; comfy uses ComfyUI's own "
                                                         "attention settings; chunked bounds memory on very long "
                                                         "sequences. Anything unavailable falls back to sdpa."}),
        }}

    def load(self, bundle, device, dtype, attention):
        bundles = available_bundles()
        if bundle not in bundles:
            raise FileNotFoundError(f"model bundle {bundle!r} not found; put it in ComfyUI's models/unidit folder "
                                    f"(found: {', '.join(sorted(bundles)) or 'none'})")
        handle = STORE.handle(bundles[bundle], device, dtype, attention)
        STORE.bundle(handle)  # load now, so the load time shows on this node
        return (handle,)


class UniDiTUnloadModels:
    DESCRIPTION = ("Unloads every UniDiT bundle from memory (the next run loads it again). Connect anything to "
                   "'after' to unload once that output is done.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "unload"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": {"after": ("*", {"tooltip": "Any output to wait for."})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # unloading is an action: run it every time

    def unload(self, after=None):
        count = STORE.unload()
        return {"ui": {"text": [f"unloaded {count} UniDiT bundle{'s' if count != 1 else ''}"]}}
