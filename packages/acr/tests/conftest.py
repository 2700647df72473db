"""Fixtures shared by the synthfuse.acr tests: small heteroscedastic data sets."""

from __future__ import annotations

import pytest

from synthfuse.acr.datasets import make_heteroscedastic_sine


@pytest.fixture(scope="session")
def sine_train():
    """1,000 training samples of y = sin(3 x0) + x1^2 + noise (sd 0.1 + 0.5 |x0|), 5 inputs."""
    return make_heteroscedastic_sine(1000, random_state=0)


@pytest.fixture(scope="session")
def sine_test():
    """20,000 held-out samples from the same distribution."""
    return make_heteroscedastic_sine(20000, random_state=1)


@pytest.fixture(scope="session")
def fitted_sine(sine_train):
    """The default estimator fitted on ``sine_train`` (shared by read-only tests)."""
    from synthfuse.acr import MixtureOfSVRExperts

    X, y, _, _ = sine_train
    return MixtureOfSVRExperts(random_state=0).fit(X, y)
