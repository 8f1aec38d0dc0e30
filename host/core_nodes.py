"""The few ComfyUI core nodes that shared workflows commonly use, under core's names and signatures, for the
standalone host only (inside ComfyUI the real ones exist and these are never registered)."""
from __future__ import annotations

import hashlib
import secrets

import numpy as np
import torch
from PIL import Image, ImageOps

from ..runtime import comfy_bridge, memory_budget
from ..runtime.media.image import prompt_text, save_png_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _input_images() -> list:
    folder = comfy_bridge.input_directory()
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _input_path(name: str):
    """The input file ``name``, kept inside the input folder."""
    folder = comfy_bridge.input_directory().resolve()
    path = (folder / name).resolve()
    if folder not in path.parents or not path.is_file():
        return None
    return path


class LoadImage:
    CATEGORY = "image"
    DESCRIPTION = "Loads an image from the input folder (alpha becomes the mask, 1 = transparent)."
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_images(), {"image_upload": True})}}

    @classmethod
    def IS_CHANGED(cls, image):
        path = _input_path(image)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return True if _input_path(image) else f"Invalid image file: {image}"

    def load_image(self, image):
        try:
            with Image.open(_input_path(image)) as opened:
                memory_budget.check_image_size(*opened.size, image)  # before decoding
                picture = ImageOps.exif_transpose(opened)
                rgba = np.asarray(picture.convert("RGBA"))
            pixels = torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0)[None]
            mask = 1.0 - torch.from_numpy(rgba[..., 3].astype(np.float32) / 255.0)[None]
            del rgba
        finally:
            memory_budget.give_back_freed_memory()
        return (pixels, mask)


class SaveImage:
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your output directory."
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save_images"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save."}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI",
                                                            "tooltip": "The prefix for the file to save."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    folder_type = "output"

    def directory(self):
        return comfy_bridge.output_directory()

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        saved = save_png_images(images, self.directory(), filename_prefix, prompt_text(prompt, extra_pnginfo))
        return {"ui": {"images": [{"filename": path.name, "subfolder": subfolder, "type": self.folder_type}
                                  for path, subfolder in saved]}}


class PreviewImage(SaveImage):
    DESCRIPTION = "Saves the input images to the temp directory for a preview."
    folder_type = "temp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def directory(self):
        return comfy_bridge.temp_directory()

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        return super().save_images(images, f"ComfyUI_temp_{secrets.token_hex(3)}", prompt, extra_pnginfo)


class ImageBatch:
    CATEGORY = "image"
    DESCRIPTION = "Puts two image batches into one; the second is resized (centre-cropped) to the first's size."
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1, image2):
        if image1.shape[1:] != image2.shape[1:]:
            image2 = _resize_cropped(image2, image1.shape[2], image1.shape[1])
        return (torch.cat([image1, image2]),)


def _resize_cropped(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[N, H, W, 3] centre-cropped to the aspect of width x height, then resized bilinearly (as core does)."""
    old_height, old_width = images.shape[1:3]
    x = y = 0
    if old_width / old_height > width / height:
        x = round((old_width - old_height * width / height) / 2)
    elif old_width / old_height < width / height:
        y = round((old_height - old_width * height / width) / 2)
    cropped = images[:, y:old_height - y, x:old_width - x].movedim(-1, 1)
    return torch.nn.functional.interpolate(cropped, size=(height, width), mode="bilinear").movedim(1, -1)


CORE_NODES = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage, "ImageBatch": ImageBatch}
CORE_DISPLAY_NAMES = {"LoadImage": "Load Image", "SaveImage": "Save Image", "PreviewImage": "Preview Image",
                      "ImageBatch": "Batch Images"}
