"""Explicit polynomial features of standardized inputs (the experts' design matrix).

.. math::

    z = (x - \\mu_x) / \\sigma_x, \\qquad
    \\phi(x) = \\Big(1,\\ \\big(z^{\\alpha} - m_\\alpha\\big) / s_\\alpha\\ :\\ 1 \\le |\\alpha| \\le d\\Big),

with one monomial :math:`z^\\alpha = \\prod_j z_j^{\\alpha_j}` per multi-index of total degree
:math:`1..d`, in scikit-learn's ``PolynomialFeatures`` order, each centred and scaled by its training
mean :math:`m_\\alpha` and standard deviation :math:`s_\\alpha`. Feature 0 is the (unpenalized)
intercept. There are :math:`P = \\binom{n + d}{d}` features for ``n`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement
from math import comb

import numpy as np

__all__ = ["PolynomialMap", "n_polynomial_features"]


def n_polynomial_features(n_inputs: int, degree: int) -> int:
    """:math:`P = \\binom{n + d}{d}`, intercept included."""
    return comb(n_inputs + degree, degree)


def _monomials(n_inputs: int, degree: int) -> list[tuple[int, ...]]:
    """Multi-indices as sorted tuples of input columns, degree 0 first (``PolynomialFeatures`` order)."""
    return [c for d in range(degree + 1) for c in combinations_with_replacement(range(n_inputs), d)]


def _raw_monomials(Z: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of ``Z`` up to ``degree``: (n, P); each built from its parent times one column."""
    monos = _monomials(Z.shape[1], degree)
    out = np.empty((Z.shape[0], len(monos)), dtype=np.float64)
    index = {(): 0}
    out[:, 0] = 1.0
    for col, mono in enumerate(monos[1:], start=1):
        index[mono] = col
        out[:, col] = out[:, index[mono[:-1]]] * Z[:, mono[-1]]
    return out


@dataclass(frozen=True)
class PolynomialMap:
    """Fitted standardization + polynomial expansion; ``transform(X)`` gives :math:`\\phi(X)`."""

    degree: int
    x_mean: np.ndarray
    x_scale: np.ndarray
    f_mean: np.ndarray
    f_scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, degree: int) -> "PolynomialMap":
        """Learn :math:`\\mu_x, \\sigma_x` and the monomials' :math:`m_\\alpha, s_\\alpha` on ``X``."""
        x_mean = X.mean(axis=0)
        x_scale = _safe_scale(X.std(axis=0), x_mean)
        raw = _raw_monomials((X - x_mean) / x_scale, degree)
        f_mean = raw.mean(axis=0)
        f_scale = _safe_scale(raw.std(axis=0), f_mean)
        f_mean[0], f_scale[0] = 0.0, 1.0  # keep the intercept column at 1
        return cls(degree, x_mean, x_scale, f_mean, f_scale)

    @property
    def n_features(self) -> int:
        return self.f_mean.shape[0]

    def standardize(self, X: np.ndarray) -> np.ndarray:
        """:math:`z = (x - \\mu_x)/\\sigma_x`."""
        return (X - self.x_mean) / self.x_scale

    def transform(self, X: np.ndarray) -> np.ndarray:
        """:math:`\\phi(X)`, shape (n, P), float64."""
        return (_raw_monomials(self.standardize(X), self.degree) - self.f_mean) / self.f_scale


def _safe_scale(std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Standard deviations with (numerically) constant columns mapped to 1, so they stay finite."""
    std = np.asarray(std, dtype=np.float64).copy()
    std[~(std > 1e-10 * np.maximum(1.0, np.abs(mean)))] = 1.0
    return std
