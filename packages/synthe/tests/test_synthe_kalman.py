"""Kalman layer: parallel scan vs the textbook filter, confidence from past tokens only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthfuse.synthe.layers import KalmanLayer
from synthfuse.synthe.layers.kalman import IOR_EPS, _naive_kalman_filter, kalman_filter_scan

CASES = [
    pytest.param(t, dtype, id=f"T{t}-{str(dtype)[6:]}")
    for dtype in (torch.float64, torch.float32)
    for t in (1, 15, 63, 64, 65, 300)
]


def make_inputs(t, dtype, b=2, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, t, n, generator=g, dtype=dtype)
    r = torch.rand(b, t, n, generator=g, dtype=dtype) * 2 + 0.05
    a = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    q = torch.rand(n, generator=g, dtype=dtype) + 0.01
    m0 = torch.randn(b, n, generator=g, dtype=dtype)
    p0 = torch.rand(b, n, generator=g, dtype=dtype) + 0.1
    return [x.requires_grad_() for x in (z, r, a, q, m0, p0)]


@pytest.mark.parametrize("t,dtype", CASES)
def test_scan_matches_naive_outputs_state_and_gradients(t, dtype, rel_err, tolerance):
    inputs = make_inputs(t, dtype)
    mask = torch.rand(2, t, generator=torch.Generator().manual_seed(3)) > 0.2
    results = []
    for fn in (kalman_filter_scan, _naive_kalman_filter):
        mean, var, pred = fn(*inputs, mask)
        g = torch.Generator().manual_seed(1)
        loss = sum((x * torch.randn(x.shape, generator=g, dtype=dtype)).sum() for x in (mean, var, pred))
        results.append((mean, var, pred, torch.autograd.grad(loss, inputs)))
    tol = tolerance[dtype]
    for a, b in zip(results[0][:3], results[1][:3]):  # final state = last row of mean and variance
        assert rel_err(a, b) <= tol
    for name, a, b in zip(("z", "r", "a", "q", "mean0", "var0"), results[0][3], results[1][3]):
        assert rel_err(a, b) <= tol, name


def textbook_kalman_filter(z, f, h, q, r, x0, p0):
    """Kalman (1960) in matrix form: predict with F, Q; update with H, R (numpy, float64)."""
    x, p = x0, p0
    means, covs = [], []
    eye = np.eye(len(x0))
    for z_t in z:
        x_pred, p_pred = f @ x, f @ p @ f.T + q
        s = h @ p_pred @ h.T + r
        k = p_pred @ h.T @ np.linalg.inv(s)
        x = x_pred + k @ (z_t - h @ x_pred)
        p = (eye - k @ h) @ p_pred
        means.append(x)
        covs.append(p)
    return np.array(means), np.array(covs)


def configured_layer(a, q, r, n):
    """A KalmanLayer that observes its input directly: z = x, R = r, transition a, noise q."""
    layer = KalmanLayer(n).double()
    with torch.no_grad():
        layer.in_proj.weight.zero_()
        layer.in_proj.weight[:n] = torch.eye(n)
        layer.log_r_bias.copy_(torch.log(torch.as_tensor(r)))
        layer.log_q.copy_(torch.log(torch.as_tensor(q)))
        layer.transition_logit.copy_(torch.logit(torch.as_tensor(a)))
    return layer


def test_layer_matches_textbook_filter_on_linear_gaussian_system():
    rng = np.random.default_rng(0)
    n, t = 3, 400
    a, q, r = np.array([0.95, 0.7, 0.99]), np.array([0.1, 0.5, 0.01]), np.array([1.0, 0.2, 2.0])
    x_true = np.zeros((t, n))
    state = rng.normal(0, np.sqrt(q / (1 - a**2)))
    for i in range(t):
        state = a * state + rng.normal(0, np.sqrt(q))
        x_true[i] = state
    z = x_true + rng.normal(0, np.sqrt(r), size=(t, n))

    means, covs = textbook_kalman_filter(z, np.diag(a), np.eye(n), np.diag(q), np.diag(r), np.zeros(n), np.diag(q / (1 - a**2)))
    out = configured_layer(a, q, r, n).filter(torch.from_numpy(z).unsqueeze(0))
    np.testing.assert_allclose(out.mean[0].detach().numpy(), means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.variance[0].detach().numpy(), np.diagonal(covs, axis1=1, axis2=2), rtol=1e-10)
    # The filter beats the raw observations on every channel.
    assert (((out.mean[0].detach().numpy() - x_true) ** 2).mean(0) < ((z - x_true) ** 2).mean(0)).all()


def test_variance_converges_to_the_riccati_fixed_point():
    """Known answer: with constant noise, P_t -> the positive root of
    a^2 P^2 + (Q + R - a^2 R) P - R Q = 0."""
    a, q, r = np.array([0.9, 0.5]), np.array([0.2, 1.0]), np.array([0.5, 0.1])
    layer = configured_layer(a, q, r, 2)
    out = layer.filter(torch.zeros(1, 200, 2, dtype=torch.float64))
    b = q + r - a**2 * r
    fixed = (-b + np.sqrt(b**2 + 4 * a**2 * r * q)) / (2 * a**2)
    np.testing.assert_allclose(out.variance[0, -1].detach().numpy(), fixed, rtol=1e-12)


def test_confidence_is_high_when_predictable_and_low_on_surprise():
    n = 4
    layer = configured_layer(np.full(n, 0.999), np.full(n, 1e-4), np.full(n, 0.01), n)
    x = torch.ones(1, 60, n, dtype=torch.float64)
    x[0, 50:] = -1.0  # a surprise at token 50
    out = layer.filter(x)
    conf = out.confidence[0].detach()
    assert conf[40:50].min() > 0.99  # IOR ~ 0 -> confidence ~ 1
    assert conf[50] < 0.05  # innovation ~ -2, observation 1: IOR ~ 4
    z, pred = x[0, 50], out.prediction[0, 50].detach()
    ior = ((z - pred) ** 2).sum() / ((z**2).sum() + IOR_EPS * n)
    assert math.isclose(conf[50].item(), math.exp(-ior.item()), rel_tol=1e-12)


def test_confidence_uses_past_tokens_only():
    """The prediction at token t depends on tokens < t only; the confidence at t on tokens <= t."""
    torch.manual_seed(0)
    layer = KalmanLayer(8).double()
    x = torch.randn(2, 30, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 17] += 1.0
    a, b = layer.filter(x), layer.filter(x2)
    assert torch.equal(a.prediction[:, :18], b.prediction[:, :18])
    assert torch.equal(a.confidence[:, :17], b.confidence[:, :17])
    assert not torch.equal(a.confidence[:, 17], b.confidence[:, 17])


@pytest.mark.parametrize("t", [1, 40])
def test_layer_parallel_matches_token_by_token(t, rel_err):
    torch.manual_seed(0)
    layer = KalmanLayer(12, d_state=6).double()
    x = torch.randn(2, t, 12, dtype=torch.float64)
    state = {"mean": torch.randn(2, 6, dtype=torch.float64), "variance": torch.rand(2, 6, dtype=torch.float64) + 0.1}
    mask = torch.rand(2, t) > 0.25
    fast, slow = layer.filter(x, state, mask), layer._naive_filter(x, state, mask)
    for field in ("y", "mean", "variance", "prediction", "confidence"):
        assert rel_err(getattr(fast, field), getattr(slow, field)) <= 1e-10, field
    for key in ("mean", "variance"):
        assert rel_err(fast.state[key], slow.state[key]) <= 1e-10
    grads = [torch.autograd.grad(o.y.pow(2).sum() + o.confidence.sum(), list(layer.parameters())) for o in (fast, slow)]
    for (name, _), a, b in zip(layer.named_parameters(), *grads):
        assert rel_err(a, b) <= 1e-10, name


def test_absent_tokens_leave_the_filter_bit_identical():
    layer = KalmanLayer(8).double()
    _, state = layer(torch.randn(1, 9, 8, dtype=torch.float64))
    for t in (1, 6):
        _, after = layer(torch.randn(1, t, 8, dtype=torch.float64), state, torch.zeros(1, t, dtype=torch.bool))
        assert all(torch.equal(after[k], state[k]) for k in state)


def test_fresh_state_is_the_stationary_prior():
    layer = KalmanLayer(5)
    a, q = layer.transition(), layer.process_noise()
    state = layer.init_state(3)
    torch.testing.assert_close(state["variance"], (q / (1 - a**2)).expand(3, 5).detach())
    assert not state["mean"].any()
