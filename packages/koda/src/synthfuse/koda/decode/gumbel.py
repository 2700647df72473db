r"""Gumbel-top-k: ``k`` tokens drawn without replacement from :math:`\operatorname{softmax}(\ell / \tau)`.

With logits :math:`\ell \in \mathbb{R}^V`, temperature :math:`\tau > 0` and independent
:math:`G_v \sim \operatorname{Gumbel}(0, 1)` (:math:`G = -\log(-\log U)`, :math:`U \sim
\mathcal{U}(0, 1)`), the indices of the ``k`` largest perturbed logits

.. math::
    (v_1, \dots, v_k) = \operatorname{top-}k_v \bigl( \ell_v / \tau + G_v \bigr)
    \quad (\text{in decreasing order})

are distributed as ``k`` successive draws without replacement from
:math:`p = \operatorname{softmax}(\ell / \tau)`: :math:`P(v_1 = i) = p_i` and
:math:`P(v_1 = i, v_2 = j) = p_i\, p_j / (1 - p_i)` (Gumbel-max for ``k = 1``; Kool, van Hoof &
Welling, "Stochastic Beams and Where to Find Them: The Gumbel-Top-k Trick for Sampling
Sequences Without Replacement", ICML 2019). Tokens at ``-inf`` are never drawn while finite
ones remain.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["gumbel_top_k"]


def gumbel_top_k(logits: Tensor, k: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    r"""``k`` indices per row of ``logits`` (..., V), drawn without replacement from ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : Tensor (..., V)
        Floating point; ``-inf`` marks tokens that must not be drawn.
    k : int
        Draws per row, ``1 <= k <= V``. Where a row has fewer than ``k`` finite logits, its
        last entries are excluded (``-inf``) tokens in arbitrary order.
    temperature : float
        :math:`\tau > 0`.
    generator : torch.Generator, optional
        Source of the Gumbel noise (same state, same draws); on the device of ``logits``.

    Returns
    -------
    Tensor (..., k) int64
        The draws in order: column 0 is the first token drawn, column 1 the second, ...
        (module docstring).
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim == 0 or logits.shape[-1] == 0:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor (..., V) with V >= 1, got {shape}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be an integer in [1, V={logits.shape[-1]}], got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    # float64 noise: U is never 0 in practice and G is not truncated at float32's -log(2^-24).
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
    gumbel = -torch.log(-torch.log(u))  # G ~ Gumbel(0, 1)
    return (logits.double() / temperature + gumbel).topk(int(k), dim=-1).indices
