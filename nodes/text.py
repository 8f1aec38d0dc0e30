"""Prompt encoding."""
from __future__ import annotations

import logging

from ..runtime.store import STORE
from ..runtime.text.tokenizer import unknown_words_note
from .types import CATEGORY, TEXT, model_input

log = logging.getLogger("unidit")


class UniDiTTextEncode:
    DESCRIPTION = ("Encodes a prompt with the model's text encoder. The demo model knows the words of its toy "
                   "world (shapes, colours, sizes, backgrounds, motions) and ignores others; Wan's T5 encoder reads "
                   "any text (up to 512 tokens).")
    CATEGORY = f"{CATEGORY}/conditioning"
    RETURN_TYPES = (TEXT,)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("The encoded prompt: positive input of UniDiT Sampler, or negative of UniDiT Guidance.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "text": ("STRING", {"multiline": True, "default": "a red cube",
                                "tooltip": "What to generate, e.g. 'a small green torus on white' or 'a bouncing "
                                           "blue ball'."}),
        }}

    def encode(self, model, text):
        loaded = STORE.model(model, parts=("text_encoder",))
        note = unknown_words_note(loaded.unknown_words(text))
        if note:
            log.warning("UniDiT: %s", note)
        return {"ui": {"text": [note] if note else []}, "result": (loaded.encode_prompts([text]),)}
