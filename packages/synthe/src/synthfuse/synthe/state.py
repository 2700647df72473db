"""Recurrent state of a SYNTHE model: a nested dict of tensors, saved and loaded atomically.

``{"position": int64 scalar, "hub": {...}, "blocks": [{"momentum": ..., "delta": ...,
"kalman": ..., "probe": ...}, ...]}``. Its size does not depend on how many tokens were read.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import Tensor

from synthfuse.shared.io import atomic_open


def map_state(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a (nested dict / list) state."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [map_state(v, fn) for v in state]
    raise TypeError(f"a SYNTHE state holds tensors, dicts and lists; found {type(state).__name__}")


def detach_state(state: Any) -> Any:
    """The same state cut from the autograd graph (truncated backpropagation through time)."""
    return map_state(state, Tensor.detach)


def state_nbytes(state: Any) -> int:
    """Bytes held by the tensors of a state."""
    total = 0

    def count(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    map_state(state, count)
    return total


def save_state(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (``torch.save`` format)."""
    with atomic_open(path, "wb") as fh:
        torch.save(map_state(state, lambda t: t.detach().cpu()), fh)


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a state written by :func:`save_state` (``weights_only=True``: tensors and containers only)."""
    return torch.load(path, map_location=map_location, weights_only=True)
