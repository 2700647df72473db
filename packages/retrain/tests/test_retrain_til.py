"""TIL: SGD when cold and unpulled, noise variance 2ηT, determinism, the fast gradients vs a loop."""

import copy

import pytest
import torch
import torch.nn.functional as F

from synthfuse.retrain import retrain
from synthfuse.retrain.methods import Context, FocalOptions, UpgradeObjective, get_method
from synthfuse.retrain.methods.til import _naive_particle_gradients, minibatch_schedule, particle_gradients
from synthfuse.shared.params import flatten

FAST = dict(epochs=2, batch_size=64, n_particles=2)


def _ctx(pair, problem, seed=0):
    inc, sup = pair
    train, val = problem
    return Context(incumbent=copy.deepcopy(inc).eval(), superior=copy.deepcopy(sup).eval(), train=train, val=val,
                   seed=seed, device=torch.device("cpu"))


def test_cold_unpulled_til_is_sgd_step_for_step(upgrade_pair, problem):
    ctx = _ctx(upgrade_pair, problem, seed=4)
    til = get_method("til")(langevin_temperature=0.0, pull=0.0, kd_weight=0.0, focal_weight=0.0, epochs=2,
                            batch_size=100, lr=0.1, align=False)
    path, _ = til.langevin(ctx, keep_path=True)
    model = copy.deepcopy(upgrade_pair[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train = problem[0]
    steps = minibatch_schedule(len(train), 100, 2, seed=4)
    assert len(steps) == path.path.shape[0] - 1 == 10
    assert torch.equal(torch.sort(torch.cat(steps[:5])).values, torch.arange(len(train)))
    for k, idx in enumerate(steps):
        opt.zero_grad()
        F.cross_entropy(model(train.X[idx]), train.y[idx]).backward()
        opt.step()
        torch.testing.assert_close(path.path[k + 1, 0], flatten(model).detach(), atol=1e-6, rtol=1e-5)


def test_injected_noise_variance_is_2_eta_T(upgrade_pair, problem):
    ctx = _ctx(upgrade_pair, problem)
    eta, T = 0.05, 0.02
    common = dict(pull=0.0, epochs=1, batch_size=len(problem[0]), lr=eta, n_particles=200, temperature_schedule="constant",
                  align=False)
    hot, _ = get_method("til")(langevin_temperature=T, **common).langevin(ctx)
    cold, _ = get_method("til")(langevin_temperature=0.0, **common).langevin(ctx)
    noise = hot.final - cold.final  # one full-batch step from the same start: exactly the injected noise
    assert float(noise.var()) == pytest.approx(2 * eta * T, rel=0.02)
    assert abs(float(noise.mean())) < 4 * (2 * eta * T / noise.numel()) ** 0.5


def test_vmapped_gradients_match_a_loop(upgrade_pair, problem):
    ctx = _ctx(upgrade_pair, problem)
    objective = UpgradeObjective(ctx, FocalOptions(focal_weight=0.7, focal_alpha=0.1), teacher_probs=ctx.superior_probs(3.0),
                                 kd_weight=0.5, temperature=3.0)
    like = ctx.incumbent
    thetas = flatten(like).detach() + 0.05 * torch.randn(3, flatten(like).numel(), generator=torch.Generator().manual_seed(0))
    idx = torch.arange(50)
    torch.testing.assert_close(particle_gradients(objective, like, thetas, idx),
                               _naive_particle_gradients(objective, like, thetas, idx), atol=1e-6, rtol=1e-5)


def test_missing_gradient_raises(upgrade_pair, problem):
    ctx = _ctx(upgrade_pair, problem)
    objective = UpgradeObjective(ctx, FocalOptions(), penalty=None)
    frozen = lambda model, idx: objective(upgrade_pair[0], idx)  # does not depend on the particle
    with pytest.raises(RuntimeError, match="not have been used"):
        _naive_particle_gradients(frozen, ctx.incumbent, flatten(ctx.incumbent).detach()[None], torch.arange(4))


def test_til_runs_is_deterministic_and_reports(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    kw = dict(train=(train.X, train.y), val=(val.X, val.y), method="til", **FAST)
    a = retrain(inc, sup, seed=0, **kw)
    b = retrain(inc, sup, seed=0, **kw)
    c = retrain(inc, sup, seed=1, **kw)
    assert a.metrics == b.metrics and all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))
    assert a.details["candidate"] in ("average", "last") and a.details["particle"] in (0, 1)
    assert a.details["n_steps"] == 2 * 7 and {"step", "accuracy", "negative_flip_rate"} <= set(a.trace[0])
    with pytest.raises(ValueError, match="train"):
        retrain(inc, sup, seed=0, **{**kw, "train": None})
    with pytest.raises(TypeError, match="unknown option"):
        retrain(inc, sup, seed=0, bogus=1, **kw)
    with pytest.raises(ValueError, match="langevin_temperature"):
        retrain(inc, sup, seed=0, **{**kw, "langevin_temperature": -1.0})


def test_reach_sets_the_pulls_contraction():
    """Alone, the pull contracts the distance to πθ† by prod_k (1 - η λ_k) ≈ 1 - reach."""
    from synthfuse.retrain.methods.til import decay

    n, eta = 400, 0.05
    for schedule in ("constant", "linear", "cosine"):
        til = get_method("til")(reach=0.6, lr=eta, pull_schedule=schedule)
        lam = til.pull_strength(n)
        contraction = 1.0
        for k in range(n):
            contraction *= 1.0 - eta * lam * decay(schedule, k / n)
        assert contraction == pytest.approx(0.4, rel=0.01)
    assert get_method("til")(pull=0.3).pull_strength(n) == 0.3
    assert get_method("til")(reach=0.0).pull_strength(n) == 0.0
    with pytest.raises(ValueError, match="reach"):
        get_method("til")(reach=1.0)
