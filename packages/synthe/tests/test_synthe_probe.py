"""Attention probe: blocked (training) and gathered (inference) forms vs references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synthfuse.synthe.layers import AttentionProbe
from synthfuse.synthe.layers.probe import _naive_sliding_window_attention


def setup(window, t, seed=0, d=16, heads=2):
    torch.manual_seed(seed)
    probe = AttentionProbe(d, heads, window=window, threshold=0.5).double()
    x = torch.randn(2, t, d, dtype=torch.float64)
    confidence = torch.rand(2, t, dtype=torch.float64)
    mask = torch.rand(2, t) > 0.2
    return probe, x, confidence, mask


@pytest.mark.parametrize("window", [1, 4, 16])
@pytest.mark.parametrize("t", [1, 15, 37, 64])
def test_training_inference_and_token_loop_agree(window, t, rel_err):
    probe, x, confidence, mask = setup(window, t)
    y_train, s_train = probe(x, None, mask, confidence)
    with torch.no_grad():
        y_infer, s_infer = probe(x, None, mask, confidence)
    y_loop, s_loop = probe._naive_forward(x, None, mask, confidence)
    assert rel_err(y_train, y_loop) <= 1e-12 and rel_err(y_infer, y_loop) <= 1e-12
    for key in ("keys", "values"):
        assert rel_err(s_train[key], s_loop[key]) <= 1e-12 and rel_err(s_infer[key], s_loop[key]) <= 1e-12
    assert torch.equal(s_train["valid"], s_loop["valid"])


@pytest.mark.parametrize("window", [1, 5, 16])
def test_matches_full_masked_attention_oracle(window, rel_err):
    probe, x, confidence, mask = setup(window, 40)
    y, _ = probe(x, None, mask, confidence)
    b, t, d = x.shape
    q = F.linear(x, probe.q_proj.weight).view(b, t, 2, 8)
    k, v = (F.linear(x, probe.kv_proj.weight) * mask.unsqueeze(-1)).view(b, t, 2, 2, 8).unbind(2)
    attended = _naive_sliding_window_attention(q, k, v, mask, window).reshape(b, t, d)
    fire = mask & (confidence < 0.5)
    expected = F.linear(attended, probe.out_proj.weight) * fire.unsqueeze(-1)
    assert rel_err(y, expected) <= 1e-12
    assert torch.equal(y[~fire], torch.zeros_like(y[~fire]))  # silent where confident or absent


def test_gradients_match_token_loop(rel_err):
    probe, x, confidence, mask = setup(6, 30)
    grads = []
    for fn in (probe, probe._naive_forward):
        y, s = fn(x, None, mask, confidence)
        grads.append(torch.autograd.grad(y.pow(2).sum() + s["keys"].sum(), list(probe.parameters())))
    for (name, _), a, b in zip(probe.named_parameters(), *grads):
        assert rel_err(a, b) <= 1e-12, name


def test_streaming_with_window_cache(rel_err):
    probe, x, confidence, mask = setup(8, 50)
    full, _ = probe(x, None, mask, confidence)
    state, pieces, start = None, [], 0
    for size in (3, 1, 13, 8, 25):
        y, state = probe(x[:, start : start + size], state, mask[:, start : start + size], confidence[:, start : start + size])
        pieces.append(y)
        start += size
    assert rel_err(torch.cat(pieces, 1), full) <= 1e-12


def test_inference_computes_queries_only_for_firing_tokens():
    probe, x, confidence, mask = setup(8, 50)
    rows = []
    probe.q_proj.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    with torch.no_grad():
        probe(x, None, mask, confidence)
    fire = mask & (confidence < probe.threshold)
    assert rows == [int(fire.sum())] and 0 < rows[0] < mask.sum()


def test_window_limits_what_a_token_sees():
    probe, x, _, _ = setup(4, 20)
    x2 = x.clone()
    x2[:, 10] += 1.0
    y, y2 = probe(x), probe(x2)
    assert torch.equal(y[0][:, :10], y2[0][:, :10])  # causal
    assert torch.equal(y[0][:, 14:], y2[0][:, 14:])  # beyond the window (tokens 14+ see 11..)
    assert not torch.equal(y[0][:, 10:14], y2[0][:, 10:14])


def test_absent_tokens_move_the_window_and_leave_empty_slots():
    probe, x, _, _ = setup(6, 9)
    _, state = probe(x)
    _, after = probe(torch.randn(2, 2, 16, dtype=torch.float64), state, torch.zeros(2, 2, dtype=torch.bool))
    expected = probe.advance_absent(state, 2)
    assert all(torch.equal(after[k], expected[k]) for k in after)
    assert not after["valid"][:, -2:].any() and after["valid"][:, :-2].all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window"):
        AttentionProbe(16, 2, window=0)
    probe = AttentionProbe(16, 2)
    with pytest.raises(ValueError, match="confidence"):
        probe(torch.randn(1, 5, 16), confidence=torch.rand(1, 4))
