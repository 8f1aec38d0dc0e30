"""UniDiT for ComfyUI: one diffusion transformer for images, videos, Gaussian splats and meshes.

ComfyUI imports this folder as a package under an arbitrary name, so every import in the pack is relative.
"""
from pathlib import Path

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .runtime.comfy_bridge import install_example_inputs, register_model_folder

WEB_DIRECTORY = "./web"

install_example_inputs(Path(__file__).parent / "workflows" / "input")
register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
