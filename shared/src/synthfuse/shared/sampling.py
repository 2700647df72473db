r"""Next-token sampling: temperature, top-k and nucleus (top-p) filtering of logits (torch).

With logits :math:`\ell \in \mathbb{R}^V` and temperature :math:`\tau > 0`, a token is drawn
from :math:`\operatorname{softmax}(\ell / \tau)` restricted to

- the ``k`` most probable tokens (top-k; Fan, Lewis & Dauphin, "Hierarchical Neural Story
  Generation", ACL 2018), then
- the smallest set of most probable tokens whose probability reaches ``p`` (nucleus sampling;
  Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR 2020): with the
  tokens ranked by probability, token :math:`v` is kept when the mass ranked before it is
  :math:`< p`, so the most probable token is always kept.

``None`` switches a filter off (``top_p = 1`` keeps every token too). :math:`\tau \to 0`
concentrates the distribution on the argmax: :func:`sample_next` takes ``temperature = 0``
as greedy decoding. Tokens whose logit is already ``-inf`` (forbidden by a constraint) stay
excluded; every row needs one finite logit. Half-precision logits are filtered in float32.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["check_sampling_args", "filter_logits", "sample_next"]


def check_sampling_args(temperature: float, top_k: int | None = None, top_p: float | None = None, *,
                        allow_greedy: bool = False) -> None:
    """``ValueError`` unless the sampling settings are valid.

    ``temperature`` must be a finite number ``> 0`` (``>= 0`` with ``allow_greedy``: 0 is
    greedy decoding), ``top_k`` an integer ``>= 1`` or ``None`` (off), ``top_p`` a number in
    ``(0, 1]`` or ``None`` (off).
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            math.isfinite(temperature) and (temperature > 0 or (allow_greedy and temperature == 0))):
        hint = "(0 is greedy decoding)" if allow_greedy else "(for temperature 0 use greedy decoding / argmax)"
        raise ValueError(f"temperature must be a finite number {'>=' if allow_greedy else '>'} 0 {hint}, "
                         f"got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, or None to keep every token, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1], or be None to keep every token, got {top_p!r}")


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim == 0 or logits.shape[-1] == 0:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor (..., V) with V >= 1, got {shape}")


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    r"""Logits (..., V) divided by ``temperature``, with the tokens the filters drop set to ``-inf``.

    Top-k is applied first, then the nucleus of what is left (module docstring). Tokens tied
    with the k-th largest logit are all kept. ``softmax`` of the result is the sampling
    distribution.

    Parameters
    ----------
    logits : Tensor (..., V)
    temperature : float
        :math:`\tau > 0`.
    top_k : int or None
        Keep the ``k`` largest logits (``None``: all).
    top_p : float or None
        Keep the smallest set of most probable tokens with total probability ``>= p``
        (``None`` or 1: all).

    Returns
    -------
    Tensor (..., V)
        Float32 or wider.
    """
    _check_logits(logits)
    check_sampling_args(temperature, top_k, top_p)
    out = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    if top_k is not None and top_k < out.shape[-1]:
        kth = out.topk(int(top_k), dim=-1).values[..., -1:]  # (..., 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = out.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # the mass ranked before this token reaches p
        out = out.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return out


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of ``logits`` (..., V) -> (...,) int64.

    ``temperature = 0`` is greedy decoding (the argmax; ``generator`` is not advanced);
    otherwise the token is drawn from ``softmax(filter_logits(logits, temperature, top_k,
    top_p))`` with ``torch.multinomial`` (the same ``generator`` state gives the same draw).
    """
    _check_logits(logits)
    check_sampling_args(temperature, top_k, top_p, allow_greedy=True)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])  # multinomial takes (N, V)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _reference_filter_logits(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None) -> Tensor:
    """Row by row with Python lists: top-k first, then the nucleus of what is left (testing only).

    ``top_k`` 0 or None and ``top_p`` 1 or None are off. Ties at the k-th logit are broken by
    index here, so compare on logits without ties.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    rows = []
    for row in (logits.to(dtype) / temperature).reshape(-1, logits.shape[-1]).tolist():
        ranked = [v for v in sorted(range(len(row)), key=lambda v: -row[v]) if row[v] != float("-inf")]
        if top_k:
            ranked = ranked[:top_k]
        top = row[ranked[0]]
        z = sum(math.exp(row[v] - top) for v in ranked)
        keep, mass = set(), 0.0
        for v in ranked:
            if top_p is not None and top_p < 1 and mass >= top_p:
                break
            keep.add(v)
            mass += math.exp(row[v] - top) / z
        rows.append([x if v in keep else float("-inf") for v, x in enumerate(row)])
    return torch.tensor(rows, dtype=dtype).reshape(logits.shape)
