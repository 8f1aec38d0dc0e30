import pytest
import torch

from unidit.runtime.media.video import decode_video
from unidit.runtime.output_formats import VIDEO_FILES


def moving_square(frames=9, size=64):
    video = torch.linspace(0.2, 0.8, size)[None, None, :, None].expand(frames, size, size, 3).clone()
    for t in range(frames):
        video[t, 20:36, 4 + 4 * t:20 + 4 * t] = torch.tensor([0.9, 0.1, 0.1])
    return video


@pytest.mark.parametrize("video_format", VIDEO_FILES.extensions)
def test_every_format_decodes_to_the_same_frames_and_rate(video_format):
    video = moving_square()
    data = VIDEO_FILES.write(video_format, video, 8)
    decoded, fps = decode_video(data)
    assert decoded.shape == video.shape
    assert fps == pytest.approx(8.0)
    assert (decoded - video).abs().mean() < 0.02
    # the square moved: frame 8's red region is to the right of frame 0's
    red = decoded[..., 0] - decoded[..., 1]
    columns = torch.arange(64).float()
    centroid = [(red[t].clamp(min=0) * columns).sum() / red[t].clamp(min=0).sum() for t in (0, 8)]
    assert centroid[1] - centroid[0] > 25


def test_containers_are_what_players_expect():
    video = moving_square()
    assert VIDEO_FILES.write("mp4", video, 8)[4:8] == b"ftyp"
    assert VIDEO_FILES.write("webm", video, 8)[:4] == b"\x1a\x45\xdf\xa3"  # EBML
    webp = VIDEO_FILES.write("webp", video, 8)
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"


def test_odd_sizes_are_padded_for_yuv420():
    decoded, _ = decode_video(VIDEO_FILES.write("mp4", moving_square()[:, :63, :61], 8))
    assert decoded.shape == (9, 64, 62, 3)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown video format 'gif'"):
        VIDEO_FILES.write("gif", moving_square(), 8)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        VIDEO_FILES.write("mp4", torch.zeros(64, 64, 3), 8)
    with pytest.raises(ValueError, match="fps"):
        VIDEO_FILES.write("mp4", moving_square(), 0)
