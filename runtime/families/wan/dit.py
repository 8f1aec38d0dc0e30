"""The Wan 2.1 / 2.2 diffusion transformer, in the original Wan layout (the files in ComfyUI's
``models/diffusion_models``), loadable from diffusers folders too.

    tokens  = Conv3d patch embedding of x [B, C, F, H, W] (1 x 2 x 2 patches)            [B, N, dim]
    e       = MLP(sinusoid(1000 sigma))             per frame: a frame at sigma 0 is a given frame      [B, F, dim]
    e0      = Linear(SiLU(e)) -> 6 modulation vectors per frame                                  [B, F, 6, dim]
    context = MLP(T5 tokens zero-padded to 512)                                                   [B, 512, dim]
              (the zero rows are all one vector after the MLP: it is computed once and counted, see forward)
    block   x = x + gate_a * SelfAttn(LN(x) * (1 + scale_a) + shift_a, 3D RoPE, RMSNorm on q and k)
            x = x + CrossAttn(LN_affine(x), context)
            x = x + gate_f * FFN(LN(x) * (1 + scale_f) + shift_f)            (shift, scale, gate) = table + e0
    output  = Linear(LN(x) * (1 + scale) + shift), (shift, scale) = head table + e -> unpatchify -> v [B, C, F, H, W]

The velocity is ``noise - x0``, the convention of ``sampling/flow.py``, at timestep ``t = 1000 sigma``. Wan 2.2
TI2V-5B was trained with a timestep per token, the first latent frame at t = 0 for image -> video; here the noise
level is per frame, which is the same thing for frames of tokens and keeps the modulation [B, F, 6, dim]
instead of [B, N, 6, dim].

With sequence parallelism (``runtime/parallel.py``) each rank keeps its slice of every frame's tokens between the
patch embedding and the head, as UniDiT's backbone does.

Layers come from an injectable ``ops`` namespace (``model/ops.py``): weights keep their stored dtype (bf16, fp16,
fp8, ComfyUI's scaled fp8) and are cast per layer; modulation, norms and the residual adds are computed in float32
as in the reference.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
from einops import rearrange

from ...model import ops as default_ops
from ...model.attention import attention, check_backend_name
from ...model.dit import timestep_features
from ...model.rope import apply_rope, grid_positions, rope_rotations
from ...parallel import SequenceShard, sequence_shard
from ...sampling.step_cache import StepCache, run_blocks
from ...weights import CheckpointError, Weights, fill_module, open_weights, place_module, read_json

HEAD_DIM = 128  # every released Wan model; a single file does not record the head count, so it follows from this
ORIGINAL_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")


@dataclass
class WanDiTConfig:
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple = (1, 2, 2)
    text_len: int = 512               # T5 tokens are zero-padded to this length
    eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.num_heads} heads of an even size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def rope_dims(self) -> tuple[int, int, int]:
        """Channels of the (frame, y, x) rotary axes: d - 4[d/6], 2[d/6], 2[d/6] of head dim d."""
        d = self.head_dim
        return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        return data


# ---- modules (parameter names are the original Wan layout) -------------------------------------------------------

class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float, ops=default_ops):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (ops.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = ops.RMSNorm(dim, eps), ops.RMSNorm(dim, eps)   # over all heads at once

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        return rearrange(t, "b n (heads d) -> b heads n d", heads=self.num_heads)

    def forward(self, x, rotations, shard: SequenceShard, backend):
        q = apply_rope(self.heads(self.norm_q(self.q(x))), rotations)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), rotations)
        out = shard.attention(q, k, self.heads(self.v(x)), backend)   # over every rank's tokens
        return self.o(rearrange(out, "b heads n d -> b n (heads d)"))


class WanCrossAttention(WanSelfAttention):
    """Video tokens attend to the text tokens; ``bias`` [B, 1, 1, L] adds to the scores (the padding's count)."""

    def forward(self, x, context, bias, backend):
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(context)))
        out = attention(q, k, self.heads(self.v(context)), bias, backend)
        return self.o(rearrange(out, "b heads n d -> b n (heads d)"))


class WanBlock(nn.Module):
    def __init__(self, config: WanDiTConfig, ops=default_ops):
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = ops.LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, config.num_heads, eps, ops)
        self.norm3 = ops.LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = WanCrossAttention(dim, config.num_heads, eps, ops)
        self.norm2 = ops.LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(ops.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 ops.Linear(config.ffn_dim, dim))
        # Rows: shift, scale, gate of self-attention; shift, scale, gate of the FFN; added to the time's e0.
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(self, x, e0, frames, rotations, context, context_bias, shard, backend):
        """x [B, N, dim]; e0 [B, frames, 6, dim] (float32); N = frames x tokens per frame (of this rank's shard)."""
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = rearrange(
            self.modulation.float() + e0, "b f six c -> six b f 1 c")

        def per_frame(t):
            return rearrange(t, "b (f s) c -> b f s c", f=frames).float()

        def tokens(t):
            return rearrange(t, "b f s c -> b (f s) c").to(x.dtype)

        # Self-attention on the modulated tokens, gated back into the residual stream.
        y = self.self_attn(tokens(per_frame(self.norm1(x)) * (1 + scale_a) + shift_a), rotations, shard, backend)
        x = tokens(per_frame(x) + per_frame(y) * gate_a)
        # Cross-attention to the text.
        x = x + self.cross_attn(self.norm3(x), context, context_bias, backend)
        # Feed-forward on the modulated tokens, gated.
        y = self.ffn(tokens(per_frame(self.norm2(x)) * (1 + scale_f) + shift_f))
        return tokens(per_frame(x) + per_frame(y) * gate_f)


class WanHead(nn.Module):
    def __init__(self, config: WanDiTConfig, ops=default_ops):
        super().__init__()
        self.norm = ops.LayerNorm(config.dim, config.eps, elementwise_affine=False)
        self.head = ops.Linear(config.dim, config.out_channels * math.prod(config.patch_size))
        self.modulation = nn.Parameter(torch.zeros(1, 2, config.dim))   # rows: shift, scale

    def forward(self, x, e, frames):
        """x [B, N, dim]; e [B, frames, dim] (float32) -> [B, N, out_channels x patch cells]."""
        shift, scale = rearrange(self.modulation.float() + e[:, :, None], "b f two c -> two b f 1 c")
        y = rearrange(self.norm(x), "b (f s) c -> b f s c", f=frames).float() * (1 + scale) + shift
        return self.head(rearrange(y, "b f s c -> b (f s) c").to(x.dtype))


class WanDiT(nn.Module):
    def __init__(self, config: WanDiTConfig, ops=default_ops):
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = ops.Conv3d(config.in_channels, dim, config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(ops.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            ops.Linear(dim, dim))
        self.time_embedding = nn.Sequential(ops.Linear(config.freq_dim, dim), nn.SiLU(), ops.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanBlock(config, ops) for _ in range(config.num_layers))
        self.head = WanHead(config, ops)
        self.attention_backend = "sdpa"
        self._rope_cache: dict = {}

    def set_attention_backend(self, name: str) -> None:
        self.attention_backend = check_backend_name(name)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                step_cache: Optional[StepCache] = None) -> torch.Tensor:
        """Velocity of ``x`` [B, C, F, H, W] at noise levels ``sigma`` [B, F] (or [B]) given T5 tokens ``context``
        [B, L, text_dim] (rows past a prompt's end must be zero). Computes in x's dtype. ``step_cache``: the
        sampling run's first-block cache (sampling/step_cache.py), or None to run every block."""
        config = self.config
        b, c, f, h, w = x.shape
        pf, ph, pw = config.patch_size
        if c != config.in_channels:
            raise ValueError(f"latent has {c} channels, this Wan model takes {config.in_channels}")
        if f % pf or h % ph or w % pw:
            raise ValueError(f"latent frames x height x width {f}x{h}x{w} must be divisible by the patch "
                             f"{config.patch_size}")
        if context.shape[1] > config.text_len:
            raise ValueError(f"{context.shape[1]} text tokens exceed Wan's {config.text_len}")
        grid = (f // pf, h // ph, w // pw)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        sigma = sigma.reshape(b, 1).expand(b, f) if sigma.ndim < 2 else sigma

        # Patches -> tokens.
        tokens = rearrange(self.patch_embedding(x), "b c f h w -> b (f h w) c")

        # Time, per frame (a patch of frames takes its first frame's level), in float32.
        e = self.time_embedding(timestep_features(sigma[:, ::pf], config.freq_dim))        # [B, frames, dim]
        e0 = rearrange(self.time_projection(e), "b f (six c) -> b f six c", six=6)        # [B, frames, 6, dim]

        # Text: Wan zero-pads every prompt to 512 tokens. Zero rows are all one vector after the embedding, so one
        # zero row is appended and the others are dropped; it enters each item's softmax with the weight of all
        # of them, log(count) added to its scores: the reference's attention, with up to 511 fewer keys.
        context, context_bias = self.embed_text(context.to(x.dtype))

        # Sequence parallelism: this rank keeps its slice of every frame's tokens, and of their RoPE rotations.
        shard = sequence_shard(grid[0], grid[1] * grid[2], config.num_heads)
        tokens = shard.take(tokens)                                                       # [B, F * S/W, dim]
        rotations = shard.take(self._rope(grid, x.device))

        # The blocks (with a step cache: the first always, the others only when what the first adds has changed
        # enough since they last ran; else their last residual is reused), the head, then every rank's tokens.
        def run_block(block, tokens):
            return block(tokens, e0, grid[0], rotations, context, context_bias, shard, self.attention_backend)

        tokens = run_blocks(self.blocks, tokens, run_block, step_cache)
        out = shard.gather(self.head(tokens, e, grid[0]))
        return rearrange(out, "b (f h w) (pf ph pw c) -> b c (f pf) (h ph) (w pw)", f=grid[0], h=grid[1], w=grid[2],
                         pf=pf, ph=ph, pw=pw)

    def embed_text(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 tokens [B, L, text_dim] (zero rows = padding) -> embedded keys [B, L + 1, dim] and their score bias
        [B, 1, 1, L + 1]: -inf for zero rows, and for the appended zero row log(zero rows of the 512-row context)."""
        b, length = context.shape[:2]
        padding = (context == 0).all(dim=-1)                                          # [B, L]
        count = (self.config.text_len - length) + padding.sum(dim=1)                  # zero rows of 512
        rows = torch.cat([context, context.new_zeros(b, 1, context.shape[2])], dim=1)
        bias = torch.zeros(b, length + 1, device=context.device, dtype=torch.float32)
        bias[:, :length] = bias[:, :length].masked_fill(padding, -math.inf)
        bias[:, length] = count.float().log()                                         # log 0 = -inf: no padding
        return self.text_embedding(rows), bias.to(context.dtype)[:, None, None, :]

    def _rope(self, grid, device):
        key = (grid, device)
        if key not in self._rope_cache:
            positions = grid_positions(*grid, device=device)
            self._rope_cache[key] = rope_rotations(positions, self.config.head_dim, self.config.rope_theta,
                                                   self.config.rope_dims())
        return self._rope_cache[key]


# ---- checkpoints ----------------------------------------------------------------------------------------------------

# diffusers names -> original names (module paths; the leaf, e.g. ".weight", is kept)
_DIFFUSERS_TO_ORIGINAL = [
    (r"^condition_embedder\.time_embedder\.linear_1\b", "time_embedding.0"),
    (r"^condition_embedder\.time_embedder\.linear_2\b", "time_embedding.2"),
    (r"^condition_embedder\.text_embedder\.linear_1\b", "text_embedding.0"),
    (r"^condition_embedder\.text_embedder\.linear_2\b", "text_embedding.2"),
    (r"^condition_embedder\.time_proj\b", "time_projection.1"),
    (r"^condition_embedder\.image_embedder\b", "img_emb"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\b", "head.head"),
    (r"^blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
    (r"^blocks\.(\d+)\.attn1\.", r"blocks.\1.self_attn."),
    (r"^blocks\.(\d+)\.attn2\.", r"blocks.\1.cross_attn."),
    (r"\.to_q\.", ".q."), (r"\.to_k\.", ".k."), (r"\.to_v\.", ".v."), (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."), (r"\.add_v_proj\.", ".v_img."), (r"\.norm_added_k\.", ".norm_k_img."),
    (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),          # diffusers' norm2 is the cross-attention norm
    (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
    (r"^blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
]
_DIFFUSERS_MARKER = "condition_embedder.time_proj.weight"
_ORIGINAL_MARKER = "head.modulation"
# Keys of Wan variants this engine does not run, with what they are.
_VARIANTS = [
    ("vace_patch_embedding.weight", "Wan VACE (video editing)"),
    ("control_adapter.conv.weight", "Wan camera control"),
    ("casual_audio_encoder.encoder.final_linear.weight", "Wan 2.2 S2V (speech to video)"),
    ("audio_proj.audio_proj_glob_1.layer.bias", "Wan HuMo"),
    ("face_adapter.fuser_blocks.0.k_norm.weight", "Wan 2.2 Animate"),
    ("img_emb.proj.0.bias", "Wan 2.1 I2V / FLF2V (CLIP-vision image conditioning)"),
]


def diffusers_to_original(key: str) -> str:
    for pattern, replacement in _DIFFUSERS_TO_ORIGINAL:
        key = re.sub(pattern, replacement, key)
    return key


def original_weights(weights: Weights) -> Optional[Weights]:
    """``weights`` under the original Wan names (diffusers names mapped), or None when they hold no Wan diffusion
    model. Under a prefix (``model.diffusion_model.`` ...) only the prefixed tensors are taken, so the diffusion
    model of a file that also holds a VAE or text encoder loads too."""
    if _ORIGINAL_MARKER in weights:
        return weights
    for prefix in ORIGINAL_PREFIXES:
        if f"{prefix}{_ORIGINAL_MARKER}" in weights:
            return weights.without_prefix(prefix)
    if _DIFFUSERS_MARKER in weights and "scale_shift_table" in weights:
        return weights.renamed(diffusers_to_original)
    return None


def count_blocks(weights: Weights) -> int:
    indices = {int(m.group(1)) for key in weights if (m := re.match(r"blocks\.(\d+)\.", key))}
    return max(indices) + 1 if indices else 0


def infer_config(weights: Weights, num_heads: Optional[int] = None) -> WanDiTConfig:
    """The config of original-layout ``weights`` from tensor shapes (as ComfyUI's model detection does). The head
    count is not in the shapes: it is ``num_heads`` when known (a diffusers config), else dim / 128."""
    dim = weights.shape("head.modulation")[-1]
    patch = tuple(weights.shape("patch_embedding.weight")[2:])
    return WanDiTConfig(
        dim=dim, ffn_dim=weights.shape("blocks.0.ffn.0.weight")[0], num_heads=num_heads or max(1, dim // HEAD_DIM),
        num_layers=count_blocks(weights), in_channels=weights.shape("patch_embedding.weight")[1],
        out_channels=weights.shape("head.head.weight")[0] // math.prod(patch),
        text_dim=weights.shape("text_embedding.0.weight")[1], freq_dim=weights.shape("time_embedding.0.weight")[1],
        patch_size=patch)


def variant(weights: Weights) -> Optional[str]:
    """The name of a Wan variant this engine does not run, or None for a text/image -> video model it runs."""
    for key, name in _VARIANTS:
        if key in weights:
            return name
    return None


def describe(config: WanDiTConfig) -> str:
    if config.in_channels == 48:
        return "Wan 2.2 TI2V 5B" if config.dim == 3072 else f"Wan 2.2 TI2V (dim {config.dim})"
    if config.in_channels != config.out_channels:
        return f"Wan image-to-video with {config.in_channels} input channels"
    sizes = {1536: "1.3B", 5120: "14B"}
    return f"Wan 2.1 T2V {sizes[config.dim]}" if config.dim in sizes else f"Wan 2.1 T2V (dim {config.dim})"


def load_wan_dit(path, device="cpu", compute_dtype: torch.dtype = torch.float32,
                 matrix_dtype: Optional[torch.dtype] = None, ops=default_ops) -> WanDiT:
    """A Wan diffusion model from a single file (original layout, with or without ``model.diffusion_model.``) or a
    diffusers ``transformer`` folder. Built on the meta device and filled in place: weights stay memory-mapped in
    their stored dtype until moved to ``device``; ``matrix_dtype`` stores the matrices narrower (fp8)."""
    path = Path(path)
    weights = open_weights(path)
    original = original_weights(weights)
    if original is None:
        raise CheckpointError(f"{weights.name}: not a Wan diffusion model (it has neither 'head.modulation' nor "
                              f"diffusers' '{_DIFFUSERS_MARKER}')")
    unsupported = variant(original)
    if unsupported is not None:
        raise CheckpointError(f"{weights.name} is a {unsupported} model, which UniDiT does not run; it runs Wan 2.1 "
                              f"T2V (1.3B, 14B) and Wan 2.2 TI2V-5B (text -> image, text -> video, image -> video) and "
                              f"the Wan 2.2 T2V A14B experts")
    heads = None
    if path.is_dir() and (path / "config.json").is_file():
        heads = read_json(path / "config.json").get("num_attention_heads")
    config = infer_config(original, heads)
    if config.in_channels != config.out_channels:
        raise CheckpointError(f"{weights.name} is a {describe(config)} model, which UniDiT does not run yet; for "
                              f"image -> video use Wan 2.2 TI2V-5B")
    with torch.device("meta"):
        model = WanDiT(config, ops)
    fill_module(model, original, weights.name)
    return place_module(model, device, compute_dtype, matrix_dtype).eval().requires_grad_(False)
