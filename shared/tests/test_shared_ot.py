"""Optimal transport: exact and entropic plans, W2, Gaussian W2, unit matching."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest

from synthfuse.shared.ot import barycentric_projection, coupling, gaussian_w2, match_units, w2

torch = pytest.importorskip("torch")


def _clouds(n=7, m=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)), a / a.sum(), b / b.sum()


def _random_spd(d, rng):
    A = rng.normal(size=(d, d))
    return A @ A.T + 0.1 * np.eye(d)


# ------------------------------------------------------------------------------- coupling
@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_shared_ot_plan_is_permutation_for_uniform_equal_sizes(n):
    rng = np.random.default_rng(n)
    plan = coupling(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)))
    assert plan.shape == (n, n)
    np.testing.assert_array_equal(np.sort(plan * n, axis=None), np.r_[np.zeros(n * n - n), np.ones(n)])
    np.testing.assert_allclose((plan > 0).sum(0), 1)
    np.testing.assert_allclose((plan > 0).sum(1), 1)


def test_shared_ot_exact_plan_matches_pot_and_is_optimal():
    x, y, a, b = _clouds()
    plan = coupling(x, y, a, b)
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)
    M = ot.dist(x, y)
    assert np.sum(plan * M) == pytest.approx(ot.emd2(a, b, M), rel=1e-12)
    plan_e = coupling(x, y, a, b, metric="euclidean")
    assert np.sum(plan_e * np.sqrt(M)) == pytest.approx(ot.emd2(a, b, np.sqrt(M)), rel=1e-12)


@pytest.mark.parametrize("reg", [0.05, 0.5, 5.0])
def test_shared_ot_sinkhorn_marginals_and_pot_agreement(reg):
    x, y, a, b = _clouds(seed=1)
    plan = coupling(x, y, a, b, reg=reg)
    assert np.abs(plan.sum(1) - a).max() < 1e-6
    assert np.abs(plan.sum(0) - b).max() < 1e-6
    expected = ot.sinkhorn(a, b, ot.dist(x, y), reg, method="sinkhorn_log", stopThr=1e-12, numItermax=100_000)
    np.testing.assert_allclose(plan, expected, atol=1e-8)


def test_shared_ot_sinkhorn_tends_to_exact_plan_and_handles_zero_weights():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3))
    y = x[rng.permutation(6)] + 0.05 * rng.normal(size=(6, 3))  # a clear optimal assignment
    exact = coupling(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges within max_iter
        gaps = [np.abs(coupling(x, y, reg=reg, tol=1e-5) - exact).max() for reg in (0.5, 0.1, 0.02)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6  # P^ε -> P* as ε -> 0
    a = np.array([0.5, 0.0, 0.5])
    plan = coupling(x[:3], y[:2], a, np.array([0.5, 0.5]), reg=1.0)
    assert np.all(np.isfinite(plan)) and plan[1].sum() < 1e-12
    assert np.abs(plan.sum(1) - a).max() < 1e-6


def test_shared_ot_sinkhorn_warns_when_not_converged():
    x, y, a, b = _clouds(seed=3)
    with pytest.warns(RuntimeWarning, match="increase max_iter"):
        coupling(x, y, a, b, reg=0.01, max_iter=3)


def test_shared_ot_torch_in_torch_out():
    x, y, a, b = _clouds(seed=4)
    tx, ty, ta, tb = (torch.tensor(v) for v in (x, y, a, b))
    for reg in (0.0, 0.3):
        plan = coupling(tx, ty, ta, tb, reg=reg)
        assert isinstance(plan, torch.Tensor) and plan.dtype == torch.float64
        np.testing.assert_allclose(plan.numpy(), coupling(x, y, a, b, reg=reg), atol=1e-12)
    plan32 = coupling(tx.float(), ty.float(), reg=0.5)
    assert plan32.dtype == torch.float32 and (plan32.sum(0) - 1 / 5).abs().max() < 1e-5


# -------------------------------------------------------------------------------- w2 / W2
def test_shared_ot_w2_closed_forms():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 2))
    shift = np.array([1.5, -0.5])
    assert w2(x, x + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-12)  # translation
    assert w2(x, x[rng.permutation(8)], squared=True) == pytest.approx(0.0, abs=1e-12)
    # 1-D: the optimal plan is monotone, W2² = mean (sorted x − sorted y)²
    u, v = rng.normal(size=20), rng.normal(size=20) * 2 + 1
    assert w2(u, v, squared=True) == pytest.approx(np.mean((np.sort(u) - np.sort(v)) ** 2), rel=1e-12)
    assert isinstance(w2(u, v), float)
    assert w2([0, 1, 2], [3, 1, 2]) == pytest.approx(1.0, rel=1e-12)  # integer lists: W2² = (1 + 1 + 1)/3


def test_shared_ot_w2_gradient_matches_finite_differences():
    x, y, a, b = _clouds(n=6, m=4, d=2, seed=6)
    tx = torch.tensor(x, requires_grad=True)
    ty, ta, tb = torch.tensor(y), torch.tensor(a), torch.tensor(b)
    for reg, squared in ((0.0, False), (0.0, True)):
        val = w2(tx, ty, ta, tb, reg=reg, squared=squared)
        (grad,) = torch.autograd.grad(val, tx)
        eps = 1e-6
        fd = np.zeros_like(x)
        for i in range(x.shape[0]):
            for k in range(x.shape[1]):
                e = np.zeros_like(x)
                e[i, k] = eps
                fd[i, k] = (w2(x + e, y, a, b, squared=squared) - w2(x - e, y, a, b, squared=squared)) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), fd, atol=1e-6)
    # entropic: the gradient of the detached-plan cost is Σ_j 2 P_ij (x_i − y_j)
    val = w2(tx, ty, ta, tb, reg=0.5, squared=True)
    (grad,) = torch.autograd.grad(val, tx)
    plan = coupling(x, y, a, b, reg=0.5)
    expected = 2 * (plan.sum(1)[:, None] * x - plan @ y)
    np.testing.assert_allclose(grad.numpy(), expected, atol=1e-10)


# ------------------------------------------------------------------------------ Gaussians
def test_shared_ot_gaussian_w2_matches_pot_and_closed_forms():
    rng = np.random.default_rng(7)
    for d in (1, 3, 6):
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        C1, C2 = _random_spd(d, rng), _random_spd(d, rng)
        expected = float(ot.gaussian.bures_wasserstein_distance(m1, m2, C1, C2))
        assert gaussian_w2(m1, C1, m2, C2) == pytest.approx(expected, rel=1e-9)
        assert gaussian_w2(m2, C2, m1, C1) == pytest.approx(expected, rel=1e-9)  # symmetric
        got = gaussian_w2(*(torch.tensor(v) for v in (m1, C1, m2, C2)))
        assert got.shape == () and got.item() == pytest.approx(expected, rel=1e-9)
    # 1-D: (m1 − m2)² + (σ1 − σ2)²
    assert gaussian_w2([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(np.sqrt(9 + 1), rel=1e-12)
    # commuting (diagonal) covariances: ‖m1 − m2‖² + ‖Σ1^½ − Σ2^½‖_F²
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])
    m = np.array([0.5, 0.0, -1.0])
    expected = np.sqrt(np.sum(m**2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2))
    assert gaussian_w2(m, np.diag(s1), np.zeros(3), np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    assert gaussian_w2(m, np.diag(s1), m, np.diag(s1)) == pytest.approx(0.0, abs=1e-7)


def test_shared_ot_gaussian_w2_bad_inputs():
    eye = np.eye(2)
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_w2(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), eye)
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_w2(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), eye)
    with pytest.raises(ValueError, match=r"\(2, 2\) covariance"):
        gaussian_w2(np.zeros(2), np.eye(3), np.zeros(2), eye)
    with pytest.raises(ValueError, match="m2 must be a mean vector"):
        gaussian_w2(np.zeros(2), eye, np.zeros(3), eye)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_w2(np.array([0.0, np.nan]), eye, np.zeros(2), eye)


# ------------------------------------------------------------------- projection, matching
def test_shared_ot_barycentric_projection():
    x, y, a, b = _clouds(seed=8)
    plan = coupling(x, y, a, b, reg=0.2)
    proj = barycentric_projection(plan, y)
    expected = np.stack([(plan[i] / plan[i].sum()) @ y for i in range(len(x))])
    np.testing.assert_allclose(proj, expected, atol=1e-12)
    n = 5
    perm_plan = np.eye(n)[[3, 1, 4, 0, 2]] / n
    ys = np.arange(10.0).reshape(n, 2)
    np.testing.assert_allclose(barycentric_projection(perm_plan, ys), ys[[3, 1, 4, 0, 2]], rtol=1e-15)
    np.testing.assert_allclose(barycentric_projection(perm_plan, ys[:, 0]), ys[[3, 1, 4, 0, 2], 0], rtol=1e-15)
    with pytest.raises(ValueError, match=r"rows \[1\] carry no mass"):
        barycentric_projection(np.array([[1.0, 0.0], [0.0, 0.0]]), ys[:2])
    with pytest.raises(ValueError, match="one row per plan column"):
        barycentric_projection(plan, y[:3])


@pytest.mark.parametrize("n", [1, 5, 64])
def test_shared_ot_match_units_recovers_hidden_permutation(n):
    rng = np.random.default_rng(n)
    W_a = rng.normal(size=(n, 8, 3))  # trailing axes flattened (conv filters)
    hidden = rng.permutation(n)
    W_b = W_a[hidden] + 1e-3 * rng.normal(size=W_a.shape)
    perm = match_units(W_a, W_b)
    assert perm.dtype == np.int64
    np.testing.assert_array_equal(perm, np.argsort(hidden))
    np.testing.assert_allclose(W_b[perm], W_a, atol=1e-2)
    tperm = match_units(torch.tensor(W_a), torch.tensor(W_b))
    assert tperm.dtype == torch.int64 and torch.equal(tperm, torch.as_tensor(perm))


def test_shared_ot_match_units_is_optimal_assignment():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(9)
    W_a, W_b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    perm = match_units(W_a, W_b)
    rows, cols = scipy_optimize.linear_sum_assignment(ot.dist(W_a, W_b))
    cost = ot.dist(W_a, W_b)
    assert cost[np.arange(30), perm].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-12)
    assert sorted(perm.tolist()) == list(range(30))


# -------------------------------------------------------------------------------- errors
def test_shared_ot_bad_inputs_raise_clear_errors():
    x, y, a, b = _clouds()
    with pytest.raises(ValueError, match="same dimension"):
        coupling(x, y[:, :2])
    with pytest.raises(ValueError, match="1-D array of 7 weights"):
        coupling(x, y, a[:3], b)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        coupling(bad, y)
    with pytest.raises(ValueError, match="y contains NaN"):
        w2(x, np.where(y > 0, np.inf, y))
    neg = a.copy()
    neg[0] = -0.1
    with pytest.raises(ValueError, match="negative weights"):
        coupling(x, y, neg, b)
    with pytest.raises(ValueError, match="same total mass"):
        coupling(x, y, a, 2 * b)
    with pytest.raises(ValueError, match="reg must be"):
        coupling(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="metric must be one of"):
        coupling(x, y, metric="cosine")
    with pytest.raises(ValueError, match=r"non-empty \(n, d\)"):
        coupling(np.zeros((0, 3)), y)
    with pytest.raises(TypeError, match="one library"):
        coupling(torch.tensor(x), y)
    with pytest.raises(ValueError, match="same shape"):
        match_units(x, x[:5])
    with pytest.raises(ValueError, match="W_b contains NaN"):
        match_units(x, bad)


def test_shared_ot_no_warnings_on_clean_inputs():
    x, y, a, b = _clouds()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coupling(x, y, a, b, reg=0.1)
        w2(x, y, a, b)
        match_units(x, x[::-1])


@pytest.mark.cuda
def test_shared_ot_cuda_tensors():
    x, y, a, b = _clouds(seed=10)
    tx, ty, ta, tb = (torch.tensor(v, device="cuda") for v in (x, y, a, b))
    for reg in (0.0, 0.5):
        plan = coupling(tx, ty, ta, tb, reg=reg)
        assert plan.device.type == "cuda"
        np.testing.assert_allclose(plan.cpu().numpy(), coupling(x, y, a, b, reg=reg), atol=1e-10)
    tx.requires_grad_(True)
    val = w2(tx, ty, ta, tb)
    (grad,) = torch.autograd.grad(val, tx)
    assert grad.device.type == "cuda" and val.item() == pytest.approx(w2(x, y, a, b), rel=1e-10)
    perm = match_units(tx.detach(), tx.detach()[[3, 0, 6, 1, 2, 5, 4]])
    assert perm.device.type == "cuda" and perm.tolist() == [1, 3, 4, 0, 6, 5, 2]
    rng = np.random.default_rng(11)
    m1, m2, C1, C2 = rng.normal(size=3), rng.normal(size=3), _random_spd(3, rng), _random_spd(3, rng)
    got = gaussian_w2(*(torch.tensor(v, device="cuda") for v in (m1, C1, m2, C2)))
    assert got.item() == pytest.approx(gaussian_w2(m1, C1, m2, C2), rel=1e-9)
