"""Tiny Wan models written the way ComfyUI users keep the real ones: a diffusion model, a UMT5 text encoder (with
its sentencepiece model inside, as ComfyUI stores it) and a VAE, under the real file names, in
``<root>/diffusion_models``, ``<root>/text_encoders`` and ``<root>/vae``. Random seeded weights in the real key
layouts; small enough to run a workflow in seconds on the CPU."""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from unidit.runtime.bench.synthetic import randomize_module
from unidit.runtime.families.wan.dit import WanDiT, WanDiTConfig
from unidit.runtime.families.wan.umt5 import UMT5Config, UMT5Encoder
from unidit.runtime.families.wan.vae import WanVAE, WanVAEConfig

TEXT_WIDTH = 64
TINY_DIT = dict(dim=256, ffn_dim=384, num_heads=2, num_layers=2, text_dim=TEXT_WIDTH)
TINY_UMT5 = UMT5Config(vocab_size=300, d_model=TEXT_WIDTH, d_kv=16, num_heads=4, d_ff=128, num_layers=2)
TINY_VAE = {"2.1": WanVAEConfig(base_dim=8, decoder_base_dim=8, num_res_blocks=1),
            "2.2": WanVAEConfig(version="2.2", base_dim=8, decoder_base_dim=8, num_res_blocks=1, z_dim=48,
                                patch_size=2, latents_mean=WanVAEConfig.wan22().latents_mean,
                                latents_std=WanVAEConfig.wan22().latents_std)}


@dataclass(frozen=True)
class WanFiles:
    diffusion_model: str
    text_encoder: str
    vae: str


FILES = {"2.1": WanFiles("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                         "wan_2.1_vae.safetensors"),
         "2.2": WanFiles("wan2.2_ti2v_5B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                         "wan2.2_vae.safetensors")}


@lru_cache(maxsize=1)
def spiece_model() -> bytes:
    """A small sentencepiece model with T5's special ids (pad 0, eos 1, unk 2), trained on generated English."""
    import sentencepiece

    rng = random.Random(0)
    words = ("a the red blue green cat dog ball cube runs jumps on grass in snow city street at night day slowly "
             "quickly camera pans over sea mountain forest bird flies sky car drives road small large bright dark "
             "close up wide shot of and with").split()
    letters = "abcdefghijklmnopqrstuvwxyz"
    words += ["".join(rng.choice(letters) for _ in range(rng.randint(2, 6))) for _ in range(400)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(2000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=TINY_UMT5.vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
        hard_vocab_limit=False)
    return model.getvalue()


def scaled_fp8(state: dict) -> dict:
    """ComfyUI's scaled-fp8 form of a state dict: every Linear weight as float8_e4m3fn with a float32
    ``scale_weight``, a ``scaled_fp8`` marker tensor, everything else in fp16."""
    out = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2 and key != "shared.weight":
            scale = value.abs().max().clamp_min(1e-8) / 448.0
            out[key] = (value / scale).to(torch.float8_e4m3fn)
            out[key[:-len("weight")] + "scale_weight"] = scale.reshape(1).float()
        else:
            out[key] = value.half()
    return out


def write_tiny_wan(root: Path, version: str = "2.1", seed: int = 0) -> WanFiles:
    """Write the three files of a tiny Wan ``version`` ("2.1" or "2.2") under ``root``; returns their names."""
    names = FILES[version]
    channels = 48 if version == "2.2" else 16
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    dit = randomize_module(WanDiT(WanDiTConfig(**TINY_DIT, in_channels=channels, out_channels=channels)), seed)
    save_file({f"model.diffusion_model.{k}": v.half() for k, v in dit.state_dict().items()},
              root / "diffusion_models" / names.diffusion_model)
    encoder = randomize_module(UMT5Encoder(TINY_UMT5), seed + 1)
    text = scaled_fp8(encoder.state_dict())
    text["spiece_model"] = torch.frombuffer(bytearray(spiece_model()), dtype=torch.uint8)
    save_file(text, root / "text_encoders" / names.text_encoder)
    vae = randomize_module(WanVAE(TINY_VAE[version]), seed + 2)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, root / "vae" / names.vae)
    return names
