"""UniDiT for ComfyUI: one diffusion transformer for images, videos, Gaussian splats and meshes.

ComfyUI imports this folder as a package under an arbitrary name, so every import in the pack is relative.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
