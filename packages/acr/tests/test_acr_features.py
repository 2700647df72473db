"""Polynomial features: scikit-learn's PolynomialFeatures is the oracle."""

import numpy as np
import pytest
from math import comb
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from synthfuse.acr._features import PolynomialMap, n_polynomial_features


@pytest.mark.parametrize("n_inputs,degree", [(1, 1), (2, 3), (5, 3), (3, 4), (4, 0)], ids=lambda v: str(v))
def test_acr_features_match_sklearn(n_inputs, degree):
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(200, n_inputs))
    pmap = PolynomialMap.fit(X, degree)
    Z = StandardScaler().fit_transform(X)
    raw = PolynomialFeatures(degree).fit_transform(Z)
    expected = raw.copy()
    expected[:, 1:] = StandardScaler().fit_transform(raw[:, 1:]) if raw.shape[1] > 1 else raw[:, 1:]
    np.testing.assert_allclose(pmap.transform(X), expected, rtol=1e-9, atol=1e-9)
    assert pmap.n_features == n_polynomial_features(n_inputs, degree) == comb(n_inputs + degree, degree)


def test_acr_features_constant_column_stays_finite():
    X = np.column_stack([np.full(50, 7.0), np.linspace(-1, 1, 50)])
    phi = PolynomialMap.fit(X, 2).transform(X)
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi[:, 0], 1.0)  # intercept untouched


def test_acr_features_new_points_use_training_statistics():
    rng = np.random.default_rng(1)
    X, X_new = rng.normal(size=(100, 2)), rng.normal(size=(7, 2))
    pmap = PolynomialMap.fit(X, 2)
    both = pmap.transform(np.vstack([X, X_new]))
    np.testing.assert_allclose(both[100:], pmap.transform(X_new))
    np.testing.assert_allclose(pmap.transform(X)[:, 1:].mean(axis=0), 0.0, atol=1e-12)
