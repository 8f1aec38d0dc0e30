"""Fitting a Gaussian splat to images seen by known cameras: the optimisation of 3DGS (Kerbl et al. 2023) on the
differentiable renderer of ``render.py``, with Mip-Splatting's 3D smoothing filter (Yu et al. 2024).

Given V images [V, H, W, 3] (sRGB 0..1) and their cameras, :func:`fit_splats` minimises, one view per step,

    loss = (1 - λ) |render - image|₁ + λ (1 - SSIM(render, image)) + w_aniso · mean(max(0, s_max / s_min - r))

over the raw parameters (positions, log scales, quaternions, opacity logits, SH) with Adam. Renders are
composited over each view's background colour (the median of its border pixels, unless given).

- **Densification** (every ``densify_every`` steps in ``[densify_from, densify_until)``): a Gaussian whose
  projected centre had a mean gradient of at least ``densify_gradient`` (in normalised device coordinates, which
  makes it independent of the resolution; over the steps that saw it) covers too much with too little: if it is small (largest scale below ``percent_dense`` of
  the scene extent) it is cloned, else it is split into two drawn from itself with scales / 1.6.
- **Pruning** (at the same steps): Gaussians below ``prune_opacity``, and after the first opacity reset those
  larger than ``max_scale_fraction`` of the extent.
- **Opacity reset** (every ``opacity_reset_every`` steps until ``densify_until``): opacities drop to at most
  0.01, so Gaussians that are not needed fade and get pruned.
- **3D filter**: every Gaussian's covariance gains ``(filter_pixels · z / f)² I``, with ``z / f`` the world size
  of one image pixel at the Gaussian, seen by the nearest training camera that has it in view. No Gaussian is
  then narrower than ``filter_pixels`` pixels of the images it was fitted to, so renders at 2–4× the training
  resolution show a surface, not a lattice of dots. The returned splat holds the filtered scales.
- **Supersampling** (``supersample`` = s > 1): each step renders at s× the image size and averages s × s blocks
  before the loss (coarse → fine: the fine stage is fitted where it will be looked at).

Without a starting splat, :func:`initial_splats` seeds one from the images: points of the visual hull (inside
every view's foreground) coloured by the pixels they project to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from .camera import Cameras
from .render import RenderConfig, project_gaussians, rasterize
from .rotations import quaternion_to_matrix
from .sh import rgb_to_sh0
from .splats import Splats

FOREGROUND_DIFFERENCE = 0.06   # a pixel this far from the background colour (max over channels) is the object
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


@dataclass
class FitConfig:
    """How a splat is fitted to images (module docstring)."""

    iterations: int = 1000
    position_lr: float = 4e-4           # times the scene extent; decays exponentially to position_lr_final
    position_lr_final: float = 4e-6
    scale_lr: float = 5e-3
    rotation_lr: float = 1e-3
    opacity_lr: float = 0.05
    color_lr: float = 5e-3               # band 0; higher bands learn 20 times slower
    ssim_weight: float = 0.2
    anisotropy_weight: float = 0.01      # w_aniso: flat needles render as dots and streaks
    max_anisotropy: float = 6.0          # r
    densify_from: int = 100
    densify_until: float = 0.6           # fraction of the iterations
    densify_every: int = 100
    densify_gradient: float = 2e-4      # |∂loss/∂centre| in NDC units (pixels x width / 2), as 3DGS's
    percent_dense: float = 0.01
    prune_opacity: float = 0.005
    max_scale_fraction: float = 0.1
    opacity_reset_every: int = 300
    max_gaussians: int = 30_000
    filter_pixels: float = 0.5           # 3D filter: standard deviation in training pixels
    supersample: int = 1
    initial_points: int = 4000           # when no starting splat is given
    seed: int = 0


@dataclass
class FitResult:
    splats: Splats
    losses: list[float]                  # the loss of every step
    counts: list[int]                    # Gaussians after each densification


def image_backgrounds(images: torch.Tensor) -> torch.Tensor:
    """The background colour of each view: the median of its border pixels. images [V, H, W, 3] -> [V, 3]."""
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)  # [V, P, 3]
    return border.median(dim=1).values


def foreground_masks(images: torch.Tensor, backgrounds: torch.Tensor) -> torch.Tensor:
    """[V, H, W] True where a pixel differs from its view's background by FOREGROUND_DIFFERENCE or more."""
    return (images - backgrounds[:, None, None, :]).abs().amax(dim=-1) >= FOREGROUND_DIFFERENCE


def initial_splats(images: torch.Tensor, cameras: Cameras, backgrounds: torch.Tensor, count: int,
                   generator: torch.Generator) -> Splats:
    """About ``count`` small, faint Gaussians filling the visual hull of the images' foregrounds.

    Candidates are drawn uniformly in the cube around the largest sphere every camera sees whole (centred where the
    cameras' optical axes pass closest); those that land inside the foreground of every view are kept and take
    the mean colour of the pixels they project to. Scales are the mean distance to their 3 nearest neighbours
    (3DGS's initialisation), opacities 0.1.
    """
    centre, radius = common_view_sphere(cameras)
    masks = foreground_masks(images, backgrounds)
    if not bool(masks.any()):
        raise ValueError("no view has anything that differs from its background colour; give the background "
                         "colour of the images, or start from a splat")
    candidates = centre + (torch.rand(count * 30, 3, generator=generator) * 2.0 - 1.0) * radius
    pixels, depth = cameras.project(candidates)  # [V, P, 2], [V, P]
    column = pixels[..., 0].floor().long()
    row = pixels[..., 1].floor().long()
    inside = (depth > 0) & (column >= 0) & (column < cameras.width) & (row >= 0) & (row < cameras.height)
    column, row = column.clamp(0, cameras.width - 1), row.clamp(0, cameras.height - 1)
    views = torch.arange(len(cameras))[:, None]
    keep = (inside & masks[views, row, column]).all(dim=0)
    if int(keep.sum()) < 16:
        raise ValueError("the foregrounds of the views have almost no common volume: check that the cameras belong "
                         "to the images (order, elevation, distance, field of view)")
    chosen = torch.nonzero(keep).squeeze(1)[:count]
    points = candidates[chosen]
    colors = images[views, row[:, chosen], column[:, chosen]].mean(dim=0)  # [P, 3]
    distances, _ = cKDTree(points.numpy()).query(points.numpy(), k=4)
    scales = torch.from_numpy(distances[:, 1:].mean(axis=1)).float().clamp_min(1e-4)
    n = points.shape[0]
    rotations = torch.zeros(n, 4)
    rotations[:, 0] = 1.0
    return Splats(points[None], scales[:, None].expand(n, 3)[None].clone(), rotations[None],
                  torch.full((1, n, 1), 0.1), rgb_to_sh0(colors)[None, :, None, :])


def common_view_sphere(cameras: Cameras) -> tuple[torch.Tensor, float]:
    """The point nearest to every camera's optical axis (least squares) and the radius of the largest sphere
    around it that every camera sees whole."""
    centres = cameras.centers().double()
    axes = cameras.rotation[:, 2].double()  # rows of R are the camera axes in world coordinates; z looks forward
    projector = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]  # I - a aᵀ per camera
    target = torch.linalg.lstsq(projector.sum(0), (projector @ centres[:, :, None]).sum(0)).solution[:, 0]
    distance = (centres - target).norm(dim=-1)
    half_view = torch.atan(torch.minimum(cameras.width / (2 * cameras.fx), cameras.height / (2 * cameras.fy)))
    return target.float(), float((distance * torch.sin(half_view.double())).min())


def scene_extent(cameras: Cameras) -> float:
    """3DGS's scene scale: 1.1 times the largest distance of a camera from the cameras' mean centre (at least
    1.1 times the distance to the viewed point when cameras coincide)."""
    centres = cameras.centers()
    spread = float((centres - centres.mean(dim=0)).norm(dim=-1).max())
    if spread < 1e-6:
        target, _ = common_view_sphere(cameras)
        spread = float((centres[0] - target).norm())
    return 1.1 * spread


def pixel_footprints(positions: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """World size ``z / f`` of one image pixel at each point [N, 3], seen by the nearest camera that has the
    point in view (the largest over all cameras where none does): [N]."""
    pixels, depth = cameras.project(positions)
    in_view = ((depth > 1e-3) & (pixels[..., 0] >= 0) & (pixels[..., 0] <= cameras.width)
               & (pixels[..., 1] >= 0) & (pixels[..., 1] <= cameras.height))
    footprint = depth.clamp_min(1e-3) / (0.5 * (cameras.fx + cameras.fy))[:, None]  # [V, N]
    seen = torch.where(in_view, footprint, torch.full_like(footprint, math.inf)).amin(dim=0)
    return torch.where(torch.isfinite(seen), seen, footprint.amax(dim=0))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of images [N, 3, H, W] (Wang et al. 2004; Gaussian window 11, σ 1.5)."""
    offsets = torch.arange(SSIM_WINDOW, dtype=a.dtype, device=a.device) - SSIM_WINDOW // 2
    line = torch.exp(-offsets ** 2 / (2 * SSIM_SIGMA ** 2))
    line = line / line.sum()
    window = (line[:, None] * line[None, :]).expand(3, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(x):
        return F.conv2d(x, window, padding=SSIM_WINDOW // 2, groups=3)

    mean_a, mean_b = blur(a), blur(b)
    var_a = blur(a * a) - mean_a ** 2
    var_b = blur(b * b) - mean_b ** 2
    covariance = blur(a * b) - mean_a * mean_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    return value.mean()


class _Adam:
    """Adam over named tensors whose rows (Gaussians) are added and removed as the fit goes: its moments are
    kept per row, so they can follow (``keep``, ``append``)."""

    def __init__(self, parameters: dict[str, torch.Tensor], rates: dict[str, float], betas=(0.9, 0.999),
                 eps: float = 1e-15):
        self.parameters, self.rates, self.betas, self.eps = parameters, rates, betas, eps
        self.first = {name: torch.zeros_like(p) for name, p in parameters.items()}
        self.second = {name: torch.zeros_like(p) for name, p in parameters.items()}
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                if parameter.grad is None:
                    continue
                gradient = parameter.grad
                self.first[name].mul_(beta1).add_(gradient, alpha=1 - beta1)
                self.second[name].mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                update = (self.first[name] / correction1) / ((self.second[name] / correction2).sqrt() + self.eps)
                parameter.sub_(self.rates[name] * update)
                parameter.grad = None

    def replace(self, name: str, value: torch.Tensor) -> None:
        """A new value for one parameter (same rows), its moments cleared."""
        self.parameters[name] = value.detach().clone().requires_grad_(True)
        self.first[name].zero_()
        self.second[name].zero_()

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (bool [N]) of every parameter and moment."""
        for store in (self.first, self.second):
            for name in store:
                store[name] = store[name][rows]
        for name, parameter in self.parameters.items():
            self.parameters[name] = parameter.detach()[rows].requires_grad_(True)

    def append(self, values: dict[str, torch.Tensor]) -> None:
        """Add rows (new Gaussians) with zero moments."""
        for name, parameter in self.parameters.items():
            self.parameters[name] = torch.cat([parameter.detach(), values[name]]).requires_grad_(True)
            for store in (self.first, self.second):
                store[name] = torch.cat([store[name], torch.zeros_like(values[name])])


def fit_splats(images: torch.Tensor, cameras: Cameras, initial: Optional[Splats] = None,
               config: Optional[FitConfig] = None, backgrounds: Optional[torch.Tensor] = None,
               on_step: Optional[Callable[[int, int], None]] = None,
               extra_loss: Optional[Callable[[int, int, Splats], Optional[torch.Tensor]]] = None) -> FitResult:
    """Fit one splat to ``images`` seen by ``cameras`` (:func:`_fit_splats`), wherever it is called from.

    The fit needs autograd, which hosts turn off around their nodes (ComfyUI runs them in
    ``torch.inference_mode()``); tensors made there cannot be saved for backward, so the inputs are copied out of
    inference mode first.
    """
    with torch.inference_mode(False), torch.enable_grad():
        cameras = replace(cameras, **{f.name: getattr(cameras, f.name).clone() for f in fields(cameras)
                                      if isinstance(getattr(cameras, f.name), torch.Tensor)})
        return _fit_splats(images.clone(), cameras, initial, config,
                           None if backgrounds is None else backgrounds.clone(), on_step, extra_loss)


def _fit_splats(images: torch.Tensor, cameras: Cameras, initial: Optional[Splats] = None,
                config: Optional[FitConfig] = None, backgrounds: Optional[torch.Tensor] = None,
                on_step: Optional[Callable[[int, int], None]] = None,
                extra_loss: Optional[Callable[[int, int, Splats], Optional[torch.Tensor]]] = None) -> FitResult:
    """Fit one splat to ``images`` [V, H, W, 3] (sRGB 0..1) seen by ``cameras`` (V cameras of size W x H).

    ``initial`` (B = 1) is the starting point (e.g. the splat decoder's output), else :func:`initial_splats`.
    ``backgrounds`` [V, 3] are the colours behind the object (default: each view's border median).
    ``on_step(step, total)`` is called after every step (progress bars, interrupts). ``extra_loss(step, total,
    splats)`` may add a term to a step's loss (score distillation, ``runtime/refine.py``), or return None. CPU or
    CUDA: the fit runs where ``images`` are.
    """
    config = config or FitConfig()
    views, height, width, _ = images.shape
    if len(cameras) != views:
        raise ValueError(f"{views} images but {len(cameras)} cameras: give one camera per image")
    if (cameras.width, cameras.height) != (width, height):
        cameras = cameras.resized(width, height)
    device = images.device
    cameras = cameras.to(device=device, dtype=torch.float32)
    images = images.float().clamp(0, 1)
    backgrounds = (image_backgrounds(images) if backgrounds is None else backgrounds).to(device).float()
    generator = torch.Generator().manual_seed(config.seed)
    if initial is None:
        initial = initial_splats(images.cpu(), cameras.to(device="cpu"), backgrounds.cpu(), config.initial_points,
                                 generator)
    if initial.batch_size != 1:
        raise ValueError(f"fit one splat at a time; got a batch of {initial.batch_size} (select one with .item(i))")

    extent = scene_extent(cameras)
    raw = initial.item(0).to(device=device, dtype=torch.float32).drop_non_finite().to_raw()
    parameters = {"positions": raw.positions[0], "log_scales": raw.log_scales[0], "quaternions": raw.quaternions[0],
                  "opacity_logits": raw.opacity_logits[0], "sh": raw.sh[0]}
    rates = {"positions": config.position_lr * extent, "log_scales": config.scale_lr,
             "quaternions": config.rotation_lr, "opacity_logits": config.opacity_lr, "sh": config.color_lr}
    optimizer = _Adam({name: p.detach().clone().requires_grad_(True) for name, p in parameters.items()}, rates)
    sh_rate = torch.full_like(parameters["sh"][:1, :, :1], 1.0 / 20.0)
    sh_rate[:, 0] = 1.0

    densify_until = int(config.densify_until * config.iterations)
    s = config.supersample
    render_cameras = cameras.resized(width * s, height * s)
    render_config = RenderConfig()
    footprints = pixel_footprints(optimizer.parameters["positions"].detach(), cameras)
    gradient_sum = torch.zeros(footprints.shape[0], device=device)
    seen = torch.zeros_like(gradient_sum)
    losses, counts = [], []
    order = torch.randperm(views, generator=generator)
    reset_done = False

    for step in range(config.iterations):
        position_rate = _log_interpolate(config.position_lr, config.position_lr_final, step / max(1, config.iterations - 1))
        optimizer.rates["positions"] = position_rate * extent
        view = int(order[step % views])
        if step % views == views - 1:
            order = torch.randperm(views, generator=generator)

        p = optimizer.parameters
        splats = _filtered_splats(p, footprints, config.filter_pixels)
        projected = project_gaussians(splats, render_cameras[view], render_config)
        projected.means.retain_grad()
        color, alpha, _ = rasterize(projected, render_cameras.width, render_cameras.height)
        color = color + (1.0 - alpha).unsqueeze(-1) * backgrounds[view]
        if s > 1:
            color = F.avg_pool2d(color.permute(2, 0, 1)[None], s)[0].permute(1, 2, 0)
        target = images[view]
        loss = (1.0 - config.ssim_weight) * (color - target).abs().mean()
        if config.ssim_weight:
            loss = loss + config.ssim_weight * (1.0 - ssim(color.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]))
        if config.anisotropy_weight:
            scales = p["log_scales"].exp()
            ratio = scales.amax(dim=-1) / scales.amin(dim=-1)
            loss = loss + config.anisotropy_weight * (ratio - config.max_anisotropy).clamp_min(0).mean()
        extra = None if extra_loss is None else extra_loss(step, config.iterations, splats)
        if extra is not None:
            loss = loss + extra
        loss.backward()
        p["sh"].grad.mul_(sh_rate)
        if projected.means.grad is not None:
            with torch.no_grad():
                gradient_sum.index_add_(0, projected.sources, projected.means.grad.norm(dim=-1) * (0.5 * render_cameras.width))
                seen.index_add_(0, projected.sources, torch.ones_like(projected.sources, dtype=seen.dtype))
        optimizer.step()
        losses.append(float(loss.detach()))

        at = step + 1
        if at < densify_until and at >= config.densify_from and at % config.densify_every == 0:
            _densify_and_prune(optimizer, gradient_sum / seen.clamp_min(1), config, extent, reset_done, generator)
            footprints = pixel_footprints(optimizer.parameters["positions"].detach(), cameras)
            gradient_sum = torch.zeros(footprints.shape[0], device=device)
            seen = torch.zeros_like(gradient_sum)
            counts.append(int(footprints.shape[0]))
        if at < densify_until and config.opacity_reset_every and at % config.opacity_reset_every == 0:
            logits = optimizer.parameters["opacity_logits"].detach()
            optimizer.replace("opacity_logits", torch.minimum(logits, torch.full_like(logits, math.log(0.01 / 0.99))))
            reset_done = True
        if on_step is not None:
            on_step(at, config.iterations)

    with torch.no_grad():
        p = optimizer.parameters
        alive = torch.sigmoid(p["opacity_logits"][:, 0]) >= config.prune_opacity
        optimizer.keep(alive)
        footprints = pixel_footprints(optimizer.parameters["positions"], cameras)
        fitted = {name: value.detach() for name, value in optimizer.parameters.items()}
        result = _filtered_splats(fitted, footprints, config.filter_pixels)
    return FitResult(result.to(device="cpu"), losses, counts)


def fit_objects(images: torch.Tensor, cameras: Cameras, initial: Optional[Splats] = None,
                config: Optional[FitConfig] = None,
                on_step: Optional[Callable[[int, int], None]] = None) -> Splats:
    """One splat per object: ``images`` [B, V, H, W, 3] are B objects each seen by the same V ``cameras``;
    ``initial`` holds B starting splats (or one for all), or None. Object b is fitted with seed ``config.seed + b``.
    ``on_step(done, total)`` counts the steps of all objects."""
    config = config or FitConfig()
    objects = images.shape[0]
    if initial is not None and initial.batch_size not in (1, objects):
        raise ValueError(f"{initial.batch_size} starting splats for {objects} objects: give one, or one per object")
    fitted = []
    for item in range(objects):
        start = None if initial is None else initial.item(item if initial.batch_size > 1 else 0)
        done = item * config.iterations

        def stepped(step, _, done=done):
            if on_step is not None:
                on_step(done + step, objects * config.iterations)

        fitted.append(fit_splats(images[item], cameras, start, replace(config, seed=config.seed + item),
                                 on_step=stepped).splats)
    return Splats.stack(fitted)


def _filtered_splats(p: dict, footprints: torch.Tensor, filter_pixels: float) -> Splats:
    """The activated splat of the raw parameters, each scale widened by the 3D filter
    ``sqrt(s² + (filter_pixels · footprint)²)``."""
    widening = (filter_pixels * footprints) ** 2
    scales = torch.sqrt(torch.exp(2.0 * p["log_scales"]) + widening[:, None])
    rotations = p["quaternions"] / p["quaternions"].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return Splats(p["positions"][None], scales[None], rotations[None], torch.sigmoid(p["opacity_logits"])[None],
                  p["sh"][None])


def _densify_and_prune(optimizer: _Adam, gradients: torch.Tensor, config: FitConfig, extent: float,
                       prune_large: bool, generator: torch.Generator) -> None:
    """Clone small and split large Gaussians with ``gradients`` >= the threshold; prune the faint (and, once the
    opacities were reset, the huge). The split originals are removed."""
    p = {name: value.detach() for name, value in optimizer.parameters.items()}
    count = p["positions"].shape[0]
    scales = p["log_scales"].exp()
    largest = scales.amax(dim=-1)
    room = max(0, config.max_gaussians - count)
    grow = gradients >= config.densify_gradient
    if int(grow.sum()) > room:  # keep the steepest within the budget
        threshold = torch.topk(gradients, room).values[-1] if room else math.inf
        grow &= gradients >= threshold
    clone = grow & (largest <= config.percent_dense * extent)
    split = grow & ~clone

    new = {name: value[clone] for name, value in p.items()}
    if bool(split.any()):
        rotation = quaternion_to_matrix(p["quaternions"][split] / p["quaternions"][split].norm(dim=-1, keepdim=True))
        for _ in range(2):
            offset = torch.randn(int(split.sum()), 3, generator=generator).to(scales) * scales[split]
            pieces = {name: value[split] for name, value in p.items()}
            pieces["positions"] = pieces["positions"] + (rotation @ offset[:, :, None])[:, :, 0]
            pieces["log_scales"] = pieces["log_scales"] - math.log(1.6)
            new = {name: torch.cat([new[name], pieces[name]]) for name in new}

    opacity = torch.sigmoid(p["opacity_logits"][:, 0])
    keep = ~split & (opacity >= config.prune_opacity)
    if prune_large:
        keep &= largest <= config.max_scale_fraction * extent
    optimizer.keep(keep)
    optimizer.append(new)


def _log_interpolate(start: float, end: float, t: float) -> float:
    return math.exp((1 - t) * math.log(start) + t * math.log(end))
