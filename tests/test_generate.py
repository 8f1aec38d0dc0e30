from dataclasses import replace

import pytest
import torch

from unidit.runtime.generate import (condition_on_image, continue_clip, decode_frames, decode_splats, empty_latents,
                                     encode_frames, encode_latents, generate, give_frames, join_clips, join_latents,
                                     parse_positions)
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
    with pytest.raises(ValueError, match="no other frames to generate.*denoise below 1"):
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


def test_encoding_images_clips_and_views_into_latents(bundle):
    assert bundle.capabilities.size_multiple == 8
    images = torch.rand(3, 44, 38, 3)                         # centre-cropped to 40 x 32 (multiples of 8)
    latents = encode_latents(bundle, images, "image")
    assert latents.samples.shape == (3, 4, 1, 10, 8) and latents.modality == "image" and not latents.given.any()
    assert torch.allclose(latents.samples, encode_frames(bundle, images[:, 2:42, 3:35].unsqueeze(1)), atol=1e-6)
    clip = encode_latents(bundle, torch.rand(7, 32, 32, 3), "video", fps=12)   # the first 5 frames (1 + 4k)
    assert clip.samples.shape == (1, 4, 2, 8, 8) and clip.fps == 12
    views = torch.rand(4, 32, 32, 3)
    asset = encode_latents(bundle, views, "3d")
    assert asset.samples.shape == (1, 4, 4, 8, 8) and len(asset.cameras) == 4
    for view in range(4):      # each view is encoded as an image of its own
        assert torch.allclose(asset.samples[0, :, view], encode_frames(bundle, views[view:view + 1, None])[0, :, 0],
                              atol=1e-6)
    with pytest.raises(ValueError, match="smaller than"):
        encode_latents(bundle, torch.rand(1, 4, 4, 3), "image")
    with pytest.raises(ValueError, match=r"IMAGE batch \[N, H, W, 3\]"):
        encode_latents(bundle, torch.rand(32, 32, 3), "image")


def test_denoise_below_one_starts_from_the_encoded_image(bundle):
    images = torch.rand(1, 32, 32, 3)
    latents = encode_latents(bundle, images, "image")
    light = run(bundle, latents, denoise=0.2).samples
    full = run(bundle, latents, denoise=1.0).samples
    assert (light - latents.samples).abs().mean() < 0.5 * (full - latents.samples).abs().mean()


def test_keyframes_hold_images_at_their_frames(bundle):
    first, last = torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)
    latents = empty_latents(bundle, "video", 32, 32, batch_size=2, frames=9)         # latent frames 0, 1..4, 5..8
    keyed = give_frames(bundle, latents, torch.cat([first, last]), parse_positions("0, -1"))
    assert keyed.given.tolist() == [[True, False, True]] * 2
    assert torch.allclose(keyed.clean[:, :, 0], encode_frames(bundle, first[:, None])[:, :, 0].expand(2, -1, -1, -1))
    still = encode_frames(bundle, last[:, None].expand(-1, 5, -1, -1, -1))           # frames 5..8 all show it
    assert torch.allclose(keyed.clean[:, :, 2], still[:, :, 1].expand(2, -1, -1, -1))
    result = run(bundle, keyed)
    assert torch.equal(result.samples[:, :, 0], keyed.clean[:, :, 0])
    assert torch.equal(result.samples[:, :, 2], keyed.clean[:, :, 2])
    middle = give_frames(bundle, latents, first, [4])                                  # frame 4 is latent frame 1
    assert middle.given[0].tolist() == [False, True, False]
    views = give_frames(bundle, empty_latents(bundle, "3d", 32, 32), torch.cat([first, last]), [0, 2])
    assert views.given[0].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="same latent frame.*4 frames apart"):
        give_frames(bundle, latents, torch.cat([first, last]), [3, 4])
    with pytest.raises(ValueError, match="position 9 is outside this latent's 9 frames"):
        give_frames(bundle, latents, first, [9])
    with pytest.raises(ValueError, match="2 images for 1 positions"):
        give_frames(bundle, empty_latents(bundle, "video", 32, 32, frames=9), torch.cat([first, last]), [0])
    with pytest.raises(ValueError, match="whole numbers separated by commas"):
        parse_positions("first, last")
    with pytest.raises(ValueError, match="at least one position"):
        parse_positions(" , ")


def test_continuing_a_clip_gives_its_last_frames_and_joining_drops_the_repeat(bundle):
    clip = torch.rand(9, 32, 32, 3)
    latents = continue_clip(bundle, clip, overlap=5, frames=9, fps=10)
    assert latents.samples.shape == (1, 4, 3, 8, 8) and latents.fps == 10
    assert latents.given.tolist() == [[True, True, False]]
    assert torch.allclose(latents.clean[:, :, :2], encode_frames(bundle, clip[None, -5:]), atol=1e-6)
    result = run(bundle, latents)
    assert torch.equal(result.samples[:, :, :2], latents.clean[:, :, :2])
    second = decode_frames(bundle, result)[0]
    joined = join_clips(clip, second, overlap=5)
    assert joined.shape == (13, 32, 32, 3)
    assert torch.equal(joined[:9], clip) and torch.equal(joined[9:], second[5:])
    with pytest.raises(ValueError, match=r"1 \+ 4k frames"):
        continue_clip(bundle, clip, overlap=4, frames=9)
    with pytest.raises(ValueError, match="longer than the overlap"):
        continue_clip(bundle, clip, overlap=9, frames=9)
    with pytest.raises(ValueError, match="at least 13"):
        continue_clip(bundle, clip, overlap=13, frames=17)
    with pytest.raises(ValueError, match="differ in size"):
        join_clips(clip, torch.rand(9, 16, 32, 3), 1)
    with pytest.raises(ValueError, match="overlap must be 0 .. 8"):
        join_clips(clip, second, 9)


@pytest.mark.parametrize("overlap, frames", [(1, 9), (5, 13)])
def test_joined_latents_decode_the_first_clip_as_it_was_and_go_on_with_the_new_frames(bundle, overlap, frames):
    first = run(bundle, empty_latents(bundle, "video", 32, 32, frames=9, fps=10))
    clip = decode_frames(bundle, first)[0]
    second = run(bundle, continue_clip(bundle, clip, overlap=overlap, frames=frames))
    given = 1 + (overlap - 1) // 4
    joined = join_latents(first, second)
    assert joined.modality == "video" and joined.fps == 10
    assert torch.equal(joined.samples, torch.cat([first.samples, second.samples[:, :, given:]], dim=2))
    assert joined.given.tolist() == [[False] * joined.frames]
    video = decode_frames(bundle, joined)[0]
    assert video.shape == (9 + frames - overlap, 32, 32, 3)
    assert torch.allclose(video[:9], clip, atol=1e-5)         # the causal decoder: the first clip as it was
    assert not torch.allclose(video[9:], video[8:9].expand_as(video[9:]), atol=1e-3)   # and new frames after it


def test_joining_latents_that_do_not_continue_one_another_is_an_error(bundle):
    first = run(bundle, empty_latents(bundle, "video", 32, 32, frames=9))
    second = run(bundle, continue_clip(bundle, decode_frames(bundle, first)[0], overlap=1, frames=9))
    with pytest.raises(ValueError, match="does not start with given frames: make it with UniDiT Continue Clip"):
        join_latents(first, first)
    with pytest.raises(ValueError, match="the second latent is image; join two video latents"):
        join_latents(first, empty_latents(bundle, "image", 32, 32))
    with pytest.raises(ValueError, match="differ in channels or size"):
        join_latents(first, run(bundle, continue_clip(bundle, torch.rand(9, 16, 32, 3), 1, 9)))
    with pytest.raises(ValueError, match="hold 2 and 1 clips"):
        join_latents(run(bundle, empty_latents(bundle, "video", 32, 32, batch_size=2, frames=9)), second)
    with pytest.raises(ValueError, match="all overlap"):
        join_latents(first, replace(second, given=torch.ones_like(second.given)))


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
