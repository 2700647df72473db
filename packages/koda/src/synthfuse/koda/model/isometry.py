"""Initialization for dynamical isometry: orthogonal and Marchenko–Pastur-shaped weights.

A deep linear map :math:`J = W_L \\cdots W_1` is well conditioned only when every factor is
close to an isometry. With i.i.d. Gaussian entries of variance :math:`\\sigma^2/n_{in}` the
squared singular values of one layer follow the Marchenko–Pastur law (Marchenko & Pastur
1967): for aspect ratio :math:`\\lambda = \\min(m,n)/\\max(m,n)` and scale :math:`s^2`,

.. math::
    \\rho(x) = \\frac{\\sqrt{(\\lambda_+ - x)(x - \\lambda_-)}}{2\\pi s^2 \\lambda x}, \\qquad
    \\lambda_\\pm = s^2 (1 \\pm \\sqrt{\\lambda})^2,

so the product's singular values spread exponentially with depth. Orthogonal weights put
every singular value at the gain and give :math:`\\kappa(J) = 1` at any depth: dynamical
isometry (Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017).

Two SVD-based schemes, both :math:`W = U \\operatorname{diag}(\\sigma) V^\\top` with Haar
:math:`U, V`:

- :func:`orthogonal_`: :math:`\\sigma_i = \\text{gain}` (the isometric init the model uses);
- :func:`marchenko_pastur_`: :math:`\\sigma_i^2` the mid-quantiles of the MP law of the matching
  Gaussian init, i.e. the Gaussian spectrum without its finite-size fluctuations (the
  non-isometric baseline).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "INIT_SCHEMES", "gaussian_spectrum_law", "initialize_", "marchenko_pastur_",
    "marchenko_pastur_pdf", "marchenko_pastur_quantiles", "marchenko_pastur_support", "orthogonal_",
]

InitScheme = Literal["orthogonal", "marchenko_pastur", "default"]
INIT_SCHEMES: tuple[str, ...] = ("orthogonal", "marchenko_pastur", "default")


def _check_law(ratio: float, variance: float) -> None:
    if not (0 < ratio <= 1):
        raise ValueError(f"Marchenko-Pastur aspect ratio must lie in (0, 1], got {ratio}")
    if not variance > 0:
        raise ValueError(f"Marchenko-Pastur variance must be > 0, got {variance}")


def marchenko_pastur_support(ratio: float, variance: float = 1.0) -> tuple[float, float]:
    """Support :math:`[s^2(1-\\sqrt\\lambda)^2,\\; s^2(1+\\sqrt\\lambda)^2]` of the MP law."""
    _check_law(ratio, variance)
    r = math.sqrt(ratio)
    return variance * (1 - r) ** 2, variance * (1 + r) ** 2


def marchenko_pastur_pdf(x: np.ndarray, ratio: float, variance: float = 1.0) -> np.ndarray:
    """MP density :math:`\\rho(x)` (0 outside the support)."""
    lo, hi = marchenko_pastur_support(ratio, variance)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > lo) & (x < hi)
    safe = np.where(inside, x, 0.5 * (lo + hi))
    dens = np.sqrt(np.clip((hi - safe) * (safe - lo), 0, None)) / (2 * np.pi * variance * ratio * safe)
    return np.where(inside, dens, 0.0)


def marchenko_pastur_quantiles(count: int, ratio: float, variance: float = 1.0,
                               grid: int = 8193) -> np.ndarray:
    """The ``count`` mid-quantiles :math:`F^{-1}((i + 1/2)/\\text{count})` of the MP law, ascending.

    The CDF is integrated with the substitution :math:`x = c - h\\cos\\varphi` (``c``, ``h`` the
    centre and half-width of the support), under which the density is smooth
    (:math:`\\rho\\,dx = h^2 \\sin^2\\varphi / (2\\pi s^2 \\lambda x)\\,d\\varphi`), so the
    trapezoid rule converges fast.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    lo, hi = marchenko_pastur_support(ratio, variance)
    centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    phi = np.linspace(0.0, np.pi, grid)
    x = centre - half * np.cos(phi)
    if lo > 0:
        integrand = half**2 * np.sin(phi) ** 2 / (2 * np.pi * variance * ratio * x)
    else:  # square case, lo = 0: x = h (1 - cos phi) and sin^2 / (1 - cos) = 1 + cos, no 0/0
        integrand = half * (1 + np.cos(phi)) / (2 * np.pi * variance * ratio)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(phi))])
    cdf /= cdf[-1]  # removes the O(h^2) quadrature error in the total mass
    targets = (np.arange(count) + 0.5) / count
    return np.interp(targets, cdf, x)


def gaussian_spectrum_law(shape: tuple[int, int], gain: float = 1.0) -> tuple[float, float]:
    """``(ratio, variance)`` of the MP law of the squared singular values of a Gaussian init.

    For ``W`` of shape ``(m, n)`` (``m`` outputs, ``n`` inputs) with entries
    :math:`\\mathcal{N}(0, \\text{gain}^2/n)`: :math:`\\lambda = \\min(m,n)/\\max(m,n)` and
    :math:`s^2 = \\text{gain}^2 \\max(1, m/n)`.
    """
    m, n = int(shape[0]), int(shape[1])
    if m < 1 or n < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    return min(m, n) / max(m, n), gain**2 * max(1.0, m / n)


def _haar(rows: int, cols: int, batch: tuple[int, ...], generator, dtype) -> Tensor:
    """Haar-distributed matrices with orthonormal columns, shape ``(*batch, rows, cols)``, rows >= cols."""
    g = torch.randn(*batch, rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    # Sign fix (Mezzadri 2007) makes Q Haar-distributed rather than biased by the QR convention.
    return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)).to(dtype)


def _svd_init_(weight: Tensor, singular_values: Tensor, generator) -> Tensor:
    *batch, m, n = weight.shape
    k = min(m, n)
    u = _haar(m, k, tuple(batch), generator, torch.float64)
    v = _haar(n, k, tuple(batch), generator, torch.float64)
    w = (u * singular_values.to(torch.float64)) @ v.transpose(-1, -2)
    with torch.no_grad():
        weight.copy_(w.to(weight.dtype))
    return weight


def orthogonal_(weight: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``weight`` (``(..., m, n)``, batched over leading dims) with ``gain`` times a Haar (partial) isometry."""
    if weight.dim() < 2:
        raise ValueError(f"orthogonal_ needs a matrix (..., m, n), got shape {tuple(weight.shape)}")
    k = min(weight.shape[-2:])
    return _svd_init_(weight, torch.full((k,), float(gain)), generator)


def marchenko_pastur_(weight: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``weight`` (``(..., m, n)``) with Haar singular vectors and MP mid-quantile singular values.

    The squared singular values are the quantiles of :func:`gaussian_spectrum_law` for the
    matrix shape ``(m, n)``, i.e. those of the Gaussian fan-in init with variance ``gain**2 / n``.
    """
    if weight.dim() < 2:
        raise ValueError(f"marchenko_pastur_ needs a matrix (..., m, n), got shape {tuple(weight.shape)}")
    m, n = weight.shape[-2:]
    ratio, variance = gaussian_spectrum_law((m, n), gain)
    q = marchenko_pastur_quantiles(min(m, n), ratio, variance)
    return _svd_init_(weight, torch.from_numpy(np.sqrt(q)), generator)


def initialize_(module: nn.Module, scheme: InitScheme = "orthogonal", gain: float = 1.0,
                generator: torch.Generator | None = None) -> nn.Module:
    """Apply ``scheme`` to every ``nn.Linear`` weight and every 3-D expert weight of ``module``.

    Biases are zeroed; ``"default"`` leaves PyTorch's initialization untouched. Embeddings and
    norms are not matrices of a linear map between layers and keep their own init.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")
    if scheme == "default":
        return module
    fill = orthogonal_ if scheme == "orthogonal" else marchenko_pastur_
    from synthfuse.koda.model.moe import SwitchFeedForward

    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            fill(sub.weight, gain, generator)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, SwitchFeedForward):
            # Expert weights are stored (E, d_in, d_out) and applied as x @ W: the transpose
            # of nn.Linear's layout, with the same singular values.
            fill(sub.w_in.transpose(-1, -2), gain, generator)
            fill(sub.w_out.transpose(-1, -2), gain, generator)
            nn.init.zeros_(sub.b_in)
            nn.init.zeros_(sub.b_out)
    return module
