"""Gated delta rule: chunkwise (UT transform) form vs the textbook per-token recurrence."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe.layers import DeltaLayer
from synthfuse.synthe.layers._chunk import unit_lower_inverse
from synthfuse.synthe.layers._common import l2_normalize
from synthfuse.synthe.layers.delta import _naive_gated_delta_rule, chunk_gated_delta_rule, gated_delta_rule_step

CASES = [
    pytest.param(t, c, dtype, id=f"T{t}-C{c}-{str(dtype)[6:]}")
    for dtype in (torch.float64, torch.float32)
    for t in (1, 15, 63, 64, 65, 300)
    for c in (16, 32, 64)
]


def make_inputs(t, dtype, b=2, h=2, dk=8, dv=6, seed=0, gated=True):
    g = torch.Generator().manual_seed(seed)
    q = l2_normalize(torch.randn(b, h, t, dk, generator=g, dtype=dtype))
    k = l2_normalize(torch.randn(b, h, t, dk, generator=g, dtype=dtype))
    v = torch.randn(b, h, t, dv, generator=g, dtype=dtype)
    beta = torch.rand(b, h, t, generator=g, dtype=dtype)
    log_alpha = -2.0 * torch.rand(b, h, t, generator=g, dtype=dtype) if gated else torch.zeros(b, h, t, dtype=dtype)
    s0 = torch.randn(b, h, dk, dv, generator=g, dtype=dtype)
    return [x.requires_grad_() for x in (q, k, v, beta, log_alpha, s0)]


def outputs_and_grads(fn, inputs, seed=1):
    o, s = fn(*inputs)
    g = torch.Generator().manual_seed(seed)
    loss = (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    grads = torch.autograd.grad(loss, inputs)
    return o, s, grads


@pytest.mark.parametrize("t,c,dtype", CASES)
def test_chunked_matches_naive_outputs_state_and_gradients(t, c, dtype, rel_err, tolerance):
    inputs = make_inputs(t, dtype)
    o1, s1, g1 = outputs_and_grads(lambda *x: chunk_gated_delta_rule(*x, chunk_size=c), inputs)
    o2, s2, g2 = outputs_and_grads(_naive_gated_delta_rule, inputs)
    tol = tolerance[dtype]
    assert rel_err(o1, o2) <= tol
    assert rel_err(s1, s2) <= tol
    for name, a, b in zip(("q", "k", "v", "beta", "log_alpha", "S0"), g1, g2):
        assert rel_err(a, b) <= tol, name


def test_ungated_chunked_matches_naive(rel_err):
    inputs = make_inputs(100, torch.float64, gated=False)
    o1, s1, _ = outputs_and_grads(lambda *x: chunk_gated_delta_rule(*x, chunk_size=32), inputs)
    o2, s2, _ = outputs_and_grads(_naive_gated_delta_rule, inputs)
    assert rel_err(o1, o2) <= 1e-10 and rel_err(s1, s2) <= 1e-10


def test_step_is_one_token_of_the_recurrence(rel_err):
    q, k, v, beta, log_alpha, s0 = (x.detach() for x in make_inputs(1, torch.float64))
    o1, s1 = gated_delta_rule_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], beta[..., 0], log_alpha[..., 0], s0)
    o2, s2 = _naive_gated_delta_rule(q, k, v, beta, log_alpha, s0)
    assert rel_err(o1, o2[:, :, 0]) <= 1e-14 and rel_err(s1, s2) <= 1e-14


def test_delta_rule_overwrites_an_association():
    """Known answer: with beta = 1 and alpha = 1, writing (k1, v1), (k2, v2), (k1, v3) with
    orthonormal keys leaves S^T k1 = v3 (overwritten, not v1 + v3) and S^T k2 = v2."""
    dtype = torch.float64
    k1, k2 = torch.eye(4, dtype=dtype)[0], torch.eye(4, dtype=dtype)[1]
    v = torch.randn(3, 5, dtype=dtype)
    k = torch.stack([k1, k2, k1]).view(1, 1, 3, 4)
    q = torch.stack([k1, k2, k1]).view(1, 1, 3, 4)
    ones, zeros = torch.ones(1, 1, 3, dtype=dtype), torch.zeros(1, 1, 3, dtype=dtype)
    o, s = chunk_gated_delta_rule(q, k, v.view(1, 1, 3, 5), ones, zeros, torch.zeros(1, 1, 4, 5, dtype=dtype), 4)
    torch.testing.assert_close(s[0, 0].T @ k1, v[2], rtol=0, atol=1e-14)
    torch.testing.assert_close(s[0, 0].T @ k2, v[1], rtol=0, atol=1e-14)
    torch.testing.assert_close(o[0, 0], v, rtol=0, atol=1e-14)  # each read right after its write


@pytest.mark.parametrize("c", [1, 2, 16, 64])
def test_unit_lower_inverse_is_the_inverse(c, rel_err):
    # Entries of the size the delta rule produces (|beta k_i . k_j| <= 1, here ~0.3).
    a = 0.3 * torch.randn(3, c, c, dtype=torch.float64).tril(-1)
    inv = unit_lower_inverse(a)
    eye = torch.eye(c, dtype=torch.float64)
    assert rel_err(inv, torch.linalg.inv(eye + a)) <= 1e-12
    assert rel_err((eye + a) @ inv, eye.expand(3, c, c)) <= 1e-12
    assert torch.equal(inv.triu(1), torch.zeros_like(inv))  # exact zeros above the diagonal
    assert torch.equal(inv.diagonal(dim1=-2, dim2=-1), torch.ones(3, c, dtype=torch.float64))


def test_repeated_key_is_stable_in_float32(rel_err):
    """A chunk of identical keys with beta = 1: the Neumann series of (I + A)^{-1} would sum
    binomially large terms; the block-doubling inverse stays accurate."""
    b, h, t, d = 1, 1, 64, 8
    k = l2_normalize(torch.ones(b, h, t, d)).expand(b, h, t, d).contiguous()
    v = torch.randn(b, h, t, d)
    args = (k, k, v, torch.ones(b, h, t), torch.zeros(b, h, t), torch.zeros(b, h, d, d))
    o1, s1 = chunk_gated_delta_rule(*args, chunk_size=64)
    o2, s2 = _naive_gated_delta_rule(*args)
    assert torch.isfinite(o1).all()
    assert rel_err(o1, o2) <= 1e-5 and rel_err(s1, s2) <= 1e-5


def test_identity_steps_never_change_the_state(rel_err):
    """Padding steps (beta = 0, log_alpha = 0) leave the state bit-identical in the recurrence,
    and the chunked form (which pads internally to a chunk multiple) agrees."""
    q, k, v, beta, log_alpha, s0 = (x.detach() for x in make_inputs(20, torch.float64))
    padded = [torch.cat([x, torch.randn_like(x[:, :, :7])], dim=2) for x in (q, k, v)]
    beta_p = torch.cat([beta, torch.zeros_like(beta[:, :, :7])], dim=2)
    alpha_p = torch.cat([log_alpha, torch.zeros_like(log_alpha[:, :, :7])], dim=2)
    _, s_plain = _naive_gated_delta_rule(q, k, v, beta, log_alpha, s0)
    _, s_padded = _naive_gated_delta_rule(*padded, beta_p, alpha_p, s0)
    assert torch.equal(s_plain, s_padded)
    _, s_chunk = chunk_gated_delta_rule(*padded, beta_p, alpha_p, s0, chunk_size=16)
    assert rel_err(s_chunk, s_plain) <= 1e-12


@pytest.mark.parametrize("t", [1, 33, 70])
def test_layer_chunked_matches_token_by_token(t, rel_err):
    torch.manual_seed(0)
    layer = DeltaLayer(16, 2, conv_size=4, chunk_size=16).double()
    x = torch.randn(2, t, 16, dtype=torch.float64)
    state = {k: torch.randn_like(v) for k, v in layer.init_state(2, dtype=torch.float64).items()}
    mask = torch.rand(2, t) > 0.25
    y1, s1 = layer(x, state, mask)
    grads1 = torch.autograd.grad(y1.pow(2).sum() + s1["memory"].sum(), list(layer.parameters()))
    y2, s2 = layer._naive_forward(x, state, mask)
    grads2 = torch.autograd.grad(y2.pow(2).sum() + s2["memory"].sum(), list(layer.parameters()))
    assert rel_err(y1, y2) <= 1e-10
    assert rel_err(s1["memory"], s2["memory"]) <= 1e-10 and rel_err(s1["conv"], s2["conv"]) <= 1e-12
    for (name, _), a, b in zip(layer.named_parameters(), grads1, grads2):
        assert rel_err(a, b) <= 1e-10, name
    assert torch.equal(y1[~mask], torch.zeros_like(y1[~mask]))  # absent tokens: exactly no output


def test_layer_absent_tokens_only_move_the_window():
    layer = DeltaLayer(16, 2).double()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    _, state = layer(x)
    _, after = layer(torch.randn(2, 3, 16, dtype=torch.float64), state, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(after["memory"], state["memory"])
    assert torch.equal(after["conv"], layer.advance_absent(state, 3)["conv"])


def test_layer_rejects_bad_input():
    layer = DeltaLayer(16, 2)
    with pytest.raises(ValueError, match="batch, time, 16"):
        layer(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.full((1, 3, 16), float("nan")))
    with pytest.raises(ValueError, match="state"):
        layer(torch.randn(3, 5, 16), layer.init_state(2))
    with pytest.raises(ValueError, match="divisible"):
        DeltaLayer(10, 3)
    with pytest.raises(ValueError, match="power of two"):
        DeltaLayer(16, 2, chunk_size=24)


@pytest.mark.parametrize("dt_range", [(1e-3, 1e-1), (1e-4, 1e-3)])
def test_initial_forgetting_rate_follows_dt_range(dt_range):
    """Initial per-token rate ``-log alpha = exp(A) softplus(dt)`` at zero input lies in
    [dt_low, 16 dt_high]; the slow range keeps > 35% of a memory over 64 tokens in every head."""
    torch.manual_seed(0)
    layers = [DeltaLayer(32, 8, dt_range=dt_range) for _ in range(8)]
    rate = torch.cat([layer.A_log.exp() * torch.nn.functional.softplus(layer.dt_bias) for layer in layers]).detach()
    step = torch.cat([torch.nn.functional.softplus(layer.dt_bias) for layer in layers]).detach()
    assert step.min() >= dt_range[0] * (1 - 1e-5) and step.max() <= dt_range[1] * (1 + 1e-5)
    assert rate.min() >= dt_range[0] * (1 - 1e-5) and rate.max() <= 16 * dt_range[1] * (1 + 1e-5)
    if dt_range[1] <= 1e-3:
        assert torch.exp(-64 * rate).min() > 0.35
    with pytest.raises(ValueError, match="dt_range"):
        DeltaLayer(32, 8, dt_range=(0.0, 1e-3))
