"""Temperature, top-k and nucleus (top-p) filtering of next-token logits.

With logits :math:`\\ell` and temperature :math:`\\tau > 0`, sampling draws from
:math:`\\operatorname{softmax}(\\ell / \\tau)` restricted to

- the ``k`` most probable tokens (top-k; Fan, Lewis & Dauphin 2018), and
- the smallest set of most probable tokens whose probability reaches ``p``
  (nucleus sampling; Holtzman et al. 2020): token ``v`` is kept when the mass of the
  tokens ranked before it is ``< p``, so the most probable token is always kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_sampling_args", "filter_logits"]


def check_sampling_args(temperature: float, top_k: int, top_p: float) -> None:
    """``ValueError`` unless ``temperature > 0`` (finite), ``top_k >= 0`` (0: off) and ``0 < top_p <= 1``."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0 (use greedy for temperature 0), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 turns it off), got {top_k!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (1 turns it off), got {top_p!r}")


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits (N, V) divided by ``temperature`` with the filtered-out tokens set to ``-inf``.

    Tokens already at ``-inf`` (disallowed by a constraint) stay excluded.
    """
    check_sampling_args(temperature, top_k, top_p)
    out = logits / temperature
    if 0 < top_k < out.shape[-1]:
        kth = out.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = out.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass ranked before each token
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def _reference_filter_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Row by row with Python lists: top-k first, then the nucleus of what is left (testing only)."""
    rows = []
    for row in (logits / temperature).tolist():
        ranked = [v for v in sorted(range(len(row)), key=lambda v: -row[v]) if row[v] != float("-inf")]
        if top_k:
            ranked = ranked[:top_k]
        top = row[ranked[0]]
        z = sum(math.exp(row[v] - top) for v in ranked)
        keep, mass = set(), 0.0
        for v in ranked:
            if top_p < 1 and mass >= top_p:
                break
            keep.add(v)
            mass += math.exp(row[v] - top) / z
        rows.append([x if v in keep else float("-inf") for v, x in enumerate(row)])
    return torch.tensor(rows, dtype=logits.dtype)
