"""Parallel prefix scans over the time axis (work-efficient recursive pairing).

A scan combines per-step maps with an associative rule ``combine(later, earlier)``. The
recursion pairs neighbours ``(2i, 2i + 1)``, scans the T/2 pair products, and fills in the even
positions with one more combine: O(T) work in total, log2(T) sequential levels, no loop over
tokens, and exact by construction (the prefix at step t only ever combines steps <= t).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Elements = tuple[Tensor, ...]


def associative_scan(elements: Elements, combine: Callable[[Elements, Elements], Elements]) -> Elements:
    """Inclusive prefix combination along dim 1: ``out_t = e_t o e_{t-1} o ... o e_1``.

    Parameters
    ----------
    elements : tuple of Tensor, each (B, T, ...)
        The per-step maps, as a tuple of component tensors.
    combine : callable
        ``combine(later, earlier)`` returns the components of ``later o earlier``.
    """
    t = elements[0].shape[1]
    if t == 1:
        return elements
    if t % 2:
        head = associative_scan(tuple(e[:, :-1] for e in elements), combine)
        last = combine(tuple(e[:, -1:] for e in elements), tuple(h[:, -1:] for h in head))
        return tuple(torch.cat([h, l], dim=1) for h, l in zip(head, last))
    earlier = tuple(e[:, 0::2] for e in elements)
    later = tuple(e[:, 1::2] for e in elements)
    odd = associative_scan(combine(later, earlier), combine)  # prefixes ending at 1, 3, 5, ...
    even_rest = combine(tuple(e[:, 1:] for e in earlier), tuple(o[:, :-1] for o in odd))  # at 2, 4, ...
    even = tuple(torch.cat([e[:, :1], r], dim=1) for e, r in zip(earlier, even_rest))
    return tuple(torch.stack([ev, od], dim=2).flatten(1, 2) for ev, od in zip(even, odd))


def _affine_combine(later: Elements, earlier: Elements) -> Elements:
    (c2, b2), (c1, b1) = later, earlier
    return c2 * c1, torch.addcmul(b2, c2, b1)


def linear_scan(c: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All ``h_t = c_t * h_{t-1} + b_t`` for t = 1..T (element-wise).

    Parameters
    ----------
    c, b : Tensor, shape (B, T, ...)
    h0 : Tensor, shape (B, ...)

    Returns
    -------
    Tensor, shape (B, T, ...)

    Notes
    -----
    The maps ``h -> c h + b`` compose as ``(c_2, b_2) o (c_1, b_1) = (c_2 c_1, c_2 b_1 + b_2)``.
    """
    c_prefix, b_prefix = associative_scan((c, b), _affine_combine)
    return torch.addcmul(b_prefix, c_prefix, h0.unsqueeze(1))


def _mobius_combine(later: Elements, earlier: Elements) -> Elements:
    # [[a2, b2], [c2, 1]] @ [[a1, b1], [c1, 1]], rescaled so that the corner entry is 1 again.
    (a2, b2, c2), (a1, b1, c1) = later, earlier
    corner = torch.addcmul(torch.ones_like(b1), c2, b1)  # c2 b1 + 1 >= 1
    inv = corner.reciprocal()
    return (
        torch.addcmul(a2 * a1, b2, c1) * inv,
        torch.addcmul(b2, a2, b1) * inv,
        torch.addcmul(c1, c2, a1) * inv,
    )


def mobius_scan(m: Elements, p0: Tensor) -> Tensor:
    """All ``p_t = (m11_t p_{t-1} + m12_t) / (m21_t p_{t-1} + m22_t)`` for t = 1..T.

    A Moebius (linear-fractional) map is the action of the 2x2 matrix
    ``[[m11, m12], [m21, m22]]`` on ``[p, 1]``, so composing maps is multiplying matrices
    (``later @ earlier``). Matrices act up to scale, so each is kept with its corner entry equal
    to 1: ``[[a, b], [c, 1]]``. With non-negative entries the corner of a product,
    ``c_2 b_1 + 1``, is >= 1, so the rescaling never divides by a small number and nothing
    overflows however long the sequence.

    Parameters
    ----------
    m : four Tensors, shape (B, T, ...)
        The matrix entries of each step, non-negative, with ``m22 > 0``.
    p0 : Tensor, shape (B, ...)

    Returns
    -------
    Tensor, shape (B, T, ...)
    """
    m11, m12, m21, m22 = m
    inv = m22.reciprocal()
    a, b, c = associative_scan((m11 * inv, m12 * inv, m21 * inv), _mobius_combine)
    p0 = p0.unsqueeze(1)
    return (a * p0 + b) / (c * p0 + 1.0)
