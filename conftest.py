"""Root pytest configuration shared by every package's tests.

- ``@pytest.mark.cuda`` tests are skipped unless a CUDA device is visible to torch or jax.
- ``@pytest.mark.slow`` tests are skipped unless ``-m slow`` (or ``--run-slow``) is given.
- Single-threaded math by default: two threads are slower than one on the 2-core CI machine.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    if importlib.util.find_spec("jax") is not None:
        try:
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        except RuntimeError:
            return False
    return False


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow") or "slow" in (config.getoption("-m") or "")
    has_cuda = None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with -m slow or --run-slow"))
        if "cuda" in item.keywords:
            if has_cuda is None:
                has_cuda = _cuda_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
