import logging

import pytest
import torch
import torch.nn.functional as F

from unidit.runtime.model import attention as dispatch


def random_qkv(batch=2, heads=3, queries=37, keys=53, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, dim, generator=generator) for n in (queries, keys, keys)]


def test_sdpa_is_the_default_and_matches_the_softmax_formula():
    q, k, v = random_qkv()
    reference = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v
    assert torch.allclose(dispatch.attention(q, k, v), reference, atol=1e-5)


def test_chunked_equals_sdpa_with_a_padding_mask_and_several_blocks():
    q, k, v = random_qkv()
    mask = torch.ones(2, 1, 1, 53, dtype=torch.bool)
    mask[0, ..., 40:] = False
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    chunked = dispatch.chunked_attention(q, k, v, mask, chunk_queries=8, chunk_keys=16)
    assert torch.allclose(chunked, expected, atol=1e-5)
    assert torch.allclose(dispatch.attention(q, k, v, mask, backend="chunked"), expected, atol=1e-5)


def test_chunked_gives_zeros_where_every_key_is_masked():
    q, k, v = random_qkv(batch=1)
    mask = torch.zeros(1, 1, 1, 53, dtype=torch.bool)
    assert torch.equal(dispatch.chunked_attention(q, k, v, mask, 8, 16), torch.zeros_like(q))


def test_backend_that_cannot_take_a_call_falls_back_to_sdpa_with_one_warning(caplog):
    q, k, v = random_qkv()
    dispatch._warned.clear()
    with caplog.at_level(logging.WARNING):
        first = dispatch.attention(q, k, v, backend="flash_attn")  # CPU fp32: never taken by flash_attn
        second = dispatch.attention(q, k, v, backend="flash_attn")
    assert torch.equal(first, dispatch.attention(q, k, v, backend="sdpa"))
    assert torch.equal(second, first)
    warnings = [r for r in caplog.records if "flash_attn" in r.getMessage()]
    assert len(warnings) == 1 and "using 'sdpa'" in warnings[0].getMessage()


def test_flash_attn_refuses_calls_it_cannot_take():
    refuses = dispatch._BACKENDS["flash_attn"].refuses
    q, k, v = random_qkv()
    assert "CUDA" in refuses(q, k, v, None)


def test_registered_backend_is_used_and_unknown_names_are_rejected():
    calls = []

    def doubled(q, k, v, mask):
        calls.append(q.shape)
        return 2 * F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    dispatch.register_backend(dispatch.AttentionBackend("test_doubled", doubled, lambda: True,
                                                        lambda q, k, v, mask: None, "test"))
    try:
        q, k, v = random_qkv()
        assert torch.allclose(dispatch.attention(q, k, v, backend="test_doubled"), 2 * dispatch.attention(q, k, v))
        assert len(calls) == 1
    finally:
        del dispatch._BACKENDS["test_doubled"]
    with pytest.raises(ValueError, match="unknown attention backend 'nope'.*sdpa"):
        dispatch.attention(q, k, v, backend="nope")


def test_a_float_mask_adds_to_the_scores_in_every_backend():
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 5, 16, generator=generator) for _ in range(3))
    bias = torch.randn(2, 1, 1, 5, generator=generator)
    bias[0, ..., 1] = float("-inf")
    scores = (q @ k.transpose(-1, -2)) / 4 + bias
    expected = torch.softmax(scores, dim=-1) @ v
    for backend in ("sdpa", "chunked"):
        assert torch.allclose(dispatch.attention(q, k, v, bias, backend), expected, atol=1e-5), backend


def test_flash_attn_packs_padded_keys_for_its_varlen_kernel(monkeypatch):
    """The packing is checked on the CPU with a stand-in for flash-attn's varlen kernel built from SDPA."""
    import sys
    import types

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k):
        outputs = []
        for item in range(len(cu_q) - 1):
            qi, ki, vi = (t[c[item]:c[item + 1]].transpose(0, 1) for t, c in ((q, cu_q), (k, cu_k), (v, cu_k)))
            outputs.append(F.scaled_dot_product_attention(qi, ki, vi).transpose(0, 1) if len(ki[0]) else
                           torch.full_like(qi.transpose(0, 1), float("nan")))
        return torch.cat(outputs)

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=varlen,
                                                                         flash_attn_func=None))
    q, k, v = random_qkv()
    mask = torch.ones(q.shape[0], 1, 1, k.shape[2], dtype=torch.bool)
    mask[0, ..., 5:] = False
    mask[1, ..., :] = False                            # a prompt with no token at all
    out = dispatch._flash_attn(q, k, v, mask)
    expected = dispatch.chunked_attention(q, k, v, mask)
    assert torch.allclose(out, expected, atol=1e-5)
    # what it cannot take: a float bias or a mask that differs per query
    assert dispatch.key_padding(mask, q, k) is not None
    assert dispatch.key_padding(torch.ones(q.shape[0], 1, q.shape[2], k.shape[2], dtype=torch.bool), q, k) is None
