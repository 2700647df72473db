r"""Schrödinger bridges between particle populations: entropic-OT coupling plus Brownian bridges.

The Schrödinger bridge with reference process :math:`\sigma\,W_t` on :math:`[0, 1]` between
:math:`\mu_0` and :math:`\mu_1` is the law closest in KL to the reference with those marginals.
Its two-time marginal is the entropic OT plan (Léonard 2014)

.. math:: \pi^\star = \operatorname*{arg\,min}_{\pi \in \Pi(\mu_0, \mu_1)}
          \int \|x - y\|^2\, d\pi + 2\sigma^2\,\mathrm{KL}(\pi \,\|\, \mu_0 \otimes \mu_1),

i.e. Sinkhorn with :math:`\varepsilon = 2\sigma^2` (:func:`synthfuse.shared.ot.coupling`), and
given its ends the path is a Brownian bridge:
:math:`X_t = (1-t)x_0 + t x_1 + \sigma\sqrt{t(1-t)}\,Z`, :math:`Z \sim N(0, I)`.

Between Gaussians :math:`N(a, A)` and :math:`N(b, B)` everything is in closed form (Janati,
Muzellec, Peyré & Cuturi 2020; Bunne, Hsieh, Cuturi & Krause 2023): the plan is Gaussian with
cross-covariance

.. math:: C_\sigma = \tfrac12 A^{1/2} D_\sigma A^{-1/2} - \tfrac{\sigma^2}{2} I, \qquad
          D_\sigma = \big(4 A^{1/2} B A^{1/2} + \sigma^4 I\big)^{1/2},

transport cost :math:`\mathbb{E}\|x_0 - x_1\|^2 = \|a - b\|^2 + \mathrm{Tr}A + \mathrm{Tr}B - 2\,\mathrm{Tr}\,C_\sigma`,
and bridge marginals :math:`N(m_t, \Sigma_t)` with :math:`m_t = (1-t)a + tb` and

.. math:: \Sigma_t = (1-t)^2 A + t^2 B + t(1-t)\big(C_\sigma + C_\sigma^\top + \sigma^2 I\big).

References
----------
Léonard. A survey of the Schrödinger problem and some of its connections with optimal
transport. DCDS-A 34(4), 2014. Janati, Muzellec, Peyré & Cuturi. Entropic Optimal Transport
between Unbalanced Gaussian Measures has a Closed Form. NeurIPS 2020. Bunne, Hsieh, Cuturi &
Krause. The Schrödinger Bridge between Gaussian Measures has a Closed Form. AISTATS 2023.
Cuturi. Sinkhorn Distances. NeurIPS 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from synthfuse.shared.ot import coupling

__all__ = [
    "CouplingStatistics", "GaussianBridge", "bridge_points", "coupling_statistics", "entropic_plan",
    "gaussian_schrodinger_bridge", "tilted_resample",
]


def _sym_sqrt(C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric square root of a PSD matrix and its inverse (eigendecomposition)."""
    w, V = torch.linalg.eigh(0.5 * (C + C.T))
    if bool((w <= 0).any()):
        raise ValueError("covariance matrices must be positive definite")
    return (V * w.sqrt()) @ V.T, (V / w.sqrt()) @ V.T


def _check_gaussian(m: torch.Tensor, C: torch.Tensor, name: str) -> None:
    if m.ndim != 1 or C.shape != (m.numel(), m.numel()):
        raise ValueError(f"{name}: mean must be (d,) and covariance (d, d), got {tuple(m.shape)} and {tuple(C.shape)}")
    if not (bool(torch.isfinite(m).all()) and bool(torch.isfinite(C).all())):
        raise ValueError(f"{name}: mean or covariance holds NaN or inf")


@dataclass
class GaussianBridge:
    """Closed-form Schrödinger bridge between :math:`N(a, A)` and :math:`N(b, B)`.

    Attributes
    ----------
    cross_covariance : tensor (d, d)
        :math:`C_\\sigma = \\mathrm{Cov}(x_0, x_1)` under the entropic plan.
    transport_cost : float
        :math:`\\mathbb{E}_\\pi \\|x_0 - x_1\\|^2`.
    """

    mean0: torch.Tensor
    cov0: torch.Tensor
    mean1: torch.Tensor
    cov1: torch.Tensor
    sigma2: float
    cross_covariance: torch.Tensor
    transport_cost: float

    def marginal(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(m_t, \\Sigma_t)`, the bridge's law at time ``t`` in [0, 1]."""
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got {t}")
        C, eye = self.cross_covariance, torch.eye(self.mean0.numel(), dtype=self.cov0.dtype)
        cov = (1 - t) ** 2 * self.cov0 + t**2 * self.cov1 + t * (1 - t) * (C + C.T + self.sigma2 * eye)
        return (1 - t) * self.mean0 + t * self.mean1, cov


def gaussian_schrodinger_bridge(mean0, cov0, mean1, cov1, sigma2: float) -> GaussianBridge:
    """The closed-form bridge of the module docstring (float64), reference noise :math:`\\sigma^2 > 0`."""
    m0, C0, m1, C1 = (torch.as_tensor(v, dtype=torch.float64) for v in (mean0, cov0, mean1, cov1))
    _check_gaussian(m0, C0, "start"), _check_gaussian(m1, C1, "end")
    if m0.shape != m1.shape:
        raise ValueError(f"the two Gaussians differ in dimension: {m0.numel()} vs {m1.numel()}")
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0, got {sigma2}")
    eye = torch.eye(m0.numel(), dtype=torch.float64)
    root, inv_root = _sym_sqrt(C0)
    D, _ = _sym_sqrt(4 * root @ C1 @ root + sigma2**2 * eye)
    C = 0.5 * root @ D @ inv_root - 0.5 * sigma2 * eye
    cost = float((m0 - m1).pow(2).sum() + C0.trace() + C1.trace() - 2 * C.trace())
    return GaussianBridge(m0, C0, m1, C1, float(sigma2), C, cost)


def entropic_plan(x0: torch.Tensor, x1: torch.Tensor, sigma2: float, *, max_iter: int | None = None) -> torch.Tensor:
    """Entropic OT plan between the uniform empirical measures on ``x0`` (n, d), ``x1`` (m, d),
    with :math:`\\varepsilon = 2\\sigma^2` (the static Schrödinger bridge)."""
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0, got {sigma2}")
    return coupling(x0, x1, reg=2.0 * sigma2, max_iter=max_iter)


@dataclass
class CouplingStatistics:
    """Moments of a plan between point clouds: marginal means/covariances, cross-covariance, cost."""

    mean0: torch.Tensor
    cov0: torch.Tensor
    mean1: torch.Tensor
    cov1: torch.Tensor
    cross_covariance: torch.Tensor
    transport_cost: float


def coupling_statistics(x0: torch.Tensor, x1: torch.Tensor, plan: torch.Tensor) -> CouplingStatistics:
    """:math:`\\mathrm{Cov}_\\pi(x_0, x_1) = \\sum_{ij} P_{ij}(x_i - \\bar x)(y_j - \\bar y)^\\top` and
    :math:`\\sum_{ij} P_{ij}\\|x_i - y_j\\|^2`, with the marginals of ``plan`` (total mass 1)."""
    a, b = plan.sum(1), plan.sum(0)
    m0, m1 = a @ x0, b @ x1
    d0, d1 = x0 - m0, x1 - m1
    cost = float((plan * torch.cdist(x0, x1).pow(2)).sum())
    return CouplingStatistics(m0, (d0 * a[:, None]).T @ d0, m1, (d1 * b[:, None]).T @ d1, d0.T @ plan @ d1, cost)


def bridge_points(
    x0: torch.Tensor, x1: torch.Tensor, plan: torch.Tensor, times: torch.Tensor, sigma2: float, *,
    n_samples: int, generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample the bridge: pairs :math:`(i, j) \\sim P`, then :math:`X_t` on each pair's Brownian bridge.

    Returns ``(points (n_samples, len(times), d), i, j)`` with
    :math:`X_t = (1-t)x_{0,i} + t\\,x_{1,j} + \\sigma\\sqrt{t(1-t)}\\,Z_t` (independent :math:`Z_t`
    per time: the marginals, not one continuous path).
    """
    if plan.shape != (x0.shape[0], x1.shape[0]):
        raise ValueError(f"plan must be ({x0.shape[0]}, {x1.shape[0]}), got {tuple(plan.shape)}")
    flat = torch.multinomial(plan.reshape(-1).clamp_min(0), n_samples, replacement=True, generator=generator)
    i, j = flat // plan.shape[1], flat % plan.shape[1]
    t = times.to(x0.dtype)[None, :, None]
    z = torch.randn((n_samples, times.numel(), x0.shape[1]), generator=generator, dtype=x0.dtype)
    points = (1 - t) * x0[i, None] + t * x1[j, None] + (sigma2 * t * (1 - t)).sqrt() * z
    return points, i, j


def tilted_resample(
    draws: torch.Tensor, means: torch.Tensor, gradients: torch.Tensor, s2: float, beta: float,
    potential: Callable[[torch.Tensor], torch.Tensor], *, pool: int, generator: torch.Generator,
) -> torch.Tensor:
    """Sample :math:`N(m, s^2 I)\\,e^{-\\beta V}` (a bridge marginal tilted by a potential) by importance resampling.

    Each row of ``draws`` is :math:`x = m + s z` for its row of ``means``. The proposal shifts it
    by the exact tilt of the linearized potential, :math:`x' = x - \\beta s^2 g` with
    :math:`g = \\nabla V(m)` (``gradients``; :math:`N(m, s^2)e^{-\\beta g^\\top x}` is
    :math:`N(m - \\beta s^2 g, s^2)`), and the weight corrects for the rest of :math:`V`:

    .. math:: \\log w = \\log N(x'; m, s^2) - \\beta V(x') - \\log N(x'; m - \\beta s^2 g, s^2)
              = -\\beta\\,[V(x') - s\\,g^\\top z] - \\tfrac12 \\beta^2 s^2 \\|g\\|^2,

    equal to :math:`\\log \\int N(x; m, s^2) e^{-\\beta V(x)}dx` for every draw when :math:`V` is
    linear (a mixture over means is weighted by each component's mass). One draw is kept per
    consecutive block of ``pool`` rows, with probability :math:`\\propto w` (sampling–importance
    resampling, Rubin 1988). Returns ``(len(draws) // pool, d)``.
    """
    if draws.shape != means.shape or draws.shape != gradients.shape or draws.shape[0] % pool:
        raise ValueError("draws, means and gradients must have one shape (n, d), n a multiple of pool")
    if not (s2 > 0 and beta >= 0):
        raise ValueError(f"need s2 > 0 and beta >= 0, got s2={s2}, beta={beta}")
    s = math.sqrt(s2)
    z = (draws - means) / s
    proposals = draws - beta * s2 * gradients
    v = potential(proposals).to(draws.dtype)
    log_w = -beta * (v - s * (gradients * z).sum(1)) - 0.5 * beta**2 * s2 * gradients.pow(2).sum(1)
    pick = torch.multinomial(torch.softmax(log_w.view(-1, pool), dim=1), 1, generator=generator).squeeze(1)
    return proposals.view(-1, pool, draws.shape[1])[torch.arange(pick.numel()), pick]
