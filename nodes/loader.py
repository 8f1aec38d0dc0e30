"""Loading and unloading models: a UniDiT bundle, or a diffusion model with its text encoder and VAE."""
from __future__ import annotations

from ..runtime.families import ModelFiles
from ..runtime.model_folders import available_bundles, available_loras, available_parts
from ..runtime.previews import PREVIEW_METHODS
from ..runtime.store import DTYPES, STORE, available_devices
from .types import ANY, CATEGORY, MODEL

ATTENTION_CHOICES = ["sdpa", "flash_attn", "chunked", "comfy"]
NONE = "none"


def _runtime_widgets() -> dict:
    return {
        "device": (available_devices(), {"default": "auto",
                                         "tooltip": "auto: ComfyUI's device; standalone CUDA, else Apple's MPS, "
                                                    "else the CPU. Only the devices this machine has are offered."}),
        "dtype": (["auto", *DTYPES], {"default": "auto",
                                      "tooltip": "The dtype to compute in. auto: fp32 on the CPU (half precision is "
                                                 "very slow there), bf16 or fp16 on CUDA. Weights stay as stored in "
                                                 "the file (fp8, bf16, ...) and are cast layer by layer."}),
        "attention": (ATTENTION_CHOICES, {"default": "sdpa",
                                          "tooltip": "sdpa works everywhere. flash_attn needs the flash-attn "
                                                     "package and CUDA half precision; comfy uses ComfyUI's own "
                                                     "attention settings; chunked bounds memory on very long "
                                                     "sequences. Anything unavailable falls back to sdpa."}),
    }


def _optional_runtime_widgets() -> dict:
    """Added after the first release: optional, so API prompts written before them still validate."""
    return {
        "previews": (["auto", *PREVIEW_METHODS], {"default": "auto",
                                                  "tooltip": "Pictures while sampling. auto: ComfyUI's "
                                                             "--preview-method (standalone: latent2rgb); "
                                                             "latent2rgb is a cheap colour projection of the "
                                                             "latent; decode runs the autoencoder every step; "
                                                             "none skips them."}),
        "compile": ("BOOLEAN", {"default": False,
                                "tooltip": "torch.compile the transformer blocks: the first run compiles (slow), "
                                           "later runs are faster. Needs a working compiler (a C++ compiler on the "
                                           "CPU, Triton on CUDA); without one the model runs uncompiled, with a "
                                           "warning."}),
    }


def _pick(kind: str, name: str, what: str, folder: str):
    found = available_parts(kind)
    if name not in found:
        listing = ", ".join(sorted(found)) or "none"
        raise FileNotFoundError(f"{what} {name!r} not found; put it in ComfyUI's models/{folder} folder (or "
                                f"models/diffusers for a diffusers folder). Found: {listing}")
    return found[name]


class UniDiTLoader:
    DESCRIPTION = ("Loads a UniDiT model bundle (one .safetensors file: backbone, autoencoder, splat decoder, text "
                   "encoder). The weights stay resident between runs; queueing again does not reload them. For Wan "
                   "2.1 / 2.2 (three files) use UniDiT Loader (separate files).")
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
            **_runtime_widgets(),
        }, "optional": _optional_runtime_widgets()}

    def load(self, bundle, device, dtype, attention, previews="auto", compile=False):
        bundles = available_bundles()
        if bundle not in bundles:
            raise FileNotFoundError(f"model bundle {bundle!r} not found; put it in ComfyUI's models/unidit folder "
                                    f"(found: {', '.join(sorted(bundles)) or 'none'})")
        handle = STORE.handle(bundles[bundle], device, dtype, attention, previews, compile)
        STORE.model(handle, parts=())  # load now, so the load time shows on this node (the device comes later)
        return (handle,)


class UniDiTPartsLoader:
    DESCRIPTION = ("Loads a model kept as separate files, as ComfyUI keeps Wan 2.1 / 2.2: a diffusion model "
                   "(models/diffusion_models), its text encoder (models/text_encoders: umt5_xxl) and its VAE "
                   "(models/vae: wan_2.1_vae for Wan 2.1, wan2.2_vae for Wan 2.2 TI2V-5B). Diffusers folders work "
                   "too. Every other UniDiT node takes the result as it takes a bundle.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("A handle to the loaded model, for every other UniDiT node.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        models = sorted(available_parts("diffusion_models"))
        return {"required": {
            "diffusion_model": (models, {"tooltip": "The diffusion model, e.g. wan2.1_t2v_1.3B_fp16.safetensors or "
                                                    "wan2.2_ti2v_5B_fp16.safetensors (fp32, fp16, bf16, fp8 and "
                                                    "ComfyUI's scaled fp8 files)."}),
            "text_encoder": (sorted(available_parts("text_encoders")),
                             {"tooltip": "Wan's T5 encoder: umt5_xxl_fp16 or umt5_xxl_fp8_e4m3fn_scaled."}),
            "vae": (sorted(available_parts("vae")),
                    {"tooltip": "wan_2.1_vae for Wan 2.1 models, wan2.2_vae for Wan 2.2 TI2V-5B."}),
            "low_noise_model": ([NONE, *models], {"default": NONE,
                                                  "tooltip": "Wan 2.2 A14B only: the low-noise expert (the "
                                                             "diffusion_model above is the high-noise one). Both stay "
                                                             "loaded; the sampler switches at noise level 0.875."}),
            **_runtime_widgets(),
        }, "optional": _optional_runtime_widgets()}

    def load(self, diffusion_model, text_encoder, vae, low_noise_model, device, dtype, attention, previews="auto",
             compile=False):
        files = ModelFiles(
            diffusion_model=_pick("diffusion_models", diffusion_model, "diffusion model", "diffusion_models"),
            text_encoder=_pick("text_encoders", text_encoder, "text encoder", "text_encoders"),
            vae=_pick("vae", vae, "VAE", "vae"),
            low_noise=None if low_noise_model == NONE else _pick("diffusion_models", low_noise_model,
                                                                 "low-noise model", "diffusion_models"))
        handle = STORE.handle(files, device, dtype, attention, previews, compile)
        STORE.model(handle, parts=())
        return (handle,)


class UniDiTLoRA:
    DESCRIPTION = ("Applies a LoRA to the model's diffusion model with a strength. The base weights stay as they are "
                   "(the LoRA is added while sampling), so LoRAs switch without reloading and an unplugged one is "
                   "gone. Chain several to stack them. Reads LoRAs written by `unidit train --lora-rank` and the "
                   "diffusers/PEFT (lora_A/lora_B) and kohya (lora_down/lora_up, alpha) layouts shared for Wan.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with this LoRA (and any before it) applied.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "From a UniDiT Loader (or another UniDiT LoRA)."}),
            "lora_name": (sorted(available_loras()), {"tooltip": "A LoRA from ComfyUI's models/loras folder (or the "
                                                                 "pack's models/loras)."}),
            "strength": ("FLOAT", {"default": 1.0, "min": -5.0, "max": 5.0, "step": 0.05,
                                   "tooltip": "How much of the LoRA to add: 1 as trained, 0 none (the base model "
                                              "exactly), negative to push away from it."}),
        }}

    def apply(self, model, lora_name, strength):
        found = available_loras()
        if lora_name not in found:
            raise FileNotFoundError(f"LoRA {lora_name!r} not found; put it in ComfyUI's models/loras folder "
                                    f"(found: {', '.join(sorted(found)) or 'none'})")
        handle = model.with_lora(found[lora_name], strength)
        STORE.model(handle, parts=())  # reads the file now, so a LoRA that does not fit fails on this node
        return (handle,)


class UniDiTUnloadModels:
    DESCRIPTION = ("Unloads every UniDiT model from memory (the next run loads it again). Connect anything to "
                   "'after' to unload once that output is done.")
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "unload"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": {"after": (ANY, {"tooltip": "Any output to wait for: the models are "
                                                                        "unloaded once it is computed."})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # unloading is an action: run it every time

    def unload(self, after=None):
        count = STORE.unload()
        return {"ui": {"text": [f"unloaded {count} UniDiT model{'s' if count != 1 else ''}"]}}
