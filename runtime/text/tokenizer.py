"""The prompt tokenizer: a word-level vocabulary built with the `tokenizers` library, stored in the bundle.

Text is lower-cased and accent-stripped, punctuation is dropped, words are split on whitespace and wrapped as
``[BOS] words... [EOS]``; a word outside the vocabulary becomes ``[UNK]`` (the model is trained to shrug
those off), so any prompt encodes. The whole tokenizer round-trips through one JSON string.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)


def build_tokenizer(words: Iterable[str], max_length: int = 24) -> Tokenizer:
    """A word-level tokenizer over ``words`` (special tokens first: [PAD] = 0)."""
    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted({w.lower() for w in words}):
        vocabulary.setdefault(word, len(vocabulary))
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(),
                                                 normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocabulary[BOS]), (EOS, vocabulary[EOS])])
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=vocabulary[PAD], pad_token=PAD)
    return tokenizer


def tokenizer_from_json(text: str) -> Tokenizer:
    return Tokenizer.from_str(text)


def tokenize(tokenizer: Tokenizer, prompts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and attention masks (1 = real token), padded to the longest prompt in the batch."""
    encodings = tokenizer.encode_batch(list(prompts))
    return [e.ids for e in encodings], [e.attention_mask for e in encodings]


def unknown_words_note(words: list[str]) -> str:
    """What to tell a user about the words a model does not know ("" when there are none)."""
    if not words:
        return ""
    quoted = ", ".join(f"'{word}'" for word in words)
    return (f"the model does not know {'the word' if len(words) == 1 else 'the words'} {quoted}; "
            f"{'it is' if len(words) == 1 else 'they are'} ignored")


def unknown_words(tokenizer: Tokenizer, prompt: str) -> list[str]:
    """Words of ``prompt`` that the vocabulary does not know (they encode as [UNK])."""
    unk_id = tokenizer.token_to_id(UNK)
    encoding = tokenizer.encode(prompt)
    return [prompt[start:end] for token_id, (start, end) in zip(encoding.ids, encoding.offsets)
            if token_id == unk_id]
