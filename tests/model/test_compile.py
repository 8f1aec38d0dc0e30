"""torch.compile of the transformer blocks: the compiled model computes what the eager one does, and a compiler that
fails leaves the model running eagerly with one warning."""
import logging

import torch

from unidit.runtime.model.compile import compile_blocks
from unidit_testing import make_text, tiny_dit


def forward(model):
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(x, torch.tensor([[0.0, 0.5]]), make_text(1), torch.tensor([1]))


def test_compiled_blocks_compute_what_eager_blocks_do():
    model = tiny_dit()
    expected = forward(model)
    compiled = compile_blocks(model.blocks)   # inductor: C++ on the CPU (the first call compiles: ~30 s here)
    assert torch.allclose(forward(model), expected, atol=1e-5) and compiled.failed is None
    assert set(model.state_dict()) == set(tiny_dit().state_dict())   # names unchanged


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(caplog):
    model = tiny_dit()
    expected = forward(model)

    def broken_backend(graph, inputs):
        raise RuntimeError("no C++ compiler found")

    compiled = compile_blocks(model.blocks, backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="unidit"):
        first, second = forward(model), forward(model)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert compiled.failed is not None
    warnings = [r.message for r in caplog.records if "torch.compile" in r.message]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "uncompiled" in warnings[0]
