"""The sphere of radius r in R^n with the metric it inherits from R^n."""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthfuse.shared.backend import ArrayNamespace
from synthfuse.shared.manifold._base import Array, Manifold
from synthfuse.shared.manifold._safe import sinc, x_over_sin


@dataclass(frozen=True)
class Sphere(Manifold):
    r"""The sphere :math:`S^{n-1}_r = \{x \in \mathbb{R}^n : \|x\| = r\}`, induced metric.

    With :math:`\theta = d(x, y) / r` the angle between ``x`` and ``y`` (Absil, Mahony &
    Sepulchre 2008, ex. 5.4.1 and 8.1.1; scaled to radius :math:`r`):

    .. math::
        T_x S &= \{u : \langle x, u\rangle = 0\}, \qquad
            \operatorname{proj}_x(u) = u - \frac{\langle x, u\rangle}{r^2} x \\
        \exp_x(v) &= \cos\!\Big(\frac{\|v\|}{r}\Big) x
            + r \sin\!\Big(\frac{\|v\|}{r}\Big) \frac{v}{\|v\|} \\
        \log_x(y) &= r\theta \frac{w}{\|w\|}, \qquad
            w = \operatorname{proj}_x(y - x) = y - \frac{\langle x, y\rangle}{r^2} x \\
        d(x, y) &= r\theta = r \arccos\frac{\langle x, y\rangle}{r^2}
            \quad(\text{computed as } r\,\mathrm{atan2}(\|w\|, \langle x, y\rangle / r)) \\
        P_{x \to y}(v) &= v + \langle e, v\rangle \big((\cos\theta - 1) e
            - \sin\theta\, x / r\big), \qquad e = \log_x(y) / \|\log_x(y)\|.

    The Riemannian gradient is the tangent projection of the Euclidean one.

    Numerical safety: ``atan2`` keeps the angle accurate near 0 and :math:`\pi`;
    :math:`\sin s / s` and :math:`s / \sin s` switch to Taylor series near 0, so values and
    autograd gradients are finite at ``dist(x, x)``, ``log(x, x)`` and ``exp(x, 0)``.
    **Antipodal points** (``y = -x``, detected as :math:`\|w\| \le 8\,\epsilon\, r` with
    :math:`\langle x, y\rangle < 0`) have no unique geodesic; ``log`` then returns
    :math:`\pi r\, e_x`, where :math:`e_x` is the normalised tangent projection of the standard
    basis vector :math:`e_j`, :math:`j = \arg\min_i |x_i|` (the first such index). ``transp``
    follows that same geodesic. ``exp``, ``retr`` and ``transp`` project their result back
    onto the sphere / tangent space to stop round-off drift; ``proj(0)`` is
    :math:`r\,\mathbf{1}/\sqrt{n}`.

    Parameters
    ----------
    radius : float, default 1.0

    References
    ----------
    P.-A. Absil, R. Mahony, R. Sepulchre (2008). *Optimization Algorithms on Matrix
    Manifolds*. Princeton University Press.

    Examples
    --------
    >>> import numpy as np
    >>> S = Sphere()
    >>> float(S.dist(np.array([1.0, 0.0]), np.array([0.0, 1.0])))  # a quarter turn
    1.5707963267948966
    """

    radius: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"Sphere radius must be a positive finite number, got {self.radius!r}")
        object.__setattr__(self, "radius", float(self.radius))  # Sphere(2) == Sphere(2.0), same repr

    def proj(self, x: Array) -> Array:
        r""":math:`r\, x / \|x\|` (and :math:`r\,\mathbf{1}/\sqrt{n}` for ``x = 0``)."""
        nx = self._ns(x)
        n = nx.norm(x)
        fallback = nx.ones_like(x) * (self.radius / math.sqrt(x.shape[-1]))
        return nx.where(n > 0, x * (self.radius / nx.where(n > 0, n, 1.0)), fallback)

    def proju(self, x: Array, u: Array) -> Array:
        r""":math:`u - \langle x, u\rangle x / r^2`."""
        nx = self._ns(x, u)
        return u - nx.sum(x * u) * x / self.radius**2

    def inner(self, x: Array, u: Array, v: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\langle u, v\rangle = \sum_i u_i v_i` (the metric induced from
        :math:`\mathbb{R}^n`)."""
        return self._squeeze(self._ns(x, u, v).sum(u * v), keepdims)

    def exp(self, x: Array, v: Array) -> Array:
        r""":math:`\cos(\|v\|/r)\, x + \operatorname{sinc}(\|v\|/r)\, v`, projected onto the sphere."""
        nx = self._ns(x, v)
        theta = nx.norm(v) / self.radius
        return self.proj(nx.cos(theta) * x + sinc(nx, theta) * v)

    def retr(self, x: Array, v: Array) -> Array:
        r"""Metric-projection retraction :math:`r\,(x + v) / \|x + v\|`."""
        return self.proj(x + v)

    def _orthogonal_part(self, nx: ArrayNamespace, x: Array, y: Array) -> tuple[Array, Array]:
        """``w = proj_x(y - x)``, the part of ``y`` orthogonal to ``x`` (norm ``r sin(theta)``),
        and its norm; ``w`` is exactly 0 for ``y = x`` so the gradients there are exactly 0."""
        w = self.proju(x, y - x)
        return nx.norm(w), w

    def _log_and_angle(self, nx: ArrayNamespace, x: Array, y: Array) -> tuple[Array, Array]:
        """``log_x(y)`` and the angle ``theta`` (shape (..., 1)), antipodal case included."""
        r = self.radius
        xy = nx.sum(x * y)
        nw, w = self._orthogonal_part(nx, x, y)
        theta = nx.arctan2(nw, xy / r)
        antipodal = (nw <= 8 * nx.eps(w) * r) & (xy < 0)
        # theta / sin(theta) on the generic branch; 0 where antipodal so that branch stays finite
        direct = x_over_sin(nx, nx.where(antipodal, 0.0, theta)) * w
        e = self.proju(x, nx.first_argmin_onehot(nx.abs(x)))
        ne = nx.norm(e)
        fallback = e * (math.pi * r / nx.where(ne > 0, ne, 1.0))
        return nx.where(antipodal, fallback, direct), theta

    def log(self, x: Array, y: Array) -> Array:
        r""":math:`\log_x(y) = \frac{\theta}{\sin\theta} w`, norm :math:`r\theta`; for antipodal
        points :math:`\pi r e_x` (see the class notes)."""
        return self._log_and_angle(self._ns(x, y), x, y)[0]

    def dist(self, x: Array, y: Array, *, keepdims: bool = False) -> Array:
        r""":math:`r\theta`, :math:`\theta = \mathrm{atan2}(\|w\|, \langle x, y\rangle / r)
        \in [0, \pi]`."""
        nx = self._ns(x, y)
        nw = self._orthogonal_part(nx, x, y)[0]
        xy = nx.sum(x * y)
        return self._squeeze(self.radius * nx.arctan2(nw, xy / self.radius), keepdims)

    def transp(self, x: Array, y: Array, v: Array) -> Array:
        r"""Parallel transport along the minimising great circle from ``x`` to ``y``.

        Components of ``v`` orthogonal to the plane of the geodesic are unchanged; the
        component along its unit direction :math:`e` rotates with the tangent
        :math:`\dot\gamma/\|\dot\gamma\| = \cos\theta\, e - \sin\theta\, x / r`.
        Inner products are preserved and ``transp(x, x, v) = v``.
        """
        nx = self._ns(x, y, v)
        u, theta = self._log_and_angle(nx, x, y)
        nu = nx.norm(u)
        e = u / nx.where(nu > 0, nu, 1.0)  # e = 0 when y = x, and then v is returned
        a = nx.sum(e * v)
        return self.proju(y, v + a * ((nx.cos(theta) - 1.0) * e - nx.sin(theta) * x / self.radius))

    def egrad2rgrad(self, x: Array, g: Array) -> Array:
        """The tangent projection ``proju(x, g)``."""
        return self.proju(x, g)

    def random(self, *shape: int, generator=None, like: Array | None = None) -> Array:
        """Points drawn uniformly from the sphere (normalised Gaussians), shape ``(..., n)``.

        ``like``: an array whose library, dtype and device the result takes (numpy float64 by
        default); ``generator``: a seed, a numpy ``Generator`` or a ``torch.Generator``.
        """
        _, z = self._random_normal(shape, generator, like)
        return self.proj(z)

    def _violation(self, nx: ArrayNamespace, x: Array) -> tuple[float, str]:
        self._ns(x)
        return float(nx.abs(nx.norm(x) - self.radius).max()), "max | ||x|| - r |"

    def _scale(self) -> float:
        return self.radius
