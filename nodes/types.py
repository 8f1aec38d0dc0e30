"""The values that flow between nodes, and their conversions to the runtime's dataclasses.

| socket         | value                                                                                       |
|----------------|---------------------------------------------------------------------------------------------|
| UNIDIT_MODEL   | ``runtime.store.ModelHandle`` (a key into the resident store, never the tensors)            |
| UNIDIT_TEXT    | ``runtime.text.conditioning.TextConditioning``                                              |
| UNIDIT_GUIDANCE| :class:`Guidance`                                                                           |
| LATENT         | ComfyUI's dict: ``samples`` [B, C, F, h, w] plus ``unidit``: modality, given, clean, cameras, fps |
| IMAGE          | ComfyUI's float [N, H, W, 3]; video frames and 3D views are flattened into N                |
| SPLAT          | core's SPLAT where the core has it, else ``runtime.gaussians.splats.Splats`` (same fields)  |
| MESH           | core's MESH where the core has it, else :class:`MeshBatch` (same fields: vertices [B, N, 3], |
|                | faces [B, M, 3], vertex_colors [B, N, 3], vertex_counts / face_counts when items differ)    |

A MESH is in glTF's frame (y up, right-handed; ``(x, -y, -z)`` of the splat frame) with *linear* vertex colours,
as core's SaveGLB writes its fields verbatim into a GLB (POSITION, and COLOR_0 where the core writes colours), so
what it saves stands upright. The runtime's :class:`Mesh` stays in the splat frame with sRGB colours; the two
conversions below map between them, so our Save Mesh writes the same file either way. Every value also carries
``normals`` (glTF frame); textured meshes carry ``uvs`` and ``texture`` [B, T, T, 3] (sRGB). Cores whose MESH
takes a texture (ComfyUI after May 2026) get a textured mesh without vertex colours, which glTF would multiply
into the texture; our colours stay on the value as ``unidit_vertex_colors`` for our own nodes. Core SaveGLB of
ComfyUI 0.3.64 and older writes positions and faces only (grey).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..runtime import comfy_bridge
from ..runtime.gaussians.mesh import GLTF_FROM_SPLAT, Mesh, linear_to_srgb, srgb_to_linear, vertex_normals
from ..runtime.gaussians.splats import Splats
from ..runtime.generate import Latents
from ..runtime.sampling.guidance import GuidanceConfig
from ..runtime.text.conditioning import TextConditioning

MODEL = "UNIDIT_MODEL"
TEXT = "UNIDIT_TEXT"
GUIDANCE = "UNIDIT_GUIDANCE"
SPLAT = "SPLAT"
MESH = "MESH"
CATEGORY = "UniDiT"


class AnyType(str):
    """The socket type that accepts any output ("*"). ComfyUI's validation compares types with ``!=`` first and
    only then as comma-separated sets, in which a plain "*" overlaps nothing (0.3.64 refuses every link to it);
    this "*" is never unequal to a type, so every link passes there, as it does in this host and in the editor."""

    def __ne__(self, other) -> bool:
        return False

    __hash__ = str.__hash__


ANY = AnyType("*")


def model_input():
    """The model socket every node but the loaders has."""
    return (MODEL, {"tooltip": "The loaded model, from UniDiT Loader (or UniDiT Loader (separate files))."})


def range_problem(cls, **values):
    """The first declared min / max that ``values`` break, as ComfyUI words it, else None. ComfyUI skips these
    checks for the inputs a node's ``VALIDATE_INPUTS`` takes, so such a node checks them itself with this."""
    declared = cls.INPUT_TYPES()
    specs = {**declared.get("required", {}), **declared.get("optional", {})}
    for name, value in values.items():
        options = specs[name][1] if len(specs[name]) > 1 else {}
        if "min" in options and value < options["min"]:
            return f"{name}: Value {value} smaller than min of {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{name}: Value {value} bigger than max of {options['max']}"
    return None


@dataclass
class Guidance:
    """Classifier-free guidance settings and the negative prompt (None: the empty prompt)."""

    config: GuidanceConfig
    negative: Optional[TextConditioning] = None


def latent_to_comfy(latents: Latents) -> dict:
    return {"samples": latents.samples, "unidit": {"modality": latents.modality, "given": latents.given,
                                                   "clean": latents.clean, "cameras": latents.cameras,
                                                   "fps": latents.fps, "control": latents.control}}


def latent_from_comfy(value: dict) -> Latents:
    info = value.get("unidit")
    if info is None:
        raise ValueError("this LATENT was not made by a UniDiT node (it has no 'unidit' entry): start from UniDiT "
                         "Empty Image/Video/3D Latent")
    samples = value["samples"]
    if samples.ndim != 5:
        raise ValueError(f"UniDiT latents are [B, C, F, h, w]; this one is {tuple(samples.shape)}")
    return Latents(samples, info["modality"], info["given"], info.get("clean"), info.get("cameras"), info.get("fps"),
                   info.get("control"))


def flatten_frames(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, 3] -> ComfyUI IMAGE [B * T, H, W, 3]."""
    return frames.reshape(-1, *frames.shape[2:]).contiguous()


def splat_to_comfy(splats: Splats):
    core = comfy_bridge.core_type("SPLAT")
    if core is None:
        return splats
    return core(splats.positions, splats.scales, splats.rotations, splats.opacities, splats.sh, splats.counts)


def splat_from_comfy(value) -> Splats:
    """Our Splats from core's SPLAT or ours (the fields are the same)."""
    return Splats(value.positions, value.scales, value.rotations, value.opacities, value.sh,
                  getattr(value, "counts", None))


@dataclass
class MeshBatch:
    """Core MESH's layout for ComfyUI versions without a core class that carries vertex colours."""

    vertices: torch.Tensor
    faces: torch.Tensor
    vertex_colors: Optional[torch.Tensor] = None
    vertex_counts: Optional[torch.Tensor] = None
    face_counts: Optional[torch.Tensor] = None
    normals: Optional[torch.Tensor] = None    # [B, N, 3] unit, glTF frame
    uvs: Optional[torch.Tensor] = None        # textured meshes: [B, N, 2], glTF's convention (0, 0 top left)
    texture: Optional[torch.Tensor] = None    # [B, T, T, 3] sRGB base colour (as a PNG holds it)


def meshes_to_comfy(meshes: list[Mesh]):
    """Meshes (splat frame, sRGB vertex colours) -> one batched MESH value (glTF frame, linear colours; module
    docstring); items of different sizes are padded (degenerate faces on vertex 0) with their real sizes in
    ``vertex_counts`` / ``face_counts``."""
    vertex_counts = torch.tensor([len(m.vertices) for m in meshes])
    face_counts = torch.tensor([len(m.faces) for m in meshes])
    vertices = torch.zeros(len(meshes), int(vertex_counts.max()), 3)
    faces = torch.zeros(len(meshes), int(face_counts.max()), 3, dtype=torch.int64)
    colors = torch.zeros(len(meshes), int(vertex_counts.max()), 3)
    normals = torch.zeros(len(meshes), int(vertex_counts.max()), 3)
    for i, mesh in enumerate(meshes):
        vertices[i, :len(mesh.vertices)] = torch.as_tensor(mesh.vertices * GLTF_FROM_SPLAT, dtype=torch.float32)
        faces[i, :len(mesh.faces)] = torch.as_tensor(mesh.faces)
        colors[i, :len(mesh.vertices)] = torch.as_tensor(srgb_to_linear(mesh.vertex_colors), dtype=torch.float32)
        normals[i, :len(mesh.vertices)] = torch.as_tensor(mesh.normals * GLTF_FROM_SPLAT, dtype=torch.float32)
    same_size = bool((vertex_counts == vertex_counts[0]).all() and (face_counts == face_counts[0]).all())
    counts = {} if same_size else {"vertex_counts": vertex_counts, "face_counts": face_counts}
    textured = {}
    if all(mesh.texture is not None for mesh in meshes):
        uvs = torch.zeros(len(meshes), int(vertex_counts.max()), 2)
        for i, mesh in enumerate(meshes):
            uvs[i, :len(mesh.vertices)] = torch.as_tensor(mesh.uvs)
        textured = {"uvs": uvs, "texture": torch.stack([torch.as_tensor(mesh.texture) for mesh in meshes])}
    core = comfy_bridge.core_type("MESH")
    parameters = inspect.signature(core).parameters if core is not None else {}
    if "vertex_colors" in parameters:
        extra = {"normals": normals} if "normals" in parameters else {}
        if textured and "texture" in parameters:   # COLOR_0 would tint the texture: core gets the texture alone
            value = core(vertices, faces, **textured, **extra, **counts)
        else:
            value = core(vertices, faces, vertex_colors=colors, **extra, **counts)
    else:
        # Older cores' MESH holds only vertices and faces; ours has the same fields plus colours, and core nodes
        # such as SaveGLB read it just the same.
        value = MeshBatch(vertices, faces, colors, counts.get("vertex_counts"), counts.get("face_counts"))
    value.unidit_vertex_colors, value.normals = colors, normals     # what our nodes read back
    for name, tensor in textured.items():
        setattr(value, name, tensor)
    return value


def meshes_from_comfy(value) -> list[Mesh]:
    """Meshes (splat frame, sRGB colours) from a MESH value (glTF frame, linear colours), core's or ours; missing
    vertex colours become light grey."""
    meshes = []
    vertex_counts = getattr(value, "vertex_counts", None)
    face_counts = getattr(value, "face_counts", None)
    colors = getattr(value, "unidit_vertex_colors", None)
    if colors is None:
        colors = getattr(value, "vertex_colors", None)
    uvs, textures = getattr(value, "uvs", None), getattr(value, "texture", None)
    for i in range(value.vertices.shape[0]):
        n = int(vertex_counts[i]) if vertex_counts is not None else value.vertices.shape[1]
        m = int(face_counts[i]) if face_counts is not None else value.faces.shape[1]
        vertices = value.vertices[i, :n].float().cpu().numpy() * GLTF_FROM_SPLAT.astype(np.float32)
        faces = value.faces[i, :m].long().cpu().numpy()
        rgb = (linear_to_srgb(colors[i, :n, :3].float().cpu().numpy()) if colors is not None
               else np.full_like(vertices, 0.8))
        textured = {} if uvs is None or textures is None else {"uvs": uvs[i, :n].float().cpu().numpy(),
                                                                "texture": textures[i].float().cpu().numpy()}
        meshes.append(Mesh(vertices, faces, vertex_normals(vertices, faces), rgb, **textured))
    return meshes
