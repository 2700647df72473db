"""Interpolation paths, BatchNorm re-estimation and loss barriers."""

import copy

import pytest
import torch
from torch import nn

from synthfuse.retrain import diagonal_fisher, interpolate_models, loss_barrier
from synthfuse.retrain.path import recompute_batchnorm


def test_endpoints_and_midpoint(upgrade_pair):
    a, b = upgrade_pair
    for mode in ("linear", "spherical"):
        for t, ref in ((0.0, a), (1.0, b)):
            m = interpolate_models(a, b, t, mode=mode)
            for p, q in zip(m.parameters(), ref.parameters()):
                torch.testing.assert_close(p, q)
    mid = interpolate_models(a, b, 0.5)
    torch.testing.assert_close(mid[0].weight, (a[0].weight + b[0].weight) / 2)


def test_fisher_path_with_equal_fishers_is_linear(upgrade_pair, problem):
    a, b = upgrade_pair
    train, _ = problem
    f = diagonal_fisher(a, train.subset(slice(0, 50)))
    m = interpolate_models(a, b, 0.3, mode="fisher", fishers=[f, f])
    lin = interpolate_models(a, b, 0.3)
    for p, q in zip(m.parameters(), lin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fishers"):
        interpolate_models(a, b, 0.3, mode="fisher")
    with pytest.raises(ValueError, match="t must lie"):
        interpolate_models(a, b, 1.5)


def test_barrier_of_a_model_with_itself_is_zero_and_matches_its_definition(upgrade_pair, problem):
    a, b = upgrade_pair
    _, val = problem
    same = loss_barrier(a, copy.deepcopy(a), val, n_points=5)
    assert same.barrier == pytest.approx(0.0, abs=1e-6) and len(same.losses) == 5
    naive = loss_barrier(a, b, val, n_points=5)
    assert naive.losses[0] == pytest.approx(float(nn.functional.cross_entropy(a(val.X), val.y).detach()), rel=1e-5)
    # the barrier is the largest excess over the chord, by definition
    chord = [(1 - t) * naive.losses[0] + t * naive.losses[-1] for t in naive.ts]
    assert naive.barrier == pytest.approx(max(l - c for l, c in zip(naive.losses, chord)))


def test_recompute_batchnorm_matches_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    X = torch.randn(100, 3) * 2 + 1
    recompute_batchnorm(net, X, batch_size=100)
    h = net[0](X).detach()
    torch.testing.assert_close(net[1].running_mean, h.mean(0))
    torch.testing.assert_close(net[1].running_var, h.var(0, unbiased=True))
    assert not net.training and net[1].momentum == 0.1
