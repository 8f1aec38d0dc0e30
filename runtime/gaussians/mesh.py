"""Meshes from Gaussian splats, and mesh files (GLB, OBJ, PLY, STL).

:func:`splat_to_mesh` runs, in order:

0. **strays** — Gaussians fainter than ``min_opacity`` and specks floating apart from the object
   (:func:`without_strays`) are left out;
1. **density** — every Gaussian, widened by half a voxel so that surfaces thinner than a voxel are not missed,
   adds ``o · exp(-½ dᵀ Σ⁻¹ d)`` to the points of a regular grid within 3 standard deviations of its centre
   (``density_grid``; vectorised in torch, Gaussians grouped by window size);
2. **iso level** — with ``surface="silhouettes"`` (the default) the field is replaced by the splat's visual
   hull (:func:`silhouette_occupancy`: the second least alpha each grid point projects to in renders from all
   round), at level 0.5; a decoded splat is a porous cloud whose density level has hundreds of tunnels, its
   silhouettes are solid once every Gaussian is as wide as the gaps to its neighbours (:func:`gaps_closed`), and
   a hole that one render alone sees through does not carve the hull (see :func:`silhouette_occupancy`).
   Silhouettes reach past the Gaussians' centres, so the smoothed surface is moved inwards by
   ``SILHOUETTE_SPREAD`` times the median (widened) Gaussian width (measured on a surfel sphere).
   With ``surface="density"``: ``threshold`` times the median density at the Gaussians' own centres. The median
   of the field *on* the surface the splat describes does not depend on how many Gaussians overlap or how opaque they
   are, so one threshold suits thin surfel shells and dense clouds alike;
3. **solid** — the grid points at that level or above, closed morphologically (a ball of ``close_voxels``) so
   the pores and tunnels of a noisy splat are filled, closed cavities filled (a shell of Gaussians becomes one
   solid, not an outer and an inner wall), pieces with less than
   ``min_component_fraction`` of the largest's volume dropped;
4. **marching cubes** (scikit-image) around that solid, then **Taubin smoothing** (``taubin_steps``), which
   flattens marching cubes' ridges without shrinking the surface; pieces with fewer faces than
   ``min_component_fraction`` of the largest's are dropped;
5. **simplification** (fast-simplification, quadric decimation) to about ``target_faces``, and the "fins" it
   sometimes leaves removed, so a closed surface stays closed, and the crumbs it now and then pinches off (a
   closed tetrahedron beside a cylinder) dropped as in step 4;
6. **colours** — each vertex takes the density-weighted mean base colour of its nearest Gaussians.

:class:`Mesh` stays in the splat's frame (``camera.py``: x right, y down, z forward) with sRGB vertex colours.
Every mesh file (:func:`glb_bytes`, :func:`obj_bytes`, :func:`mesh_ply_bytes`, :func:`stl_bytes`,
:func:`textured_obj`) is in glTF's y-up frame, as ``(x, -y, -z)`` of the splat frame: the same points a splat
viewer shows after its own 180° turn about x, so mesh and splat coincide. That map is a rotation (two axes
flipped), so face winding and outward normals stay valid. GLB stores colours *linear*, as glTF
requires (``COLOR_0``), with normals and a double-sided, rough, non-metallic material.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import fast_simplification
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage import measure

from .camera import Cameras, look_at
from .render import render
from .rotations import quaternion_to_matrix
from .splats import Splats

MESH_FORMATS = ("glb", "obj", "ply", "stl")
GLTF_FROM_SPLAT = np.array([1.0, -1.0, -1.0])  # per-axis signs: splat (OpenCV) frame <-> glTF (y-up) frame
CUTOFF_SIGMAS = 3.0
SILHOUETTE_LEVEL = 0.5     # the visual hull: inside where every render but one is at least half covered
SILHOUETTE_SPREAD = 0.8    # the hull's surface lies this many median Gaussian widths outside their centres
SURFACES = ("silhouettes", "density")
STRAY_NEIGHBOURS = 8       # a stray is judged by the distance to its 8th-nearest Gaussian
GAP_CLOSING = 0.5          # silhouettes: every Gaussian at least this times its third-nearest neighbour's distance


@dataclass
class MeshConfig:
    """How a splat becomes a mesh (see the module docstring for each step)."""

    resolution: int = 128                  # grid points along the longest side of the splat's bounding box
    threshold: float = 0.5                 # iso level, as a fraction of the median density at Gaussian centres
    smoothing: float = 0.5                 # widen every Gaussian by this many voxels (std) before sampling
    target_faces: int | None = 50_000      # simplify to about this many faces; None keeps marching cubes' mesh
    min_component_fraction: float = 0.05   # drop pieces smaller than this fraction of the largest (in volume)
    surface: str = "silhouettes"           # "silhouettes": the splat's visual hull; "density": its density level
    silhouette_views: int = 32             # renders of the splat whose silhouettes carve the hull
    close_voxels: int = 3                  # fill pores and tunnels narrower than about twice this (in voxels)
    taubin_steps: int = 10                 # smoothing steps that keep the volume (0 = none)
    min_opacity: float = 0.05              # ignore fainter Gaussians
    stray_factor: float = 5.0              # drop Gaussians this many times farther apart than usual (0 = keep all)
    color_neighbours: int = 8              # Gaussians averaged for each vertex colour


@dataclass
class Mesh:
    """A triangle mesh in the splat frame: vertices [N, 3] float32, faces [M, 3] int64 (counter-clockwise seen
    from outside), normals [N, 3] float32 unit outward, vertex_colors [N, 3] float32 sRGB in 0..1; a textured
    mesh (:func:`texture_mesh`) also has uvs and a base-colour texture."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    vertex_colors: np.ndarray
    uvs: np.ndarray | None = None        # [N, 2] texture coordinates, glTF's convention: (0, 0) the image's top left
    texture: np.ndarray | None = None    # [T, T, 3] float32 sRGB base colour, row 0 at the top


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
    if config.surface not in SURFACES:
        raise ValueError(f"unknown surface {config.surface!r}; choose one of {', '.join(SURFACES)}")
    done = on_stage or (lambda stage: None)
    if splats.batch_size != 1:
        raise ValueError(f"splat_to_mesh takes one splat; select one of the {splats.batch_size} with .item(i)")
    splats = splats.item(0).to(device="cpu", dtype=torch.float32).drop_non_finite()
    splats = _selected(splats, splats.opacities[0, :, 0] >= config.min_opacity)
    splats = without_strays(splats, config.stray_factor)
    grid = density_grid(splats, config.resolution, config.smoothing)
    if config.surface == "silhouettes":
        hull_splats = gaps_closed(splats)
        grid = DensityGrid(silhouette_occupancy(hull_splats, grid, config.silhouette_views), grid.origin, grid.voxel)
        level = SILHOUETTE_LEVEL
    else:
        level = iso_level(grid, splats, config.threshold)
    done("density")
    vertices, faces = iso_surface(grid, level, config.close_voxels, config.min_component_fraction)
    done("marching_cubes")
    vertices, faces = drop_small_components(vertices, faces, config.min_component_fraction)
    vertices = taubin_smooth(vertices, faces, config.taubin_steps)
    if config.surface == "silhouettes":   # the hull's silhouettes reach past the Gaussians' centres by their width
        spread = SILHOUETTE_SPREAD * float(hull_splats.scales[0].amax(dim=-1).median())
        vertices = vertices - spread * vertex_normals(vertices, faces)
    done("components")
    vertices, faces = simplify(vertices, faces, config.target_faces)
    vertices, faces = drop_small_components(vertices, faces, config.min_component_fraction)  # crumbs it pinched off
    done("simplify")
    mesh = Mesh(vertices, faces, vertex_normals(vertices, faces),
                vertex_colors(splats, vertices, config.color_neighbours))
    done("colors")
    return mesh


def _selected(splats: Splats, keep: torch.Tensor) -> Splats:
    """The Gaussians of a one-item splat where ``keep`` [N] is true."""
    return Splats(splats.positions[:, keep], splats.scales[:, keep], splats.rotations[:, keep],
                  splats.opacities[:, keep], splats.sh[:, keep])


def without_strays(splats: Splats, factor: float) -> Splats:
    """The splat without its strays: Gaussians whose ``STRAY_NEIGHBOURS``-th nearest centre is more than ``factor``
    times the median such distance away (statistical outlier removal, as point-cloud tools do it). A decoded splat
    has a few specks floating apart from the object; they would stretch the grid over empty space (a torus got
    a third of the resolution it should) and mesh to pieces that are dropped anyway. ``factor`` 0 keeps all."""
    if factor <= 0 or splats.num_gaussians <= STRAY_NEIGHBOURS:
        return splats
    centres = splats.positions[0].numpy()
    distances, _ = cKDTree(centres).query(centres, k=STRAY_NEIGHBOURS + 1)   # column 0 is the point itself
    reach = distances[:, -1]
    limit = factor * np.median(reach)
    if limit <= 0:   # most Gaussians share their place with 8 others: no spacing to judge strays by
        return splats
    return _selected(splats, torch.from_numpy(reach <= limit))


def gaps_closed(splats: Splats) -> Splats:
    """The splat with every Gaussian narrower than its gaps widened: to at least ``GAP_CLOSING`` times the
    distance to its third-nearest centre, along all its axes. A decoded splat is a lattice of small Gaussians whose
    renders are see-through along the lattice's lines at the grid's resolution, and each such crack carved a beam
    through the visual hull (a generated sphere meshed at 128 had 160 tunnels). Widened to their spacing, the
    Gaussians cover the surface between them, while openings wider than the spacing (a torus's hole) stay open.
    Gaussians already as wide as their gaps (the flat surfels of a dense shell) keep their size and thickness, so
    such a shell does not grow."""
    if splats.num_gaussians < 4:
        return splats
    centres = splats.positions[0].numpy()
    distances, _ = cKDTree(centres).query(centres, k=4)
    least = torch.from_numpy(GAP_CLOSING * distances[:, 3]).to(splats.scales.dtype)
    scales = splats.scales[0]
    small = scales.amax(dim=-1) < least   # narrower than the gaps around it along every axis
    widened = torch.where(small[:, None], torch.maximum(scales, least[:, None]), scales)
    return Splats(splats.positions, widened[None], splats.rotations, splats.opacities, splats.sh)


def silhouette_occupancy(splats: Splats, grid: DensityGrid, views: int) -> torch.Tensor:
    """For every point of ``grid``: the second least alpha it projects to in ``views`` renders of the splat
    from directions spread evenly over the sphere (a Fibonacci lattice, the poles left out because cameras keep a
    level horizon), all looking at the grid's centre from 3 bounding radii with the splat filling the image.
    Points outside a render count as transparent there. The 0.5 level of this field is the splat's visual hull:
    a closed solid without the pores a noisy splat's density has. [X, Y, Z] in 0..1.

    The second least, not the least: a point is outside once two renders see past it. A decoded splat's surfaces
    that its rig barely sees (a cylinder's top, from cameras 20 degrees up) are lattices with holes, and the one
    steep render that looks straight down a hole carved a tunnel through the whole solid (a generated cylinder
    had 20); an opening of the object itself (a torus's hole, the space beside a thin part) is seen through from
    many directions."""
    shape = grid.values.shape
    size = max(shape)
    axes = [grid.origin[a] + grid.voxel * torch.arange(shape[a], dtype=torch.float32) for a in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # [P, 3]
    centre = 0.5 * (points[0] + points[-1])
    radius = 0.5 * float((points[-1] - points[0]).norm())
    index = torch.arange(views, dtype=torch.float64) + 0.5
    height = 0.95 * (1.0 - 2.0 * index / views)                   # y of each direction, poles left out
    angle = math.pi * (1.0 + math.sqrt(5.0)) * index             # golden-angle turns
    ring = torch.sqrt(1.0 - height ** 2)
    directions = torch.stack([ring * torch.cos(angle), height, ring * torch.sin(angle)], dim=-1).float()
    distance = 3.0 * radius
    eyes = centre + distance * directions
    focal = 0.5 * size / math.tan(math.asin(1.0 / 3.0))          # the bounding sphere fills the image
    full = torch.full((views,), focal)
    cameras = Cameras(look_at(eyes, centre.expand(views, 3)), full, full, torch.full((views,), size / 2.0),
                      torch.full((views,), size / 2.0), size, size)
    least = torch.ones(points.shape[0])
    occupancy = torch.ones(points.shape[0])      # the second least alpha so far
    alive = torch.arange(points.shape[0])        # points not yet seen to be outside (alpha ~ 0 in two renders)
    with torch.no_grad():
        for view in range(views):
            alpha = render(splats, cameras[view]).alpha[0]             # [H, W]
            pixels, depth = cameras[view].project(points[alive])        # [1, P', 2], [1, P']
            where = (pixels[0] / size) * 2.0 - 1.0                       # grid_sample's -1..1 (pixel edges)
            seen = F.grid_sample(alpha[None, None], where[None, None], mode="bilinear", padding_mode="zeros",
                                 align_corners=False)[0, 0, 0]
            seen = torch.where(depth[0] > 0, seen, torch.zeros_like(seen))
            occupancy[alive] = torch.maximum(least[alive], torch.minimum(occupancy[alive], seen))
            least[alive] = torch.minimum(least[alive], seen)
            alive = alive[occupancy[alive] > 1e-3]
    return occupancy.reshape(shape)


def iso_level(grid: DensityGrid, splats: Splats, threshold: float) -> float:
    """``threshold`` times the median density at the Gaussians' centres (trilinear in the grid)."""
    centres = ((splats.positions[0] - grid.origin) / grid.voxel).numpy().T
    return threshold * float(np.median(ndimage.map_coordinates(grid.values.numpy(), centres, order=1)))


def solid_of(field: np.ndarray, level: float, close_voxels: int = 0, min_fraction: float = 0.0) -> np.ndarray:
    """The grid points inside the object: density at ``level`` or above, then closed with a ball of
    ``close_voxels`` (pores and tunnels narrower than about its diameter are filled), closed cavities filled, and
    pieces with less than ``min_fraction`` of the largest piece's volume dropped. The array keeps its shape."""
    solid = field >= level
    if not solid.any():
        raise ValueError(f"no grid point reaches the iso level {level:.3g}; lower the threshold")
    if close_voxels > 0:
        radius = np.arange(-close_voxels, close_voxels + 1)
        ball = (radius[:, None, None] ** 2 + radius[None, :, None] ** 2 + radius[None, None, :] ** 2
                <= close_voxels ** 2)
        padded = np.pad(solid, close_voxels + 1)   # closing must not stick to the grid's border
        cut = slice(close_voxels + 1, -(close_voxels + 1))
        solid = ndimage.binary_closing(padded, structure=ball)[cut, cut, cut]
    solid = ndimage.binary_fill_holes(solid)
    labels, pieces = ndimage.label(solid)
    if pieces > 1:
        volumes = np.bincount(labels.reshape(-1))
        volumes[0] = 0
        solid = (volumes >= min_fraction * volumes.max())[labels] & solid
    return solid


def iso_surface(grid: DensityGrid, level: float, close_voxels: int = 0,
                min_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the density at ``level`` around :func:`solid_of`'s solid: vertices [N, 3] float32 in
    the splat frame and faces [M, 3] int64 wound counter-clockwise seen from outside (low density). Points the
    solid gained are raised to 2 x level and points it lost lowered to half of it, so the surface has the
    solid's topology and the density's sub-voxel position elsewhere."""
    field = grid.values.numpy()
    solid = solid_of(field, level, close_voxels, min_fraction)
    field = np.where(solid, np.maximum(field, np.float32(2.0 * level) * (field < level)),
                     np.minimum(field, np.float32(0.5 * level)))
    # One layer of outside all round: a solid that reaches the grid's border (a visual hull can reach past the
    # Gaussians' extent) is closed there instead of left open.
    field = np.pad(field, 1, constant_values=np.float32(0.5 * level))
    # "ascent": the density rises towards the inside, which makes scikit-image wind faces counter-clockwise
    # seen from outside.
    vertices, faces, _, _ = measure.marching_cubes(field, level, spacing=(grid.voxel,) * 3,
                                                   gradient_direction="ascent", allow_degenerate=False)
    return (vertices + (grid.origin.numpy() - grid.voxel)).astype(np.float32), faces.astype(np.int64)


def drop_small_components(vertices: np.ndarray, faces: np.ndarray,
                          min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected pieces having at least ``min_fraction`` of the largest piece's faces. Faces are connected
    through shared edges, so a crumb that touches the surface at one vertex is a piece of its own."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, edge_ids = np.unique(edges, axis=0, return_inverse=True)
    edge_ids = edge_ids.reshape(-1)
    face_ids = np.repeat(np.arange(len(faces)), 3)
    nodes = len(faces) + int(edge_ids.max()) + 1            # faces, then edges: a face joins its three edges
    adjacency = coo_matrix((np.ones(len(face_ids)), (face_ids, len(faces) + edge_ids)), shape=(nodes, nodes))
    _, labels = connected_components(adjacency, directed=False)
    face_labels = labels[:len(faces)]
    faces_per_piece = np.bincount(face_labels)
    keep = faces_per_piece[face_labels] >= min_fraction * faces_per_piece.max()
    return _without_unused_vertices(vertices, faces[keep])


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, steps: int, weight: float = 0.5,
                  inflate: float = -0.53) -> np.ndarray:
    """Taubin's λ|μ smoothing (1995): each step moves every vertex by λ towards the mean of its neighbours,
    then by μ < -λ away from it. The pair removes the ridges of marching cubes (high frequencies) while the
    overall size is kept, where plain Laplacian smoothing shrinks the surface. Topology is untouched."""
    if steps <= 0:
        return vertices
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    ends = np.concatenate([edges, edges[:, ::-1]])
    adjacency = coo_matrix((np.ones(len(ends)), (ends[:, 0], ends[:, 1])), shape=(len(vertices),) * 2).tocsr()
    degree = np.maximum(np.asarray(adjacency.sum(axis=1)), 1.0)
    points = vertices.astype(np.float64)
    for _ in range(steps):
        for factor in (weight, inflate):
            points = points + factor * (adjacency @ points / degree - points)
    return points.astype(np.float32)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int | None,
             attempts: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (nothing to do when there are fewer, or for None).

    Decimation now and then folds a bit of surface into a "fin": two coincident triangles of opposite winding
    hanging on one edge, which makes that edge non-manifold. Removing both triangles leaves the surface closed.
    Rarely it pinches two sheets onto one edge instead; then a target 20 % higher is tried (``attempts`` times),
    and the mesh stays undecimated if every try pinches, so a closed surface is never opened.
    """
    if target_faces is None or len(faces) <= target_faces:
        return vertices, faces
    closed = _is_closed(faces)
    for attempt in range(attempts):
        fewer_vertices, fewer = fast_simplification.simplify(vertices, faces,
                                                             target_count=int(target_faces * 1.2 ** attempt))
        _, copies_of, copies = np.unique(np.sort(fewer, axis=1), axis=0, return_inverse=True, return_counts=True)
        fewer = fewer[copies[copies_of.reshape(-1)] == 1]
        if not closed or _is_closed(fewer):
            return _without_unused_vertices(fewer_vertices.astype(np.float32), fewer.astype(np.int64))
    return vertices, faces


def _is_closed(faces: np.ndarray) -> bool:
    """Every edge borders exactly two faces."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


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


def texture_mesh(mesh: Mesh, splats: Splats, size: int = 1024, neighbours: int = 8) -> Mesh:
    """``mesh`` with a UV atlas (xatlas: charts cut along seams, packed into a ``size``² square with 2 texels of
    padding) and a base-colour texture baked from ``splats``: every texel inside a chart is mapped back to its
    point on the surface (barycentric coordinates of its triangle in UV space), which takes the colour of the
    splat there (:func:`vertex_colors`, at texel density rather than vertex density). Texels outside the charts
    take the nearest chart texel's colour, so filtering at the seams never mixes in a background.

    Vertices on a seam are duplicated (one per chart); positions, normals and vertex colours follow them."""
    import xatlas  # imported here: only texturing needs it
    from PIL import Image, ImageDraw

    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32))
    packing = xatlas.PackOptions()
    packing.resolution, packing.padding = size, 2
    atlas.generate(pack_options=packing)
    source, faces, uvs = atlas[0]                     # [N'] original vertex of each, [M, 3], [N', 2] in 0..1
    source, faces = source.astype(np.int64), faces.astype(np.int64)

    # Which triangle covers each texel: the triangles drawn in UV space, each filled with its index + 1.
    corners = uvs[faces] * size                       # [M, 3, 2] texel coordinates (x right, y down)
    owner_image = Image.new("I", (size, size), 0)
    draw = ImageDraw.Draw(owner_image)
    for index, triangle in enumerate(corners):
        draw.polygon([tuple(point) for point in triangle], fill=index + 1)
    owner = np.asarray(owner_image, dtype=np.int64) - 1  # [T, T], -1 outside the charts
    rows, columns = np.nonzero(owner >= 0)
    face = owner[rows, columns]
    centre = np.stack([columns + 0.5, rows + 0.5], axis=-1)   # [P, 2]

    # Barycentric coordinates of each texel centre in its triangle (clipped: edge texels lie just outside).
    a, b, c = corners[face, 0], corners[face, 1], corners[face, 2]
    e1, e2, d = b - a, c - a, centre - a
    determinant = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    determinant = np.where(np.abs(determinant) < 1e-12, 1e-12, determinant)
    beta = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / determinant
    gamma = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / determinant
    weights = np.clip(np.stack([1.0 - beta - gamma, beta, gamma], axis=-1), 0.0, 1.0)
    weights /= weights.sum(axis=-1, keepdims=True)
    positions = mesh.vertices[source].astype(np.float64)
    points = np.einsum("pk,pkc->pc", weights, positions[faces[face]])   # [P, 3] on the surface

    texture = np.zeros((size, size, 3), np.float32)
    texture[rows, columns] = vertex_colors(splats, points, neighbours)
    outside = owner < 0
    if outside.any():   # gutters: the nearest chart texel's colour
        _, (near_rows, near_columns) = ndimage.distance_transform_edt(outside, return_indices=True)
        texture[outside] = texture[near_rows[outside], near_columns[outside]]
    return Mesh(mesh.vertices[source], faces, mesh.normals[source], mesh.vertex_colors[source],
                uvs.astype(np.float32), texture)


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """The sRGB transfer function undone (IEC 61966-2-1), for colours in 0..1."""
    colors = np.clip(colors, 0.0, 1.0)
    return np.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(colors: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), for linear colours in 0..1: the inverse of
    :func:`srgb_to_linear`."""
    colors = np.clip(colors, 0.0, 1.0)
    return np.where(colors <= 0.0031308, colors * 12.92, 1.055 * colors ** (1.0 / 2.4) - 0.055)


def glb_bytes(mesh: Mesh) -> bytes:
    """A GLB file: normals, *linear* vertex colours (glTF's COLOR_0) and a double-sided, rough, non-metallic
    material, y-up (module docstring)."""
    from trimesh.visual.material import PBRMaterial

    exported = _trimesh(mesh, srgb_to_linear(mesh.vertex_colors))
    if mesh.texture is not None:     # a textured mesh: the base colour comes from its texture (sRGB, as PNG holds it)
        from PIL import Image
        from trimesh.visual import TextureVisuals

        material = PBRMaterial(name="unidit_base_color", baseColorTexture=Image.fromarray(_to_uint8(mesh.texture)),
                               baseColorFactor=[255, 255, 255, 255], metallicFactor=0.0, roughnessFactor=1.0,
                               doubleSided=True)
        # trimesh keeps OBJ's texture convention (v up from the bottom) and flips v when writing glTF
        uv = np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], axis=-1)
        exported.visual = TextureVisuals(uv=uv, material=material)
        return exported.export(file_type="glb", include_normals=True)
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


def textured_obj(mesh: Mesh, texture_name: str, material_library: str) -> tuple[bytes, bytes, bytes]:
    """A textured mesh as OBJ, MTL and PNG bytes, in glTF's y-up frame like :func:`obj_bytes`. The OBJ names
    ``material_library`` (the MTL's file name) and the MTL ``texture_name`` (the PNG's), both relative to the
    OBJ's folder. OBJ counts v up from the image's bottom, so v is written as 1 - v."""
    from PIL import Image

    if mesh.texture is None:
        raise ValueError("this mesh has no texture: give UniDiT Splat to Mesh a texture_size, or save glb/obj "
                         "with vertex colours")
    vertices = mesh.vertices * GLTF_FROM_SPLAT
    normals = mesh.normals * GLTF_FROM_SPLAT
    lines = [f"mtllib {material_library}", "usemtl unidit_base_color"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in mesh.uvs]
    lines += [f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in normals]
    lines += ["f " + " ".join(f"{i}/{i}/{i}" for i in face + 1) for face in mesh.faces]
    material = "\n".join(["newmtl unidit_base_color", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1",
                          f"map_Kd {texture_name}", ""])
    png = io.BytesIO()
    Image.fromarray(_to_uint8(mesh.texture)).save(png, format="PNG")
    return ("\n".join(lines) + "\n").encode("utf-8"), material.encode("utf-8"), png.getvalue()


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(colors) * 255.0), 0, 255).astype(np.uint8)
