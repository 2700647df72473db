"""Small, fast fixtures: a 3-class problem, an incumbent θ* trained on little data, a superior θ†."""

from __future__ import annotations

import pytest
import torch

from synthfuse.retrain import MLP, train_classifier
from synthfuse.retrain.datasets import split, synthetic_classification


@pytest.fixture(scope="session")
def problem():
    """(train, val) of a 3-class, 8-feature problem; 420 / 180 samples."""
    ds = synthetic_classification(600, n_features=8, n_informative=6, n_classes=3, class_sep=2.0, seed=0)
    train, val = split(ds, (0.7, 0.3), seed=0)
    return train, val


@pytest.fixture(scope="session")
def make_mlp():
    """Factory ``make_mlp(seed, hidden=(16, 12))`` of fresh 8 → hidden → 3 MLPs."""

    def make(seed: int, hidden=(16, 12)) -> MLP:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return MLP(8, hidden, 3)

    return make


@pytest.fixture(scope="session")
def upgrade_pair(problem, make_mlp):
    """(θ*, θ†): θ* trained on 80 samples, θ† on all 420; two hidden layers."""
    train, _ = problem
    incumbent = train_classifier(make_mlp(1), train.subset(slice(0, 80)), epochs=15, lr=3e-3, seed=1)
    superior = train_classifier(make_mlp(2), train, epochs=15, lr=3e-3, seed=2)
    return incumbent, superior
