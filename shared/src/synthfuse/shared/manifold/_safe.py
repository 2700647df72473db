"""Even functions ``f(s)/s``-style ratios that stay finite, with finite gradients, at ``s = 0``.

Each ratio ``g`` is evaluated exactly for ``|s| >= eps**(1/4)`` (eps: machine epsilon of the
dtype, so 1.2e-4 in float64 and 1.9e-2 in float32) and by its Taylor series
``1 + c2 s^2 + c4 s^4`` below; the truncation error ``O(s^6)`` is then below ``eps**1.5``.
The exact branch sees ``s = 0.5`` where the series is used, so neither branch of the ``where``
produces ``0/0`` and autograd never multiplies a NaN by zero.
"""

from __future__ import annotations

from typing import Any, Callable

from synthfuse.shared.backend import ArrayNamespace


def _even_ratio(nx: ArrayNamespace, s: Any, exact: Callable[[Any], Any], c2: float, c4: float):
    small = nx.abs(s) < nx.eps(s) ** 0.25
    s_safe = nx.where(small, 0.5, s)  # a harmless value inside every ratio's domain
    s2 = s * s
    return nx.where(small, 1.0 + s2 * (c2 + c4 * s2), exact(s_safe))


def sinc(nx: ArrayNamespace, s):
    r"""``sin(s) / s`` (unnormalised sinc); series :math:`1 - s^2/6 + s^4/120`."""
    return _even_ratio(nx, s, lambda t: nx.sin(t) / t, -1.0 / 6.0, 1.0 / 120.0)


def x_over_sin(nx: ArrayNamespace, s):
    r"""``s / sin(s)`` for ``|s| < pi``; series :math:`1 + s^2/6 + 7 s^4/360`."""
    return _even_ratio(nx, s, lambda t: t / nx.sin(t), 1.0 / 6.0, 7.0 / 360.0)


def tanhc(nx: ArrayNamespace, s):
    r"""``tanh(s) / s``; series :math:`1 - s^2/3 + 2 s^4/15`."""
    return _even_ratio(nx, s, lambda t: nx.tanh(t) / t, -1.0 / 3.0, 2.0 / 15.0)


def artanhc(nx: ArrayNamespace, s):
    r"""``artanh(s) / s`` for ``|s| < 1``; series :math:`1 + s^2/3 + s^4/5`."""
    return _even_ratio(nx, s, lambda t: nx.arctanh(t) / t, 1.0 / 3.0, 1.0 / 5.0)


def sinhc(nx: ArrayNamespace, s):
    r"""``sinh(s) / s``; series :math:`1 + s^2/6 + s^4/120`."""
    return _even_ratio(nx, s, lambda t: nx.sinh(t) / t, 1.0 / 6.0, 1.0 / 120.0)
