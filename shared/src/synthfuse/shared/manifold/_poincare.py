"""The Poincaré ball: hyperbolic space of curvature -c as the open ball of radius 1/sqrt(c)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthfuse.shared.backend import ArrayNamespace, get_namespace
from synthfuse.shared.manifold._base import Array, Manifold, _store_curvature
from synthfuse.shared.manifold._safe import artanhc, tanhc


@dataclass(frozen=True)
class PoincareBall(Manifold):
    r"""The Poincaré ball :math:`\mathbb{D}^n_c = \{x : c\|x\|^2 < 1\}`, sectional curvature :math:`-c`.

    Conformal metric :math:`g_x = (\lambda^c_x)^2 I` with
    :math:`\lambda^c_x = 2 / (1 - c\|x\|^2)`. Everything is written with Möbius addition
    (Ungar's gyrovector formalism as used by Ganea, Bécigneul & Hofmann 2018, eqs. 3-12):

    .. math::
        x \oplus_c y &= \frac{(1 + 2c\langle x, y\rangle + c\|y\|^2)\, x + (1 - c\|x\|^2)\, y}
                             {1 + 2c\langle x, y\rangle + c^2 \|x\|^2 \|y\|^2} \\
        \exp_x(v) &= x \oplus_c \Big(\tanh\Big(\frac{\sqrt{c}\,\lambda^c_x \|v\|}{2}\Big)
                     \frac{v}{\sqrt{c}\,\|v\|}\Big) \\
        \log_x(y) &= \frac{2}{\sqrt{c}\,\lambda^c_x}
                     \operatorname{artanh}\big(\sqrt{c}\,\|{-x} \oplus_c y\|\big)
                     \frac{-x \oplus_c y}{\|{-x} \oplus_c y\|} \\
        d(x, y) &= \frac{2}{\sqrt{c}} \operatorname{artanh}\big(\sqrt{c}\,\|{-x} \oplus_c y\|\big),
            \qquad d(0, x) = \frac{2}{\sqrt{c}} \operatorname{artanh}(\sqrt{c}\,\|x\|) \\
        P_{x \to y}(v) &= \frac{\lambda^c_x}{\lambda^c_y} \operatorname{gyr}[y, -x]\, v, \qquad
        \operatorname{gyr}[u, v]w = \ominus(u \oplus v) \oplus (u \oplus (v \oplus w)) \\
        \langle u, v\rangle_x &= (\lambda^c_x)^2 \langle u, v\rangle, \qquad
        \operatorname{grad} f(x) = \nabla f(x) / (\lambda^c_x)^2 .

    For :math:`c = 1` the distance is Nickel & Kiela's (2017)
    :math:`\operatorname{arcosh}\big(1 + 2\|x-y\|^2 / ((1-\|x\|^2)(1-\|y\|^2))\big)`.
    The geodesic :math:`\exp_x(t \log_x y)` equals
    :math:`x \oplus_c (t \otimes_c (-x \oplus_c y))`.

    Numerical safety (margins as in geoopt):

    - Points are kept strictly inside: ``proj`` maps every point to
      :math:`\|x\| \le (1 - \epsilon_b)/\sqrt{c}` with :math:`\epsilon_b` = 1e-5 in float64,
      4e-3 in float32 and 5e-2 in 16-bit floats (:meth:`margin`); ``exp``, ``retr``,
      ``geodesic`` and ``random`` return projected points.
    - :math:`1 - c\|x\|^2` is clamped below at :math:`1 - (1 - \epsilon_b)^2`, so
      :math:`\lambda^c_x` stays finite even for points that drifted past the margin.
    - The ``artanh`` argument is clamped to :math:`1 - \epsilon` (machine epsilon);
      :math:`\tanh(s)/s` and :math:`\operatorname{artanh}(s)/s` use Taylor series near 0,
      and norms have zero gradient at 0: values and autograd gradients are finite at the
      origin, at ``dist(x, x)`` and at the margin.

    Parameters
    ----------
    c : float, default 1.0
        Positive curvature magnitude (curvature is :math:`-c`; geoopt's ``PoincareBall(c)``
        uses the same convention, its ``k`` is :math:`-c`).

    References
    ----------
    O. Ganea, G. Bécigneul, T. Hofmann (2018). Hyperbolic Neural Networks. NeurIPS.
    M. Nickel, D. Kiela (2017). Poincaré Embeddings for Learning Hierarchical
    Representations. NeurIPS.
    A. A. Ungar (2008). *A Gyrovector Space Approach to Hyperbolic Geometry*. Morgan & Claypool.

    Examples
    --------
    >>> import numpy as np
    >>> B = PoincareBall(c=1.0)
    >>> x = np.array([0.5, 0.0])
    >>> bool(np.isclose(B.dist(np.zeros(2), x), 2 * np.arctanh(0.5)))
    True
    """

    c: float = 1.0

    def __post_init__(self):
        _store_curvature(self)

    # --- helpers -------------------------------------------------------------------------
    @staticmethod
    def margin(x: Array) -> float:
        r"""Boundary margin :math:`\epsilon_b` for ``x``'s dtype: 1e-5 (float64), 4e-3 (float32),
        5e-2 (16-bit)."""
        eps = get_namespace(x).eps(x)
        return 1e-5 if eps < 1e-10 else 4e-3 if eps < 1e-6 else 5e-2

    def _lambda(self, nx: ArrayNamespace, x: Array) -> Array:
        floor = 1.0 - (1.0 - self.margin(x)) ** 2
        return 2.0 / nx.clip(1.0 - self.c * nx.sum(x * x), floor, None)

    def _mobius_add(self, nx: ArrayNamespace, x: Array, y: Array) -> Array:
        c = self.c
        xy, x2, y2 = nx.sum(x * y), nx.sum(x * x), nx.sum(y * y)
        num = (1.0 + 2.0 * c * xy + c * y2) * x + (1.0 - c * x2) * y
        den = 1.0 + 2.0 * c * xy + c * c * x2 * y2
        return num / nx.clip(den, nx.eps(den) ** 2, None)

    def _gyration(self, nx: ArrayNamespace, u: Array, v: Array, w: Array) -> Array:
        r"""Closed form of :math:`\operatorname{gyr}[u, v]w` (Ungar 2008, eq. 2.3 scaled by c):
        :math:`w + 2(Au + Bv)/D` with
        :math:`A = -c^2\langle u,w\rangle\|v\|^2 + c\langle v,w\rangle
        + 2c^2\langle u,v\rangle\langle v,w\rangle`,
        :math:`B = -c^2\langle v,w\rangle\|u\|^2 - c\langle u,w\rangle`,
        :math:`D = 1 + 2c\langle u,v\rangle + c^2\|u\|^2\|v\|^2`."""
        c = self.c
        u2, v2 = nx.sum(u * u), nx.sum(v * v)
        uv, uw, vw = nx.sum(u * v), nx.sum(u * w), nx.sum(v * w)
        a = -c * c * uw * v2 + c * vw + 2.0 * c * c * uv * vw
        b = -c * c * vw * u2 - c * uw
        d = 1.0 + 2.0 * c * uv + c * c * u2 * v2
        return w + 2.0 * (a * u + b * v) / nx.clip(d, nx.eps(d) ** 2, None)

    def _proj(self, nx: ArrayNamespace, x: Array) -> Array:
        max_norm = (1.0 - self.margin(x)) / math.sqrt(self.c)
        n = nx.norm(x)
        return nx.where(n > max_norm, x * (max_norm / nx.where(n > max_norm, n, 1.0)), x)

    # --- public API ----------------------------------------------------------------------
    def conformal_factor(self, x: Array) -> Array:
        r""":math:`\lambda^c_x = 2 / (1 - c\|x\|^2)`, shape ``(..., 1)``."""
        return self._lambda(self._ns(x), x)

    def mobius_add(self, x: Array, y: Array) -> Array:
        r"""Möbius addition :math:`x \oplus_c y` (not projected)."""
        return self._mobius_add(self._ns(x, y), x, y)

    def proj(self, x: Array) -> Array:
        r"""Rescale points with :math:`\|x\| > (1 - \epsilon_b)/\sqrt{c}` onto that radius."""
        return self._proj(self._ns(x), x)

    def proju(self, x: Array, u: Array) -> Array:
        """``u`` itself: the tangent space at every point is all of :math:`\\mathbb{R}^n`."""
        return u

    def inner(self, x: Array, u: Array, v: Array, *, keepdims: bool = False) -> Array:
        r""":math:`(\lambda^c_x)^2 \langle u, v\rangle`."""
        nx = self._ns(x, u, v)
        return self._squeeze(self._lambda(nx, x) ** 2 * nx.sum(u * v), keepdims)

    def exp(self, x: Array, v: Array) -> Array:
        r""":math:`x \oplus_c \frac{\lambda^c_x}{2}\operatorname{tanhc}(s)\, v`,
        :math:`s = \sqrt{c}\,\lambda^c_x\|v\|/2`, projected."""
        nx = self._ns(x, v)
        lam = self._lambda(nx, x)
        s = math.sqrt(self.c) * lam * nx.norm(v) / 2.0
        return self._proj(nx, self._mobius_add(nx, x, tanhc(nx, s) * (lam / 2.0) * v))

    def retr(self, x: Array, v: Array) -> Array:
        """First-order retraction ``proj(x + v)`` (as geoopt's ``retr``)."""
        return self._proj(self._ns(x, v), x + v)

    def _scaled_artanh_arg(self, nx: ArrayNamespace, w: Array) -> Array:
        """:math:`\\sqrt{c}\\|w\\|` clamped to ``1 - eps`` so that ``artanh`` stays finite."""
        return nx.clip(math.sqrt(self.c) * nx.norm(w), None, 1.0 - nx.eps(w))

    def log(self, x: Array, y: Array) -> Array:
        r""":math:`\frac{2}{\lambda^c_x}\operatorname{artanhc}(z)\,(-x \oplus_c y)`,
        :math:`z = \sqrt{c}\,\|{-x} \oplus_c y\|`."""
        nx = self._ns(x, y)
        w = self._mobius_add(nx, -x, y)
        z = self._scaled_artanh_arg(nx, w)
        return (2.0 / self._lambda(nx, x)) * artanhc(nx, z) * w

    def dist(self, x: Array, y: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\frac{2}{\sqrt{c}}\operatorname{artanh}(\sqrt{c}\,\|{-x} \oplus_c y\|)`.

        Evaluated through the identity (Ungar 2008)
        :math:`\|{-x} \oplus_c y\| = \|x - y\| / \sqrt{1 - 2c\langle x, y\rangle + c^2\|x\|^2\|y\|^2}`,
        which is symmetric in ``x`` and ``y`` term by term, so ``dist(x, y) == dist(y, x)``
        bit for bit even near the boundary, where the Möbius sum loses digits.
        """
        nx = self._ns(x, y)
        c = self.c
        xy, x2, y2 = nx.sum(x * y), nx.sum(x * x), nx.sum(y * y)
        den = nx.sqrt(nx.clip(1.0 - 2.0 * c * xy + c * c * x2 * y2, nx.eps(xy) ** 2, None))
        z = nx.clip(math.sqrt(c) * nx.norm(x - y) / den, None, 1.0 - nx.eps(xy))
        return self._squeeze(2.0 / math.sqrt(c) * nx.arctanh(z), keepdims)

    def transp(self, x: Array, y: Array, v: Array) -> Array:
        r""":math:`\frac{\lambda^c_x}{\lambda^c_y}\operatorname{gyr}[y, -x]\, v`."""
        nx = self._ns(x, y, v)
        return self._gyration(nx, y, -x, v) * (self._lambda(nx, x) / self._lambda(nx, y))

    def egrad2rgrad(self, x: Array, g: Array) -> Array:
        r""":math:`g / (\lambda^c_x)^2`."""
        nx = self._ns(x, g)
        return g / self._lambda(nx, x) ** 2

    def random(self, *shape: int, std: float = 1.0, generator=None, like: Array | None = None):
        r"""Wrapped normal at the origin: :math:`\exp_0(\text{std}\cdot\xi)`,
        :math:`\xi \sim \mathcal{N}(0, I)`, shape ``(..., n)``.

        ``like``: an array whose library, dtype and device the result takes (numpy float64 by
        default); ``generator``: a seed, a numpy ``Generator`` or a ``torch.Generator``.
        """
        nx, z = self._random_normal(shape, generator, like)
        return self.exp(nx.zeros_like(z), std * z)

    def _violation(self, nx: ArrayNamespace, x: Array) -> tuple[float, str]:
        self._ns(x)
        largest = float((math.sqrt(self.c) * nx.norm(x)).max())
        return max(0.0, largest - (1.0 - self.margin(x))), "max sqrt(c) ||x|| - (1 - margin)"
