"""Video encoding of frames (float 0..1, [T, H, W, 3]): MP4 (H.264) and WebM (VP9) through PyAV, animated WebP
through Pillow (light enough for in-node previews; note that libwebp merges identical consecutive frames)."""
from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from .image import to_uint8

MP4_OPTIONS = {"crf": "17", "preset": "medium", "movflags": "+faststart"}  # movflags: the index first (streaming)
WEBM_OPTIONS = {"crf": "24", "b": "0"}  # b = 0: constant quality, crf alone decides


def encode_mp4(frames: torch.Tensor, fps: float) -> bytes:
    """frames [T, H, W, 3] in 0..1 -> the bytes of an MP4 file (H.264)."""
    return _encode_with_pyav(_checked_frames(frames, fps), fps, "mp4", "libx264", MP4_OPTIONS)


def encode_webm(frames: torch.Tensor, fps: float) -> bytes:
    """frames [T, H, W, 3] in 0..1 -> the bytes of a WebM file (VP9)."""
    return _encode_with_pyav(_checked_frames(frames, fps), fps, "webm", "libvpx-vp9", WEBM_OPTIONS)


def encode_animated_webp(frames: torch.Tensor, fps: float) -> bytes:
    """frames [T, H, W, 3] in 0..1 -> the bytes of an animated WebP image."""
    images = [Image.fromarray(frame) for frame in _checked_frames(frames, fps)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, lossless=False, quality=90, method=4)
    return buffer.getvalue()


def _checked_frames(frames: torch.Tensor, fps: float) -> np.ndarray:
    """The frames as uint8 [T, H, W, 3], after checking their shape and the frame rate."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must be [T, H, W, 3], got {tuple(frames.shape)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return to_uint8(frames)


def _encode_with_pyav(frames: np.ndarray, fps: float, container_format: str, codec: str, options: dict) -> bytes:
    # yuv420p halves the chroma resolution: pad to even sizes by repeating the last row/column.
    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    muxer_options = {"movflags": options["movflags"]} if "movflags" in options else {}
    # A real file, not memory: moving the index to the front (faststart, for streaming) needs a second pass.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"video.{container_format}"
        _mux(path, frames, rate, container_format, codec, options, muxer_options)
        return path.read_bytes()


def _mux(path, frames, rate, container_format, codec, options, muxer_options) -> None:
    with av.open(str(path), mode="w", format=container_format, options=muxer_options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {k: v for k, v in options.items() if k != "movflags"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_video(data: bytes) -> tuple[torch.Tensor, float]:
    """Frames [T, H, W, 3] in 0..1 and the frame rate of an mp4/webm (PyAV) or animated webp (Pillow) file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        image = Image.open(io.BytesIO(data))
        frames, durations = [], []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()  # the frame's duration is known once it is loaded
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(image.info.get("duration", 100))
        # libwebp merges identical consecutive frames; a clip of one repeated frame becomes a still image.
        mean_duration = float(np.mean(durations))
        return torch.from_numpy(np.stack(frames)).float() / 255, 1000.0 / mean_duration if mean_duration else 0.0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        fps = float(stream.average_rate or stream.guessed_rate)
    return torch.from_numpy(np.stack(frames)).float() / 255, fps
