"""The UniDiT backbone: one diffusion transformer for image, video and multi-view 3D latents.

Every modality is a latent volume x [B, C, F, H, W] (image: F = 1; video: F latent frames; 3D: F views), and
every frame has its own noise level sigma [B, F]; a frame at sigma = 0 is given (clean conditioning).

    tokens  = Linear(patches of x)
            + Linear_zero(patches of [Plücker rays (6), given (1)])  camera and given-frame channels
            + Linear_zero(patches of control maps)                    depth and mask (runtime/control.py), if any
    cond    = MLP(sinusoid(1000 sigma)) + MLP(pooled text) + modality embedding     per frame, [B, F, hidden]
    adaLN   = Linear_zero(SiLU(cond)) -> (shift, scale, gate) for attention and MLP, per frame; each block adds
              its own learned table
    block   x = x + gate_a * norm(SelfAttn(modulate(norm(x)), 3D RoPE, QK-RMSNorm))
            x = x + tanh(gate_text) * CrossAttn(norm(x), text tokens, key-padding mask)    gate_text = 0 at init
            x = x + gate_m * norm(SwiGLU(modulate(norm(x))))
    output  = Linear_zero(modulate(norm(x))) -> unpatchify -> velocity v [B, C, F, H, W]

The zero-initialised output head makes a fresh model predict exactly zero; zero-initialised adaLN gates make
every block start as the identity (adaLN-Zero, as in DiT).

With sequence parallelism (``runtime/parallel.py``) each rank takes its slice of every frame's tokens after the
patch embedding, self-attention exchanges heads for tokens across the ranks, and the output head's tokens are
gathered again; in one process those steps are the identity.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..parallel import SequenceShard, sequence_shard
from ..sampling.step_cache import StepCache, run_blocks
from ..text.conditioning import TextConditioning
from .attention import attention, check_backend_name
from .config import MODALITIES, DiTConfig
from .rope import apply_rope, grid_positions, rope_rotations


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, affine: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x / sqrt(mean(x^2) + eps) * weight, with mean(x^2) = |x|^2 / dim from one fused reduction
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32).square() / self.dim
        normed = x * torch.rsqrt(mean_square + self.eps).to(x.dtype)
        return normed * self.weight if self.weight is not None else normed


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x [B, F, S, C] shifted and scaled per frame by shift, scale [B, F, 1, C]."""
    return torch.addcmul(shift, x, 1 + scale)


def timestep_features(sigma: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features [..., dim] of noise levels [...], fed as ``1000 * sigma`` (the DiT/ADM embedding)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                                 device=sigma.device) / half)
    angles = (1000.0 * sigma.float())[..., None] * frequencies
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """Latent cells to tokens in (frame, y, x) order."""
    pf, ph, pw = patch
    return rearrange(x, "b c (f pf) (h ph) (w pw) -> b (f h w) (c pf ph pw)", pf=pf, ph=ph, pw=pw)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify` on a token grid of (frames, height, width) patches."""
    pf, ph, pw = patch
    f, h, w = grid
    return rearrange(tokens, "b (f h w) (c pf ph pw) -> b c (f pf) (h ph) (w pw)", f=f, h=h, w=w, pf=pf, ph=ph,
                     pw=pw)


class SelfAttention(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, rotations, shard: SequenceShard, backend):
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.num_heads)
        q = apply_rope(self.q_norm(q), rotations)
        k = apply_rope(self.k_norm(k), rotations)
        out = shard.attention(q, k, v, backend)   # over every rank's tokens
        return self.out(rearrange(out, "b heads n d -> b n (heads d)"))


class CrossAttention(nn.Module):
    """Image tokens attend to text tokens; padding tokens are masked out."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.kv = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, context, mask, backend):
        q = self.q_norm(rearrange(self.q(x), "b n (heads d) -> b heads n d", heads=self.num_heads))
        k, v = rearrange(self.kv(context), "b l (two heads d) -> two b heads l d", two=2, heads=self.num_heads)
        out = attention(q, self.k_norm(k), v, mask[:, None, None, :], backend)
        # A prompt without any token has nothing to attend to: it contributes nothing.
        out = out * mask.any(dim=1).to(out.dtype)[:, None, None, None]
        return self.out(rearrange(out, "b heads n d -> b n (heads d)"))


class GatedMLP(nn.Module):
    """SwiGLU: out(silu(gate(x)) * value(x))."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.gate_value = nn.Linear(config.hidden_size, 2 * config.mlp_hidden)
        self.out = nn.Linear(config.mlp_hidden, config.hidden_size)

    def forward(self, x):
        gate, value = self.gate_value(x).chunk(2, dim=-1)
        return self.out(F.silu(gate) * value)


class DiTBlock(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        dim, eps = config.hidden_size, config.norm_eps
        self.attn_norm_in, self.attn_norm_out = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.attn = SelfAttention(config)
        self.text_norm = RMSNorm(dim, eps)
        self.text_attn = CrossAttention(config)
        self.text_gate = nn.Parameter(torch.zeros(dim))
        self.mlp_norm_in, self.mlp_norm_out = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.mlp = GatedMLP(config)
        # Per-block table added to the shared adaLN output: rows shift/scale/gate (attention), shift/scale/gate (MLP).
        self.modulation = nn.Parameter(torch.zeros(6, dim))

    def forward(self, x, frame_modulation, frames, rotations, context, context_mask, shard, backend):
        """x [B, N, C]; frame_modulation [B, frames, 6, C]; N = frames * tokens per frame (of this rank's shard)."""
        b, n, c = x.shape
        mod = (frame_modulation + self.modulation).unsqueeze(3)  # [B, F, 6, 1, C]
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.unbind(2)

        def per_frame(t):
            return t.view(b, frames, n // frames, c)

        h = modulate(per_frame(self.attn_norm_in(x)), shift_a, scale_a).view(b, n, c)
        h = self.attn_norm_out(self.attn(h, rotations, shard, backend))
        x = x + (per_frame(h) * gate_a).view(b, n, c)

        x = x + torch.tanh(self.text_gate) * self.text_attn(self.text_norm(x), context, context_mask, backend)

        h = modulate(per_frame(self.mlp_norm_in(x)), shift_m, scale_m).view(b, n, c)
        h = self.mlp_norm_out(self.mlp(h))
        return x + (per_frame(h) * gate_m).view(b, n, c)


class UniDiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        check_backend_name(config.attention_backend)
        self.config = config
        dim, cells = config.hidden_size, math.prod(config.patch_size)
        self.patch_embed = nn.Linear(config.latent_channels * cells, dim)
        self.camera_embed = nn.Linear(config.camera_channels * cells, dim)
        self.control_embed = nn.Linear(config.control_channels * cells, dim) if config.control_channels else None
        self.timestep_embed = nn.Sequential(nn.Linear(config.timestep_freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pooled_text_embed = nn.Sequential(nn.Linear(config.text_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.modality_embed = nn.Embedding(len(MODALITIES), dim)
        self.text_in_norm = RMSNorm(config.text_dim, config.norm_eps)
        self.text_in = nn.Linear(config.text_dim, dim)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final_norm = RMSNorm(dim, config.norm_eps, affine=False)
        self.final_adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final_head = nn.Linear(dim, config.latent_channels * cells)
        self.attention_backend = config.attention_backend
        self._rope_cache: dict = {}
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform linears with zero biases; zero for every path that must start silent."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for mlp in (self.timestep_embed, self.pooled_text_embed):
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        nn.init.normal_(self.modality_embed.weight, std=0.02)
        for module in (self.adaln[1], self.final_adaln[1], self.camera_embed, self.control_embed, self.final_head):
            if module is None:
                continue
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
            nn.init.zeros_(block.text_gate)

    def set_attention_backend(self, name: str) -> None:
        self.attention_backend = check_backend_name(name)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, text: TextConditioning, modality: torch.Tensor,
                plucker: Optional[torch.Tensor] = None, step_cache: Optional[StepCache] = None,
                control: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the velocity ``v = noise - x0`` of the noisy latent ``x``.

        x: [B, C, F, H, W]; sigma: [B, F] noise level of every frame (0 = a given, clean conditioning frame; a
        [B] tensor gives every frame the same level); text: the prompt batch; modality: [B] ids from
        ``MODALITIES``; plucker: [B, 6, F, H, W] camera rays of 3D views at latent resolution, or None;
        step_cache: the sampling run's first-block cache (sampling/step_cache.py), or None to run every block;
        control: [B, control_channels, F, H, W] control maps at latent resolution, or None (no maps).
        """
        b, c, f, h, w = x.shape
        config = self.config
        patch = config.patch_size
        if c != config.latent_channels:
            raise ValueError(f"latent has {c} channels, the model expects {config.latent_channels}")
        if f % patch[0] or h % patch[1] or w % patch[2]:
            raise ValueError(f"latent frames x height x width {f}x{h}x{w} must be divisible by the patch {patch}")
        if len(text) != b:
            raise ValueError(f"text batch {len(text)} does not match latent batch {b}")
        grid = (f // patch[0], h // patch[1], w // patch[2])
        dtype = self.patch_embed.weight.dtype
        x = x.to(dtype)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        sigma = (sigma.reshape(b, 1).expand(b, f) if sigma.ndim < 2 else sigma).reshape(b, grid[0], patch[0])
        given = sigma == 0                                            # [B, frames, pf]

        # Tokens: the latent's patches plus the camera rays and the given flag, which enter through zero-init weights.
        if plucker is None:
            plucker = x.new_zeros(b, 6, f, h, w)
        given_channel = given.reshape(b, 1, f, 1, 1).to(dtype).expand(b, 1, f, h, w)
        camera = torch.cat([plucker.to(dtype), given_channel], dim=1)
        tokens = self.patch_embed(patchify(x, patch)) + self.camera_embed(patchify(camera, patch))
        if control is not None and self.control_embed is None:
            raise ValueError("this model was not trained with control maps")
        if self.control_embed is not None:
            if control is None:
                control = x.new_zeros(b, config.control_channels, f, h, w)
            elif tuple(control.shape) != (b, config.control_channels, f, h, w):
                raise ValueError(f"control maps must be [{b}, {config.control_channels}, {f}, {h}, {w}], got "
                                 f"{list(control.shape)}")
            tokens = tokens + self.control_embed(patchify(control.to(dtype), patch))

        # Conditioning per frame: the frame's noise level (a patch of frames takes its first frame's), the pooled
        # text and the modality.
        t_emb = self.timestep_embed(timestep_features(sigma[:, :, 0], config.timestep_freq_dim).to(dtype))
        modality = torch.as_tensor(modality, device=x.device).reshape(-1).expand(b)
        shared = self.modality_embed(modality)
        if text.pooled is not None:
            shared = shared + self.pooled_text_embed(text.pooled.to(dtype))
        cond = t_emb + shared[:, None, :]                                                   # [B, frames, C]
        frame_modulation = rearrange(self.adaln(cond), "b f (six c) -> b f six c", six=6)  # [B, frames, 6, C]

        # Sequence parallelism: this rank keeps its slice of every frame's tokens, and of their RoPE rotations.
        shard = sequence_shard(grid[0], grid[1] * grid[2], config.num_heads)
        tokens = shard.take(tokens)                                                         # [B, F * S/W, C]
        rotations = shard.take(self._rope(grid, x.device))

        # The blocks (with a step cache: the first always, the others only when what the first adds has changed
        # enough since they last ran; else their last residual is reused), then the output head.
        context = self.text_in(self.text_in_norm(text.tokens.to(dtype)))
        context_mask = text.mask.to(x.device)

        def run_block(block, tokens):
            return block(tokens, frame_modulation, grid[0], rotations, context, context_mask, shard,
                         self.attention_backend)

        tokens = run_blocks(self.blocks, tokens, run_block, step_cache)

        shift, scale = rearrange(self.final_adaln(cond), "b f (two c) -> two b f 1 c", two=2)
        tokens = modulate(rearrange(self.final_norm(tokens), "b (f s) c -> b f s c", f=grid[0]), shift, scale)
        out = shard.gather(self.final_head(rearrange(tokens, "b f s c -> b (f s) c")))      # every rank's tokens
        return unpatchify(out, grid, patch)

    def _rope(self, grid, device):
        key = (grid, device)
        if key not in self._rope_cache:
            positions = grid_positions(*grid, device=device)
            self._rope_cache[key] = rope_rotations(positions, self.config.head_dim, self.config.rope_theta)
        return self._rope_cache[key]
