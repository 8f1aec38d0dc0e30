"""UMT5-XXL, the text encoder of Wan 2.1 / 2.2: model, sentencepiece tokenizer and loader.

The encoder is the encoder half of Google's UMT5 (a multilingual T5 v1.1 with one relative position bias per
layer instead of one shared bias):

    prompt -> whitespace cleaned -> sentencepiece ids + EOS (at most 512) -> shared embedding [B, L, D]
      -> num_layers x [ RMS norm -> self-attention (scores = q k^T + relative position bias, no 1/sqrt(d)) + x
                        RMS norm -> gated-GELU feed-forward wo(gelu_tanh(wi_0 x) * wi_1 x) + x ]
      -> final RMS norm -> tokens [B, L, D], padding rows zeroed

It reads the files ComfyUI users have and diffusers folders, keeping the weights as stored (fp32, fp16, bf16, or
ComfyUI's scaled fp8 with a per-layer ``scale_weight``) and memory-mapped: nothing is expanded to fp32 at load.

- ComfyUI: one ``.safetensors`` (``models/text_encoders/umt5_xxl_fp16.safetensors``,
  ``umt5_xxl_fp8_e4m3fn_scaled.safetensors``) with transformers' key names, possibly under a prefix such as
  ``text_encoders.umt5xxl.transformer.``, and the tokenizer's sentencepiece model stored in the file as a uint8
  tensor ``spiece_model``.
- diffusers: a pipeline folder with ``text_encoder/`` (transformers ``UMT5EncoderModel``, possibly sharded with a
  ``*.safetensors.index.json``) and ``tokenizer/`` (``spiece.model``, or ``tokenizer.json``); or its
  ``text_encoder/`` folder itself, whose sibling ``../tokenizer/`` is used.

Prompts are tokenised as Wan's pipelines do (diffusers ``_get_t5_prompt_embeds``): whitespace cleaned, EOS
appended, truncated to 512 tokens with the EOS kept last; only the real tokens are encoded and returned (the
backbone pads them). Text that looks like a special token (``</s>``) is encoded as plain text, as ComfyUI does.

Layers come from an injectable ``ops`` namespace (``runtime/model/ops.py`` by default), which casts each weight to
the computation's dtype on use. In fp16 the hidden states are clamped after each residual, as transformers does.
"""
from __future__ import annotations

import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Callable, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ...model import ops as default_ops
from ...text.conditioning import TextConditioning
from ...weights import CheckpointError, Weights, fill_module, open_weights, place_module, read_json

log = logging.getLogger("unidit")

PAD_ID = 0
EOS_ID = 1
MAX_LENGTH = 512
SPIECE_KEY = "spiece_model"            # ComfyUI stores the sentencepiece model in the file under this name
FINAL_NORM = "encoder.final_layer_norm.weight"
BLOCK_KEY = re.compile(r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.q\.weight")
EXPECTED_FILES = ("umt5_xxl_fp16.safetensors or umt5_xxl_fp8_e4m3fn_scaled.safetensors in "
                  "ComfyUI/models/text_encoders, or a diffusers Wan folder with text_encoder/ and tokenizer/")


# --- configuration -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UMT5Config:
    """The encoder's shape. The defaults are UMT5-XXL's (5.7 B parameters), as used by Wan 2.1 / 2.2."""

    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    num_heads: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    eps: float = 1e-6


def _shape(weights: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """A tensor's shape without reading it (``Weights.shape``), or from the tensor itself (a plain dict)."""
    return tuple(weights.shape(key)) if hasattr(weights, "shape") else tuple(weights[key].shape)


def _encoder_prefix(weights: Mapping[str, torch.Tensor]) -> Optional[str]:
    """What comes before ``encoder.final_layer_norm.weight`` in the file ("" or ending with "."), or None."""
    for key in weights:
        if key.endswith(FINAL_NORM):
            prefix = key[:-len(FINAL_NORM)]
            if prefix == "" or prefix.endswith("."):
                return prefix
    return None


def detect_umt5(weights: Mapping[str, torch.Tensor]) -> Optional[UMT5Config]:
    """The config of the UMT5 encoder in ``weights`` (under any key prefix), from tensor shapes alone; None when
    the tensors are not a UMT5 encoder (a T5 v1.1 encoder, whose only position bias is in block 0, is not)."""
    prefix = _encoder_prefix(weights)
    if prefix is None:
        return None
    blocks = sorted(int(match.group(1)) for key in weights
                    if key.startswith(prefix) and (match := BLOCK_KEY.fullmatch(key[len(prefix):])))
    if not blocks or blocks != list(range(len(blocks))):
        return None
    embedding = next((prefix + name for name in ("shared.weight", "encoder.embed_tokens.weight")
                      if prefix + name in weights), None)
    attention = f"{prefix}encoder.block.{{}}.layer.0.SelfAttention."
    gate = f"{prefix}encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
    per_layer_bias = all(attention.format(i) + "relative_attention_bias.weight" in weights for i in blocks)
    if embedding is None or gate not in weights or not per_layer_bias:
        return None
    vocab_size, d_model = _shape(weights, embedding)
    buckets, heads = _shape(weights, attention.format(0) + "relative_attention_bias.weight")
    inner = _shape(weights, attention.format(0) + "q.weight")[0]
    if inner % heads:
        return None
    return UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=inner // heads, num_heads=heads,
                      d_ff=_shape(weights, gate)[0], num_layers=len(blocks), relative_attention_num_buckets=buckets)


def _describe(weights: Mapping[str, torch.Tensor]) -> Optional[str]:
    """What a file that is not a UMT5 encoder seems to hold, for error messages (None if unsure)."""
    keys = list(weights)

    def has(fragment: str) -> bool:
        return any(fragment in key for key in keys)

    if has("text_model.encoder.layers.") or has("transformer.resblocks."):
        return "a CLIP text encoder (clip_l / clip_g / clip_h)"
    if has("encoder.block.") and not has("block.1.layer.0.SelfAttention.relative_attention_bias"):
        return "a T5 encoder with one shared position bias (T5 v1.1 t5xxl, as Flux, SD3 or LTX use), not UMT5"
    if has("model.layers.0.self_attn."):
        return "a decoder-only language model used as a text encoder (Llama / Qwen / Gemma style)"
    if has("patch_embedding.") or has("model.diffusion_model.") or has("blocks.0.self_attn."):
        return "a diffusion model (it belongs in models/diffusion_models)"
    if has("decoder.conv_in.") or has("decoder.head.") or has("first_stage_model."):
        return "a VAE (it belongs in models/vae)"
    return None


# --- model -------------------------------------------------------------------------------------------------------

def relative_position_buckets(length: int, num_buckets: int, max_distance: int,
                              device: Optional[torch.device] = None) -> torch.Tensor:
    """T5's bidirectional relative-position bucket of every (query, key) pair: long [L, L].

    Half of the buckets are for keys after the query, half for keys at or before it. Within each half, distances
    below ``max_exact`` (a quarter of the buckets) get a bucket each; larger distances share logarithmically wider
    buckets up to ``max_distance``, beyond which all fall in the last one.
    """
    position = torch.arange(length, dtype=torch.long, device=device)
    relative = position[None, :] - position[:, None]                       # [Lq, Lk]: key - query
    half = num_buckets // 2
    max_exact = half // 2
    direction = (relative > 0).long() * half
    distance = relative.abs()
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    far = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return direction + torch.where(distance < max_exact, distance, far)


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """In fp16, keep hidden states finite as transformers does (a little below the max once an inf appeared)."""
    if x.dtype != torch.float16:
        return x
    largest = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(x).any(), largest - 1000, largest)
    return x.clamp(min=-limit, max=limit)


class UMT5Attention(nn.Module):
    """Multi-head self-attention with this layer's own relative position bias and no 1/sqrt(d) scaling."""

    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads = config.num_heads
        self.q = ops.Linear(config.d_model, inner, bias=False)
        self.k = ops.Linear(config.d_model, inner, bias=False)
        self.v = ops.Linear(config.d_model, inner, bias=False)
        self.o = ops.Linear(inner, config.d_model, bias=False)
        self.relative_attention_bias = ops.Embedding(config.relative_attention_num_buckets, config.num_heads)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D]; buckets long [L, L]; key_mask bool [B, L] (True = real token) -> [B, L, D]."""
        # --- projections, split into heads: [B, L, H*Dh] -> [B, H, L, Dh]
        q, k, v = (rearrange(proj(x), "b l (h d) -> b h l d", h=self.num_heads) for proj in (self.q, self.k, self.v))

        # --- additive scores bias: position bias [1, H, L, L], padded keys masked -> [B, H, L, L]
        position = rearrange(self.relative_attention_bias(buckets, dtype=x.dtype), "q k h -> 1 h q k")
        bias = position.masked_fill(~key_mask[:, None, None, :], torch.finfo(x.dtype).min)

        # --- softmax(q k^T + bias) v, unscaled as in T5 (the scale is folded into the trained q weights)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)   # [B, H, L, Dh]
        return self.o(rearrange(out, "b h l d -> b l (h d)"))


class UMT5SelfAttentionLayer(nn.Module):
    """Pre-norm self-attention with a residual (transformers' ``layer.0``)."""

    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        self.SelfAttention = UMT5Attention(config, ops)
        self.layer_norm = ops.RMSNorm(config.d_model, eps=config.eps)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), buckets, key_mask)


class UMT5GatedFeedForward(nn.Module):
    """wo(gelu_tanh(wi_0 x) * wi_1 x): [B, L, D] -> [B, L, d_ff] -> [B, L, D]."""

    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        self.wi_0 = ops.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = ops.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = ops.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class UMT5FeedForwardLayer(nn.Module):
    """Pre-norm gated feed-forward with a residual (transformers' ``layer.1``)."""

    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        self.DenseReluDense = UMT5GatedFeedForward(config, ops)
        self.layer_norm = ops.RMSNorm(config.d_model, eps=config.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class UMT5Block(nn.Module):
    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        self.layer = nn.ModuleList([UMT5SelfAttentionLayer(config, ops), UMT5FeedForwardLayer(config, ops)])

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = _clamp_fp16(self.layer[0](x, buckets, key_mask))
        return _clamp_fp16(self.layer[1](x))


class UMT5Stack(nn.Module):
    """The blocks and the final norm (transformers' ``encoder``; its tied ``embed_tokens`` lives in ``shared``)."""

    def __init__(self, config: UMT5Config, ops: ModuleType):
        super().__init__()
        self.block = nn.ModuleList([UMT5Block(config, ops) for _ in range(config.num_layers)])
        self.final_layer_norm = ops.RMSNorm(config.d_model, eps=config.eps)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x, buckets, key_mask)
        return self.final_layer_norm(x)


class UMT5Encoder(nn.Module):
    """The UMT5 encoder with transformers' / ComfyUI's key names (``shared.weight``, ``encoder.block.N...``)."""

    def __init__(self, config: UMT5Config, ops: ModuleType = default_ops):
        super().__init__()
        self.config = config
        self.shared = ops.Embedding(config.vocab_size, config.d_model)
        self.encoder = UMT5Stack(config, ops)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """ids long [B, L], mask bool [B, L] (True = real token) -> hidden states [B, L, d_model] in ``dtype``.

        Outputs at padded positions are meaningless (the caller zeroes them)."""
        # --- token embeddings, gathered in the stored dtype and cast row by row: [B, L, D]
        x = self.shared(ids, dtype=dtype)

        # --- position buckets, shared by every layer (each has its own bias table): [L, L]
        config = self.config
        buckets = relative_position_buckets(ids.shape[1], config.relative_attention_num_buckets,
                                            config.relative_attention_max_distance, device=ids.device)

        # --- blocks and final norm: [B, L, D]
        return self.encoder(x, buckets, mask)


# --- tokenizer ---------------------------------------------------------------------------------------------------

def clean_prompt(text: str) -> str:
    """Whitespace cleaned as Wan's pipelines do: runs of whitespace become one space, ends stripped."""
    return re.sub(r"\s+", " ", text).strip()


class UMT5Tokenizer:
    """UMT5's sentencepiece tokenizer as Wan uses it: cleaned text -> pieces + EOS (1), at most ``max_length``
    ids with the EOS kept last; batches padded with 0.

    ``pieces`` maps text to ids without special tokens (a ``sentencepiece`` processor, or a ``tokenizers``
    tokenizer read from a ``tokenizer.json``).
    """

    def __init__(self, pieces: Callable[[str], list[int]], vocab_size: int, unk_id: int,
                 max_length: int = MAX_LENGTH):
        self.pieces = pieces
        self.vocab_size = vocab_size
        self.unk_id = unk_id
        self.max_length = max_length

    @classmethod
    def from_sentencepiece(cls, model: Union[bytes, str, os.PathLike], max_length: int = MAX_LENGTH):
        """From a sentencepiece model: its serialized bytes (ComfyUI's ``spiece_model`` tensor) or a
        ``spiece.model`` file."""
        import sentencepiece

        if isinstance(model, bytes):
            processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        else:
            processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
        return cls(processor.encode, processor.get_piece_size(), processor.unk_id(), max_length)

    @classmethod
    def from_tokenizer_json(cls, path: Union[str, os.PathLike], max_length: int = MAX_LENGTH):
        """From a ``tokenizers`` ``tokenizer.json`` (as transformers saves T5 tokenizers)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        unk_id = tokenizer.token_to_id("<unk>")                  # None: no unknown token, nothing is unknown
        return cls(lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
                   tokenizer.get_vocab_size(with_added_tokens=True), -1 if unk_id is None else unk_id, max_length)

    @classmethod
    def from_folder(cls, folder: Union[str, os.PathLike], max_length: int = MAX_LENGTH):
        """From a tokenizer folder: its ``spiece.model``, else its ``tokenizer.json``."""
        folder = Path(folder)
        if (folder / "spiece.model").is_file():
            return cls.from_sentencepiece(folder / "spiece.model", max_length)
        if (folder / "tokenizer.json").is_file():
            return cls.from_tokenizer_json(folder / "tokenizer.json", max_length)
        raise CheckpointError(f"{folder}: no spiece.model or tokenizer.json for the UMT5 tokenizer")

    def encode(self, prompt: str) -> list[int]:
        """One prompt's ids, EOS last, at most ``max_length`` of them (a longer prompt is cut, with a warning)."""
        pieces = self.pieces(clean_prompt(prompt))
        if len(pieces) >= self.max_length:
            log.warning("UniDiT: the prompt has %d tokens; the text encoder reads the first %d and ignores the rest",
                        len(pieces) + 1, self.max_length)
        return pieces[:self.max_length - 1] + [EOS_ID]

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids long [B, L] padded with 0 to the longest prompt, and mask bool [B, L] (True = real token)."""
        encoded = [self.encode(prompt) for prompt in prompts]
        length = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.bool)
        for row, tokens in enumerate(encoded):
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, :len(tokens)] = True
        return ids, mask

    def unknown_words(self, prompt: str) -> list[str]:
        """The words of ``prompt`` (once each, in order, without the punctuation around them) that contain a piece
        the vocabulary lacks (unk)."""
        found = []
        for text in clean_prompt(prompt).split(" "):
            word = _without_edge_punctuation(text) or text
            if word and word not in found and self.unk_id in self.pieces(word):
                found.append(word)
        return found


def _without_edge_punctuation(text: str) -> str:
    """``text`` without the punctuation marks (Unicode category P) at its ends: "forest," -> "forest"."""
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return text[start:end]


# --- the text encoder the engine uses ----------------------------------------------------------------------------

class UMT5TextEncoder(nn.Module):
    """Prompts -> :class:`TextConditioning` with UMT5: tokens [B, L, d_model] in ``compute_dtype`` on the model's
    device, L the longest prompt in tokens (EOS included), padding rows zero, no pooled vector."""

    max_length: int = MAX_LENGTH

    def __init__(self, model: UMT5Encoder, tokenizer: UMT5Tokenizer, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.compute_dtype = compute_dtype

    @property
    def width(self) -> int:
        return self.model.config.d_model

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextConditioning:
        if not prompts:
            raise ValueError("encode needs at least one prompt")
        ids, mask = self.tokenizer(list(prompts))
        device = self.model.shared.weight.device
        ids, mask = ids.to(device), mask.to(device)
        tokens = self.model(ids, mask, dtype=self.compute_dtype)
        return TextConditioning(tokens.masked_fill(~mask[..., None], 0), mask, None, ids)

    def unknown_words(self, prompt: str) -> list[str]:
        return self.tokenizer.unknown_words(prompt)


def _encoder_weights(weights: Weights, prefix: str) -> Weights:
    """The encoder's tensors under the model's own names: ``prefix`` stripped; the tokenizer, a decoder, an LM head
    and the tied ``encoder.embed_tokens`` copy dropped (the copy stands in for ``shared`` when that is absent)."""
    has_shared = prefix + "shared.weight" in weights

    def rename(key: str) -> Optional[str]:
        if not key.startswith(prefix):
            return None
        name = key[len(prefix):]
        if name == "encoder.embed_tokens.weight":
            return None if has_shared else "shared.weight"
        if name == SPIECE_KEY or name.startswith(("decoder.", "lm_head.")):
            return None
        return name

    return weights.renamed(rename)


def _spiece_bytes(weights: Weights) -> Optional[bytes]:
    """The sentencepiece model ComfyUI stores in the file (``spiece_model`` or ``<prefix>.spiece_model``)."""
    key = next((key for key in weights if key == SPIECE_KEY or key.endswith("." + SPIECE_KEY)), None)
    return None if key is None else weights[key].contiguous().numpy().tobytes()


def _locate(path: Path) -> tuple[Path, Optional[Path]]:
    """The weights (a file or a text_encoder folder) and the tokenizer folder that goes with them, if any."""
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such file or folder; expected {EXPECTED_FILES}")
    if (path / "text_encoder").is_dir():
        return path / "text_encoder", path / "tokenizer"
    for folder in (path, path.parent / "tokenizer"):
        if (folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file():
            return path, folder
    return path, None


def load_umt5(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
              compute_dtype: torch.dtype = torch.float32,
              tokenizer: Union[str, os.PathLike, None] = None, ops: ModuleType = default_ops) -> UMT5TextEncoder:
    """Load Wan's UMT5 text encoder from a ComfyUI file or a diffusers folder (see the module docstring).

    The weights keep their stored dtype; ``device`` is where they go, ``compute_dtype`` what the computation runs
    in. ``tokenizer`` (a ``spiece.model``, ``tokenizer.json`` or tokenizer folder) overrides the one found with
    the weights; ``ops`` supplies the layers (as ComfyUI's ``operations``).
    """
    weights_path, tokenizer_folder = _locate(Path(path))
    weights = open_weights(weights_path)
    source = weights.name

    # --- what the tensors are
    config = detect_umt5(weights)
    if config is None:
        seen = _describe(weights)
        looks = f" (it looks like {seen})" if seen else ""
        raise CheckpointError(f"{source}: not a UMT5 text encoder{looks}. Wan 2.1 / 2.2 need Google's UMT5-XXL "
                              f"encoder, with tensors such as 'encoder.block.0.layer.0.SelfAttention."
                              f"relative_attention_bias.weight' in every block: {EXPECTED_FILES}")
    config_file = weights_path / "config.json" if weights_path.is_dir() else None
    if config_file is not None and config_file.is_file():
        settings = read_json(config_file)
        config = replace(config, eps=settings.get("layer_norm_epsilon", config.eps),
                         relative_attention_max_distance=settings.get("relative_attention_max_distance",
                                                                      config.relative_attention_max_distance))

    # --- the tokenizer: an explicit one, the file's spiece_model tensor, or the diffusers tokenizer folder
    if tokenizer is not None:
        given = Path(tokenizer)
        if not given.exists():
            raise CheckpointError(f"{given}: no such tokenizer file or folder (expected a spiece.model, a "
                                  f"tokenizer.json or a folder holding one)")
        if given.is_dir():
            text_tokenizer = UMT5Tokenizer.from_folder(given)
        elif given.suffix == ".json":
            text_tokenizer = UMT5Tokenizer.from_tokenizer_json(given)
        else:
            text_tokenizer = UMT5Tokenizer.from_sentencepiece(given)
    elif (spiece := _spiece_bytes(weights)) is not None:
        text_tokenizer = UMT5Tokenizer.from_sentencepiece(spiece)
    elif tokenizer_folder is not None and tokenizer_folder.is_dir():
        text_tokenizer = UMT5Tokenizer.from_folder(tokenizer_folder)
    else:
        raise CheckpointError(
            f"{source}: holds the UMT5 encoder weights but no tokenizer: ComfyUI's umt5_xxl files carry it as a "
            f"'spiece_model' tensor, which this file lacks, and no tokenizer/ folder (spiece.model or "
            f"tokenizer.json) is beside it. Use the Comfy-Org repackaged umt5_xxl_fp16 / fp8_e4m3fn_scaled file, "
            f"a diffusers Wan folder with tokenizer/spiece.model, or pass tokenizer= (a spiece.model file)")
    if text_tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has {text_tokenizer.vocab_size} pieces but the encoder's "
                              f"embedding has only {config.vocab_size} rows; they are not a pair")

    # --- the model: built on meta, filled in place with the stored tensors, moved to the device
    with torch.device("meta"):
        model = UMT5Encoder(config, ops)
    fill_module(model, _encoder_weights(weights, _encoder_prefix(weights)), source)
    place_module(model, device, compute_dtype)
    return UMT5TextEncoder(model, text_tokenizer, compute_dtype).eval()
