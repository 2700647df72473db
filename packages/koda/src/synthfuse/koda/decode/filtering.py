"""KODA's spelling of the sampling filters: ``top_k = 0`` (or ``None``) and ``top_p = 1`` switch them off.

The filters are :mod:`synthfuse.shared.sampling` (temperature, top-k, then nucleus top-p;
equations and references there), whose one convention for "off" is ``None``. KODA's public
decoding API has promised ``top_k = 0`` for "no top-k" since its first release, so its entry
points translate 0 to ``None`` here and otherwise pass their arguments on unchanged.
"""

from __future__ import annotations

from torch import Tensor

from synthfuse.shared import sampling

__all__ = ["filter_logits", "shared_top_k"]


def shared_top_k(top_k: int | None) -> int | None:
    """KODA's ``top_k`` (0 or ``None``: off) in the convention of :mod:`synthfuse.shared.sampling`."""
    return None if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k == 0 else top_k


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = 0, top_p: float | None = 1.0) -> Tensor:
    """Logits (..., V) divided by ``temperature`` (> 0) with the filtered-out tokens set to ``-inf``.

    :func:`synthfuse.shared.sampling.filter_logits` with ``top_k = 0`` meaning off. Tokens
    already at ``-inf`` (disallowed by a constraint) stay excluded.
    """
    return sampling.filter_logits(logits, temperature, shared_top_k(top_k), top_p)
