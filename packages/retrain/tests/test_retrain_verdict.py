"""McNemar, the paired bootstrap and the dominance verdict."""

from math import comb

import numpy as np
import pytest
import torch

from synthfuse.retrain import dominates, mcnemar_exact, paired_bootstrap_ci
from synthfuse.retrain.verdict import _reference_paired_bootstrap_ci

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("b,c", [(0, 0), (3, 1), (1, 3), (10, 2), (7, 7), (40, 25), (250, 300)])
def test_mcnemar_matches_binomtest(b, c):
    expected = 1.0 if b + c == 0 else scipy_stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-10)


def test_mcnemar_hand_computed():
    # b = 3 worse, c = 1 better: P(B >= 3), B ~ Bin(4, 1/2) = (C(4,3) + C(4,4)) / 16 = 5/16
    assert mcnemar_exact(3, 1) == 5 / 16
    assert mcnemar_exact(0, 5) == 1.0
    assert mcnemar_exact(5, 0) == 1 / 32
    assert mcnemar_exact(6, 2) == sum(comb(8, k) for k in range(6, 9)) / 256
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_bootstrap_fast_path_matches_index_resampling():
    rng = np.random.default_rng(0)
    d = rng.choice([-1, 0, 1], size=800, p=[0.06, 0.9, 0.04])
    fast = paired_bootstrap_ci(d, n_bootstrap=4000, seed=1)
    slow = _reference_paired_bootstrap_ci(d, 4000, 0.95, seed=2)
    # same distribution of the resampled mean: the interval ends agree to Monte Carlo error
    assert fast == pytest.approx(slow, abs=2.5e-3)
    # and both bracket the normal-approximation interval of the mean
    se = d.std() / np.sqrt(d.size)
    assert fast[0] == pytest.approx(d.mean() - 1.96 * se, abs=2.5e-3)
    assert fast[1] == pytest.approx(d.mean() + 1.96 * se, abs=2.5e-3)


def test_bootstrap_rejects_non_flip_differences():
    with pytest.raises(ValueError):
        paired_bootstrap_ci(np.array([0.5, 0.0]))


def _logits(pred, n_classes=3, scale=3.0):
    return torch.nn.functional.one_hot(torch.as_tensor(pred), n_classes).float() * scale


@pytest.fixture
def flips_data():
    """400 samples; incumbent right on the first 300; superior wrong on 40 of those (negative flips)."""
    n = 400
    y = torch.arange(n) % 3
    inc = y.clone()
    inc[300:] = (y[300:] + 1) % 3
    sup = y.clone()
    sup[:40] = (y[:40] + 1) % 3  # 40 negative flips; superior right on 300..399 (positive flips)
    X = torch.zeros(n, 1)
    return X, y, inc, sup


def test_superior_itself_never_dominates(flips_data):
    X, y, inc, sup = flips_data
    v = dominates(_logits(sup), _logits(sup), _logits(inc), (X, y))
    assert not v and not v.nfr_ok and v.accuracy_ok and v.nll_ok
    assert v.nfr_diff_ci == (0.0, 0.0) and v.failed == ["nfr"]


def test_fewer_flips_same_accuracy_dominates(flips_data):
    X, y, inc, sup = flips_data
    cand = sup.clone()
    cand[:40] = y[:40]  # fixes the 40 flips ...
    cand[300:340] = (y[300:340] + 2) % 3  # ... and gives up 40 samples θ* got wrong anyway
    v = dominates(_logits(cand), _logits(sup), _logits(inc), (X, y))
    assert v, str(v)
    assert v.nfr == (0.0, pytest.approx(0.1)) and v.accuracy[0] == pytest.approx(v.accuracy[1])
    assert v.nfr_diff_ci[1] < 0 and v.n_worse == 40 and v.n_better == 40


def test_significantly_less_accurate_does_not_dominate(flips_data):
    X, y, inc, sup = flips_data
    cand = sup.clone()
    cand[:40] = y[:40]
    cand[300:400] = (y[300:400] + 2) % 3  # 100 worse, 40 better
    v = dominates(_logits(cand), _logits(sup), _logits(inc), (X, y))
    assert not v and not v.accuracy_ok and v.nfr_ok and v.mcnemar_p < 0.05


def test_nll_margin(flips_data):
    X, y, inc, sup = flips_data
    cand = sup.clone()
    cand[:40] = y[:40]
    v = dominates(_logits(cand, scale=0.3), _logits(sup), _logits(inc), (X, y))
    assert not v and "nll" in v.failed and v.nll[0] > v.nll[1] + 0.02


def test_dominates_takes_modules(upgrade_pair, problem):
    inc, sup = upgrade_pair
    _, val = problem
    v = dominates(sup, sup, inc, (val.X, val.y))
    assert not v and v.n == len(val)
    with pytest.raises(ValueError, match="logits"):
        dominates(torch.zeros(3, 3), sup, inc, (val.X, val.y))
