"""The LM head at scored positions only: same losses and gradients as the full head."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe import Synthe, TransformerBaseline, TransformerConfig
from synthfuse.synthe.head import head_and_loss


def _masked_targets(vocab: int, shape: tuple[int, int], scored_fraction: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, vocab, shape, generator=gen)
    return targets.masked_fill(torch.rand(shape, generator=gen) >= scored_fraction, -100)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(model, ids, targets, scored: bool, **kw):
    model.zero_grad(set_to_none=True)
    out = model(ids, targets=targets, scored_logits=scored, **kw)
    out["loss"].backward()
    return out, _grads(model)


def _max_grad_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


@pytest.mark.parametrize("fraction", [0.15, 1.0], ids=["partial-mask", "full-mask"])
def test_synthe_scored_head_equals_full_head(small_config, fraction):
    """Training mode with the router objective on: LM loss, router loss, logits and every gradient."""
    torch.manual_seed(0)
    model = Synthe(small_config(router_aux_weight=0.5, router_aux_stride=3)).train()
    ids = torch.randint(0, 61, (3, 40), generator=torch.Generator().manual_seed(1))
    targets = _masked_targets(61, (3, 40), fraction)
    full, g_full = _run(model, ids, targets, False, early_exit=False)
    scored, g_scored = _run(model, ids, targets, True, early_exit=False)
    keep = targets != -100
    assert full["losses"]["router_aux"] is not None and 0 < int(keep.sum()) <= 120
    assert scored["logits"].shape == (int(keep.sum()), 61)
    assert (scored["logits"] - full["logits"][keep]).abs().max().item() <= 1e-6
    for term in ("lm", "router_aux"):
        assert abs(scored["losses"][term].item() - full["losses"][term].item()) <= 1e-6
    assert _max_grad_diff(g_scored, g_full) <= 1e-6
    assert any(".heads." in n for n in g_scored)  # the exit heads are trained on the gathered rows too


def test_transformer_scored_head_equals_full_head():
    torch.manual_seed(0)
    model = TransformerBaseline(TransformerConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2)).train()
    ids = torch.randint(0, 50, (2, 30), generator=torch.Generator().manual_seed(2))
    targets = _masked_targets(50, (2, 30), 0.2)
    full, g_full = _run(model, ids, targets, False)
    scored, g_scored = _run(model, ids, targets, True)
    assert abs(scored["loss"].item() - full["loss"].item()) <= 1e-6
    assert _max_grad_diff(g_scored, g_full) <= 1e-6
    assert torch.allclose(scored["logits"], full["logits"][targets != -100], atol=1e-6)


def test_head_and_loss_known_answer_and_errors():
    """Uniform logits: the loss is ln V whatever is scored; nothing scored gives 0/0 = NaN."""
    hidden = torch.zeros(2, 5, 3)
    head = torch.nn.Linear(3, 7)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    targets = torch.full((2, 5), -100).index_put_((torch.tensor([0, 1]), torch.tensor([4, 1])), torch.tensor([3, 6]))
    logits, loss = head_and_loss(head, hidden, targets, scored_only=True)
    assert logits.shape == (2, 7) and loss.item() == pytest.approx(torch.log(torch.tensor(7.0)).item(), abs=1e-6)
    assert torch.isnan(head_and_loss(head, hidden, torch.full((2, 5), -100), scored_only=True)[1])
    assert head_and_loss(head, hidden, None)[1] is None
    with pytest.raises(ValueError, match="targets"):
        head_and_loss(head, hidden, None, scored_only=True)
