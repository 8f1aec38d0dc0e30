import pytest
import torch

from unidit.runtime.model.config import DiTConfig
from unidit.runtime.model.dit import UniDiT
from unidit.runtime.lora import LoRADenoiser, LoRAWeights, linear_layers
from unidit.runtime.train.lora import LoRALinear, add_lora, lora_layers, remove_lora
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


def test_the_trained_updates_leave_as_lora_layers_that_reproduce_the_wrapped_model_at_inference():
    model = tiny_dit()
    base = forward(model)
    add_lora(model, rank=4, alpha=8)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.up.normal_(0, 0.1)
    adapted = forward(model)
    layers = lora_layers(model)
    assert len(layers) == 14 and all(alpha == 8 for _, _, alpha in layers.values())
    assert remove_lora(model) == 14
    assert set(model.state_dict()) == set(UniDiT(DiTConfig(**TINY_DIT)).state_dict())
    assert torch.equal(forward(model), base)                    # the base model, untouched
    lora = LoRAWeights("trained", {name: (down, up, alpha / down.shape[0]) for name, (down, up, alpha) in layers.items()})

    class Backbone(torch.nn.Module):   # the denoiser's place, for this test: the backbone itself
        def __init__(self):
            super().__init__()
            self.dit = model

        def forward(self, *args):
            return self.dit(*args)

    with_lora = LoRADenoiser(Backbone(), [(lora, 1.0, linear_layers(model))])
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(with_lora(x, torch.tensor([0.5]), make_text(1), 1), adapted, atol=1e-5)


def test_nothing_to_adapt_is_an_error():
    with pytest.raises(ValueError, match="no linear layer matches"):
        add_lora(tiny_dit(), rank=2, targets=("nonexistent",))
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(3, 3), rank=0, alpha=1)
