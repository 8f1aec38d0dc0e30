"""Helpers shared by the tests (importable because pytest puts tests/ on the path)."""
from __future__ import annotations

import torch

from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit.runtime.text.conditioning import TextConditioning

TINY_DIT = dict(latent_channels=4, hidden_size=64, depth=2, num_heads=2, mlp_hidden=128, text_dim=32)


def randomize(model: torch.nn.Module, seed: int = 1, std: float = 0.1, skip: tuple = ()) -> torch.nn.Module:
    """Give every parameter random values (a stand-in for trained weights), except names starting with skip."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith(skip):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


def tiny_dit(seed: int = 1, **overrides) -> UniDiT:
    """A small backbone with random (non-zero) weights, in eval mode."""
    return randomize(UniDiT(DiTConfig(**{**TINY_DIT, **overrides})), seed).eval()


def make_text(batch: int, length: int = 6, dim: int = 32, seed: int = 0, valid: int | None = None):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if valid is not None:
        mask[:, valid:] = False
    return TextConditioning(torch.randn(batch, length, dim, generator=generator), mask,
                            torch.randn(batch, dim, generator=generator))


def tiny_bundle(seed: int = 1):
    """A complete bundle with small random modules (a stand-in for a trained one): 32x32 pixels, 4-channel
    latents at 1/4 resolution."""
    from unidit.runtime.bundle import GenerationDefaults, ModelBundle
    from unidit.runtime.text.encoder import TextEncoderConfig
    from unidit.runtime.text.tokenizer import build_tokenizer
    from unidit.runtime.vae.autoencoder import AutoencoderConfig
    from unidit.runtime.vae.splat_decoder import SplatDecoderConfig

    tokenizer = build_tokenizer("a red green blue cube ball sphere on grey".split())
    bundle = ModelBundle.build(
        DiTConfig(**TINY_DIT),
        AutoencoderConfig(latent_channels=4, channels=(8, 16, 16)),
        SplatDecoderConfig(latent_channels=4, channels=(8, 16, 16)),
        TextEncoderConfig(vocab_size=tokenizer.get_vocab_size(), width=32, depth=1, num_heads=2),
        tokenizer, GenerationDefaults(width=32, height=32, frames=5, steps=4, guidance=2.0))
    for index, module in enumerate(bundle.modules().values()):
        randomize(module, seed + index, std=0.1)
    return bundle.eval()


def tiny_model(seed: int = 1):
    """:func:`tiny_bundle` behind the family interface, as the nodes and generate() see models."""
    from unidit.runtime.families.unidit import model_from_bundle

    return model_from_bundle(tiny_bundle(seed))


def glb_vertex_colours_present(path) -> bool:
    """Whether the first primitive of a GLB file carries per-vertex colours (COLOR_0)."""
    import pygltflib

    return pygltflib.GLTF2().load(str(path)).meshes[0].primitives[0].attributes.COLOR_0 is not None


class Float64Forbidden(RuntimeError):
    pass


def forbid_float64():
    """A context in which any op that makes a float64 or complex tensor raises (Apple's MPS has neither)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    banned = (torch.float64, torch.complex64, torch.complex128)

    class Forbid(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(out):
                if isinstance(leaf, torch.Tensor) and leaf.dtype in banned:
                    raise Float64Forbidden(f"{func} made a {leaf.dtype} tensor")
            return out

    return Forbid()
