import pytest
import torch

from unidit.runtime.text.conditioning import TextConditioning
from unidit.runtime.text.encoder import TextEncoder, TextEncoderConfig
from unidit.runtime.text.tokenizer import build_tokenizer


def encoder_and_tokenizer():
    tokenizer = build_tokenizer(["a", "red", "blue", "cube", "ball", "on", "grey"])
    encoder = TextEncoder(TextEncoderConfig(vocab_size=tokenizer.get_vocab_size(), width=32, depth=2,
                                            num_heads=2)).eval()
    return encoder, tokenizer


def test_encoding_does_not_depend_on_padding_or_batch_neighbours():
    encoder, tokenizer = encoder_and_tokenizer()
    with torch.no_grad():
        alone = encoder.encode(tokenizer, ["a red cube"])
        padded = encoder.encode(tokenizer, ["a red cube", "a blue ball on grey grey grey"])
    length = alone.tokens.shape[1]
    assert torch.allclose(padded.tokens[0, :length], alone.tokens[0], atol=1e-5)
    assert torch.allclose(padded.pooled[0], alone.pooled[0], atol=1e-5)
    assert padded.mask[0].tolist() == [True] * length + [False] * (padded.tokens.shape[1] - length)


def test_pooled_is_the_mean_of_real_tokens_and_prompts_differ():
    encoder, tokenizer = encoder_and_tokenizer()
    with torch.no_grad():
        encoded = encoder.encode(tokenizer, ["a red cube", "a blue ball"])
    assert torch.allclose(encoded.pooled[0], encoded.tokens[0].mean(dim=0), atol=1e-6)
    assert (encoded.pooled[0] - encoded.pooled[1]).abs().max() > 1e-3


def test_conditioning_concatenation_pads_and_repeats():
    a = TextConditioning(torch.ones(1, 3, 4), torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4))
    b = TextConditioning(torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 4))
    both = TextConditioning.cat([a, b])
    assert both.tokens.shape == (3, 5, 4)
    assert both.mask[0].tolist() == [True, True, True, False, False]
    assert len(a.repeat(3)) == 3
    with pytest.raises(ValueError, match="mask"):
        TextConditioning(torch.ones(1, 3, 4), torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 4))


def test_too_long_token_sequences_are_refused():
    encoder, _ = encoder_and_tokenizer()
    with pytest.raises(ValueError, match="exceed"):
        encoder(torch.zeros(1, 30, dtype=torch.long), torch.ones(1, 30, dtype=torch.bool))
