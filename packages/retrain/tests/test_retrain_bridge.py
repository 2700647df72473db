"""Schrödinger bridge math: Sinkhorn + Brownian bridges vs the closed-form Gaussian bridge."""

import math

import numpy as np
import pytest
import torch

from synthfuse.retrain.bridge import (
    bridge_points, coupling_statistics, entropic_plan, gaussian_schrodinger_bridge,
)

A = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
B = torch.tensor([[0.6, -0.2], [-0.2, 1.4]], dtype=torch.float64)
MA, MB = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([2.0, -1.0], dtype=torch.float64)


def _exact_sample(mean, cov, n, seed):
    """n points whose empirical mean and covariance (1/n) are exactly mean, cov."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    w, V = torch.linalg.eigh(z.T @ z / n)
    z = z @ (V / w.sqrt()) @ V.T
    return z @ torch.linalg.cholesky(cov).T + mean


def test_one_dimensional_cross_covariance_solves_the_schrodinger_system():
    # 1-D: the plan's precision has off-diagonal -1/σ², so c² + σ²c − AB = 0
    a, b, s2 = 2.0, 0.5, 0.7
    c = float(gaussian_schrodinger_bridge([0.0], [[a]], [1.0], [[b]], s2).cross_covariance)
    assert c * c + s2 * c - a * b == pytest.approx(0.0, abs=1e-12)
    # σ² → 0: the OT (Bures–Wasserstein) coupling, cost = W2²
    from synthfuse.shared.ot import gaussian_w2
    g = gaussian_schrodinger_bridge(MA, A, MB, B, 1e-9)
    assert g.transport_cost == pytest.approx(float(gaussian_w2(MA.numpy(), A.numpy(), MB.numpy(), B.numpy())) ** 2, rel=1e-6)


@pytest.mark.parametrize("sigma2", [0.5, 1.0])
def test_sinkhorn_plus_brownian_bridge_matches_closed_form(sigma2):
    n = 800
    x0, x1 = _exact_sample(MA, A, n, 0), _exact_sample(MB, B, n, 1)
    plan = entropic_plan(x0, x1, sigma2)
    stats = coupling_statistics(x0, x1, plan)
    exact = gaussian_schrodinger_bridge(MA, A, MB, B, sigma2)
    rel = lambda u, v: float((u - v).norm() / v.norm())
    assert rel(stats.cov0, A) < 1e-6 and rel(stats.cov1, B) < 1e-6
    assert rel(stats.cross_covariance, exact.cross_covariance) < 0.05
    assert stats.transport_cost == pytest.approx(exact.transport_cost, rel=0.05)
    times = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    pts, _, _ = bridge_points(x0, x1, plan, times, sigma2, n_samples=40000, generator=torch.Generator().manual_seed(2))
    for k, t in enumerate(times.tolist()):
        m, C = exact.marginal(t)
        emp = pts[:, k]
        assert float((emp.mean(0) - m).norm()) < 0.05 * max(1.0, float(m.norm()))
        assert rel(torch.cov(emp.T), C) < 0.05


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_schrodinger_bridge(MA, torch.zeros(2, 2), MB, B, 1.0)
    with pytest.raises(ValueError, match="sigma2"):
        gaussian_schrodinger_bridge(MA, A, MB, B, 0.0)
    with pytest.raises(ValueError, match="dimension"):
        gaussian_schrodinger_bridge(MA, A, MB[:1], B[:1, :1], 1.0)
    with pytest.raises(ValueError, match="t must"):
        gaussian_schrodinger_bridge(MA, A, MB, B, 1.0).marginal(1.5)


def _sb(pair, problem, seed=0, **options):
    from synthfuse.retrain import retrain
    inc, sup = pair
    train, val = problem
    return retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="sb", seed=seed,
                   **{"n_particles": 4, "n_points": 5, "samples_per_time": 2, **options})


def test_sb_method_runs_deterministic_and_reports(upgrade_pair, problem):
    a, b, c = _sb(upgrade_pair, problem), _sb(upgrade_pair, problem), _sb(upgrade_pair, problem, seed=1)
    assert a.metrics == b.metrics and all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert a.details["sigma2"] > 0 and a.details["t"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(a.trace) == 5 * 3 and c.details["transport_cost"] != a.details["transport_cost"]
    for key in ("bridge_midpoint_nll", "line_midpoint_nll"):
        assert math.isfinite(a.details[key])
    with pytest.raises(ValueError, match="bridge_sigma"):
        _sb(upgrade_pair, problem, bridge_sigma=0.0)


def test_sb_dirac_populations_cost_is_the_squared_distance(upgrade_pair, problem):
    from synthfuse.retrain.alignment import align
    from synthfuse.shared.params import flatten
    r = _sb(upgrade_pair, problem, spread=0.0)
    inc, sup = upgrade_pair
    aligned = align(inc, sup, data=problem[0]).model
    d2 = float((flatten(aligned) - flatten(inc)).detach().double().pow(2).sum())
    assert r.details["transport_cost"] == pytest.approx(d2, rel=1e-6)


def test_tilted_resample_matches_the_gaussian_closed_form():
    """N(m, s²I)·exp(−β·½a‖x − c‖²) = N((m/s² + βac)/(1/s² + βa), 1/(1/s² + βa)); linear V: no reweighting."""
    from synthfuse.retrain.bridge import tilted_resample

    n, pool, s2, beta, a = 4000, 40, 1.0, 1.0, 0.5
    g = torch.Generator().manual_seed(0)
    m, c = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    means = m.expand(n * pool, 2)
    draws = means + math.sqrt(s2) * torch.randn(n * pool, 2, generator=g, dtype=torch.float64)
    grads = (a * (means - c)).clone()
    out = tilted_resample(draws, means, grads, s2, beta, lambda x: 0.5 * a * (x - c).pow(2).sum(1), pool=pool, generator=g)
    precision = 1 / s2 + beta * a
    assert out.shape == (n, 2)
    torch.testing.assert_close(out.mean(0), (m / s2 + beta * a * c) / precision, atol=0.04, rtol=0)
    assert float(out.var(0).mean()) == pytest.approx(1 / precision, rel=0.06)
    u = torch.tensor([0.3, -0.7], dtype=torch.float64)  # V(x) = uᵀx: the shifted draws are exact, every weight equal
    shifted = tilted_resample(draws[:8], means[:8], u.expand(8, 2), s2, 2.0, lambda x: x @ u, pool=8, generator=g)
    assert any(torch.allclose(shifted[0], row) for row in draws[:8] - 2.0 * s2 * u)
    with pytest.raises(ValueError, match="multiple of pool"):
        tilted_resample(draws[:7], means[:7], grads[:7], s2, beta, lambda x: x.sum(1), pool=2, generator=g)


def test_sb_without_potential_keeps_the_plain_bridge_draws(upgrade_pair, problem):
    import copy

    from synthfuse.retrain.methods import Context, get_method
    from synthfuse.shared.params import flatten

    inc, sup = upgrade_pair
    train, val = problem
    ctx = Context(incumbent=copy.deepcopy(inc).eval(), superior=copy.deepcopy(sup).eval(), train=train, val=val,
                  seed=0, device=torch.device("cpu"))
    a, b = flatten(inc).detach().double(), flatten(sup).detach().double()
    x0, x1 = a.expand(2, -1).clone(), b.expand(2, -1).clone()
    times = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    plan = entropic_plan(x0, x1, 0.01)
    plain = get_method("sb")(potential=0.0, proposals=4, samples_per_time=2).tilted_points(
        ctx, x0, x1, plan, times, 0.01, torch.Generator().manual_seed(7))
    draws, _, _ = bridge_points(x0, x1, plan, times, 0.01, n_samples=8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(plain, draws[:2])
    tilted = get_method("sb")(proposals=4, samples_per_time=2).tilted_points(
        ctx, x0, x1, plan, times, 0.01, torch.Generator().manual_seed(7))
    assert torch.equal(tilted[:, 0], draws[:2, 0]) and not torch.equal(tilted[:, 1], draws[:2, 1])
