"""The four methods: they run, are deterministic, ignore θ†'s unit order, and do what they claim."""

import copy

import pytest
import torch
import torch.nn.functional as F

from synthfuse.retrain import retrain
from synthfuse.retrain.losses import focal_distillation, kd_loss
from synthfuse.retrain.methods import get_method
from synthfuse.retrain.methods.wsft import HeavyBall
from synthfuse.retrain.testing import permute_hidden_units

FAST = {
    "kdt": dict(epochs=3, focal_weight=0.5),
    "wsft": dict(epochs=3, focal_weight=1.0),
    "otwi": dict(finetune_epochs=2, n_points=5, focal_weight=1.0),
    "frr": dict(epochs=2, anchor_size=16, ntk_weight=0.01),
}


def _run(pair, problem, method, seed=0, **extra):
    inc, sup = pair
    train, val = problem
    return retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method=method, seed=seed,
                   **{**FAST[method], **extra})


@pytest.mark.parametrize("method", sorted(FAST))
def test_method_runs_and_reports(upgrade_pair, problem, method):
    r = _run(upgrade_pair, problem, method)
    _, val = problem
    assert r.method == method and 0.0 <= r.metrics.accuracy <= 1.0
    assert r.metrics.n_negative_flips == round(r.metrics.negative_flip_rate * len(val))
    assert r.baselines["incumbent"].negative_flip_rate == 0.0
    assert r.verdict.nfr[0] == pytest.approx(r.metrics.negative_flip_rate)
    assert r.verdict.accuracy == (pytest.approx(r.metrics.accuracy), pytest.approx(r.baselines["superior"].accuracy))
    assert len(r.trace) >= 2 and {"accuracy", "negative_flip_rate", "nll"} <= set(r.trace[-1])
    assert not r.model.training


@pytest.mark.parametrize("method", sorted(FAST))
def test_same_seed_same_metrics_and_invariance_to_superior_unit_order(upgrade_pair, problem, method):
    inc, sup = upgrade_pair
    train, _ = problem
    first = _run(upgrade_pair, problem, method).metrics
    assert _run(upgrade_pair, problem, method).metrics == first
    shuffled, _ = permute_hidden_units(sup, train.X[:2], seed=5)
    assert any(not torch.equal(p, q) for p, q in zip(sup.parameters(), shuffled.parameters()))
    permuted = _run((inc, shuffled), problem, method).metrics
    assert permuted.accuracy == first.accuracy and permuted.n_negative_flips == first.n_negative_flips
    assert permuted.nll == pytest.approx(first.nll, abs=1e-4)


def test_different_seeds_differ(upgrade_pair, problem):
    a = _run(upgrade_pair, problem, "kdt", seed=0, init="scratch").model
    b = _run(upgrade_pair, problem, "kdt", seed=1, init="scratch").model
    assert not torch.equal(a[0].weight, b[0].weight)


def test_kd_and_focal_losses_known_values():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    T = 2.0
    q = F.softmax(t / T, 1)
    ref = T**2 * F.kl_div(F.log_softmax(s / T, 1), q, reduction="none").sum(1)
    torch.testing.assert_close(kd_loss(s, q, T), ref)
    correct = torch.tensor([True, False])
    fd = focal_distillation(s, t, correct, alpha=0.1, beta=1.0, temperature=T)
    torch.testing.assert_close(fd, (1.1 * ref[0] + 0.1 * ref[1]) / 2)
    logit = focal_distillation(s, t, correct, alpha=0.0, beta=1.0, kind="logit")
    torch.testing.assert_close(logit, 0.5 * (s[0] - t[0]).pow(2).sum() / 2)


def test_kdt_ensemble_teacher_is_mean_of_softened_probabilities(upgrade_pair, problem, make_mlp):
    inc, sup = upgrade_pair
    train, val = problem
    other = make_mlp(9)
    method = get_method("kdt")(teachers=[sup, other], temperature=3.0)
    from synthfuse.retrain.methods import Context

    ctx = Context(incumbent=inc, superior=sup, train=train, val=val, seed=0, device=torch.device("cpu"))
    with torch.no_grad():
        expected = (F.softmax(sup(train.X) / 3, 1) + F.softmax(other(train.X) / 3, 1)) / 2
    torch.testing.assert_close(method.teacher_probs(ctx), expected)
    r = _run(upgrade_pair, problem, "kdt", teachers=[sup, other])
    assert r.details["n_teachers"] == 2


def test_heavy_ball_initial_velocity_reaches_the_target_fraction():
    # with zero gradient, theta_k = theta_0 + v0 * mu (1 - mu^k) / (1 - mu): WSFT's "reach" in closed form
    p = torch.nn.Parameter(torch.zeros(3))
    target, mu, reach = torch.tensor([1.0, -2.0, 4.0]), 0.9, 0.5
    opt = HeavyBall([p], lr=0.1, momentum=mu, velocity=[reach * (1 - mu) / mu * target])
    for _ in range(400):
        p.grad = torch.zeros(3)
        opt.step()
    torch.testing.assert_close(p.detach(), reach * target)


@pytest.mark.parametrize("metric", ["fisher", "kfac"])
def test_wsft_fisher_metrics_run_and_differ_from_euclidean(upgrade_pair, problem, metric):
    e = _run(upgrade_pair, problem, "wsft").model
    f = _run(upgrade_pair, problem, "wsft", metric=metric, fisher_samples=64).model
    assert not torch.equal(e[0].weight, f[0].weight)


def test_otwi_details_and_pure_superior_never_dominates(upgrade_pair, problem):
    r = _run(upgrade_pair, problem, "otwi")
    d = r.details
    assert d["alignment_output_error"] < 1e-4 and d["t"] in d["path_t"]
    assert d["barrier_aligned"] <= d["barrier_naive"]
    assert [e["t"] for e in r.trace if e["stage"] == "path"] == d["path_t"]
    # picking t = 1 without fine-tuning returns θ† itself (aligned): it must not dominate θ†
    inc, sup = upgrade_pair
    train, val = problem
    same = retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="otwi", n_points=2,
                   nfr_penalty=0.0, finetune_epochs=0)
    if same.details["t"] == 1.0:
        assert same.metrics.accuracy == same.baselines["superior"].accuracy
        assert not same.verdict and "nfr" in same.verdict.failed


def test_frr_penalty_pulls_toward_the_incumbent(upgrade_pair, problem):
    alone = dict(epochs=3, lr=3e-3, select_epoch=False, kd_weight=0.0, focal_weight=0.0)  # the NTK term alone
    free = _run(upgrade_pair, problem, "frr", ntk_weight=0.0, **alone)
    held = _run(upgrade_pair, problem, "frr", ntk_weight=1.0, **alone)
    assert held.details["ntk_distance2_start"] == pytest.approx(free.details["ntk_distance2_start"])
    assert held.details["ntk_distance2_end"] < 0.5 * free.details["ntk_distance2_end"]
    for anchors in ("correct", "all"):
        assert _run(upgrade_pair, problem, "frr", anchors=anchors).details["n_anchors"] == 16


@pytest.mark.parametrize("geodesic", ["linear", "spherical"])
def test_wsft_direction_is_the_derivative_of_the_shared_interpolation_path(upgrade_pair, problem, geodesic):
    from synthfuse.retrain.methods.wsft import initial_direction
    from synthfuse.shared.params import interpolate

    a, b = (copy.deepcopy(m).double() for m in upgrade_pair)
    d = initial_direction(a, b, geodesic)
    h = 1e-6
    step = interpolate(a, b, h, mode="linear" if geodesic == "linear" else "spherical")
    for name, p in a.named_parameters():
        numeric = (dict(step.named_parameters())[name] - p).detach() / h
        torch.testing.assert_close(d[name], numeric, rtol=1e-4, atol=1e-5)
    assert _run(upgrade_pair, problem, "wsft", geodesic=geodesic).details["initial_speed"] > 0


@pytest.mark.cuda
@pytest.mark.parametrize("method", sorted(FAST))
def test_methods_run_on_cuda_and_match_cpu_accuracy(upgrade_pair, problem, method):
    cpu = _run(upgrade_pair, problem, method)
    inc, sup = upgrade_pair
    train, val = problem
    gpu = retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method=method, seed=0, device="cuda", **FAST[method])
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert abs(gpu.metrics.accuracy - cpu.metrics.accuracy) <= 0.05


class _ResidualNet(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.inp, self.block, self.out = torch.nn.Linear(8, 12), torch.nn.Linear(12, 12), torch.nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.out(h + torch.relu(self.block(h)))


def test_any_classifier_for_kdt_wsft_frr_and_a_clear_error_for_otwi(problem):
    train, val = problem
    inc, sup = _ResidualNet(1), _ResidualNet(2)
    data = dict(train=(train.X, train.y), val=(val.X, val.y))
    assert retrain(inc, sup, method="kdt", epochs=1, **data).model is not inc
    for method in ("wsft", "frr"):
        with pytest.raises(ValueError, match="pass align=False"):
            retrain(inc, sup, method=method, **data)
        retrain(inc, sup, method=method, align=False, **{**FAST[method], "epochs": 1}, **data)
    with pytest.raises(ValueError, match="residual connection"):
        retrain(inc, sup, method="otwi", **data)


def test_best_snapshot_ranks_candidates_beyond_the_nll_limit_last(upgrade_pair, problem):
    from synthfuse.retrain.methods import BestSnapshot, Context

    inc, sup = upgrade_pair
    train, val = problem
    ctx = Context(incumbent=inc, superior=sup, train=train, val=val, seed=0, device=torch.device("cpu"))
    m_inc, m_sup = ctx.metrics(inc), ctx.metrics(sup)
    assert m_inc.nll > m_sup.nll + 0.02  # θ* is the worse-calibrated model here
    free = BestSnapshot(ctx, nfr_penalty=100.0)  # a huge flip penalty prefers θ* (no flips at all)
    bound = BestSnapshot(ctx, nfr_penalty=100.0, nll_limit=ctx.superior_nll_limit(0.02))
    for name, model in (("inc", inc), ("sup", sup)):
        free(model, name=name)
        bound(model, name=name)
    assert free.where == {"name": "inc"} and bound.where == {"name": "sup"}
    restored = bound.restore(copy.deepcopy(inc))
    assert all(torch.equal(p, q) for p, q in zip(restored.parameters(), sup.parameters()))
    assert len(ctx.trace) == 4
