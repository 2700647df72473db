"""Fixtures shared by the synthe tests: error measures, tolerances and small models."""

from __future__ import annotations

import pytest
import torch

#: Relative-error bounds of the fast (chunked / scanned) paths against their naive references.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``|actual - expected| / |expected|`` (Frobenius norms; absolute when expected is 0)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = expected.norm().item()
    diff = (actual - expected).norm().item()
    return diff / scale if scale > 0 else diff


@pytest.fixture
def rel_err():
    return _relative_error


@pytest.fixture
def tolerance():
    return TOLERANCE


@pytest.fixture
def small_config():
    """A factory of small SyntheConfigs (every feature on, short segments and windows)."""
    from synthfuse.synthe import SyntheConfig

    def make(**overrides):
        values = dict(
            vocab_size=61, d_model=24, n_layers=4, n_heads=2, chunk_size=16, probe_window=8,
            probe_layers=[1, 2], exit_layers=[1, 2], sentence_len=4, discourse_len=16,
        )
        values.update(overrides)
        return SyntheConfig(**values)

    return make


@pytest.fixture
def calibrate():
    """Set router and probe thresholds at the medians of their scores (both paths act)."""
    from synthfuse.synthe.testing import calibrate_thresholds

    return calibrate_thresholds
