import pytest
import torch

from unidit.runtime.generate import (condition_on_image, decode_frames, decode_splats, empty_latents, encode_frames,
                                     generate)
from unidit.runtime.sampling.guidance import GuidanceConfig
from unidit.runtime.sampling.sampler import SamplerConfig, SamplingInterrupted
from unidit_testing import tiny_model


@pytest.fixture(scope="module")
def bundle():
    return tiny_model()


def run(bundle, latents, seed=3, **sampler):
    positive, negative = bundle.encode_prompts(["a red cube"]), bundle.encode_prompts([""])
    return generate(bundle, latents, positive, negative, GuidanceConfig(2.0), SamplerConfig(steps=3, **sampler), seed)


def test_empty_latents_for_each_modality(bundle):
    image = empty_latents(bundle, "image", 32, 32, batch_size=2)
    video = empty_latents(bundle, "video", 32, 32, frames=9, fps=12)
    views = empty_latents(bundle, "3d", 32, 32)
    assert image.samples.shape == (2, 4, 1, 8, 8) and image.cameras is None
    assert video.samples.shape == (1, 4, 3, 8, 8) and video.fps == 12
    assert views.samples.shape == (1, 4, 4, 8, 8) and len(views.cameras) == 4 and views.cameras.width == 32
    assert not views.given.any()
    with pytest.raises(ValueError, match="multiples of 8"):
        empty_latents(bundle, "image", 36, 32)
    with pytest.raises(ValueError, match=r"1 \+ 4k frames"):
        empty_latents(bundle, "video", 32, 32, frames=8)
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        empty_latents(bundle, "audio", 32, 32)


def test_generation_is_seeded_per_item(bundle):
    latents = empty_latents(bundle, "image", 32, 32, batch_size=2)
    first, again = run(bundle, latents), run(bundle, latents)
    assert torch.equal(first.samples, again.samples)
    single = run(bundle, empty_latents(bundle, "image", 32, 32), seed=4)  # item 1 of the batch used seed 3 + 1
    assert torch.allclose(first.samples[1], single.samples[0], atol=1e-5)
    assert not torch.allclose(first.samples[0], first.samples[1], atol=1e-3)


def test_image_conditioning_holds_the_first_frame_and_view(bundle):
    image = torch.rand(1, 40, 40, 3)  # resized to the latent's pixel size
    for modality in ("video", "3d"):
        latents = condition_on_image(bundle, empty_latents(bundle, modality, 32, 32, frames=5), image)
        assert latents.given[0].tolist()[:2] == [True, False]
        result = run(bundle, latents)
        assert torch.equal(result.samples[:, :, 0], latents.clean[:, :, 0])
    with pytest.raises(ValueError, match="needs video or 3D latents"):
        condition_on_image(bundle, empty_latents(bundle, "image", 32, 32), image)


def test_decoding_gives_frames_and_splats(bundle):
    video = run(bundle, empty_latents(bundle, "video", 32, 32, frames=9))
    frames = decode_frames(bundle, video)
    assert frames.shape == (1, 9, 32, 32, 3) and 0 <= float(frames.min()) and float(frames.max()) <= 1
    views = run(bundle, empty_latents(bundle, "3d", 32, 32, batch_size=2))
    assert decode_frames(bundle, views).shape == (2, 4, 32, 32, 3)
    splats = decode_splats(bundle, views, min_opacity=0.0)
    assert splats.positions.shape == (2, 4 * 32 * 32, 3) and splats.positions.dtype == torch.float32
    with pytest.raises(ValueError, match="only 3D latents"):
        decode_splats(bundle, video)


def test_encoding_frames_matches_the_autoencoder(bundle):
    frames = torch.rand(1, 5, 32, 32, 3)
    latents = encode_frames(bundle, frames)
    with torch.no_grad():
        direct = bundle.autoencoder.encode(frames.permute(0, 4, 1, 2, 3) * 2 - 1)
    assert torch.allclose(latents, direct, atol=1e-6)


def test_cancel_stops_generation(bundle):
    calls = []
    positive = bundle.encode_prompts(["a red cube"])
    with pytest.raises(SamplingInterrupted):
        generate(bundle, empty_latents(bundle, "image", 32, 32), positive, None, GuidanceConfig(1.0),
                 SamplerConfig(steps=5), 0, cancel=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3


def test_autoencoders_without_tiles_say_so(bundle):
    latents = run(bundle, empty_latents(bundle, "image", 32, 32))
    with pytest.raises(ValueError, match="decodes whole frames; set tile_size to 0"):
        decode_frames(bundle, latents, tile_size=16)


def test_latents_or_frames_that_are_not_finite_are_an_error_not_black_frames(bundle):
    from unidit.runtime.generate import NonFiniteOutput

    latents = empty_latents(bundle, "image", 32, 32)
    broken = type(latents)(torch.full_like(latents.samples, float("nan")), "image", latents.given)
    with pytest.raises(NonFiniteOutput, match="The decoded frames of .* came out as NaN or infinity"):
        decode_frames(bundle, broken)
    views = empty_latents(bundle, "3d", 32, 32)
    views.samples[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteOutput, match="The decoded splat's .* NaN or infinity"):
        decode_splats(bundle, views, min_opacity=0.0)
    assert torch.isfinite(decode_frames(bundle, latents)).all()  # finite latents decode as before
