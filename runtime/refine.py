"""Refining a generated 3D asset: more views from the diffusion transformer, then a fitted splat, coarse to fine.

:func:`refine_3d` takes the sampled latents of a view rig (V views, e.g. the demo model's 4) and, per item:

1. **coarse** — the splat decoder's splat of the V generated views;
2. **in-between views** — one new camera halfway (in azimuth) between each pair of neighbouring rig cameras.
   The model samples the 2V-view set with the V generated views *given* (held at their latents, as image → 3D
   holds view 0) and the V new views starting from the coarse splat's renders there, noised to ``strength``
   (SDEdit: 1 starts from pure noise, lower keeps more of the coarse splat's layout);
3. **fit** — :func:`~.gaussians.fit.fit_splats` on the generated and new views, from the coarse splat, at the
   views' resolution;
4. **fine** — the fit goes on at 2× that resolution (each step renders at 2× and averages 2 × 2 blocks), with,
   when ``sds_steps`` > 0, **score distillation** (DreamFusion's SDS in the flow convention of
   ``sampling/flow.py``): the splat is rendered by the model's own rig turned to a random azimuth, encoded, noised
   to σ (annealed from ``sds_sigma[0]`` to ``sds_sigma[1]``), and the guided velocity v of the model gives the
   denoised estimate ``x̂₀ = x_σ − σ v``; the loss ``½ w ‖x₀ − sg(x̂₀)‖²`` pulls the renders towards what the model
   would draw there. The model sees the turned rig as its own rig (its rays), so the views stay the ones it knows.

``hold_out`` leaves some new views out of the fit (the evaluation scores the splat on them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange

from .families import FamilyModel
from .gaussians.camera import Cameras, midway_cameras, turned_about_vertical
from .gaussians.fit import FitConfig, fit_splats, image_backgrounds
from .gaussians.render import RenderConfig, render
from .gaussians.splats import Splats
from .generate import Latents, decode_frames, decode_splats, encode_frames, generate, guided_denoiser
from .sampling.guidance import GuidanceConfig
from .sampling.sampler import SamplerConfig
from .text.conditioning import TextConditioning


@dataclass
class RefineConfig:
    strength: float = 0.5                 # noise level the new views start from (1 = pure noise)
    iterations: int = 300                 # fit at the views' resolution
    fine_iterations: int = 150            # fit at 2x, supersampled
    sds_steps: int = 0                    # score-distillation steps within the fine stage (0 = off)
    sds_weight: float = 0.05              # w
    sds_sigma: tuple[float, float] = (0.6, 0.2)  # noise level at the first and the last SDS step
    fit: FitConfig = field(default_factory=FitConfig)  # the rest of the fit's settings

    def __post_init__(self):
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.sds_steps > self.fine_iterations:
            raise ValueError(f"{self.sds_steps} SDS steps do not fit in {self.fine_iterations} fine iterations; "
                             f"raise fine_iterations or lower sds_steps")


@dataclass
class Refined:
    splats: Splats            # B items
    views: torch.Tensor       # [B, 2V, H, W, 3]: generated and new views, interleaved (0, 1/2, 1, 3/2, ...)
    cameras: Cameras          # their 2V cameras
    fitted: list[int]         # the indices of the views the fit used


def refine_3d(model: FamilyModel, latents: Latents, positive: TextConditioning,
              negative: Optional[TextConditioning], guidance: GuidanceConfig, config: RefineConfig, seed: int,
              hold_out: tuple[int, ...] = (), on_step: Optional[Callable[[int, int], None]] = None) -> Refined:
    """Refine each item of sampled 3D ``latents`` (module docstring). ``hold_out`` lists new views (0 .. V-1, the
    one after generated view k is k) that the fit does not see. ``on_step(done, total)`` follows the fit steps."""
    if latents.modality != "3d":
        raise ValueError(f"UniDiT Refine 3D takes sampled 3D latents; these are {latents.modality} latents")
    views = latents.frames
    coarse = decode_splats(model, latents)
    generated = decode_frames(model, latents)  # [B, V, H, W, 3]
    new_cameras = midway_cameras(latents.cameras)
    cameras = Cameras.cat([latents.cameras[k] if i == 0 else new_cameras[k]
                           for k in range(views) for i in range(2)])
    backgrounds = torch.stack([image_backgrounds(item).median(dim=0).values for item in generated])  # [B, 3]

    new_views = inbetween_views(model, latents, coarse, new_cameras, backgrounds, positive, negative, guidance,
                                config.strength, seed)
    all_views = torch.stack([generated, new_views], dim=2).flatten(1, 2)  # [B, 2V, H, W, 3] interleaved
    fitted = [index for index in range(2 * views) if index % 2 == 0 or index // 2 not in hold_out]
    chosen = torch.tensor(fitted)
    total = latents.batch_size * (config.iterations + config.fine_iterations)
    done = 0

    def stepped(step, _):
        if on_step is not None:
            on_step(done + step, total)

    items = []
    for item in range(latents.batch_size):
        fit = replace(config.fit, iterations=config.iterations, seed=seed + item)
        images = all_views[item, chosen]
        coarse_fit = fit_splats(images, cameras[chosen], coarse.item(item), fit, on_step=stepped).splats
        done += config.iterations
        distill = None
        if config.sds_steps:
            distill = score_distillation(model, positive.item(item), None if negative is None else negative.item(item),
                                         guidance, backgrounds[item], config, seed + item)
        fine = replace(config.fit, iterations=config.fine_iterations, supersample=2, densify_until=0.0,
                       position_lr=config.fit.position_lr_final * 10, seed=seed + item)
        items.append(fit_splats(images, cameras[chosen], coarse_fit, fine, on_step=stepped,
                                extra_loss=distill).splats)
        done += config.fine_iterations
    return Refined(Splats.stack(items), all_views, cameras, fitted)


@torch.no_grad()
def inbetween_views(model: FamilyModel, latents: Latents, coarse: Splats, new_cameras: Cameras,
                    backgrounds: torch.Tensor, positive: TextConditioning, negative: Optional[TextConditioning],
                    guidance: GuidanceConfig, strength: float, seed: int) -> torch.Tensor:
    """The model's views at ``new_cameras`` (one after each rig camera), sampled with the rig's views given:
    frames [B, V, H, W, 3]. The new views start from the coarse splat's renders noised to ``strength``."""
    b, channels, views, h, w = latents.samples.shape
    width, height = latents.pixel_size(model)
    renders = torch.stack([render(coarse.item(item), new_cameras.resized(width, height),
                                  RenderConfig(background=tuple(backgrounds[item].tolist()))).color
                           for item in range(b)]).clamp(0, 1)  # [B, V, H, W, 3]
    start = rearrange(encode_frames(model, rearrange(renders, "b v h w c -> (b v) 1 h w c")),
                      "(b v) c 1 h w -> b c v h w", b=b)
    samples = torch.stack([latents.samples, start], dim=3).flatten(2, 3)  # views interleaved: [B, C, 2V, h, w]
    given = torch.zeros(b, 2 * views, dtype=torch.bool)
    given[:, 0::2] = True
    cameras = Cameras.cat([latents.cameras[k] if i == 0 else new_cameras[k] for k in range(views) for i in range(2)])
    both = Latents(samples, "3d", given, samples.clone(), cameras)
    defaults = model.defaults
    sampler = SamplerConfig(solver=defaults.solver, steps=defaults.steps, denoise=strength)
    sampled = generate(model, both, positive, negative, guidance, sampler, seed)
    return decode_frames(model, sampled)[:, 1::2]


def score_distillation(model: FamilyModel, positive: TextConditioning, negative: Optional[TextConditioning],
                       guidance: GuidanceConfig, background: torch.Tensor, config: RefineConfig,
                       seed: int) -> Callable[[int, int, Splats], Optional[torch.Tensor]]:
    """The SDS term for :func:`fit_splats`' ``extra_loss``: a loss on ``sds_steps`` of the fine stage's steps,
    evenly spread, else None (module docstring)."""
    defaults = model.defaults
    rig = model.rig(defaults.width, defaults.height)
    factor = model.capabilities.spatial_factor
    layout = Latents(torch.zeros(1, model.capabilities.latent_channels, len(rig), defaults.height // factor,
                                 defaults.width // factor), "3d", torch.zeros(1, len(rig), dtype=torch.bool),
                     None, rig)
    velocity = guided_denoiser(model, layout, positive, negative, guidance)
    generator = torch.Generator().manual_seed(seed)
    every = config.fine_iterations / config.sds_steps
    high, low = config.sds_sigma
    render_config = RenderConfig(background=tuple(background.tolist()))

    def loss(step: int, total: int, splats: Splats) -> Optional[torch.Tensor]:
        index = math.floor(step / every)
        if step != math.ceil(index * every) or index >= config.sds_steps:
            return None
        sigma = high + (low - high) * index / max(1, config.sds_steps - 1)
        turn = float(torch.rand(1, generator=generator)) * 360.0
        cameras = turned_about_vertical(rig, turn).resized(2 * defaults.width, 2 * defaults.height)
        images = render(splats, cameras, render_config).color  # [V, 2H, 2W, 3]
        images = F.avg_pool2d(images.permute(0, 3, 1, 2), 2).clamp(0, 1)  # [V, 3, H, W]
        pixels = images.unsqueeze(2).to(model.device, model.dtype) * 2 - 1  # [V, 3, 1, H, W]
        x0 = rearrange(model.autoencoder.encode(pixels), "v c 1 h w -> 1 c v h w").float()
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        noisy = (1 - sigma) * x0.detach() + sigma * noise
        with torch.no_grad():
            denoised = noisy - sigma * velocity(noisy, sigma)
        return 0.5 * config.sds_weight * ((x0 - denoised) ** 2).mean()

    return loss
