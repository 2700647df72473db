"""FDD: layer norms preserved, the sphere step vs a per-particle loop, distillation, determinism."""

import copy

import pytest
import torch

from synthfuse.retrain import retrain
from synthfuse.retrain.methods import Context, get_method
from synthfuse.retrain.methods.fdd import LayerSpheres
from synthfuse.shared.manifold import Sphere
from synthfuse.shared.params import flatten

FAST = dict(epochs=2, batch_size=128, anchor_size=8, n_particles=2)


def _ctx(pair, problem, seed=0):
    inc, sup = pair
    train, val = problem
    return Context(incumbent=copy.deepcopy(inc).eval(), superior=copy.deepcopy(sup).eval(), train=train, val=val,
                   seed=seed, device=torch.device("cpu"))


def test_sphere_step_matches_a_per_particle_loop(make_mlp):
    like = make_mlp(0)
    spheres = LayerSpheres(like)
    theta = flatten(like).detach()[None].repeat(3, 1)
    inc = 0.1 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(0))
    fast = spheres.step(theta, inc)
    for i in range(3):
        start = 0
        for p in like.parameters():
            sl = slice(start, start + p.numel())
            S = Sphere(float(p.detach().norm()))
            torch.testing.assert_close(fast[i, sl], S.exp(theta[i, sl], S.proju(theta[i, sl], inc[i, sl])))
            start += p.numel()


def test_layer_norms_preserved_along_a_hot_walk(upgrade_pair, problem):
    method = get_method("fdd")(langevin_temperature=1e-2, lr=0.05, **FAST)
    path, spheres, _ = method.diffuse(_ctx(upgrade_pair, problem), keep_path=True)
    target = spheres.norms(flatten(upgrade_pair[0]).detach()[None])
    moved = float((path.path[-1] - path.path[0]).abs().max())
    assert moved > 1e-2  # it did move
    assert float((spheres.norms(path.path.flatten(0, 1)) - target).abs().max()) < 1e-5


def test_cold_fdd_pulls_toward_the_superior_function(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    r = retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="fdd", seed=0, langevin_temperature=0.0,
                ntk_weight=1.0, kd_weight=1.0, focal_weight=0.0, epochs=3, lr=0.1, anchor_size=8)
    assert r.details["max_layer_norm_error"] < 1e-5
    assert r.details["ntk_distance2_end"] <= r.details["ntk_distance2_start"]


def test_fdd_runs_deterministic(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    kw = dict(train=(train.X, train.y), val=(val.X, val.y), method="fdd", **FAST)
    a, b = retrain(inc, sup, seed=0, **kw), retrain(inc, sup, seed=0, **kw)
    assert a.metrics == b.metrics and all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert len(a.trace) == 2 * 3 + 2
    with pytest.raises(ValueError, match="ridge"):
        retrain(inc, sup, seed=0, **{**kw, "ridge": 0.0})
