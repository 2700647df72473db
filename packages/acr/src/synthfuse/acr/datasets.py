"""Heteroscedastic regression problems with a known noise-free function (for tests and benchmarks).

Each generator returns ``(X, y, f, sigma)``: inputs, noisy targets ``y = f + sigma * N(0, 1)``, the
noise-free function values ``f`` (so the error against the truth, RMSE(f), can be measured) and
the noise standard deviation ``sigma`` of every sample.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.utils import check_random_state

__all__ = ["make_heteroscedastic_friedman1", "make_heteroscedastic_sine"]


def make_heteroscedastic_sine(n_samples: int, *, n_features: int = 5, random_state=None):
    """:math:`x \\sim N(0, I)`, :math:`f = \\sin(3 x_0) + x_1^2`, :math:`\\sigma = 0.1 + 0.5|x_0|`.

    Only ``x0`` and ``x1`` matter; the other ``n_features - 2`` inputs are noise dimensions.
    """
    if n_features < 2:
        raise ValueError(f"n_features must be >= 2, got {n_features}.")
    rng = check_random_state(random_state)
    X = rng.standard_normal((n_samples, n_features))
    f = np.sin(3.0 * X[:, 0]) + X[:, 1] ** 2
    sigma = 0.1 + 0.5 * np.abs(X[:, 0])
    return X, f + sigma * rng.standard_normal(n_samples), f, sigma


def make_heteroscedastic_friedman1(n_samples: int, *, random_state=None):
    """Friedman #1 (Friedman 1991) with noise growing along ``x0``: :math:`\\sigma = 0.5 + 2 x_0`.

    :math:`x \\sim U[0, 1]^{10}`,
    :math:`f = 10\\sin(\\pi x_0 x_1) + 20 (x_2 - 0.5)^2 + 10 x_3 + 5 x_4`.
    """
    rng = check_random_state(random_state)
    X, f = make_friedman1(n_samples, n_features=10, noise=0.0, random_state=rng)
    sigma = 0.5 + 2.0 * X[:, 0]
    return X, f + sigma * rng.standard_normal(n_samples), f, sigma
