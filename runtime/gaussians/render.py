"""Rendering Gaussian splats in pure torch (CPU or CUDA, no compiled extension).

The image model is 3DGS's (Kerbl et al. 2023), in the camera convention of ``camera.py``:

1. Project. A Gaussian at camera-space ``p = (x, y, z)`` (``p = R p_world + t``, dropped when ``z <= near``)
   lands at ``(u, v) = (fx x / z + cx, fy y / z + cy)``. Its covariance ``Σ = R_q diag(s²) R_qᵀ`` becomes the
   EWA screen covariance ``Σ' = J W Σ Wᵀ Jᵀ + 0.3 I`` with ``W`` the world-to-camera rotation and
   ``J = [[fx/z, 0, -fx x/z²], [0, fy/z, -fy y/z²]]``; the ``0.3 I`` is 3DGS's low-pass filter (pixels²).
2. Weigh. At the pixel centre ``(j + 0.5, i + 0.5)``, with ``d`` its offset from ``(u, v)`` and the conic
   ``Σ'⁻¹``, the Gaussian's alpha is ``α = min(0.99, o · exp(-½ dᵀ Σ'⁻¹ d))``; values below 1/255 are skipped.
3. Composite front to back by camera depth: ``C = Σ_i α_i T_i c_i`` with ``T_i = Π_{j<i} (1 - α_j)``; the
   colour ``c_i = max(0, eval_sh(view direction) + 0.5)`` with the view direction from the camera centre.

Outputs: ``color`` with the background composited as ``color + (1 - alpha) · background``, ``alpha = Σ α_i T_i``
and ``depth = Σ α_i T_i z_i``, the *alpha-weighted* camera-space z (divide by alpha for the expected depth of the
visible surface: :meth:`Rendering.expected_depth`). 3DGS's early stop at ``T < 1e-4`` is not applied.

:func:`render` is the fast rasteriser. It needs no tiles: every (Gaussian, pixel) pair whose alpha can reach
1/255 is listed (windows from the exact ellipse ``dᵀ Σ'⁻¹ d <= 2 ln(255 o)``, not a 3-sigma guess, so nothing
visible is cut), pairs are sorted by (pixel, depth rank) on one integer key, the transmittance comes from a
segmented exclusive cumulative sum of ``log(1 - α)``, and the weighted colours are summed per pixel.
:func:`render_dense` is the reference it is tested against: every Gaussian against every pixel, same alpha rule.
Both are differentiable: autograd gives gradients with respect to every Gaussian parameter.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .camera import Cameras, turntable_cameras
from .sh import eval_sh
from .splats import Splats

ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped (3DGS)
ALPHA_MAX = 0.99         # one Gaussian never hides everything behind it (3DGS)
WINDOW_MARGIN = 0.05     # pixels added around each exact span, so rounding never cuts a visible pair


@dataclass
class RenderConfig:
    """How splats become pixels. ``background`` is linear 0..1 RGB; ``low_pass`` is in pixels²."""

    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    near_plane: float = 0.01
    low_pass: float = 0.3


@dataclass
class Rendering:
    """Images of V cameras: color [V, H, W, 3] (background composited), alpha [V, H, W], depth [V, H, W]
    (alpha-weighted camera-space z)."""

    color: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor

    def expected_depth(self, min_alpha: float = 1e-3) -> torch.Tensor:
        """Depth of the visible surface, ``depth / alpha``, and 0 where alpha < ``min_alpha``: [V, H, W]."""
        covered = self.alpha >= min_alpha
        return torch.where(covered, self.depth / self.alpha.clamp_min(min_alpha), torch.zeros_like(self.depth))


@dataclass
class ProjectedGaussians:
    """The Gaussians one camera sees, sorted front to back. ``conics`` (a, b, c) give the exponent
    ``q = a dx² + 2 b dx dy + c dy²``; ``extents`` are the half-widths in x and y, in pixels, of the ellipse
    where alpha can reach 1/255."""

    means: torch.Tensor     # [M, 2] pixel coordinates (u, v)
    conics: torch.Tensor    # [M, 3]
    opacities: torch.Tensor  # [M]
    colors: torch.Tensor    # [M, 3]
    depths: torch.Tensor    # [M] camera-space z
    extents: torch.Tensor   # [M, 2]
    sources: torch.Tensor   # [M] the index of each row's Gaussian in the splat

    def __len__(self) -> int:
        return self.depths.shape[0]


def project_gaussians(splats: Splats, camera: Cameras, config: RenderConfig) -> ProjectedGaussians:
    """Project a single splat (B = 1) into a single camera: step 1 and the colours of the module docstring."""
    positions, opacities, sh = splats.positions[0], splats.opacities[0, :, 0], splats.sh[0]
    covariances = splats.covariances()[0]
    rotation, translation = camera.rotation[0], camera.translation[0]
    fx, fy, cx, cy = camera.fx[0], camera.fy[0], camera.cx[0], camera.cy[0]

    points = positions @ rotation.T + translation
    # alpha reaches 1/255 where q <= 2 ln(255 o); a Gaussian with o < 1/255 is never visible.
    level = 2.0 * torch.log(opacities.clamp_min(1e-30) * 255.0)
    keep = (points[:, 2] > config.near_plane) & (level > 0)
    sources = torch.nonzero(keep).squeeze(1)
    points, covariances, opacities, sh, level = points[keep], covariances[keep], opacities[keep], sh[keep], level[keep]
    x, y, z = points.unbind(-1)

    jacobian = torch.zeros(points.shape[0], 2, 3, dtype=points.dtype, device=points.device)
    jacobian[:, 0, 0] = fx / z
    jacobian[:, 0, 2] = -fx * x / (z * z)
    jacobian[:, 1, 1] = fy / z
    jacobian[:, 1, 2] = -fy * y / (z * z)
    projection = jacobian @ rotation  # J W
    screen = projection @ covariances @ projection.transpose(1, 2)
    var_x = screen[:, 0, 0] + config.low_pass
    var_y = screen[:, 1, 1] + config.low_pass
    cov_xy = screen[:, 0, 1]
    determinant = var_x * var_y - cov_xy * cov_xy
    conics = torch.stack([var_y / determinant, -cov_xy / determinant, var_x / determinant], dim=-1)
    extents = torch.sqrt(level.unsqueeze(-1) * torch.stack([var_x, var_y], dim=-1))
    means = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    view = positions[keep] - camera.centers()[0]
    view = view / view.norm(dim=-1, keepdim=True)
    colors = (eval_sh(sh, view) + 0.5).clamp_min(0.0)

    order = torch.argsort(z)
    return ProjectedGaussians(means[order], conics[order], opacities[order], colors[order], z[order],
                              extents[order], sources[order])


def row_terms(dy, conic_b, conic_c, log_opacity) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts of the exponent that depend only on the pixel row (see :func:`gaussian_alpha`):
    ``B = -b dy`` and ``C = log(o) - c dy² / 2``."""
    return -conic_b * dy, log_opacity - 0.5 * conic_c * dy * dy


def gaussian_alpha(dx, half_conic_a, row_linear, row_constant) -> torch.Tensor:
    """Alpha at pixel offsets ``dx`` of a row: ``min(0.99, o exp(-q/2))``, 0 where it is below 1/255.

    ``o exp(-q/2)`` with ``q = a dx² + 2 b dx dy + c dy²`` is computed as ``exp((A dx + B) dx + C)``, with
    ``A = -a/2`` and the row's ``B, C`` from :func:`row_terms`. Both rasterisers call these two functions, so
    they skip exactly the same pairs.
    """
    alpha = torch.exp((half_conic_a * dx + row_linear) * dx + row_constant).clamp_max(ALPHA_MAX)
    return alpha * (alpha >= ALPHA_MIN)


def _spans(first: torch.Tensor, last: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel ranges covering the centres ``j + 0.5`` in [first, last], clipped to 0..limit-1:
    the first index and the length (0 when empty)."""
    start = torch.ceil(first - 0.5 - WINDOW_MARGIN).clamp_min_(0)
    stop = torch.floor(last - 0.5 + WINDOW_MARGIN).clamp_max_(limit - 1)
    return start.long(), (stop - start + 1).clamp_min_(0).long()


def _list_pairs(gaussians: ProjectedGaussians, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (pixel, Gaussian) pair inside the ellipse where alpha can reach 1/255, Gaussian by Gaussian:
    keys ``pixel * M + depth_rank`` and alphas (0 for the few pairs on the rim that stay below 1/255).

    First the rows each Gaussian covers (``|dy| <= extent_y``), then for each row the run of columns where
    ``(A dx + B) dx + C >= log(1/255)``, solved as a quadratic.
    """
    count, device, dtype = len(gaussians), gaussians.means.device, gaussians.means.dtype
    key_type = torch.int32 if width * height * count < 2 ** 31 else torch.int64
    u, v = gaussians.means.unbind(-1)
    a, b, c = gaussians.conics.unbind(-1)

    row_start, row_count = _spans(v - gaussians.extents[:, 1], v + gaussians.extents[:, 1], height)
    owner = torch.repeat_interleave(row_count)  # [R] the Gaussian of each row
    per_row = torch.stack([u, v, -0.5 * a, b, c, torch.log(gaussians.opacities)], dim=0).index_select(1, owner)
    row_u, row_v, row_half_a, row_b, row_c, row_log_opacity = per_row.unbind(0)
    first_row = (torch.cumsum(row_count, 0) - row_count).index_select(0, owner)
    y = row_start.index_select(0, owner) + torch.arange(owner.shape[0], device=device) - first_row
    row_linear, row_constant = row_terms((y.to(dtype) + 0.5) - row_v, row_b, row_c, row_log_opacity)

    # A dx² + B dx + C - log(1/255) >= 0 with A < 0: dx between the roots, around -B / 2A.
    discriminant = row_linear * row_linear - 4.0 * row_half_a * (row_constant + math.log(255.0))
    half_width = torch.sqrt(discriminant.clamp_min(0.0)) / (-2.0 * row_half_a)
    middle = row_u - row_linear / (2.0 * row_half_a)
    x_start, x_count = _spans(middle - half_width, middle + half_width, width)
    x_count.masked_fill_(discriminant < 0, 0)

    # Spread each row over its columns: the row's ints (key of its first column, index of its first pair) and
    # floats (dx of its first column and the exponent's terms).
    row_key = (y * width + x_start).to(key_type) * count + owner.to(key_type)
    first_pair = (torch.cumsum(x_count, 0) - x_count).to(key_type)
    row_ints = torch.stack([row_key, first_pair], dim=0)
    row_floats = torch.stack([x_start.to(dtype) + 0.5 - row_u, row_half_a, row_linear, row_constant], dim=0)
    pair_row = torch.repeat_interleave(x_count)
    ints = row_ints.index_select(1, pair_row)
    floats = row_floats.index_select(1, pair_row)
    column = torch.arange(pair_row.shape[0], device=device, dtype=key_type).sub_(ints[1])  # within the row
    keys = (column * count).add_(ints[0])
    dx = column.to(dtype) + floats[0]
    return keys, gaussian_alpha(dx, floats[1], floats[2], floats[3])


def rasterize(gaussians: ProjectedGaussians, width: int, height: int):
    """Composite projected Gaussians (pair sort): color [H, W, 3], alpha [H, W], depth [H, W]."""
    count, pixels = len(gaussians), width * height
    dtype, device = gaussians.means.dtype, gaussians.means.device
    keys, alphas = _list_pairs(gaussians, width, height)
    if keys.numel() == 0:
        zeros = torch.zeros(height, width, dtype=dtype, device=device)
        return zeros.unsqueeze(-1).expand(height, width, 3).clone(), zeros, zeros.clone()
    keys, order = torch.sort(keys)  # by pixel, then front to back: the keys are unique
    alphas = alphas.index_select(0, order)
    pixel = torch.div(keys, count, rounding_mode="floor")
    rank = keys - pixel * count

    # T_i = exp(sum of log(1 - alpha) over the earlier pairs of the same pixel). The running sum spans all
    # pixels, so it is kept in float64: float32 would lose the small per-pixel differences.
    log_transmittance = torch.log1p(-alphas).double()
    before = torch.cumsum(log_transmittance, 0) - log_transmittance  # exclusive running sum
    pairs_per_pixel = torch.bincount(pixel, minlength=pixels)
    run_end = torch.cumsum(pairs_per_pixel, 0)
    run_start = (run_end - pairs_per_pixel).clamp_max_(keys.shape[0] - 1)
    start_sum = before.index_select(0, run_start).index_select(0, pixel)  # the running sum at each run's start
    weights = torch.exp((before - start_sum).to(dtype)) * alphas

    # Per pixel, sum weight x (r, g, b, z, 1) over its pairs.
    values = torch.cat([gaussians.colors, gaussians.depths.unsqueeze(-1),
                        torch.ones_like(gaussians.depths).unsqueeze(-1)], dim=-1)
    row_offsets = torch.cat([run_end.new_zeros(1), run_end]).to(keys.dtype)
    accumulated = _PixelSum.apply(weights, values, row_offsets, rank, pixel).reshape(height, width, 5)
    return accumulated[..., :3], accumulated[..., 4], accumulated[..., 3]


class _PixelSum(torch.autograd.Function):
    """``out[p] = sum over the pairs i of pixel p of weights[i] * values[rank[i]]``.

    Forward: a sparse [pixels, M] matrix whose rows are the pixels' runs of pairs, times the [M, 5] values (far
    faster than ``index_add_``). Backward: gathers over the pairs. (torch's own CSR backward forms the dense
    [pixels, M] product before masking it, which is quadratic.)
    """

    @staticmethod
    def forward(ctx, weights, values, row_offsets, rank, pixel):
        ctx.save_for_backward(weights, values, rank, pixel)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            matrix = torch.sparse_csr_tensor(row_offsets, rank, weights, (row_offsets.shape[0] - 1, values.shape[0]),
                                             check_invariants=False)
            return matrix @ values

    @staticmethod
    def backward(ctx, grad_output):
        weights, values, rank, pixel = ctx.saved_tensors
        grad_per_pair = grad_output.index_select(0, pixel)  # [pairs, 5]
        grad_weights = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_weights = (grad_per_pair * values.index_select(0, rank)).sum(dim=-1)
        if ctx.needs_input_grad[1]:
            grad_values = torch.zeros_like(values).index_add_(0, rank, grad_per_pair * weights.unsqueeze(-1))
        return grad_weights, grad_values, None, None, None


def rasterize_dense(gaussians: ProjectedGaussians, width: int, height: int, max_elements: int = 2 ** 23):
    """Reference compositor: every Gaussian against every pixel, transmittance by cumulative product."""
    dtype, device = gaussians.means.dtype, gaussians.means.device
    rows, columns = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                   indexing="ij")
    centers_x = columns.reshape(-1).to(dtype) + 0.5
    centers_y = rows.reshape(-1).to(dtype) + 0.5
    u, v = gaussians.means[:, 0:1], gaussians.means[:, 1:2]
    half_a, b, c = (gaussians.conics[:, i:i + 1] for i in range(3))
    half_a = -0.5 * half_a
    log_opacity = torch.log(gaussians.opacities).unsqueeze(1)
    values = torch.cat([gaussians.colors, gaussians.depths.unsqueeze(-1)], dim=-1)  # rgb, z
    chunk = max(1, max_elements // max(1, len(gaussians)))
    outputs = []
    for start in range(0, width * height, chunk):
        dx = centers_x[start:start + chunk].unsqueeze(0) - u  # [M, pixels]
        dy = centers_y[start:start + chunk].unsqueeze(0) - v
        alpha = gaussian_alpha(dx, half_a, *row_terms(dy, b, c, log_opacity))
        through = torch.cumprod(1.0 - alpha, dim=0)
        transmittance = torch.cat([torch.ones_like(through[:1]), through[:-1]], dim=0)
        weights = alpha * transmittance
        outputs.append(torch.cat([weights.T @ values, weights.sum(0).unsqueeze(-1)], dim=-1))
    result = torch.cat(outputs).reshape(height, width, 5)
    return result[..., :3], result[..., 4], result[..., 3]


def render(splats: Splats, cameras: Cameras, config: RenderConfig | None = None) -> Rendering:
    """Render splats from V cameras. With B = 1 every camera sees the one splat; with B = V camera v sees item v."""
    return _render(splats, cameras, config or RenderConfig(), rasterize)


def render_dense(splats: Splats, cameras: Cameras, config: RenderConfig | None = None) -> Rendering:
    """:func:`render` computed densely (every Gaussian against every pixel): the reference for tests."""
    return _render(splats, cameras, config or RenderConfig(), rasterize_dense)


def render_turntable(splats: Splats, num_frames: int, width: int = 256, height: int = 256,
                     elevation_deg: float = 20.0, radius: float = 2.0, fov_deg: float = 49.1,
                     config: RenderConfig | None = None) -> torch.Tensor:
    """Frames [num_frames, H, W, 3] of one splat (B = 1) seen from cameras circling the origin
    (``turntable_cameras``: the first frame is the front view)."""
    if splats.batch_size != 1:
        raise ValueError(f"render_turntable takes one splat; select one of the {splats.batch_size} with .item(i)")
    cameras = turntable_cameras(num_frames, elevation_deg, radius, fov_deg, width, height)
    return render(splats, cameras.to(device=splats.device, dtype=splats.positions.dtype), config).color


def _render(splats: Splats, cameras: Cameras, config: RenderConfig, rasterizer) -> Rendering:
    views = len(cameras)
    if splats.batch_size not in (1, views):
        raise ValueError(f"{splats.batch_size} splats cannot pair with {views} cameras: give one splat for all "
                         f"cameras or one splat per camera")
    cameras = cameras.to(device=splats.device, dtype=splats.positions.dtype)
    background = torch.tensor(config.background, dtype=splats.positions.dtype, device=splats.device)
    colors, alphas, depths = [], [], []
    for view in range(views):
        item = splats.item(view if splats.batch_size == views else 0)
        projected = project_gaussians(item, cameras[view], config)
        color, alpha, depth = rasterizer(projected, cameras.width, cameras.height)
        colors.append(color + (1.0 - alpha).unsqueeze(-1) * background)
        alphas.append(alpha)
        depths.append(depth)
    return Rendering(torch.stack(colors), torch.stack(alphas), torch.stack(depths))
