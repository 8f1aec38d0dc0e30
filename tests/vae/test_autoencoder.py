import pytest
import torch

from unidit.runtime.vae.autoencoder import AutoencoderConfig, CausalVideoAutoencoder
from unidit_testing import randomize

SMALL = AutoencoderConfig(latent_channels=4, channels=(8, 16, 16))
DESIGNS = pytest.mark.parametrize("temporal", ["causal3d", "grouped"])


def small_autoencoder(temporal: str = "causal3d"):
    config = AutoencoderConfig(**{**SMALL.to_dict(), "temporal": temporal})
    return randomize(CausalVideoAutoencoder(config), std=0.2).eval()


def test_frames_map_to_one_plus_groups_of_four():
    config = AutoencoderConfig()
    assert [config.latent_frames(t) for t in (1, 5, 9, 13)] == [1, 2, 3, 4]
    assert [config.pixel_frames(k) for k in (1, 2, 3)] == [1, 5, 9]
    with pytest.raises(ValueError, match=r"1 \+ 4k frames"):
        config.latent_frames(8)
    assert config.spatial_factor == 8


@DESIGNS
def test_encoding_is_causal_and_an_image_is_a_one_frame_video(temporal):
    model = small_autoencoder(temporal)
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, _ = model.encode_distribution(video)
        changed = video.clone()
        changed[:, :, 6] += 0.5  # frame 6 belongs to the group of latent frame 2 (frames 5..8)
        mean_changed, _ = model.encode_distribution(changed)
        image_mean, _ = model.encode_distribution(video[:, :, :1])
    assert mean.shape == (2, 4, 3, 4, 4)
    assert torch.equal(mean_changed[:, :, :2], mean[:, :, :2])
    assert not torch.allclose(mean_changed[:, :, 2], mean[:, :, 2])
    assert torch.allclose(image_mean[:, :, 0], mean[:, :, 0], atol=1e-6)


@DESIGNS
def test_decoding_is_causal_and_restores_the_frame_count(temporal):
    model = small_autoencoder(temporal)
    latents = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        frames = model.decode(latents)
        changed = latents.clone()
        changed[:, :, 2] += 1.0
        frames_changed = model.decode(changed)
        image = model.decode(latents[:, :, :1])
    assert frames.shape == (1, 3, 9, 16, 16)
    assert torch.equal(frames_changed[:, :, :5], frames[:, :, :5])  # frames before latent 2's group
    assert not torch.allclose(frames_changed[:, :, 5:], frames[:, :, 5:])
    assert torch.allclose(image[:, :, 0], frames[:, :, 0], atol=1e-6)


def test_a_chunked_decode_carries_the_causal_cache_and_equals_the_whole_decode():
    model = small_autoencoder("causal3d")
    latents = torch.randn(2, 4, 5, 4, 6)
    with torch.no_grad():
        whole = model.decode(latents)
        in_ones, in_twos = model.decode(latents, chunk=1), model.decode(latents, chunk=2)
        without_cache = torch.cat([model.decode(latents[:, :, :2]), model.decode(latents[:, :, 2:])], dim=2)
    assert whole.shape == (2, 3, 17, 16, 24)
    assert torch.allclose(in_ones, whole, atol=1e-5) and torch.allclose(in_twos, whole, atol=1e-5)
    # Decoded as a clip of its own, the second part starts over (its first latent frame is one frame, not four)
    # and does not see the first: the cache is what makes chunks one clip.
    assert without_cache.shape[2] == 5 + 9 and not torch.allclose(without_cache[:, :, 5], whole[:, :, 5])


@DESIGNS
def test_each_design_has_its_own_temporal_modules_and_trains_its_decoder_apart(temporal):
    """The config picks the modules (so grouped bundles keep their weight names), and the decoder stage trains
    exactly the modules that map latents to frames."""
    model = small_autoencoder(temporal)
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    expected = {"frame_encoder", "frame_decoder"} | (
        {"temporal_encoder", "temporal_decoder"} if temporal == "causal3d" else
        {"first_to_latent", "group_to_latent", "latent_to_first", "latent_to_group"})
    assert names == expected
    assert set(model.decoder_modules()) == expected - {"frame_encoder"} - (
        {"temporal_encoder"} if temporal == "causal3d" else {"first_to_latent", "group_to_latent"})


def test_an_unknown_temporal_design_is_refused():
    with pytest.raises(ValueError, match="causal3d"):
        AutoencoderConfig(temporal="3d")
    with pytest.raises(ValueError, match="temporal_group must be 4"):
        AutoencoderConfig(temporal="causal3d", temporal_group=2)


def test_latent_statistics_normalise_and_are_stored_in_the_config():
    model = small_autoencoder()
    video = torch.rand(1, 3, 5, 16, 16)
    with torch.no_grad():
        raw, _ = model.encode_distribution(video)
        model.set_latent_statistics(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 2.0, 4.0, 4.0]))
        normalised = model.encode(video)
    assert torch.allclose(normalised[:, 1], (raw[:, 1] - 2.0) / 2.0, atol=1e-6)
    assert model.config.latent_shift == [1.0, 2.0, 3.0, 4.0]
    rebuilt = CausalVideoAutoencoder(AutoencoderConfig.from_dict(model.config.to_dict()))
    assert torch.equal(rebuilt.latent_scale, model.latent_scale)
    assert torch.allclose(model.denormalize(normalised), raw, atol=1e-5)


def test_sampling_the_posterior_is_seeded():
    model = small_autoencoder()
    frames = torch.rand(1, 3, 1, 16, 16)
    with torch.no_grad():
        a = model.encode(frames, torch.Generator().manual_seed(3), sample=True)
        b = model.encode(frames, torch.Generator().manual_seed(3), sample=True)
        mean = model.encode(frames)
    assert torch.equal(a, b) and not torch.equal(a, mean)


def test_sizes_that_do_not_divide_fail_clearly():
    with pytest.raises(ValueError, match="divisible by 4"):
        small_autoencoder().encode(torch.zeros(1, 3, 1, 18, 16))


def test_the_time_layers_start_as_the_identity_for_an_image_and_as_key_frames_and_blends_for_a_clip():
    from unidit.runtime.vae.autoencoder import TimeDownsample, TimeUpsample, per_frame

    torch.manual_seed(0)
    model = CausalVideoAutoencoder(AutoencoderConfig(**{**SMALL.to_dict(), "temporal": "causal3d"})).eval()
    features, raw = torch.randn(2, 16, 1, 4, 4), torch.randn(2, 4, 1, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model.temporal_encoder(features),
                              per_frame(model.temporal_encoder.to_moments, features), atol=1e-5)
        assert torch.allclose(model.temporal_decoder(raw), per_frame(model.temporal_decoder.from_latents, raw),
                              atol=1e-5)
        x = torch.randn(1, 16, 3, 4, 4)                                   # frames x0, x1, x2
        up = TimeUpsample(16)(x)                                          # x0, (x0 + x1) / 2, x1, (x1 + x2) / 2, x2
        assert up.shape[2] == 5
        for index, expected in enumerate([x[:, :, 0], (x[:, :, 0] + x[:, :, 1]) / 2, x[:, :, 1],
                                          (x[:, :, 1] + x[:, :, 2]) / 2, x[:, :, 2]]):
            assert torch.allclose(up[:, :, index], expected, atol=1e-5)
        down = TimeDownsample(16)(x)                                      # x0, then the pair (x1, x2)
        assert torch.allclose(down[:, :, 0], x[:, :, 0], atol=1e-5)
        later, half_difference = x[:, :, 2], (x[:, :, 1] - x[:, :, 2]) / 2
        moved = down[:, :, 1] - later                                     # the difference, rotated: same size, new place
        assert torch.allclose(moved.norm(dim=1), half_difference.norm(dim=1), atol=1e-4)
        assert not torch.allclose(moved, half_difference, atol=1e-2)
