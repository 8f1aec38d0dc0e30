"""The splat container: a batch of 3D Gaussians in the layout of ComfyUI core's ``SPLAT`` type.

Values are stored *activated*, exactly like core: ``positions`` [B, N, 3]; ``scales`` [B, N, 3] linear standard
deviations; ``rotations`` [B, N, 4] unit quaternions (w, x, y, z); ``opacities`` [B, N, 1] in 0..1; ``sh``
[B, N, K, 3] spherical-harmonic colour coefficients (K = 1, 4, 9 or 16, see ``sh.py``); ``counts`` [B] the real
number of Gaussians of each item when items have different sizes (the rest of the N rows is padding), or None.

Files store the *raw* 3DGS parameterisation instead (log scale, logit opacity, any-length quaternion):
:meth:`Splats.from_raw` and :meth:`Splats.to_raw` convert. Positions live in the camera convention's world
frame (``camera.py``: x right, y down, z forward), the frame 3DGS PLY files use.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .rotations import quaternion_to_matrix
from .sh import sh0_to_rgb, sh_degree_of

# Raw values are clamped before log/logit so that a fully transparent or zero-size Gaussian stays finite.
MIN_OPACITY = 1e-6
MIN_SCALE = 1e-8


class RawGaussians(NamedTuple):
    """The 3DGS storage parameterisation of a batch (what PLY files hold)."""

    positions: torch.Tensor       # [B, N, 3]
    log_scales: torch.Tensor      # [B, N, 3]
    quaternions: torch.Tensor     # [B, N, 4] w, x, y, z (normalised on activation)
    opacity_logits: torch.Tensor  # [B, N, 1]
    sh: torch.Tensor              # [B, N, K, 3]


@dataclass
class Splats:
    positions: torch.Tensor
    scales: torch.Tensor
    rotations: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    counts: torch.Tensor | None = None

    def __post_init__(self):
        if self.positions.ndim != 3 or self.positions.shape[-1] != 3:
            raise ValueError(f"positions must be [B, N, 3], got {tuple(self.positions.shape)}")
        batch, count = self.positions.shape[:2]
        expected = {"scales": (batch, count, 3), "rotations": (batch, count, 4), "opacities": (batch, count, 1)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must be {list(shape)} like positions, got {tuple(getattr(self, name).shape)}")
        if self.sh.ndim != 4 or self.sh.shape[:2] != (batch, count) or self.sh.shape[-1] != 3:
            raise ValueError(f"sh must be [{batch}, {count}, K, 3], got {tuple(self.sh.shape)}")
        sh_degree_of(self.sh.shape[2])
        if self.counts is not None and tuple(self.counts.shape) != (batch,):
            raise ValueError(f"counts must be [{batch}], got {tuple(self.counts.shape)}")

    # ---- sizes -------------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.positions.shape[0]

    @property
    def num_gaussians(self) -> int:
        """Rows per item (the largest item; see ``counts`` for the real size of each)."""
        return self.positions.shape[1]

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[2])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def count(self, index: int) -> int:
        """Real number of Gaussians of batch item ``index``."""
        return int(self.counts[index]) if self.counts is not None else self.num_gaussians

    # ---- conversions ------------------------------------------------------------------------------------------
    @classmethod
    def from_raw(cls, positions, log_scales, quaternions, opacity_logits, sh, counts=None) -> "Splats":
        """Activate the 3DGS storage parameterisation: ``exp`` scales, ``sigmoid`` opacities, unit quaternions."""
        norms = quaternions.norm(dim=-1, keepdim=True)
        return cls(positions, torch.exp(log_scales), quaternions / norms.clamp_min(1e-12),
                   torch.sigmoid(opacity_logits), sh, counts)

    def to_raw(self) -> RawGaussians:
        """The 3DGS storage parameterisation: ``log`` scales, ``logit`` opacities (clamped so both stay finite)."""
        opacities = self.opacities.clamp(MIN_OPACITY, 1.0 - MIN_OPACITY)
        return RawGaussians(self.positions, torch.log(self.scales.clamp_min(MIN_SCALE)), self.rotations,
                            torch.log(opacities) - torch.log1p(-opacities), self.sh)

    def colors_rgb(self) -> torch.Tensor:
        """Base colour from band 0, ``0.5 + C0 * f_dc``, clamped to 0..1: [B, N, 3]."""
        return sh0_to_rgb(self.sh[:, :, 0, :]).clamp(0.0, 1.0)

    def covariances(self) -> torch.Tensor:
        """World-space covariances ``R diag(s^2) R^T``: [B, N, 3, 3]."""
        rotation_scaled = quaternion_to_matrix(self.rotations) * self.scales.unsqueeze(-2)  # R S
        return rotation_scaled @ rotation_scaled.transpose(-1, -2)

    def to(self, device=None, dtype=None) -> "Splats":
        def move(x):
            return x.to(device=device, dtype=dtype)

        counts = None if self.counts is None else self.counts.to(device=device)
        return Splats(move(self.positions), move(self.scales), move(self.rotations), move(self.opacities),
                      move(self.sh), counts)

    @classmethod
    def stack(cls, items: list["Splats"]) -> "Splats":
        """One batch of single splats (B = 1 each, of one SH degree); items of different sizes are padded with
        transparent Gaussians and ``counts`` holds their real sizes."""
        sizes = [item.num_gaussians for item in items]
        if any(item.batch_size != 1 for item in items):
            raise ValueError("Splats.stack takes single splats (B = 1); select items with .item(i)")
        largest = max(sizes)

        def padded(item: "Splats", name: str) -> torch.Tensor:
            values = getattr(item, name)[0]
            filler = values.new_zeros((largest - values.shape[0],) + values.shape[1:])
            if name == "scales":
                filler.fill_(1.0)    # padding stays valid: unit scale, the identity rotation, opacity 0
            elif name == "rotations":
                filler[:, 0] = 1.0
            return torch.cat([values, filler])

        fields = [torch.stack([padded(item, name) for item in items])
                  for name in ("positions", "scales", "rotations", "opacities", "sh")]
        same = len(set(sizes)) == 1
        return cls(*fields, None if same else torch.tensor(sizes))

    # ---- selection --------------------------------------------------------------------------------------------
    def item(self, index: int) -> "Splats":
        """Batch item ``index`` alone (B = 1), without its padding rows."""
        if not -self.batch_size <= index < self.batch_size:
            raise IndexError(f"splat batch item {index} out of range for a batch of {self.batch_size}")
        index %= self.batch_size
        keep = slice(0, self.count(index))
        return Splats(self.positions[index:index + 1, keep], self.scales[index:index + 1, keep],
                      self.rotations[index:index + 1, keep], self.opacities[index:index + 1, keep],
                      self.sh[index:index + 1, keep])

    def valid_mask(self) -> torch.Tensor:
        """[B, N] True for real rows (False for the padding beyond ``counts``)."""
        rows = torch.arange(self.num_gaussians, device=self.device).unsqueeze(0)
        if self.counts is None:
            return rows.expand(self.batch_size, -1) >= 0
        return rows < self.counts.to(self.device).unsqueeze(1)

    def drop_non_finite(self) -> "Splats":
        """The same splats without Gaussians holding NaN or Inf (viewers break on them), with one warning.

        Items keep their order; when items lose different numbers of Gaussians the result is padded and
        ``counts`` says how many are real.
        """
        finite = torch.ones_like(self.positions[..., 0], dtype=torch.bool)
        for values in (self.positions, self.scales, self.rotations, self.opacities):
            finite &= torch.isfinite(values).all(dim=-1)
        finite &= torch.isfinite(self.sh).flatten(2).all(dim=-1)
        real = self.valid_mask()
        keep = finite & real
        dropped = int((real & ~finite).sum())
        if dropped == 0:
            return self
        warnings.warn(f"dropped {dropped} of {int(real.sum())} Gaussians holding NaN or Inf values "
                      f"(viewers cannot display them)", stacklevel=2)
        counts = keep.sum(dim=1)
        # A stable sort of "not kept" moves the kept rows to the front in their original order.
        order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :int(counts.max())]

        def gather(values):
            index = order.reshape(order.shape + (1,) * (values.ndim - 2)).expand(order.shape + values.shape[2:])
            return torch.gather(values, 1, index)

        same_size = bool((counts == counts[0]).all())
        return Splats(gather(self.positions), gather(self.scales), gather(self.rotations), gather(self.opacities),
                      gather(self.sh), None if same_size else counts)

    # ---- checks -----------------------------------------------------------------------------------------------
    def validate(self, quaternion_tolerance: float = 1e-3) -> "Splats":
        """Raise ValueError naming every broken invariant; returns self so calls can chain."""
        real = self.valid_mask()
        problems = []
        for name in ("positions", "scales", "rotations", "opacities", "sh"):
            values = getattr(self, name)
            bad = int((~torch.isfinite(values).flatten(2).all(dim=-1) & real).sum())
            if bad:
                problems.append(f"{bad} Gaussians have non-finite {name} (use drop_non_finite())")
        if (bad := int(((self.scales <= 0).any(dim=-1) & real).sum())):
            problems.append(f"{bad} Gaussians have scales <= 0 (scales are linear standard deviations)")
        if (bad := int((((self.opacities < 0) | (self.opacities > 1)).any(dim=-1) & real).sum())):
            problems.append(f"{bad} Gaussians have opacities outside 0..1 (raw logits need Splats.from_raw)")
        norm_error = (self.rotations.norm(dim=-1) - 1.0).abs()
        if (bad := int(((norm_error > quaternion_tolerance) & real).sum())):
            problems.append(f"{bad} Gaussians have rotations that are not unit quaternions (normalise them)")
        if self.counts is not None and bool(((self.counts < 0) | (self.counts > self.num_gaussians)).any()):
            problems.append(f"counts {self.counts.tolist()} must lie in 0..{self.num_gaussians}")
        if problems:
            raise ValueError("invalid splats: " + "; ".join(problems))
        return self


def prepare_for_file(splats: Splats, file_kind: str) -> Splats:
    """The one splat a file holds: batch item 0 of a B = 1 batch, without padding or non-finite Gaussians
    (dropped with one warning), as float32 on the CPU."""
    if splats.batch_size != 1:
        raise ValueError(f"a {file_kind} file holds one splat, got a batch of {splats.batch_size}; "
                         f"write each with splats.item(i)")
    single = splats.item(0).to(device="cpu", dtype=torch.float32).drop_non_finite()
    if single.num_gaussians == 0:
        raise ValueError(f"nothing to write to the {file_kind} file: the splat has no finite Gaussians")
    return single
