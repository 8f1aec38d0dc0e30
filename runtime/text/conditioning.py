"""The encoded prompt that the backbone attends to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class TextConditioning:
    """An encoded prompt batch.

    tokens: per-token embeddings [B, L, D]; mask: [B, L] bool, True for real tokens (False = padding);
    pooled: one vector per prompt [B, D], or None for encoders without one (T5); token_ids: the tokenizer's ids
    [B, L] (kept for inspection), or None.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: Optional[torch.Tensor] = None
    token_ids: Optional[torch.Tensor] = None

    def __post_init__(self):
        batch, length = self.tokens.shape[:2]
        if self.mask.shape != (batch, length) or self.mask.dtype != torch.bool:
            raise ValueError(f"text mask must be bool [{batch}, {length}], got {self.mask.dtype} "
                             f"{tuple(self.mask.shape)}")
        if self.pooled is not None and self.pooled.shape[0] != batch:
            raise ValueError(f"pooled text has batch {self.pooled.shape[0]}, tokens have {batch}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device=None, dtype=None) -> "TextConditioning":
        ids = None if self.token_ids is None else self.token_ids.to(device)
        pooled = None if self.pooled is None else self.pooled.to(device, dtype)
        return TextConditioning(self.tokens.to(device, dtype), self.mask.to(device), pooled, ids)

    def item(self, index: int) -> "TextConditioning":
        """Prompt ``index`` alone (B = 1); a batch of one serves every index."""
        if len(self) == 1:
            return self
        keep = slice(index, index + 1)
        ids = None if self.token_ids is None else self.token_ids[keep]
        pooled = None if self.pooled is None else self.pooled[keep]
        return TextConditioning(self.tokens[keep], self.mask[keep], pooled, ids)

    def repeat(self, count: int) -> "TextConditioning":
        """Each prompt repeated ``count`` times in a row (prompt-major), for a batch of samples per prompt."""
        ids = None if self.token_ids is None else self.token_ids.repeat_interleave(count, 0)
        pooled = None if self.pooled is None else self.pooled.repeat_interleave(count, 0)
        return TextConditioning(self.tokens.repeat_interleave(count, 0), self.mask.repeat_interleave(count, 0),
                                pooled, ids)

    @staticmethod
    def cat(items: list["TextConditioning"]) -> "TextConditioning":
        """Concatenate along the batch, padding shorter token sequences (mask False)."""
        length = max(item.tokens.shape[1] for item in items)

        def pad(tensor, value):
            missing = length - tensor.shape[1]
            if missing == 0:
                return tensor
            shape = (tensor.shape[0], missing) + tuple(tensor.shape[2:])
            return torch.cat([tensor, tensor.new_full(shape, value)], dim=1)

        ids = None
        if all(item.token_ids is not None for item in items):
            ids = torch.cat([pad(item.token_ids, 0) for item in items])
        pooled = None
        if all(item.pooled is not None for item in items):
            pooled = torch.cat([item.pooled for item in items])
        return TextConditioning(torch.cat([pad(item.tokens, 0) for item in items]),
                                torch.cat([pad(item.mask, False) for item in items]), pooled, ids)
