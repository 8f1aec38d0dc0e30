"""`unidit demo`: the main job. One prompt, the shipped bundle, four files: an image (PNG), a video (MP4), a
Gaussian splat (PLY) and a mesh (GLB)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from . import comfy_bridge
from .bundle import SHIPPED_BUNDLE
from .families import ModelFiles, Placement, load_model
from .files import save_output
from .gaussians.mesh import MeshConfig, splat_to_mesh
from .generate import decode_frames, decode_splats, empty_latents, generate
from .output_formats import IMAGE_FILES, MESH_FILES, SPLAT_FILES, VIDEO_FILES, OutputKind
from .sampling.guidance import GuidanceConfig
from .sampling.sampler import SamplerConfig
from .store import DTYPES, check_device, resolve_dtype
from .text.tokenizer import unknown_words_note


def run_demo(prompt: str, output_dir: Path, bundle_path: Optional[Path] = None, seed: int = 0,
             progress: bool = True, device: str = "auto") -> dict:
    """Generate the four outputs of ``prompt`` on ``device`` (auto: CUDA, else MPS, else the CPU); returns
    {"image" | "video" | "splat" | "mesh": path}."""
    started = time.perf_counter()
    bundle_path = Path(bundle_path or SHIPPED_BUNDLE)
    if not bundle_path.exists():
        raise FileNotFoundError(f"no model bundle at {bundle_path}; train one with `unidit train --preset "
                                f"toyworld` or pass --bundle")
    chosen = comfy_bridge.default_device() if device == "auto" else torch.device(check_device(device))
    model = load_model(ModelFiles(bundle_path), Placement(chosen, DTYPES[resolve_dtype("auto", str(chosen))]))
    d = model.defaults
    sampler = SamplerConfig(solver=d.solver, steps=d.steps)
    guidance = GuidanceConfig(scale=d.guidance)
    positive, negative = model.encode_prompts([prompt]), model.encode_prompts([d.negative_prompt])
    note = unknown_words_note(model.unknown_words(prompt))
    stages = ("image", "video", "3d")
    bar = tqdm(total=len(stages) * sampler.steps, desc="demo", disable=not progress, dynamic_ncols=True)

    def sample(modality: str):
        bar.set_postfix_str(modality)
        latents = empty_latents(model, modality, d.width, d.height, frames=d.frames, fps=d.fps)
        return generate(model, latents, positive, negative, guidance, sampler, seed,
                        callback=lambda step, total, x, denoised: bar.update(1))

    def save(kind: OutputKind, *data) -> Path:  # the kind's default format: PNG, MP4, PLY, GLB
        return save_output(output_dir, f"unidit_{kind.name}", kind.default, kind.write(kind.default, *data))[0]

    outputs = {}
    outputs["image"] = save(IMAGE_FILES, decode_frames(model, sample("image"))[0, 0], {"prompt": prompt})
    outputs["video"] = save(VIDEO_FILES, decode_frames(model, sample("video"))[0], d.fps)
    splats = decode_splats(model, sample("3d")).item(0)
    outputs["splat"] = save(SPLAT_FILES, splats)
    bar.set_postfix_str("mesh")
    outputs["mesh"] = save(MESH_FILES, splat_to_mesh(splats, MeshConfig(resolution=96)))
    bar.close()
    outputs["seconds"] = round(time.perf_counter() - started, 2)
    outputs["note"] = note
    return outputs
