"""Meshes from Gaussian splats, and mesh files (GLB, OBJ, PLY, STL).

:func:`splat_to_mesh` runs, in order:

1. **density** — every Gaussian, widened by half a voxel so that surfaces thinner than a voxel are not missed,
   adds ``o · exp(-½ dᵀ Σ⁻¹ d)`` to the points of a regular grid within 3 standard deviations of its centre
   (``density_grid``; vectorised in torch, Gaussians grouped by window size);
2. **iso level** — ``threshold`` times the median density at the Gaussians' own centres. The median of the
   field *on* the surface the splat describes does not depend on how many Gaussians overlap or how opaque they
   are, so one threshold suits thin surfel shells and dense clouds alike. Closed cavities are filled first, so a
   shell of Gaussians becomes one solid instead of an outer and an inner wall;
3. **marching cubes** (scikit-image) on that level;
4. **components** — pieces with fewer faces than ``min_component_fraction`` of the largest are dropped;
5. **simplification** (fast-simplification, quadric decimation) to about ``target_faces``, and the "fins" it
   sometimes leaves removed, so a closed surface stays closed;
6. **colours** — each vertex takes the density-weighted mean base colour of its nearest Gaussians.

:class:`Mesh` stays in the splat's frame (``camera.py``: x right, y down, z forward) with sRGB vertex colours.
Every mesh file (:func:`glb_bytes`, :func:`obj_bytes`, :func:`mesh_ply_bytes`, :func:`stl_bytes`) is in glTF's
y-up frame, as ``(x, -y, -z)`` of the splat frame: the same points a splat viewer shows after its own 180° turn
about x, so mesh and splat coincide. That map is a rotation (two axes flipped), so face winding and outward
normals stay valid. GLB stores colours *linear*, as glTF
requires (``COLOR_0``), with normals and a double-sided, rough, non-metallic material.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import fast_simplification
import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage import measure

from .rotations import quaternion_to_matrix
from .splats import Splats

GLTF_FROM_SPLAT = np.array([1.0, -1.0, -1.0])  # per-axis signs: splat (OpenCV) frame <-> glTF (y-up) frame
CUTOFF_SIGMAS = 3.0


@dataclass
class MeshConfig:
    """How a splat becomes a mesh (see the module docstring for each step)."""

    resolution: int = 128                  # grid points along the longest side of the splat's bounding box
    threshold: float = 0.5                 # iso level, as a fraction of the median density at Gaussian centres
    smoothing: float = 0.5                 # widen every Gaussian by this many voxels (std) before sampling
    target_faces: int | None = 50_000      # simplify to about this many faces; None keeps marching cubes' mesh
    min_component_fraction: float = 0.05   # drop pieces smaller than this fraction of the largest (in faces)
    min_opacity: float = 0.05              # ignore fainter Gaussians
    color_neighbours: int = 8              # Gaussians averaged for each vertex colour


@dataclass
class Mesh:
    """A triangle mesh in the splat frame: vertices [N, 3] float32, faces [M, 3] int64 (counter-clockwise seen
    from outside), normals [N, 3] float32 unit outward, vertex_colors [N, 3] float32 sRGB in 0..1."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    vertex_colors: np.ndarray


@dataclass
class DensityGrid:
    """Density sampled at ``origin + voxel * (i, j, k)`` for the grid index (i, j, k) along (x, y, z)."""

    values: torch.Tensor  # [X, Y, Z]
    origin: torch.Tensor  # [3]
    voxel: float


def density_grid(splats: Splats, resolution: int, smoothing: float = 0.5, max_elements: int = 2 ** 23) -> DensityGrid:
    """Sum of the Gaussians ``o · exp(-½ dᵀ Σ⁻¹ d)`` of one splat (B = 1) on a grid whose longest side has
    ``resolution`` points, each Gaussian evaluated within ``CUTOFF_SIGMAS`` of its largest standard deviation.

    Every Gaussian is first widened by ``smoothing`` voxels (``Σ + (smoothing · voxel)² I``, opacity kept, like
    the renderer's low-pass), so a surface thinner than a voxel is still seen by the grid points around it.
    The quadratic form is split by axis (``q = Σ_ab A_ab d_a d_b`` with ``d_a = base_a + step_a · voxel``), so a
    window of side S costs one S³ sum of six broadcast terms per Gaussian.
    """
    if splats.batch_size != 1:
        raise ValueError(f"density_grid takes one splat; select one of the {splats.batch_size} with .item(i)")
    if splats.num_gaussians == 0:
        raise ValueError("the splat has no Gaussians; nothing to mesh")
    splats = splats.to(dtype=torch.float32)
    positions, scales, opacities = splats.positions[0], splats.scales[0], splats.opacities[0, :, 0]
    reach = CUTOFF_SIGMAS * scales.amax(dim=-1, keepdim=True)
    voxel = float(((positions + reach).amax(dim=0) - (positions - reach).amin(dim=0)).max()) / (resolution - 1)

    scales = torch.sqrt(scales ** 2 + (smoothing * voxel) ** 2)  # R diag(s²) Rᵀ + σ² I = R diag(s² + σ²) Rᵀ
    rotations = quaternion_to_matrix(splats.rotations[0])
    precision = (rotations / scales.unsqueeze(-2) ** 2) @ rotations.transpose(1, 2)  # Σ⁻¹
    reach = CUTOFF_SIGMAS * scales.amax(dim=-1)
    low = (positions - reach.unsqueeze(-1)).amin(dim=0)
    high = (positions + reach.unsqueeze(-1)).amax(dim=0)
    origin = low - 2 * voxel  # two empty points of margin, so every surface closes inside the grid
    shape = [int(math.ceil(float(extent) / voxel)) + 5 for extent in (high - low)]
    grid = torch.zeros(shape[0] * shape[1] * shape[2], dtype=torch.float32)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1])

    centre_index = torch.round((positions - origin) / voxel).long()  # nearest grid point
    base = (origin + centre_index * voxel) - positions              # offset of that point from the centre
    half_sides = torch.ceil(reach / voxel).long()
    for half in torch.unique(half_sides).tolist():
        members = torch.nonzero(half_sides == half).squeeze(1)
        steps = torch.arange(-half, half + 1, dtype=torch.float32) * voxel
        side = 2 * half + 1
        window = (torch.arange(-half, half + 1).view(-1, 1, 1) * strides[0]
                  + torch.arange(-half, half + 1).view(1, -1, 1) * strides[1]
                  + torch.arange(-half, half + 1).view(1, 1, -1)).reshape(-1)
        for chunk in members.split(max(1, max_elements // side ** 3)):
            d = base[chunk].unsqueeze(-1) + steps  # [n, 3, S]: offsets along each axis
            a = precision[chunk]
            dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
            q = ((a[:, 0, 0, None] * dx * dx)[:, :, None, None]
                 + (a[:, 1, 1, None] * dy * dy)[:, None, :, None]
                 + (a[:, 2, 2, None] * dz * dz)[:, None, None, :]
                 + 2.0 * (a[:, 0, 1, None, None] * dx[:, :, None] * dy[:, None, :])[:, :, :, None]
                 + 2.0 * (a[:, 0, 2, None, None] * dx[:, :, None] * dz[:, None, :])[:, :, None, :]
                 + 2.0 * (a[:, 1, 2, None, None] * dy[:, :, None] * dz[:, None, :])[:, None, :, :])
            weights = q.mul_(-0.5).exp_().mul_(opacities[chunk, None, None, None])
            index = ((centre_index[chunk] * strides).sum(-1, keepdim=True) + window).reshape(-1)
            grid.index_add_(0, index, weights.reshape(-1))
    return DensityGrid(grid.reshape(shape), origin, voxel)


def splat_to_mesh(splats: Splats, config: MeshConfig | None = None,
                  on_stage: Callable[[str], None] | None = None) -> Mesh:
    """Extract a coloured triangle mesh from one splat (B = 1); the steps are in the module docstring.

    ``on_stage(name)`` is called as each step ends ("density", "marching_cubes", "components", "simplify",
    "colors"), for progress bars and the mesh benchmark.
    """
    config = config or MeshConfig()
    done = on_stage or (lambda stage: None)
    if splats.batch_size != 1:
        raise ValueError(f"splat_to_mesh takes one splat; select one of the {splats.batch_size} with .item(i)")
    splats = splats.item(0).to(device="cpu", dtype=torch.float32).drop_non_finite()
    opaque = splats.opacities[0, :, 0] >= config.min_opacity
    splats = Splats(splats.positions[:, opaque], splats.scales[:, opaque], splats.rotations[:, opaque],
                    splats.opacities[:, opaque], splats.sh[:, opaque])
    grid = density_grid(splats, config.resolution, config.smoothing)
    level = iso_level(grid, splats, config.threshold)
    done("density")
    vertices, faces = iso_surface(grid, level)
    done("marching_cubes")
    vertices, faces = drop_small_components(vertices, faces, config.min_component_fraction)
    done("components")
    vertices, faces = simplify(vertices, faces, config.target_faces)
    done("simplify")
    mesh = Mesh(vertices, faces, vertex_normals(vertices, faces),
                vertex_colors(splats, vertices, config.color_neighbours))
    done("colors")
    return mesh


def iso_level(grid: DensityGrid, splats: Splats, threshold: float) -> float:
    """``threshold`` times the median density at the Gaussians' centres (trilinear in the grid)."""
    centres = ((splats.positions[0] - grid.origin) / grid.voxel).numpy().T
    return threshold * float(np.median(ndimage.map_coordinates(grid.values.numpy(), centres, order=1)))


def iso_surface(grid: DensityGrid, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the density at ``level``, closed cavities filled first: vertices [N, 3] float32 in the
    splat frame and faces [M, 3] int64 wound counter-clockwise seen from outside (low density)."""
    field = grid.values.numpy()
    solid = ndimage.binary_fill_holes(field >= level)
    if not solid.any():
        raise ValueError(f"no grid point reaches the iso level {level:.3g}; lower the threshold")
    field = np.where(solid & (field < level), np.float32(2.0 * level), field)
    # "ascent": the density rises towards the inside, which makes scikit-image wind faces counter-clockwise
    # seen from outside.
    vertices, faces, _, _ = measure.marching_cubes(field, level, spacing=(grid.voxel,) * 3,
                                                   gradient_direction="ascent", allow_degenerate=False)
    return (vertices + grid.origin.numpy()).astype(np.float32), faces.astype(np.int64)


def drop_small_components(vertices: np.ndarray, faces: np.ndarray,
                          min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected pieces having at least ``min_fraction`` of the largest piece's faces."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2)
    _, labels = connected_components(adjacency, directed=False)
    face_labels = labels[faces[:, 0]]
    faces_per_piece = np.bincount(face_labels)
    keep = faces_per_piece[face_labels] >= min_fraction * faces_per_piece.max()
    return _without_unused_vertices(vertices, faces[keep])


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (nothing to do when there are fewer, or for None).

    Decimation now and then folds a bit of surface into a "fin": two coincident triangles of opposite winding
    hanging on one edge, which makes that edge non-manifold. Removing both triangles leaves the surface closed.
    """
    if target_faces is None or len(faces) <= target_faces:
        return vertices, faces
    vertices, faces = fast_simplification.simplify(vertices, faces, target_count=target_faces)
    _, copies_of, copies = np.unique(np.sort(faces, axis=1), axis=0, return_inverse=True, return_counts=True)
    faces = faces[copies[copies_of.reshape(-1)] == 1]
    return _without_unused_vertices(vertices.astype(np.float32), faces.astype(np.int64))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the area-weighted sum of the normals of the faces around each vertex."""
    corners = vertices[faces].astype(np.float64)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2 · area
    normals = np.zeros((len(vertices), 3))
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)).astype(np.float32)


def _without_unused_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used, faces = np.unique(faces, return_inverse=True)
    return vertices[used], faces.reshape(-1, 3).astype(np.int64)


def vertex_colors(splats: Splats, points: np.ndarray, neighbours: int = 8) -> np.ndarray:
    """sRGB colour at ``points`` [P, 3]: the base colours of the ``neighbours`` nearest Gaussians, weighted by
    their density ``o · exp(-½ dᵀ Σ⁻¹ d)`` there (the nearest one alone where all weights vanish)."""
    positions = splats.positions[0].numpy().astype(np.float64)
    neighbours = min(neighbours, len(positions))
    _, nearest = cKDTree(positions).query(points, k=neighbours)
    nearest = nearest.reshape(len(points), neighbours)
    rotations = quaternion_to_matrix(splats.rotations[0]).double().numpy()
    inverse_scales = 1.0 / splats.scales[0].double().numpy()
    local = np.einsum("pkji,pkj->pki", rotations[nearest], points[:, None, :] - positions[nearest])  # Rᵀ d
    weights = splats.opacities[0, :, 0].double().numpy()[nearest] * np.exp(
        -0.5 * ((local * inverse_scales[nearest]) ** 2).sum(-1))
    weights[:, 0] += 1e-12  # where every weight underflows, the nearest Gaussian decides
    colors = splats.colors_rgb()[0].double().numpy()[nearest]
    return ((weights[..., None] * colors).sum(1) / weights.sum(1, keepdims=True)).astype(np.float32)


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """The sRGB transfer function undone (IEC 61966-2-1), for colours in 0..1."""
    colors = np.clip(colors, 0.0, 1.0)
    return np.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)


def glb_bytes(mesh: Mesh) -> bytes:
    """A GLB file: normals, *linear* vertex colours (glTF's COLOR_0) and a double-sided, rough, non-metallic
    material, y-up (module docstring)."""
    from trimesh.visual.material import PBRMaterial

    exported = _trimesh(mesh, srgb_to_linear(mesh.vertex_colors))
    exported.visual.material = PBRMaterial(name="unidit_vertex_color", baseColorFactor=[255, 255, 255, 255],
                                           metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True)
    return exported.export(file_type="glb", include_normals=True)


def obj_bytes(mesh: Mesh) -> bytes:
    """A Wavefront OBJ file with normals and sRGB vertex colours, y-up."""
    return _trimesh(mesh, mesh.vertex_colors).export(file_type="obj", include_normals=True,
                                                     include_color=True).encode("utf-8")


def mesh_ply_bytes(mesh: Mesh) -> bytes:
    """A binary PLY file with normals and sRGB vertex colours, y-up."""
    return _trimesh(mesh, mesh.vertex_colors).export(file_type="ply", encoding="binary", vertex_normal=True)


def stl_bytes(mesh: Mesh) -> bytes:
    """A binary STL file: the shape alone, y-up."""
    return _trimesh(mesh, mesh.vertex_colors).export(file_type="stl")


def _trimesh(mesh: Mesh, colors: np.ndarray):
    """``mesh`` as a trimesh in glTF's y-up frame, with ``colors`` (0..1) as opaque vertex colours."""
    import trimesh  # imported here: it takes most of a second, and only file writing needs it

    alpha = np.full((len(mesh.vertices), 1), 255, np.uint8)
    return trimesh.Trimesh(vertices=mesh.vertices * GLTF_FROM_SPLAT, faces=mesh.faces,
                           vertex_normals=mesh.normals * GLTF_FROM_SPLAT,
                           vertex_colors=np.concatenate([_to_uint8(colors), alpha], axis=1), process=False)


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(colors) * 255.0), 0, 255).astype(np.uint8)
