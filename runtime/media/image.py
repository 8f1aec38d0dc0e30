"""PNG encoding of frames (float 0..1, [H, W, 3]) with optional text chunks (ComfyUI stores the prompt and the
workflow in them, so a saved image can be dragged back into the editor)."""
from __future__ import annotations

import io
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames in 0..1 (any leading shape, channels last) -> uint8 numpy, rounded."""
    return (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def encode_png(image: torch.Tensor, text: Optional[Mapping[str, str]] = None, compress_level: int = 4) -> bytes:
    """image [H, W, 3] (or [H, W, 4]) float 0..1 -> PNG bytes."""
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"an image must be [H, W, 3] or [H, W, 4], got {tuple(image.shape)}")
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def save_png_images(images: torch.Tensor, directory, filename_prefix: str, text: Optional[Mapping[str, str]] = None):
    """Write images [N, H, W, 3] as numbered PNG files (``files.save_output``); returns [(path, subfolder)]."""
    from ..files import save_output

    return [save_output(directory, filename_prefix, "png", encode_png(image, text)) for image in images]


def prompt_text(prompt=None, extra_pnginfo=None) -> dict:
    """The PNG text chunks ComfyUI writes: the API prompt and every extra entry (the workflow), as JSON."""
    import json

    text = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    text.update({key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()})
    return text
