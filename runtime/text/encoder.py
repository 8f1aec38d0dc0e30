"""A small transformer text encoder, trained together with the backbone.

    token ids [B, L] -> embeddings + learned positions -> pre-norm transformer layers (padding masked)
      -> tokens [B, L, width] and pooled = mean of the real tokens [B, width]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from .conditioning import TextConditioning
from .tokenizer import tokenize


@dataclass
class TextEncoderConfig:
    vocab_size: int = 256
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    max_length: int = 24

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TextEncoderConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown text encoder config keys {unknown}")
        return cls(**data)


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_length, config.width))
        layer = nn.TransformerEncoderLayer(config.width, config.num_heads, 4 * config.width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(config.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> TextConditioning:
        """token_ids [B, L] (L <= max_length), mask [B, L] bool (True = real token)."""
        length = token_ids.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"{length} tokens exceed the text encoder's {self.config.max_length}")
        x = self.token_embedding(token_ids) + self.position_embedding[:length]
        x = self.final_norm(self.layers(x, src_key_padding_mask=~mask))
        weights = mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return TextConditioning(x, mask, pooled, token_ids)

    def encode(self, tokenizer: Tokenizer, prompts: list[str]) -> TextConditioning:
        """Tokenize and encode a list of prompts on the encoder's device."""
        ids, masks = tokenize(tokenizer, prompts)
        device = self.token_embedding.weight.device
        return self(torch.tensor(ids, device=device), torch.tensor(masks, device=device, dtype=torch.bool))
