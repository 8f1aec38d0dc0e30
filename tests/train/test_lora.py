import pytest
import torch

from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit.runtime.train.lora import LoRALinear, add_lora, merge_lora
from unidit_testing import TINY_DIT, make_text, tiny_dit


def forward(model):
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    return model(x, torch.tensor([0.5]), make_text(1), 1)


def test_wrapped_model_starts_identical_and_trains_only_the_updates():
    model = tiny_dit()
    before = forward(model)
    wrappers = add_lora(model, rank=4)
    assert len(wrappers) == 7 * 2  # 7 linear layers in each of the 2 blocks
    assert torch.equal(forward(model), before)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith((".down", ".up")) for name in trainable)


def test_merging_keeps_the_function_and_the_checkpoint_layout():
    model = tiny_dit()
    add_lora(model, rank=4, alpha=8)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.up.normal_(0, 0.1)
    adapted = forward(model)
    assert merge_lora(model) == 14
    assert torch.allclose(forward(model), adapted, atol=1e-5)
    assert set(model.state_dict()) == set(UniDiT(DiTConfig(**TINY_DIT)).state_dict())
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_nothing_to_adapt_is_an_error():
    with pytest.raises(ValueError, match="no linear layer matches"):
        add_lora(tiny_dit(), rank=2, targets=("nonexistent",))
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(3, 3), rank=0, alpha=1)
