"""Torus distances vs BFS and closed forms, all-reduce fit, bucket size, delayed-update LR scale."""

import math

import numpy as np
import pytest

from synthfuse.koda.topology_model import (
    NetworkModel, Torus, _reference_bucket_cost, delayed_lr_scale, fit_ring_allreduce, optimal_bucket_bytes,
    staleness_steps,
)
from synthfuse.koda.train.comm import DelayedGradients, plan_communication


@pytest.mark.parametrize("k,n", [(2, 3), (4, 2), (6, 2), (8, 1), (4, 3), (3, 2), (5, 3)])
def test_torus_distances_mean_and_diameter(k, n):
    torus = Torus(k, n)
    bfs = np.stack([torus.bfs_distances(s) for s in range(torus.num_nodes)])
    closed = torus.distance_matrix()
    np.testing.assert_array_equal(bfs, closed)
    assert bfs.max() == torus.diameter() == n * (k // 2)
    assert bfs.mean() == pytest.approx(torus.mean_hop())
    if k % 2 == 0:
        assert torus.mean_hop() == pytest.approx(n * k / 4)


def test_ring_embedding_visits_every_node_with_short_links():
    for k, n in [(4, 3), (2, 4), (6, 2)]:
        torus = Torus(k, n)
        ring = torus.ring_order()
        assert sorted(ring.tolist()) == list(range(torus.num_nodes))
        assert torus.ring_hops() == 1  # even k: the reflected Gray code closes with one hop
    assert Torus(3, 2).ring_hops() == 2


def test_fit_recovers_known_parameters():
    sizes = np.logspace(10, 24, 15, base=2)  # 1 KB .. 16 MB
    truth = NetworkModel(alpha=3e-5, beta_byte=2e-9)
    times = truth.ring_allreduce_time(sizes, world_size=4)
    for relative in (True, False):
        fit = fit_ring_allreduce(sizes, times, world_size=4, relative=relative)
        assert fit.alpha == pytest.approx(3e-5, rel=1e-6) and fit.beta_byte == pytest.approx(2e-9, rel=1e-6)
        assert fit.r2 == pytest.approx(1.0)
        np.testing.assert_allclose(fit.predict(sizes), times, rtol=1e-9)
    noisy = times * (1 + 0.05 * np.random.default_rng(0).standard_normal(times.size))
    assert 0.9 < fit_ring_allreduce(sizes, noisy, 4).r2 < 1.0
    with pytest.raises(ValueError, match="at least 3"):
        fit_ring_allreduce([1, 2], [1, 2], 2)
    with pytest.raises(ValueError, match="> 0"):
        fit_ring_allreduce([1, 2, -3], [1, 2, 3], 2)


def test_latency_model_terms():
    model = NetworkModel(alpha=1.0, beta=0.5, gamma=0.25, beta_byte=0.01)
    assert float(model.latency(4, 2)) == pytest.approx(1 + 2 + 0.5)
    assert float(model.ring_allreduce_time(400, world_size=4, hops=2)) == pytest.approx(6 * (2 + 1.0))
    assert float(model.ring_allreduce_time(400, world_size=1)) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        NetworkModel(alpha=-1.0)


def test_bucket_size_minimizes_the_cost_model():
    model = NetworkModel(alpha=5e-5, beta=1e-6, beta_byte=1e-9)
    total, p = 4e6, 8
    best = optimal_bucket_bytes(total, p, model, hops=2)
    assert best == pytest.approx(math.sqrt(total * p * float(model.latency(2)) / model.beta_byte))
    grid = np.geomspace(1e3, total, 4000)
    costs = [_reference_bucket_cost(b, total, p, model, hops=2) for b in grid]
    assert best == pytest.approx(grid[int(np.argmin(costs))], rel=0.01)
    assert optimal_bucket_bytes(total, 1, model) == total  # nothing to overlap on one rank


def test_delayed_lr_scale_is_the_stability_bound():
    """x_{t+1} = x_t - eta h x_{t-tau} is stable iff eta h < 2 sin(pi / (2 (2 tau + 1)))."""
    assert delayed_lr_scale(0) == 1.0 and delayed_lr_scale(1) == pytest.approx(0.5)

    def final(eta_h, tau, steps=3000):
        xs = [1.0] * (tau + 1)
        for _ in range(steps):
            xs.append(xs[-1] - eta_h * xs[-1 - tau])
        return abs(xs[-1])

    for tau in (1, 2, 4):
        bound = 2 * delayed_lr_scale(tau)
        assert final(0.97 * bound, tau) < 1e-3
        assert final(1.03 * bound, tau) > 1e3
    assert staleness_steps(0.0, 1.0) == 0 and staleness_steps(2.5, 1.0) == 3 and staleness_steps(2.0, 1.0) == 2
    with pytest.raises(ValueError):
        delayed_lr_scale(-1)


def test_comm_plan_and_delayed_gradients():
    import torch

    torus = Torus(4, 2)
    net = NetworkModel(alpha=1e-4, beta=1e-5, beta_byte=1e-8)
    plan = plan_communication(4_000_000, torus=torus, network=net, step_seconds=0.05, delayed=True)
    assert plan.world_size == 16 and plan.ring_hops == 1
    assert plan.n_buckets == math.ceil(4e6 / plan.bucket_bytes - 1e-9)
    assert plan.staleness == staleness_steps(plan.allreduce_seconds, 0.05) >= 1
    assert plan.lr_scale == delayed_lr_scale(plan.staleness)
    sync = plan_communication(4_000_000, world_size=1, network=net, step_seconds=0.05, delayed=True)
    assert sync.staleness == 0 and sync.allreduce_seconds == 0.0 and sync.lr_scale == 1.0

    p = torch.nn.Parameter(torch.zeros(2))
    delayed = DelayedGradients([p], delay=2)
    applied = []
    for step in range(5):
        p.grad = torch.full((2,), float(step))
        applied.append(float(p.grad[0]) if delayed.exchange() else None)
    assert applied == [None, None, 0.0, 1.0, 2.0]
    clone = DelayedGradients([p], delay=2)
    clone.load_state_dict(delayed.state_dict())
    p.grad = torch.full((2,), 5.0)
    assert clone.exchange() and float(p.grad[0]) == 3.0


@pytest.mark.slow
def test_gloo_measurement_feeds_the_fit():
    from synthfuse.koda.topology_model import measure_gloo_allreduce

    sizes = [1024, 65536, 1 << 20]
    times = measure_gloo_allreduce(sizes, world_size=2, repeats=2)
    assert times.shape == (3,) and np.isfinite(times).all() and (times > 0).all()
    fit = fit_ring_allreduce(sizes, times, world_size=2)
    assert np.isfinite([fit.alpha, fit.beta_byte, fit.r2]).all()
