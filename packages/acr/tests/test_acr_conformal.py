"""Conformal intervals: the quantile formula, and coverage / adaptivity on held-out data."""

import numpy as np
import pytest

from synthfuse.acr import MixtureOfSVRExperts
from synthfuse.acr._conformal import conformal_quantile
from synthfuse.acr.datasets import make_heteroscedastic_sine


def test_acr_conformal_quantile_known_values():
    scores = np.arange(1.0, 10.0)  # n = 9
    assert conformal_quantile(scores, 0.1) == 9.0  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    assert conformal_quantile(scores, 0.35) == 7.0  # ceil(6.5) = 7th
    assert conformal_quantile(scores, 0.05) == np.inf  # ceil(9.5) = 10 > n


def test_acr_conformal_quantile_is_exactly_valid_for_exchangeable_scores():
    # For exchangeable continuous scores P(R_{n+1} <= q) = ceil((n+1)(1-α)) / (n+1) exactly.
    rng = np.random.default_rng(0)
    n, trials, alpha = 19, 20000, 0.1
    draws = rng.exponential(size=(trials, n + 1))
    q = np.array([conformal_quantile(np.sort(d[:n]), alpha) for d in draws])
    hit = np.mean(draws[:, n] <= q)
    assert hit == pytest.approx(np.ceil((n + 1) * (1 - alpha)) / (n + 1), abs=0.006)


@pytest.mark.parametrize("complexity", ["forest", "none"])
def test_acr_interval_coverage_on_held_out_data(sine_test, complexity):
    # 3,000 calibration residuals: the coverage's own sampling sd is about 0.5 points
    X, y, _, _ = make_heteroscedastic_sine(3000, random_state=5)
    X_test, y_test, _, sigma = sine_test
    model = MixtureOfSVRExperts(complexity=complexity, random_state=0).fit(X, y)
    for alpha in (0.1, 0.2):
        lower, upper = model.predict_interval(X_test, alpha=alpha)
        coverage = np.mean((y_test >= lower) & (y_test <= upper))
        assert abs(coverage - (1 - alpha)) <= 0.02, (alpha, coverage)
    # locally adaptive: wider where the noise is larger
    width = upper - lower
    lo, hi = np.quantile(sigma, [0.2, 0.8])
    assert width[sigma >= hi].mean() > 2 * width[sigma <= lo].mean()
