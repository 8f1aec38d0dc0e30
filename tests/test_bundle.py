import pytest
import torch

from unidit.runtime.bundle import ModelBundle
from unidit.runtime.checkpoint import CheckpointError, read_bundle, save_bundle
from unidit_testing import tiny_bundle


def outputs(bundle):
    text = bundle.encode_prompts(["a red cube", "blue ball on grey"])
    x = torch.randn(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = bundle.dit(x, torch.tensor([0.3, 0.6]), text, torch.tensor([1, 1]))
        frames = bundle.autoencoder.decode(x)
        raw = bundle.splat_decoder(x)
    return text.tokens, v, frames, raw


def test_a_bundle_round_trips_through_one_file(tmp_path):
    bundle = tiny_bundle()
    bundle.info = {"trained": "test"}
    bundle.save(tmp_path / "b.safetensors", dtype=None)
    loaded = ModelBundle.load(tmp_path / "b.safetensors")
    assert loaded.info == {"trained": "test"} and loaded.defaults == bundle.defaults
    assert loaded.tokenizer.to_str() == bundle.tokenizer.to_str()
    for before, after in zip(outputs(bundle), outputs(loaded)):
        assert torch.equal(before, after)
    components = {key.split(".")[0] for key in read_bundle(tmp_path / "b.safetensors").weights}
    assert components == {"dit", "vae", "splat", "text"}


def test_half_precision_bundles_are_half_the_size_and_close(tmp_path):
    bundle = tiny_bundle()
    full = bundle.save(tmp_path / "full.safetensors", dtype=None)
    half = bundle.save(tmp_path / "half.safetensors")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = ModelBundle.load(half)
    for before, after in zip(outputs(bundle), outputs(loaded)):
        assert torch.allclose(before, after, atol=2e-2, rtol=2e-2)


def test_incomplete_bundles_are_explained(tmp_path):
    bundle = tiny_bundle()
    save_bundle(tmp_path / "no_tokenizer.safetensors", bundle.modules(), bundle.configs())
    with pytest.raises(CheckpointError, match="no_tokenizer.safetensors: the bundle's metadata lacks 'tokenizer'"):
        ModelBundle.load(tmp_path / "no_tokenizer.safetensors")
    save_bundle(tmp_path / "dit_only.safetensors", {"dit": bundle.dit}, bundle.configs(),
                {"tokenizer": bundle.tokenizer.to_str()})
    with pytest.raises(CheckpointError, match=r"dit_only.safetensors: the bundle has no 'vae' component"):
        ModelBundle.load(tmp_path / "dit_only.safetensors")
