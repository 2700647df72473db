"""The benchmark data generators: the stated formulas, and noise of the stated scale."""

import numpy as np
import pytest

from synthfuse.acr.datasets import make_heteroscedastic_friedman1, make_heteroscedastic_sine


def test_acr_sine_data_follow_the_formula():
    X, y, f, sigma = make_heteroscedastic_sine(20000, random_state=0)
    np.testing.assert_allclose(f, np.sin(3 * X[:, 0]) + X[:, 1] ** 2)
    np.testing.assert_allclose(sigma, 0.1 + 0.5 * np.abs(X[:, 0]))
    z = (y - f) / sigma
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert X.shape == (20000, 5) and abs(X.std() - 1) < 0.02
    with pytest.raises(ValueError, match="n_features"):
        make_heteroscedastic_sine(10, n_features=1)


def test_acr_friedman_data_follow_the_formula():
    X, y, f, sigma = make_heteroscedastic_friedman1(20000, random_state=0)
    expected = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2
                + 10 * X[:, 3] + 5 * X[:, 4])
    np.testing.assert_allclose(f, expected)
    np.testing.assert_allclose(sigma, 0.5 + 2 * X[:, 0])
    z = (y - f) / sigma
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
