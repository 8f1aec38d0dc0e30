"""Classifier-free guidance on velocities.

    v = v_uncond + w * (v_cond - v_uncond)

w = 1 is the conditional prediction alone (no unconditional pass is made), w = 0 the unconditional one. The
conditional and unconditional predictions come from one batched forward, or with CFG parallelism
(``runtime/parallel.py``) from two processes, one branch each. The negative prompt is the unconditional branch.
Guidance can be limited to an interval of noise levels (guiding only mid-trajectory improves quality and skips
unconditional passes), and rescaled towards the conditional prediction's standard deviation to avoid
over-saturation at high w.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import parallel
from ..text.conditioning import TextConditioning


@dataclass
class GuidanceConfig:
    scale: float = 4.0          # w
    sigma_start: float = 1.0    # guidance applies while sigma_end <= sigma <= sigma_start
    sigma_end: float = 0.0
    rescale: float = 0.0        # 0 = plain CFG; 1 = match the conditional prediction's std fully

    def __post_init__(self):
        if not 0.0 <= self.sigma_end <= self.sigma_start <= 1.0:
            raise ValueError(f"guidance interval must satisfy 0 <= end <= start <= 1, got "
                             f"start={self.sigma_start}, end={self.sigma_end}")
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"guidance rescale must be in [0, 1], got {self.rescale}")

    def active_at(self, sigma: float) -> bool:
        """Whether the unconditional branch is needed at this noise level."""
        return self.scale != 1.0 and self.sigma_end <= sigma <= self.sigma_start


def combine_guidance(v_cond: torch.Tensor, v_uncond: torch.Tensor, config: GuidanceConfig) -> torch.Tensor:
    """The guided velocity. ``torch.lerp`` is exact at both ends (w = 0 and w = 1)."""
    guided = torch.lerp(v_uncond, v_cond, config.scale)
    if config.rescale > 0:
        dims = tuple(range(1, guided.ndim))
        ratio = v_cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-8)
        guided = config.rescale * guided * ratio + (1 - config.rescale) * guided
    return guided


ModelFn = Callable[[torch.Tensor, float, TextConditioning], torch.Tensor]


def guided_velocity(model: ModelFn, cond: TextConditioning, uncond: Optional[TextConditioning],
                    config: GuidanceConfig) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """A velocity function ``(x, sigma) -> v`` for the sampler.

    ``model(x, sigma, text)`` must accept a batch that is a whole multiple of ``len(cond)`` (the guided pass runs
    cond and uncond as one batch of 2B). Without ``uncond`` the prediction is purely conditional.
    """

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if uncond is None or not config.active_at(sigma):
            return model(x, sigma, cond)
        v_cond, v_uncond = conditional_and_unconditional(model, x, sigma, cond, uncond)
        return combine_guidance(v_cond, v_uncond, config)

    return velocity


def conditional_and_unconditional(model: ModelFn, x: torch.Tensor, sigma: float, cond: TextConditioning,
                                  uncond: TextConditioning) -> tuple[torch.Tensor, torch.Tensor]:
    """(v_cond, v_uncond): one forward of the batch of 2B, or under CFG parallelism one branch on each rank of the
    CFG pair (rank 0 the conditional, rank 1 the unconditional), exchanged with all_gather."""
    pair = parallel.cfg_pair()
    if pair is None:
        return model(torch.cat([x, x]), sigma, TextConditioning.cat([cond, uncond])).chunk(2)
    v_cond, v_uncond = pair.all_gather(model(x, sigma, (cond, uncond)[pair.rank]))
    return v_cond, v_uncond
