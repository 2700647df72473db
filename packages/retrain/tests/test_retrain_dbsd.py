"""DBSD: the bridge's law in closed form, the straight line when cold, determinism."""

import copy

import pytest
import torch

from synthfuse.retrain import retrain
from synthfuse.retrain.methods import Context, get_method


def _ctx(pair, problem, seed=0):
    inc, sup = pair
    train, val = problem
    return Context(incumbent=copy.deepcopy(inc).eval(), superior=copy.deepcopy(sup).eval(), train=train, val=val,
                   seed=seed, device=torch.device("cpu"))


def test_cold_bridge_without_drift_is_the_straight_line(upgrade_pair, problem):
    method = get_method("dbsd")(superior_drift=0.0, bridge_sigma=0.0, n_steps=8, align=False)
    path, start, end = method.bridge(_ctx(upgrade_pair, problem), keep_path=True)
    for k in range(9):
        torch.testing.assert_close(path.path[k, 0], start + k / 8 * (end - start), atol=1e-6, rtol=1e-6)


def test_brownian_bridge_marginal_matches_closed_form(upgrade_pair, problem):
    sigma_rel, n = 0.5, 20
    method = get_method("dbsd")(superior_drift=0.0, bridge_sigma=sigma_rel, n_steps=n, n_particles=300, align=False)
    path, start, end = method.bridge(_ctx(upgrade_pair, problem), keep_path=True)
    sigma2 = (sigma_rel * float((end - start).norm()) / start.numel() ** 0.5) ** 2
    for k in (5, 10, 15):
        t = k / n
        x = path.path[k]
        assert float((x.mean(0) - ((1 - t) * start + t * end)).abs().max()) < 5 * (sigma2 * t * (1 - t) / 300) ** 0.5
        # Euler's exact law: D_{k+1} = D_k (n-k-1)/(n-k) + σ√Δt ξ, so Var_k = σ²Δt Σ_{j<=k} ((n-k)/(n-j))²
        discrete = lambda n, k: sigma2 / n * sum(((n - k) / (n - j)) ** 2 for j in range(1, k + 1))
        assert float(x.var(0).mean()) == pytest.approx(discrete(n, k), rel=0.03)
        assert discrete(100 * n, 100 * k) == pytest.approx(sigma2 * t * (1 - t), rel=0.01)  # → σ² t(1-t) as Δt → 0


def test_dbsd_runs_deterministic_and_reports(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    kw = dict(train=(train.X, train.y), val=(val.X, val.y), method="dbsd", n_steps=20, n_candidates=4, n_particles=2)
    a, b = retrain(inc, sup, seed=0, **kw), retrain(inc, sup, seed=0, **kw)
    assert a.metrics == b.metrics and all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert 0.0 <= a.details["t"] <= 1.0 and a.details["bridge_midpoint_nll"] > 0 and a.details["line_midpoint_nll"] > 0
    assert len(a.trace) == 2 * 5
    with pytest.raises(ValueError, match="n_candidates"):
        retrain(inc, sup, seed=0, **{**kw, "n_candidates": 0})


def test_auto_selects_best_dominating_or_says_none(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    kw = dict(train=(train.X, train.y), val=(val.X, val.y), method="auto", methods=["dbsd", "sb"],
              method_options={"dbsd": dict(n_steps=10, n_candidates=2), "sb": dict(n_particles=2, n_points=3, samples_per_time=1)})
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = retrain(inc, sup, seed=0, **kw)
    d = r.details
    assert set(d["scores"]) == {"dbsd", "sb"} and d["chosen"] in ("dbsd", "sb")
    assert d["dominating"] == [n for n in ("dbsd", "sb") if d["scores"][n]["dominates"]]
    chosen = d["scores"][d["chosen"]]
    assert r.metrics.accuracy == chosen["accuracy"] and bool(r.verdict) == chosen["dominates"]
    if d["dominating"]:
        assert chosen["dominates"]
    else:
        assert "no candidate dominates" in d["message"] and any("no candidate dominates" in str(w.message) for w in caught)
    best = max(d["scores"].values(), key=lambda s: (s["dominates"], s["accuracy"] - s["negative_flip_rate"], -s["nll"]))
    assert best is chosen
    assert {row["method"] for row in r.trace} == {"dbsd", "sb"}
    with pytest.raises(ValueError, match="unknown method"):
        retrain(inc, sup, seed=0, **{**kw, "methods": ["nope"]})
    with pytest.raises(ValueError, match="method_options"):
        retrain(inc, sup, seed=0, **{**kw, "method_options": {"til": {}}})
