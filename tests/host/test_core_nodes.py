"""The core nodes the standalone host provides behave as ComfyUI's do."""
import torch

from unidit.host.core_nodes import ImageBatch


def test_image_batch_concatenates_and_fits_the_second_batch_to_the_first():
    first, second = torch.rand(2, 32, 32, 3), torch.rand(1, 32, 32, 3)
    (joined,) = ImageBatch().batch(first, second)
    assert torch.equal(joined, torch.cat([first, second]))
    wide = torch.rand(1, 32, 64, 3)                        # 64 wide: the centre 32 columns, at the same height
    (joined,) = ImageBatch().batch(first, wide)
    assert joined.shape == (3, 32, 32, 3) and torch.allclose(joined[2], wide[0, :, 16:48], atol=1e-6)
    tall = torch.rand(1, 64, 64, 3)                        # same aspect: only resized
    (joined,) = ImageBatch().batch(first, tall)
    expected = torch.nn.functional.interpolate(tall.movedim(-1, 1), size=(32, 32), mode="bilinear").movedim(1, -1)
    assert torch.allclose(joined[2:], expected, atol=1e-6)
