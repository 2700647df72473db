"""The noise forest behind Ω: it recovers a known noise scale and normalizes to mean 1."""

import numpy as np

from synthfuse.acr._complexity import NoiseForest


def test_acr_noise_forest_recovers_known_scale():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(4000, 3))
    sigma = 0.2 + np.abs(Z[:, 0])
    resid = sigma * rng.standard_normal(4000)
    forest = NoiseForest.fit(Z, np.abs(resid), rng=np.random.RandomState(0))
    Z_new = np.column_stack([np.linspace(-2, 2, 9), np.zeros((9, 2))])
    g = forest.scale(Z_new)
    # E|e| = σ sqrt(2/π) for Gaussian noise
    np.testing.assert_allclose(g, (0.2 + np.abs(Z_new[:, 0])) * np.sqrt(2 / np.pi), rtol=0.25, atol=0.05)
    omega = forest.omega(Z)
    assert omega.mean() == np.float64(omega.mean()) and abs(omega.mean() - 1) < 1e-9
    assert np.corrcoef(forest.oob_scale, sigma)[0, 1] > 0.8


def test_acr_noise_forest_without_noise_is_flat():
    Z = np.random.default_rng(1).normal(size=(200, 2))
    forest = NoiseForest.fit(Z, np.zeros(200), rng=np.random.RandomState(0))
    np.testing.assert_array_equal(forest.omega(Z), 1.0)
    assert np.all(forest.scale(Z) > 0) and np.all(forest.oob_scale > 0)
