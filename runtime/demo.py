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
from .gaussians.mesh import MeshConfig, mesh_bytes, splat_to_mesh
from .gaussians.ply import ply_bytes
from .generate import decode_frames, decode_splats, empty_latents, generate
from .media.image import encode_png
from .media.video import encode_video
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

    outputs = {}
    image = decode_frames(model, sample("image"))[0, 0]
    outputs["image"] = save_output(output_dir, "unidit_image", "png", encode_png(image, {"prompt": prompt}))[0]
    video = decode_frames(model, sample("video"))[0]
    outputs["video"] = save_output(output_dir, "unidit_video", "mp4", encode_video(video, d.fps, "mp4"))[0]
    views = sample("3d")
    splats = decode_splats(model, views).item(0)
    outputs["splat"] = save_output(output_dir, "unidit_splat", "ply", ply_bytes(splats))[0]
    bar.set_postfix_str("mesh")
    mesh = splat_to_mesh(splats, MeshConfig(resolution=96))
    outputs["mesh"] = save_output(output_dir, "unidit_mesh", "glb", mesh_bytes(mesh, "glb"))[0]
    bar.close()
    outputs["seconds"] = round(time.perf_counter() - started, 2)
    outputs["note"] = note
    return outputs
