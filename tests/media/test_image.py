import io

import numpy as np
import torch
from PIL import Image

from unidit.runtime.media.image import encode_png, to_uint8


def test_png_round_trips_pixels_and_keeps_text_chunks():
    image = torch.rand(16, 24, 3)
    data = encode_png(image, {"prompt": '{"1": {}}', "workflow": "{}"})
    loaded = Image.open(io.BytesIO(data))
    assert loaded.size == (24, 16) and loaded.mode == "RGB"
    assert loaded.text == {"prompt": '{"1": {}}', "workflow": "{}"}
    assert np.array_equal(np.asarray(loaded), to_uint8(image))


def test_values_are_clamped_and_rounded():
    assert to_uint8(torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0])).tolist() == [0, 0, 128, 255, 255]
