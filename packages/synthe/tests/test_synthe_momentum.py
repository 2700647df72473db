"""Momentum layer: chunked scalar-decay linear attention vs the per-token recurrence."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe.layers import MomentumLayer
from synthfuse.synthe.layers._common import l2_normalize
from synthfuse.synthe.layers.momentum import _naive_decayed_linear_attention, chunk_decayed_linear_attention

CASES = [
    pytest.param(t, c, dtype, id=f"T{t}-C{c}-{str(dtype)[6:]}")
    for dtype in (torch.float64, torch.float32)
    for t in (1, 15, 63, 64, 65, 300)
    for c in (16, 32, 64)
]


def make_inputs(t, dtype, b=2, h=2, dk=8, dv=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = l2_normalize(torch.randn(b, h, t, dk, generator=g, dtype=dtype))
    k = l2_normalize(torch.randn(b, h, t, dk, generator=g, dtype=dtype))
    v = torch.randn(b, h, t, dv, generator=g, dtype=dtype)
    log_decay = -2.0 * torch.rand(b, h, t, generator=g, dtype=dtype)
    s0 = torch.randn(b, h, dk, dv, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (q, k, v, log_decay, s0)]


@pytest.mark.parametrize("t,c,dtype", CASES)
def test_chunked_matches_naive_outputs_state_and_gradients(t, c, dtype, rel_err, tolerance):
    inputs = make_inputs(t, dtype)
    results = []
    for fn in (lambda *x: chunk_decayed_linear_attention(*x, chunk_size=c), _naive_decayed_linear_attention):
        o, s = fn(*inputs)
        g = torch.Generator().manual_seed(1)
        loss = (o * torch.randn(o.shape, generator=g, dtype=dtype)).sum() + (s * torch.randn(s.shape, generator=g, dtype=dtype)).sum()
        results.append((o, s, torch.autograd.grad(loss, inputs)))
    (o1, s1, g1), (o2, s2, g2) = results
    tol = tolerance[dtype]
    assert rel_err(o1, o2) <= tol and rel_err(s1, s2) <= tol
    for name, a, b in zip(("q", "k", "v", "log_decay", "S0"), g1, g2):
        assert rel_err(a, b) <= tol, name


def test_constant_input_gives_the_ema_closed_form():
    """Known answer: in the layer's parametrisation (write strength 1 - lambda) a constant key
    and value with constant lambda give M_t = (1 - lambda^t) k v^T from M_0 = 0."""
    dtype, t, lam = torch.float64, 40, 0.9
    k = torch.tensor([0.6, 0.8], dtype=dtype)
    v = torch.tensor([1.0, -2.0, 3.0], dtype=dtype)
    log_decay = torch.full((1, 1, t), torch.log(torch.tensor(lam, dtype=dtype)).item(), dtype=dtype)
    kk = k.expand(1, 1, t, 2)
    vv = ((1 - lam) * v).expand(1, 1, t, 3)
    o, s = chunk_decayed_linear_attention(kk, kk, vv, log_decay, torch.zeros(1, 1, 2, 3, dtype=dtype), 16)
    steps = torch.arange(1, t + 1, dtype=dtype)
    expected = (1 - lam**steps).unsqueeze(-1) * v  # q = k, |k| = 1
    torch.testing.assert_close(o[0, 0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s[0, 0], (1 - lam**t) * torch.outer(k, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [1, 40])
def test_layer_chunked_matches_token_by_token(t, rel_err):
    torch.manual_seed(0)
    layer = MomentumLayer(16, 2, chunk_size=16).double()
    x = torch.randn(2, t, 16, dtype=torch.float64)
    state = {"memory": torch.randn(2, 2, 8, 8, dtype=torch.float64)}
    mask = torch.rand(2, t) > 0.25
    y1, s1 = layer(x, state, mask)
    grads1 = torch.autograd.grad(y1.pow(2).sum() + s1["memory"].sum(), list(layer.parameters()))
    y2, s2 = layer._naive_forward(x, state, mask)
    grads2 = torch.autograd.grad(y2.pow(2).sum() + s2["memory"].sum(), list(layer.parameters()))
    assert rel_err(y1, y2) <= 1e-10 and rel_err(s1["memory"], s2["memory"]) <= 1e-10
    for (name, _), a, b in zip(layer.named_parameters(), grads1, grads2):
        assert rel_err(a, b) <= 1e-10, name
    assert torch.equal(y1[~mask], torch.zeros_like(y1[~mask]))


def test_absent_tokens_leave_the_memory_bit_identical():
    layer = MomentumLayer(16, 2).double()
    _, state = layer(torch.randn(1, 9, 16, dtype=torch.float64))
    for t in (1, 5):
        _, after = layer(torch.randn(1, t, 16, dtype=torch.float64), state, torch.zeros(1, t, dtype=torch.bool))
        assert torch.equal(after["memory"], state["memory"])
