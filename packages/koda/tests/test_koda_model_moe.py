"""Switch MoE: balance loss known values, Gumbel top-1 routing, capacity dispatch vs per-token loop."""

import math

import pytest
import torch

from synthfuse.koda.model.moe import SwitchFeedForward, gumbel_top1, switch_balance_loss


def test_switch_loss_is_one_under_uniform_routing():
    n, e = 64, 4
    uniform = torch.full((n, e), 1.0 / e)
    for index in (torch.arange(n) % e, torch.zeros(n, dtype=torch.long), torch.randint(0, e, (n,))):
        assert switch_balance_loss(uniform, index).item() == pytest.approx(1.0, abs=1e-6)
    # Balanced dispatch with any router probabilities also gives exactly 1.
    probs = torch.softmax(torch.randn(n, e), dim=-1)
    assert switch_balance_loss(probs, torch.arange(n) % e).item() == pytest.approx(1.0, abs=1e-6)


def test_switch_loss_is_num_experts_when_collapsed():
    e = 5
    probs = torch.zeros(10, e)
    probs[:, 2] = 1.0
    assert switch_balance_loss(probs, torch.full((10,), 2)).item() == pytest.approx(e)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match="temperature"):
        gumbel_top1(torch.zeros(3, 2), bad)
    with pytest.raises(ValueError, match="temperature"):
        SwitchFeedForward(4, 8, 2, temperature=bad)


def test_gumbel_max_samples_the_softmax_distribution():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]]).expand(40000, 4)
    gen = torch.Generator().manual_seed(0)
    index, gate = gumbel_top1(logits, 0.5, generator=gen)
    freq = torch.bincount(index, minlength=4).double() / len(index)
    expected = torch.softmax(logits[0].double(), dim=0)
    assert torch.allclose(freq, expected, atol=0.01), (freq, expected)
    torch.testing.assert_close(gate, torch.ones_like(gate))
    # Without noise it is the argmax.
    index, _ = gumbel_top1(logits[:3], 1.0, noise=False)
    assert index.tolist() == [0, 0, 0]


def test_gate_passes_gradient_to_router():
    logits = torch.randn(6, 3, requires_grad=True)
    _, gate = gumbel_top1(logits, 1.0)
    (gate * torch.arange(6.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_dispatch_matches_per_token_reference():
    torch.manual_seed(0)
    moe = SwitchFeedForward(8, 16, 4, capacity_factor=4.0)  # capacity = all tokens: nothing dropped
    moe.eval()
    x = torch.randn(2, 7, 8)
    y, balance, index = moe(x)
    torch.testing.assert_close(y, moe._reference_forward(x, index), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(balance)


def test_capacity_drops_overflow_and_padding_is_not_routed():
    torch.manual_seed(0)
    moe = SwitchFeedForward(4, 8, 2, capacity_factor=0.5)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0  # a huge logit for expert 0 on positive inputs
    moe.eval()
    x = torch.rand(1, 8, 4) + 1.0  # every token prefers expert 0
    y, _, index = moe(x)
    cap = moe.capacity(8)
    assert cap == math.ceil(0.5 * 8 / 2) == 2
    assert (index == 0).all()
    kept = y[0].abs().sum(dim=-1) > 0
    assert kept.tolist() == [True] * cap + [False] * (8 - cap)  # first come, first served
    mask = torch.tensor([[True] * 3 + [False] * 5])
    y, _, index = moe(x, mask)
    assert index.shape == (3,) and (y[0, 3:] == 0).all()
