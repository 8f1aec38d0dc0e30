"""Wan's UMT5 text encoder against transformers: model and tokenizer parity, and the file layouts users have
(ComfyUI single files with the tokenizer inside, plain / prefixed / bf16 / scaled fp8; diffusers folders, sharded).

Everything is tiny, seeded and generated in temporary folders: a sentencepiece model trained on a generated
corpus, and random UMT5 weights written by transformers itself.
"""
import io
import random
import shutil

import pytest
import sentencepiece
import torch
from safetensors.torch import save_file
from transformers import T5Tokenizer
from transformers import UMT5Config as HFConfig
from transformers import UMT5EncoderModel
from transformers.models.umt5.modeling_umt5 import UMT5Attention as HFAttention

from unidit.runtime.families.wan.umt5 import (
    UMT5Config, UMT5Encoder, UMT5TextEncoder, UMT5Tokenizer, detect_umt5, load_umt5, relative_position_buckets)
from unidit.runtime.weights import CheckpointError

LINEARS = ("SelfAttention.q", "SelfAttention.k", "SelfAttention.v", "SelfAttention.o",
           "DenseReluDense.wi_0", "DenseReluDense.wi_1", "DenseReluDense.wo")
PROMPTS = ["hello world", "  katomi   ra ne, über ça!\t(1-2-3)\n", "日本語 中文字 при вет", "a",
           "kato mira " * 400]                                       # the last one is cut to 512 tokens
PREFIX = "text_encoders.umt5xxl.transformer."


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spiece_bytes() -> bytes:
    """A 400-piece unigram sentencepiece model with T5's special ids, trained on a generated multilingual corpus."""
    rng = random.Random(0)
    syllables = ["ka", "to", "mi", "ra", "ne", "so", "lu", "vi", "dé", "ße", "über", "日本", "語", "при", "вет", "ça",
                 "hello", "world", "cat", "dog", "the", "red", ",", ".", "!", "?", "'", "-", "(", ")", "1", "2", "3"]
    letters = "abcdefghijklmnopqrstuvwxyzéèàüößñçабвгджзклмнопрстуфхцчшщ日本語中文字"
    lines = []
    for _ in range(3000):
        words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(3, 12))]
        words += ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(3)]
        lines.append(" ".join(words))
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=400, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2)
    return model.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory, spiece_bytes):
    folder = tmp_path_factory.mktemp("umt5")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "spiece.model").write_bytes(spiece_bytes)
    return folder


@pytest.fixture(scope="module")
def hf_model():
    """A tiny transformers UMT5 encoder with every parameter randomised (norms too), in eval mode, fp32.

    With 8 buckets, distances from 2 up fall in the logarithmic buckets, so short prompts use them too."""
    config = HFConfig(vocab_size=416, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=3,
                      relative_attention_num_buckets=8, dropout_rate=0.0,
                      feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)
    config._attn_implementation = "eager"
    model = UMT5EncoderModel(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.3 * noise)
            elif "relative_attention_bias" in name:
                parameter.copy_(0.5 * noise)
            elif parameter.dim() == 2 and "shared" not in name and "embed_tokens" not in name:
                parameter.copy_(noise / parameter.shape[1] ** 0.5)
            else:
                parameter.copy_(noise)
    return model


def encoder_state(model) -> dict:
    """The model's tensors as ComfyUI files hold them (own storage each, no tied duplicate)."""
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()
            if key != "encoder.embed_tokens.weight"}


def spiece_tensor(spiece_bytes: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8)


@pytest.fixture(scope="module")
def comfy_file(work, hf_model, spiece_bytes):
    path = work / "umt5_tiny_fp32.safetensors"
    save_file({**encoder_state(hf_model), "spiece_model": spiece_tensor(spiece_bytes)}, str(path))
    return path


@pytest.fixture(scope="module")
def hf_tokenizer(work):
    return T5Tokenizer.from_pretrained(str(work / "tokenizer"), extra_ids=0, legacy=False)


def reference(hf_model, hf_tokenizer, prompts):
    """transformers' encoding of ``prompts`` as diffusers' Wan pipeline does it: ids, mask, last hidden state."""
    batch = hf_tokenizer(prompts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        hidden = hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return batch.input_ids, batch.attention_mask.bool(), hidden


def relative_error(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> float:
    """max |ours - theirs| over the real tokens, relative to the largest |theirs| there."""
    ours, theirs = ours.float()[mask], theirs.float()[mask]
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


# --- model parity ------------------------------------------------------------------------------------------------

def test_relative_position_buckets_match_transformers():
    hf = HFAttention(HFConfig(relative_attention_num_buckets=32, relative_attention_max_distance=128,
                              is_decoder=False), has_relative_attention_bias=True)
    position = torch.arange(600)
    expected = hf._relative_position_bucket(position[None, :] - position[:, None])
    assert torch.equal(relative_position_buckets(600, 32, 128), expected)


def test_encoding_matches_transformers(comfy_file, hf_model, hf_tokenizer):
    encoder = load_umt5(comfy_file)
    assert isinstance(encoder, UMT5TextEncoder) and encoder.width == 64
    assert encoder.model.config == UMT5Config(vocab_size=416, d_model=64, d_kv=16, num_heads=4, d_ff=128,
                                              num_layers=3, relative_attention_num_buckets=8)
    ids, mask, hidden = reference(hf_model, hf_tokenizer, PROMPTS)
    out = encoder.encode(PROMPTS)

    assert torch.equal(out.token_ids, ids) and torch.equal(out.mask, mask)
    assert out.tokens.shape == (5, 512, 64) and out.tokens.dtype == torch.float32 and out.pooled is None
    assert out.mask.sum(1).tolist() == [len(encoder.tokenizer.encode(p)) for p in PROMPTS]
    assert relative_error(out.tokens, hidden, mask) <= 1e-4
    assert (out.tokens[~mask] == 0).all()


def test_xxl_config_is_detected_from_shapes():
    with torch.device("meta"):
        model = UMT5Encoder(UMT5Config())
    state = model.state_dict()
    assert detect_umt5(state) == UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, num_heads=64, d_ff=10240,
                                            num_layers=24, relative_attention_num_buckets=32)
    assert 5.6e9 < sum(p.numel() for p in model.parameters()) < 5.8e9
    assert detect_umt5({PREFIX + key: value for key, value in state.items()}) == UMT5Config()


# --- tokenizer ---------------------------------------------------------------------------------------------------

TOKENIZER_PROMPTS = PROMPTS + ["", "   ", "Über-Café, ça va?!  «quotes» … and — dashes", "🦄 unicorn ζeta",
                               "tab\tseparated\nlines\r\nand   runs", "1,2,3... (ok) [x] {y} <z> 50% $5 #a @b",
                               "x" * 3000]


def test_tokenizer_matches_transformers_and_sentencepiece(spiece_bytes, hf_tokenizer):
    ours = UMT5Tokenizer.from_sentencepiece(spiece_bytes)
    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece_bytes)
    for prompt in TOKENIZER_PROMPTS:
        ids = ours.encode(prompt)
        assert ids == hf_tokenizer(prompt, truncation=True, max_length=512)["input_ids"], prompt
        assert ids == processor.encode(" ".join(prompt.split()))[:511] + [1], prompt
    long = ours.encode(PROMPTS[-1])
    assert len(long) == 512 and long[-1] == 1 and 1 not in long[:-1]

    ids, mask = ours(["hello world", "a"])
    assert ids.tolist() == [ours.encode("hello world"), ours.encode("a") + [0] * (len(ids[0]) - 2)]
    assert mask.sum(1).tolist() == [len(ours.encode("hello world")), 2]


def test_unknown_words(spiece_bytes):
    tokenizer = UMT5Tokenizer.from_sentencepiece(spiece_bytes)
    assert tokenizer.unknown_words("hello 🦄 world ζeta 🦄") == ["🦄", "ζeta"]
    assert tokenizer.unknown_words("hello world, über ça") == []


def test_tokenizer_json_gives_the_same_ids(work, spiece_bytes, hf_tokenizer):
    folder = work / "tokenizer_json_only"
    hf_tokenizer.save_pretrained(str(folder))
    (folder / "spiece.model").unlink(missing_ok=True)
    from_json = UMT5Tokenizer.from_folder(folder)
    from_spiece = UMT5Tokenizer.from_sentencepiece(spiece_bytes)
    assert from_json.unk_id == from_spiece.unk_id == 2
    for prompt in TOKENIZER_PROMPTS:
        assert from_json.encode(prompt) == from_spiece.encode(prompt), prompt
    assert from_json.unknown_words("hello 🦄 world") == ["🦄"]


# --- file layouts ------------------------------------------------------------------------------------------------

def test_diffusers_folder_and_prefixed_comfy_file_give_the_same_encoding(work, comfy_file, hf_model, spiece_bytes):
    root = work / "Wan2.1-T2V-tiny-Diffusers"
    hf_model.save_pretrained(str(root / "text_encoder"), max_shard_size="200KB")
    shutil.copytree(work / "tokenizer", root / "tokenizer")
    assert len(list((root / "text_encoder").glob("*.safetensors"))) > 1
    assert list((root / "text_encoder").glob("*.safetensors.index.json"))

    # under a checkpoint prefix, with transformers' tied copy of the embedding
    state = encoder_state(hf_model)
    prefixed = work / "umt5_tiny_prefixed.safetensors"
    save_file({**{PREFIX + key: value for key, value in state.items()},
               PREFIX + "encoder.embed_tokens.weight": state["shared.weight"].clone(),
               "text_encoders.umt5xxl.spiece_model": spiece_tensor(spiece_bytes)}, str(prefixed))
    # the embedding only under its tied name
    tied_only = work / "umt5_tiny_embed_tokens.safetensors"
    save_file({**{key: value for key, value in state.items() if key != "shared.weight"},
               "encoder.embed_tokens.weight": state["shared.weight"],
               "spiece_model": spiece_tensor(spiece_bytes)}, str(tied_only))

    expected = load_umt5(comfy_file).encode(PROMPTS)
    for source in (root, root / "text_encoder", prefixed, tied_only):
        out = load_umt5(source).encode(PROMPTS)
        assert torch.equal(out.token_ids, expected.token_ids), source
        assert torch.equal(out.tokens, expected.tokens), source


def test_scaled_fp8_file_stays_fp8_and_matches_its_dequantised_weights(work, hf_model, hf_tokenizer, spiece_bytes):
    state = encoder_state(hf_model)
    dequantised = {}
    for key in list(state):
        if key.endswith(".weight") and any(f".{name}." in key for name in LINEARS):
            weight = state[key]
            scale = weight.abs().max() / 448.0
            state[key] = (weight / scale).to(torch.float8_e4m3fn)
            state[key[:-len("weight")] + "scale_weight"] = scale.reshape(1).float()
            state[key[:-len("weight")] + "scale_input"] = torch.ones(1)
            dequantised[key] = state[key].float() * scale
    state["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    state["spiece_model"] = spiece_tensor(spiece_bytes)
    path = work / "umt5_tiny_fp8_e4m3fn_scaled.safetensors"
    save_file(state, str(path))

    encoder = load_umt5(path)
    q = encoder.model.encoder.block[1].layer[0].SelfAttention.q
    wo = encoder.model.encoder.block[2].layer[1].DenseReluDense.wo
    assert q.weight.dtype == wo.weight.dtype == torch.float8_e4m3fn and q.scale_weight.dtype == torch.float32

    reference_model = UMT5EncoderModel(hf_model.config).eval()
    reference_model.load_state_dict({**hf_model.state_dict(), **dequantised})
    ids, mask, hidden = reference(reference_model, hf_tokenizer, PROMPTS)
    out = encoder.encode(PROMPTS)
    assert relative_error(out.tokens, hidden, mask) <= 1e-4


def test_bf16_file_stays_bf16_and_mapped(work, hf_model, hf_tokenizer, spiece_bytes):
    state = {key: value.to(torch.bfloat16) for key, value in encoder_state(hf_model).items()}
    path = work / "umt5_tiny_bf16.safetensors"
    save_file({**state, "spiece_model": spiece_tensor(spiece_bytes)}, str(path))
    encoder = load_umt5(path, compute_dtype=torch.float32)
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    # not copied: every parameter is a view of the memory-mapped file
    assert {p.untyped_storage().nbytes() for p in encoder.parameters()} == {path.stat().st_size}

    rounded = {key: value.float() for key, value in state.items()}
    reference_model = UMT5EncoderModel(hf_model.config).eval()
    reference_model.load_state_dict({**rounded, "encoder.embed_tokens.weight": rounded["shared.weight"]})
    ids, mask, hidden = reference(reference_model, hf_tokenizer, PROMPTS)
    out = encoder.encode(PROMPTS)
    assert out.tokens.dtype == torch.float32
    assert relative_error(out.tokens, hidden, mask) <= 1e-4

    half = load_umt5(path, compute_dtype=torch.bfloat16).encode(PROMPTS)
    assert half.tokens.dtype == torch.bfloat16 and relative_error(half.tokens, hidden, mask) <= 0.1


# --- errors ------------------------------------------------------------------------------------------------------

def test_a_file_that_is_not_umt5_is_refused_with_what_it_is(work, hf_model):
    clip = work / "clip_l.safetensors"
    save_file({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(8, 4),
               "text_model.final_layer_norm.weight": torch.ones(4)}, str(clip))
    with pytest.raises(CheckpointError, match="not a UMT5 text encoder") as error:
        load_umt5(clip)
    assert "CLIP" in str(error.value) and "models/text_encoders" in str(error.value)

    t5 = work / "t5xxl_tiny.safetensors"
    state = encoder_state(hf_model)
    save_file({key: value for key, value in state.items()
               if not (key.endswith("relative_attention_bias.weight") and ".block.0." not in key)}, str(t5))
    with pytest.raises(CheckpointError, match="T5 v1.1"):
        load_umt5(t5)


def test_missing_tokenizer_is_explained(work, hf_model):
    bare = work / "umt5_no_tokenizer.safetensors"
    save_file(encoder_state(hf_model), str(bare))
    with pytest.raises(CheckpointError, match="no tokenizer") as error:
        load_umt5(bare)
    assert "spiece_model" in str(error.value)

    lonely = work / "elsewhere" / "text_encoder"
    hf_model.save_pretrained(str(lonely))
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_umt5(lonely)
    assert load_umt5(lonely, tokenizer=work / "tokenizer" / "spiece.model").tokenizer.vocab_size == 400
