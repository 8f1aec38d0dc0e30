"""The MESH our nodes output is in glTF's frame (y up) with linear colours, so core's SaveGLB, which writes a
MESH's vertices verbatim as POSITION, saves an upright file; our Save Mesh writes what it wrote before.

ComfyUI 0.3.64's own ``save_glb`` runs when its source is found (``UNIDIT_COMFYUI`` = a ComfyUI checkout); it is
loaded from the source file alone, without starting ComfyUI."""
import ast
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from unidit.nodes.types import MeshBatch, meshes_from_comfy, meshes_to_comfy
from unidit.runtime import comfy_bridge
from unidit.runtime.gaussians.mesh import Mesh, linear_to_srgb, srgb_to_linear, vertex_normals
from unidit.runtime.output_formats import MESH_FILES

RED, GREY = (0.88, 0.2, 0.12), (0.6, 0.6, 0.6)   # none on a half step of 1/255


def pyramid() -> Mesh:
    """A square pyramid in the splat frame (y down) pointing up: apex at y = -0.6, base at y = +0.4; the apex
    red, the base corners grey (sRGB)."""
    base = [(x, 0.4, z) for x, z in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))]
    hull = trimesh.convex.convex_hull(np.array([(0.0, -0.6, 0.0)] + base))
    vertices = np.asarray(hull.vertices, np.float32)
    faces = np.asarray(hull.faces, np.int64)
    apex = vertices[:, 1] < -0.5
    colours = np.where(apex[:, None], np.array(RED, np.float32), np.array(GREY, np.float32))
    return Mesh(vertices, faces, vertex_normals(vertices, faces), colours)


def core_save_glb():
    """ComfyUI's ``save_glb`` (comfy_extras/nodes_hunyuan3d.py), or None where no ComfyUI source is given."""
    root = os.environ.get("UNIDIT_COMFYUI")
    source = Path(root or "-") / "comfy_extras" / "nodes_hunyuan3d.py"
    if not source.is_file():
        return None
    tree = ast.parse(source.read_text())
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "save_glb")
    namespace = {"np": np, "json": json, "struct": struct}
    exec(compile(ast.Module([function], []), str(source), "exec"), namespace)
    return namespace["save_glb"]


def glb_positions(path: Path) -> np.ndarray:
    scene = trimesh.load(path, file_type="glb", process=False)
    mesh = scene.to_geometry() if isinstance(scene, trimesh.Scene) else scene
    return np.asarray(mesh.vertices)


def test_the_mesh_value_is_y_up_with_linear_colours_and_outward_faces():
    value = meshes_to_comfy([pyramid()])
    vertices = value.vertices[0].numpy()
    apex = int(np.argmax(vertices[:, 1]))
    assert vertices[apex, 1] == pytest.approx(0.6) and np.allclose(vertices[:, 1].min(), -0.4)  # apex up in glTF
    assert np.allclose(value.vertex_colors[0, apex].numpy(), srgb_to_linear(np.array(RED)), atol=1e-6)
    # still wound counter-clockwise seen from outside: the signed volume is positive in the y-up frame too
    gltf = trimesh.Trimesh(vertices, value.faces[0].numpy(), process=False)
    assert gltf.volume > 0 and gltf.is_watertight


def test_core_save_glb_writes_our_mesh_upright(tmp_path):
    save_glb = core_save_glb()
    if save_glb is None:
        pytest.skip("set UNIDIT_COMFYUI to a ComfyUI checkout to run its SaveGLB")
    value = meshes_to_comfy([pyramid()])
    path = tmp_path / "core.glb"
    save_glb(value.vertices[0], value.faces[0], str(path))    # what SaveGLB.save does per batch item
    positions = glb_positions(path)
    assert positions[:, 1].max() == pytest.approx(0.6) and positions[:, 1].min() == pytest.approx(-0.4)
    top = positions[np.argmax(positions[:, 1])]
    assert np.allclose(top[[0, 2]], 0.0, atol=1e-6)    # the apex is above the middle of the base


def test_save_mesh_writes_the_same_file_from_the_mesh_value():
    mesh = pyramid()
    back = meshes_from_comfy(meshes_to_comfy([mesh]))[0]
    assert np.allclose(back.vertices, mesh.vertices, atol=1e-6)
    assert np.allclose(back.vertex_colors, mesh.vertex_colors, atol=1e-5)
    for file_format in ("glb", "obj", "ply"):
        assert MESH_FILES.write(file_format, back) == MESH_FILES.write(file_format, mesh)
    glb = trimesh.load(trimesh.util.wrap_as_stream(MESH_FILES.write("glb", back)), file_type="glb", process=False)
    saved = glb.to_geometry() if isinstance(glb, trimesh.Scene) else glb
    assert saved.vertices[:, 1].max() == pytest.approx(0.6)      # Save Mesh: upright as before


def test_a_core_mesh_without_colours_reads_as_light_grey_in_its_own_frame():
    core = MeshBatch(torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]), torch.tensor([[[0, 1, 2]]]))
    (mesh,) = meshes_from_comfy(core)
    assert np.allclose(mesh.vertices[0], [0.0, -1.0, 0.0])   # y up in the file -> y down in the splat frame
    assert np.allclose(mesh.vertex_colors, 0.8)


def test_a_core_mesh_class_with_colours_gets_them(monkeypatch):
    class CoreMesh:      # newer cores: MESH(vertices, faces, vertex_colors=None, ...)
        def __init__(self, vertices, faces, vertex_colors=None, vertex_counts=None, face_counts=None):
            self.vertices, self.faces, self.vertex_colors = vertices, faces, vertex_colors

    monkeypatch.setattr(comfy_bridge, "core_type", lambda name: CoreMesh if name == "MESH" else None)
    value = meshes_to_comfy([pyramid()])
    assert isinstance(value, CoreMesh)
    assert np.allclose(linear_to_srgb(value.vertex_colors[0].numpy())[np.argmax(value.vertices[0, :, 1].numpy())], RED,
                       atol=1e-5)


def test_a_core_mesh_that_takes_textures_gets_the_texture_without_tinting_colours_and_normals(monkeypatch):
    class CoreMesh:      # cores after May 2026: MESH(vertices, faces, uvs=None, vertex_colors=None, texture=None, ...)
        def __init__(self, vertices, faces, uvs=None, vertex_colors=None, texture=None, vertex_counts=None,
                     face_counts=None, normals=None):
            self.vertices, self.faces, self.uvs, self.vertex_colors = vertices, faces, uvs, vertex_colors
            self.texture, self.normals = texture, normals

    from unidit.nodes.splats import UniDiTSplatToMesh
    from unidit.runtime.gaussians.shapes import sphere_splats

    monkeypatch.setattr(comfy_bridge, "core_type", lambda name: CoreMesh if name == "MESH" else None)
    (value,) = UniDiTSplatToMesh().convert(sphere_splats(1500, radius=0.4), 48, 0.5, 3000, "silhouettes", 64)
    assert isinstance(value, CoreMesh) and value.vertex_colors is None and value.texture.shape == (1, 64, 64, 3)
    lengths = value.normals[0].norm(dim=1)
    assert torch.allclose(lengths, torch.ones_like(lengths), atol=1e-3)
    top = int(value.vertices[0, :, 1].argmax())          # y up: the top vertex's normal points up
    assert value.normals[0, top, 1] > 0.9
    (back,) = meshes_from_comfy(value)                   # our nodes still read our colours and the texture
    assert back.texture.shape == (64, 64, 3)
    assert np.allclose(srgb_to_linear(back.vertex_colors), value.unidit_vertex_colors[0].numpy(), atol=1e-5)
    assert not np.allclose(back.vertex_colors, 0.8)       # not the light grey of a mesh without colours


def test_splat_to_mesh_with_a_texture_saves_a_textured_glb_and_obj_mtl_png(tmp_path):
    from unidit.nodes.save import UniDiTSaveMesh
    from unidit.nodes.splats import UniDiTSplatToMesh
    from unidit.runtime.gaussians.shapes import sphere_splats

    (mesh,) = UniDiTSplatToMesh().convert(sphere_splats(1500, radius=0.4), 48, 0.5, 3000, "silhouettes", 128)
    assert mesh.texture.shape == (1, 128, 128, 3) and mesh.uvs.shape[2] == 2 and mesh.normals.shape[2] == 3
    token = comfy_bridge.use_host(comfy_bridge.HostServices(output_directory=tmp_path))
    try:
        saved_obj = UniDiTSaveMesh().save(mesh, "obj", "textured")["ui"]["unidit_3d"][0]
        saved_glb = UniDiTSaveMesh().save(mesh, "glb", "textured")["ui"]["unidit_3d"][0]
    finally:
        comfy_bridge.release_host(token)
    obj = tmp_path / saved_obj["subfolder"] / saved_obj["filename"]
    library = obj.read_text().splitlines()[0].split(" ", 1)[1]
    texture = (obj.parent / library).read_text().split("map_Kd ")[1].strip()
    assert (obj.parent / texture).is_file() and texture.endswith(".png")
    assert trimesh.load(obj, process=False).visual.material.image.size == (128, 128)
    glb = trimesh.load(tmp_path / saved_glb["subfolder"] / saved_glb["filename"], file_type="glb")
    assert glb.to_geometry().visual.material.baseColorTexture is not None
