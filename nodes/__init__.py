"""ComfyUI node classes, one module per pipeline stage. Each node maps its widgets to one runtime call.

Class names never change once released, nor the order of their widgets (workflows store widget values by
position); tests/test_node_definitions.py guards both against a committed snapshot.
"""
from .decode import UniDiTDecode, UniDiTDecodeSplat
from .latents import (UniDiTContinueClip, UniDiTControl, UniDiTEmpty3DLatent, UniDiTEmptyImageLatent,
                      UniDiTEmptyVideoLatent, UniDiTEncode, UniDiTImageCondition, UniDiTJoinClips, UniDiTJoinLatents,
                      UniDiTKeyframes)
from .loader import UniDiTLoader, UniDiTLoRA, UniDiTPartsLoader, UniDiTUnloadModels
from .refine import UniDiTRefine3D
from .sampling import UniDiTGuidance, UniDiTSampler
from .save import UniDiTSaveImage, UniDiTSaveMesh, UniDiTSaveSplat, UniDiTSaveVideo
from .splats import UniDiTFitSplats, UniDiTRenderSplat, UniDiTSplatToMesh
from .text import UniDiTTextEncode

NODE_DISPLAY_NAME_MAPPINGS = {
    "UniDiTLoader": "UniDiT Loader",
    "UniDiTPartsLoader": "UniDiT Loader (separate files)",
    "UniDiTLoRA": "UniDiT LoRA",
    "UniDiTTextEncode": "UniDiT Text Encode",
    "UniDiTEmptyImageLatent": "UniDiT Empty Image Latent",
    "UniDiTEmptyVideoLatent": "UniDiT Empty Video Latent",
    "UniDiTEmpty3DLatent": "UniDiT Empty 3D Latent",
    "UniDiTEncode": "UniDiT Encode",
    "UniDiTImageCondition": "UniDiT Image Condition",
    "UniDiTKeyframes": "UniDiT Keyframes",
    "UniDiTControl": "UniDiT Control",
    "UniDiTContinueClip": "UniDiT Continue Clip",
    "UniDiTJoinClips": "UniDiT Join Clips",
    "UniDiTJoinLatents": "UniDiT Join Latents",
    "UniDiTGuidance": "UniDiT Guidance",
    "UniDiTSampler": "UniDiT Sampler",
    "UniDiTDecode": "UniDiT Decode",
    "UniDiTDecodeSplat": "UniDiT Decode Splat",
    "UniDiTRefine3D": "UniDiT Refine 3D",
    "UniDiTFitSplats": "UniDiT Fit Splats",
    "UniDiTRenderSplat": "UniDiT Render Splat",
    "UniDiTSplatToMesh": "UniDiT Splat to Mesh",
    "UniDiTSaveImage": "UniDiT Save Image",
    "UniDiTSaveVideo": "UniDiT Save Video",
    "UniDiTSaveSplat": "UniDiT Save Splat",
    "UniDiTSaveMesh": "UniDiT Save Mesh",
    "UniDiTUnloadModels": "UniDiT Unload Models",
}
NODE_CLASS_MAPPINGS = {name: globals()[name] for name in NODE_DISPLAY_NAME_MAPPINGS}
