"""Block swap: any number of resident blocks gives the all-resident outputs bit for bit, streams only what is not
resident (two staging slots, reused), skips blocks that do not run, and comes off cleanly."""
import pytest
import torch

from unidit.runtime.bench.synthetic import randomize_module
from unidit.runtime.families.wan.dit import WanDiT, WanDiTConfig
from unidit.runtime.model.block_swap import BlockSwap, SwapPlan, block_bytes
from unidit_testing import make_text, tiny_dit

TINY_WAN = dict(dim=256, ffn_dim=384, num_heads=2, num_layers=4, text_dim=32)


def unidit_call(model):
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    text = make_text(1)
    return lambda: model(x, torch.tensor([[0.0, 0.6]]), text, torch.tensor([1]))


def wan_call(model):
    generator = torch.Generator().manual_seed(2)
    x, context = torch.randn(1, 16, 2, 4, 6, generator=generator), torch.randn(1, 5, 32, generator=generator)
    return lambda: model(x, torch.tensor([[0.3, 0.3]]), context)


@pytest.mark.parametrize("family", ["unidit", "wan"])
def test_every_number_of_resident_blocks_gives_the_all_resident_outputs_exactly(family):
    model = tiny_dit(depth=4) if family == "unidit" else randomize_module(WanDiT(WanDiTConfig(**TINY_WAN))).eval()
    call = unidit_call(model) if family == "unidit" else wan_call(model)
    with torch.no_grad():
        expected = call()
        for resident in (4, 3, 1, 0):
            swap = BlockSwap(model.blocks, resident, "cpu")
            first, second = call(), call()   # two calls: slots are reused, not grown
            assert torch.equal(first, expected) and torch.equal(second, expected), resident
            offloaded = 4 - resident   # copied at most once per call (a block still in its slot is not copied)
            assert offloaded <= swap.copies <= 2 * offloaded
            swap.remove()
            assert torch.equal(call(), expected)


def test_offloaded_blocks_share_two_slots_and_the_plan_counts_them():
    model = tiny_dit(depth=6)
    size = block_bytes(model.blocks[0])
    swap = BlockSwap(model.blocks, 2, "cpu")
    storages = {model.blocks[i].attn.qkv.weight.data_ptr() for i in range(2, 6)}
    assert len(storages) == 2                                   # blocks 2..5 live in two slots
    assert swap.plan.device_bytes == size * 4 and swap.plan.offloaded == 4
    swap.remove()
    assert len({model.blocks[i].attn.qkv.weight.data_ptr() for i in range(6)}) == 6
    assert SwapPlan.for_budget(model.blocks, 10 * size).resident == 6            # everything fits
    assert SwapPlan.for_budget(model.blocks, 5 * size).resident == 3             # 3 + two slots
    assert SwapPlan.for_budget(model.blocks, size).resident == 0


def test_blocks_that_do_not_run_are_not_fetched():
    model = tiny_dit(depth=4)
    swap = BlockSwap(model.blocks, 0, "cpu")
    x = torch.randn(1, 2, 64)
    with torch.no_grad():
        for index in (0, 1):   # run only the first two blocks, as a step cache skipping the rest would
            model.blocks[index]  # the pre-hook fetches block i and prefetches i + 1
            swap._before(index)(model.blocks[index], (x,))
    assert swap.copies == 3     # blocks 0, 1 and the prefetched 2; block 3 never
    swap.remove()
