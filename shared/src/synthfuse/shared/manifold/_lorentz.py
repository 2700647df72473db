"""The Lorentz (hyperboloid) model: hyperbolic space of curvature -c as a sheet of a hyperboloid."""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthfuse.shared.backend import ArrayNamespace, get_namespace
from synthfuse.shared.manifold._base import Array, Manifold, _store_curvature
from synthfuse.shared.manifold._safe import sinhc


@dataclass(frozen=True)
class Lorentz(Manifold):
    r"""The hyperboloid :math:`\mathbb{H}^n_c = \{x \in \mathbb{R}^{n+1} : \langle x, x\rangle_L = -1/c,\ x_0 > 0\}`.

    Points have ``n + 1`` coordinates, the *time* coordinate :math:`x_0` first, then the
    *spatial* part :math:`\bar x \in \mathbb{R}^n`; the Minkowski product is
    :math:`\langle x, y\rangle_L = -x_0 y_0 + \bar x^\top \bar y`. Sectional curvature
    :math:`-c` (geoopt's ``Lorentz(k)`` is this model with :math:`k = 1/c`). With
    :math:`\theta = \sqrt{c}\, d(x, y)` and :math:`\|v\|_L = \sqrt{\langle v, v\rangle_L}`
    (Nickel & Kiela 2018, eqs. 2-5; Bécigneul & Ganea 2019):

    .. math::
        d(x, y) &= \frac{1}{\sqrt{c}} \operatorname{arcosh}\bigl(-c\langle x, y\rangle_L\bigr),
            \qquad T_x = \{v : \langle x, v\rangle_L = 0\} \\
        \exp_x(v) &= \cosh(\sqrt{c}\|v\|_L)\, x + \frac{\sinh(\sqrt{c}\|v\|_L)}{\sqrt{c}\|v\|_L}\, v,
            \qquad \log_x(y) = \frac{\theta}{\sinh\theta}\bigl(y + c\langle x, y\rangle_L\, x\bigr) \\
        P_{x \to y}(v) &= v + \frac{\langle y, v\rangle_L}{1/c - \langle x, y\rangle_L}\,(x + y),
            \qquad \operatorname{proj}_x(u) = u + c\langle x, u\rangle_L\, x \\
        \operatorname{grad} f(x) &= \operatorname{proj}_x(J \nabla f(x)), \qquad
            J = \operatorname{diag}(-1, 1, \dots, 1).

    **Numerics far from the origin.** At distance :math:`r` from the origin the coordinates are
    about :math:`e^{\sqrt{c} r}/2`, and the textbook formulas subtract numbers of that size
    squared: in float64, :math:`\operatorname{arcosh}(-c\langle x, y\rangle_L)` for two nearby
    points loses every digit beyond :math:`r \approx 18`. Here the spatial part carries the
    point -- the time coordinate (and that of a tangent vector, :math:`v_0 = \bar x^\top \bar v
    / x_0`) is always recomputed from it, so round-off never leaves the hyperboloid -- and
    every quantity is written as a sum of non-negative terms. With :math:`X = \sqrt{c}\,\bar x`,
    :math:`X_0 = \sqrt{1 + \|X\|^2}` (the same for :math:`y`), the identity

    .. math::
        q = \cosh\theta - 1 = \frac{\|X - Y\|^2 + \|X \wedge Y\|^2}{1 + X_0 Y_0 + X^\top Y}
        = (X_0 - 1)(Y_0 - 1) + (X_0 - 1) + (Y_0 - 1) - X^\top Y

    (multiply out :math:`(\cosh\theta - 1)(\cosh\theta + 1 + 2X^\top Y)` to check it) is used in
    its first form when :math:`X^\top Y \ge 0` and in its second, with
    :math:`X_0 - 1 = \|X\|^2 / (X_0 + 1)`, otherwise; then
    :math:`\theta = 2\operatorname{arsinh}\sqrt{q / 2}`, exact also as :math:`\theta \to 0`.
    :math:`\|X \wedge Y\|^2 = \|X\|^2\|Y - (Y^\top\hat X)\hat X\|^2` (averaged with :math:`X`,
    :math:`Y` swapped, so ``dist`` is symmetric bit for bit). Tangent vectors are measured by
    their spatial parts, :math:`\langle u, v\rangle_L = a b / (c x_0^2) + u_\perp^\top v_\perp`
    (:math:`a = \bar u^\top \hat x`, :math:`u_\perp = \bar u - a \hat x`), and
    :math:`\langle y, v\rangle_L = \langle y - (1 + q) x, v\rangle_L` for :math:`v \in T_x`.
    What remains is the rounding of the coordinates themselves: a point at distance :math:`r`
    is known to :math:`\approx \epsilon\, e^{\sqrt{c} r}` (1e-3 at :math:`\sqrt{c} r = 29` in
    float64), where the Poincaré ball of :class:`PoincareBall` stops at
    :math:`\sqrt{c} r = 12.2` (its float64 boundary margin).

    ``exp``, ``retr``, ``geodesic`` and ``random`` return points on the hyperboloid;
    ``proju``, ``log``, ``transp`` and ``egrad2rgrad`` return tangent vectors; values and
    autograd gradients are finite at ``dist(x, x)``, ``log(x, x)`` and ``exp(x, 0)``.

    Parameters
    ----------
    c : float, default 1.0
        Positive curvature magnitude (curvature :math:`-c`).

    See Also
    --------
    lorentz_to_poincare, poincare_to_lorentz : the isometries to and from :class:`PoincareBall`.

    References
    ----------
    M. Nickel, D. Kiela (2018). Learning Continuous Hierarchies in the Lorentz Model of
    Hyperbolic Geometry. ICML.
    G. Bécigneul, O. Ganea (2019). Riemannian Adaptive Optimization Methods. ICLR.
    T. Yu, C. De Sa (2019). Numerically Accurate Hyperbolic Embeddings Using Tiling-Based
    Models. NeurIPS (the error of float coordinates far from the origin).

    Examples
    --------
    >>> import numpy as np
    >>> H = Lorentz()
    >>> x = np.array([np.cosh(30.0), np.sinh(30.0), 0.0])  # 30 away from the origin
    >>> y = H.exp(x, np.array([0.0, 0.0, 1.0]))            # one unit sideways
    >>> round(float(H.dist(x, y)), 3)
    1.0
    """

    c: float = 1.0

    def __post_init__(self):
        _store_curvature(self)

    # --- helpers -------------------------------------------------------------------------
    def _hyperbolic_ns(self, *arrays: Array) -> ArrayNamespace:
        nx = self._ns(*arrays)
        if arrays[0].shape[-1] < 2:
            raise ValueError(
                f"{self!r} works on points of shape (..., n + 1) with n >= 1 (time coordinate "
                f"first); got a last axis of size {arrays[0].shape[-1]}"
            )
        return nx

    def _time(self, nx: ArrayNamespace, xs: Array) -> Array:
        r""":math:`x_0 = \sqrt{1/c + \|\bar x\|^2}`, shape ``(..., 1)``."""
        return nx.sqrt(1.0 / self.c + nx.sum(xs * xs))

    def _point(self, nx: ArrayNamespace, x: Array) -> Array:
        """``x`` with its time coordinate recomputed from the spatial part."""
        xs = x[..., 1:]
        return nx.concat([self._time(nx, xs), xs])

    def _tangent(self, nx: ArrayNamespace, x: Array, v: Array) -> Array:
        r"""``v`` with its time coordinate :math:`\bar x^\top \bar v / x_0` (tangent at ``x``)."""
        xs, vs = x[..., 1:], v[..., 1:]
        return nx.concat([nx.sum(xs * vs) / self._time(nx, xs), vs])

    @staticmethod
    def _unit(nx: ArrayNamespace, xs: Array) -> tuple[Array, Array]:
        """``(|x|, x / |x|)``, the direction being 0 at ``x = 0``."""
        n = nx.norm(xs)
        return n, xs / nx.where(n > 0, n, 1.0)

    @classmethod
    def _wedge_sq(cls, nx: ArrayNamespace, xs: Array, ys: Array) -> Array:
        r""":math:`\|x \wedge y\|^2 = \|x\|^2 \|y_{\perp x}\|^2`, symmetrised."""
        nxs, ux = cls._unit(nx, xs)
        nys, uy = cls._unit(nx, ys)
        y_perp = ys - nx.sum(ys * ux) * ux
        x_perp = xs - nx.sum(xs * uy) * uy
        return 0.5 * (nxs**2 * nx.sum(y_perp * y_perp) + nys**2 * nx.sum(x_perp * x_perp))

    def _cosh_minus_one(self, nx: ArrayNamespace, x: Array, y: Array) -> Array:
        r""":math:`q = \cosh(\sqrt{c}\, d(x, y)) - 1 \ge 0`, shape ``(..., 1)`` (class notes)."""
        s = math.sqrt(self.c)
        xs, ys = s * x[..., 1:], s * y[..., 1:]
        x2, y2, xy = nx.sum(xs * xs), nx.sum(ys * ys), nx.sum(xs * ys)
        x0, y0 = nx.sqrt(1.0 + x2), nx.sqrt(1.0 + y2)
        diff = xs - ys
        # the clip keeps the branch not taken finite (and its gradient free of 0 * inf)
        same_side = (nx.sum(diff * diff) + self._wedge_sq(nx, xs, ys)) / (1.0 + x0 * y0 + nx.clip(xy, 0.0, None))
        a, b = x2 / (x0 + 1.0), y2 / (y0 + 1.0)  # X0 - 1, Y0 - 1
        opposite = a * b + (a + b) - xy
        return nx.clip(nx.where(xy >= 0, same_side, opposite), 0.0, None)

    @staticmethod
    def _angle(nx: ArrayNamespace, q: Array) -> Array:
        r""":math:`\theta = \operatorname{arcosh}(1 + q) = 2\operatorname{arsinh}\sqrt{q/2}`, gradient 0 at ``q = 0``."""
        positive = q > 0
        root = nx.where(positive, nx.sqrt(nx.where(positive, q / 2.0, 1.0)), 0.0)
        return 2.0 * nx.arcsinh(root)

    # --- public API ----------------------------------------------------------------------
    def proj(self, x: Array) -> Array:
        r"""Lift the spatial part onto the hyperboloid: :math:`x_0 \leftarrow \sqrt{1/c + \|\bar x\|^2}`."""
        return self._point(self._hyperbolic_ns(x), x)

    def proju(self, x: Array, u: Array) -> Array:
        r""":math:`u + c\langle x, u\rangle_L\, x` (the Minkowski-orthogonal projection onto :math:`T_x`)."""
        nx = self._hyperbolic_ns(x, u)
        xs, us = x[..., 1:], u[..., 1:]
        xu = nx.sum(xs * us) - self._time(nx, xs) * u[..., :1]
        return self._tangent(nx, x, u + self.c * xu * x)

    def inner(self, x: Array, u: Array, v: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\langle u, v\rangle_L` for :math:`u, v \in T_x`, as
        :math:`a b / (c x_0^2) + u_\perp^\top v_\perp` (class notes)."""
        nx = self._hyperbolic_ns(x, u, v)
        xs, us, vs = x[..., 1:], u[..., 1:], v[..., 1:]
        norm, direction = self._unit(nx, xs)
        a, b = nx.sum(us * direction), nx.sum(vs * direction)
        u_perp, v_perp = us - a * direction, vs - b * direction
        return self._squeeze(a * b / (1.0 + self.c * norm**2) + nx.sum(u_perp * v_perp), keepdims)

    def _norm(self, nx: ArrayNamespace, x: Array, v: Array) -> Array:
        sq = self.inner(x, v, v, keepdims=True)
        positive = sq > 0
        return nx.where(positive, nx.sqrt(nx.where(positive, sq, 1.0)), 0.0)

    def exp(self, x: Array, v: Array) -> Array:
        r""":math:`\cosh(\theta)\, x + \operatorname{sinhc}(\theta)\, v`,
        :math:`\theta = \sqrt{c}\|v\|_L`, lifted onto the hyperboloid."""
        nx = self._hyperbolic_ns(x, v)
        theta = math.sqrt(self.c) * self._norm(nx, x, v)
        return self._point(nx, nx.cosh(theta) * x + sinhc(nx, theta) * v)

    def retr(self, x: Array, v: Array) -> Array:
        """First-order retraction ``proj(x + v)`` (spatial step, then lift)."""
        return self._point(self._hyperbolic_ns(x, v), x + v)

    def log(self, x: Array, y: Array) -> Array:
        r""":math:`\frac{\theta}{\sinh\theta}\,\bigl(y - (1 + q)\, x\bigr)`, :math:`q = \cosh\theta - 1`."""
        nx = self._hyperbolic_ns(x, y)
        q = self._cosh_minus_one(nx, x, y)
        return self._tangent(nx, x, (y - (1.0 + q) * x) / sinhc(nx, self._angle(nx, q)))

    def dist(self, x: Array, y: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\frac{2}{\sqrt{c}}\operatorname{arsinh}\sqrt{q/2}` with the cancellation-free
        :math:`q = \cosh(\sqrt{c}\, d) - 1` of the class notes; symmetric bit for bit."""
        nx = self._hyperbolic_ns(x, y)
        theta = self._angle(nx, self._cosh_minus_one(nx, x, y))
        return self._squeeze(theta / math.sqrt(self.c), keepdims)

    def transp(self, x: Array, y: Array, v: Array) -> Array:
        r""":math:`v + \frac{c\,\langle y, v\rangle_L}{2 + q}(x + y)`, tangent at ``y``."""
        nx = self._hyperbolic_ns(x, y, v)
        q = self._cosh_minus_one(nx, x, y)
        yv = self.inner(x, y - (1.0 + q) * x, v, keepdims=True)  # <y, v>_L, as y - (1+q)x is in T_x
        return self._tangent(nx, y, v + (self.c * yv / (2.0 + q)) * (x + y))

    def egrad2rgrad(self, x: Array, g: Array) -> Array:
        r""":math:`\operatorname{proj}_x(J g)`: spatial part
        :math:`\bar g + c(\bar x^\top \bar g + x_0 g_0)\, \bar x`."""
        nx = self._hyperbolic_ns(x, g)
        xs, gs = x[..., 1:], g[..., 1:]
        xg = nx.sum(xs * gs) + self._time(nx, xs) * g[..., :1]  # <x, J g>_L
        return self._tangent(nx, x, g + self.c * xg * x)

    def origin(self, like: Array) -> Array:
        r"""The apex :math:`(1/\sqrt{c}, 0, \dots, 0)` with the shape, library and dtype of ``like``."""
        nx = self._hyperbolic_ns(like)
        return self._point(nx, nx.zeros_like(like))

    def random(self, *shape: int, std: float = 1.0, generator=None, like: Array | None = None):
        r"""Wrapped normal at the apex: :math:`\exp_o(\text{std}\cdot(0, \xi))`,
        :math:`\xi \sim \mathcal{N}(0, I_n)`, shape ``(..., n + 1)``.

        ``like``: an array whose library, dtype and device the result takes (numpy float64 by
        default); ``generator``: a seed, a numpy ``Generator`` or a ``torch.Generator``.
        """
        nx, z = self._random_normal(shape, generator, like)
        return self.exp(self.origin(z), std * z)  # exp reads only the spatial part of z

    def _violation(self, nx: ArrayNamespace, x: Array) -> tuple[float, str]:
        self._hyperbolic_ns(x)
        time = self._time(nx, x[..., 1:])
        return float((nx.abs(x[..., :1] - time) / time).max()), "max |x0 - sqrt(1/c + |x|^2)| / x0"


def lorentz_to_poincare(x: Array, c: float = 1.0) -> Array:
    r"""The isometry :math:`\mathbb{H}^n_c \to \mathbb{D}^n_c`, :math:`p = \bar x / (1 + \sqrt{c}\, x_0)`.

    (Nickel & Kiela 2018, eq. 11, with curvature :math:`-c`; :math:`x_0` is recomputed from
    :math:`\bar x`.) Points farther than about 18.7 / :math:`\sqrt{c}` from the origin land
    within 1e-8 of the boundary of the ball, where the ball's own coordinates can no longer
    tell nearby points apart; keep computing with :class:`Lorentz` and map only to draw.

    Parameters
    ----------
    x : array, shape (..., n + 1)
    c : float, default 1.0

    Returns
    -------
    array, shape (..., n)
    """
    manifold = Lorentz(c)
    nx = manifold._hyperbolic_ns(x)
    xs = x[..., 1:]
    return xs / (1.0 + math.sqrt(manifold.c) * manifold._time(nx, xs))


def poincare_to_lorentz(p: Array, c: float = 1.0) -> Array:
    r"""The isometry :math:`\mathbb{D}^n_c \to \mathbb{H}^n_c`,
    :math:`\bar x = 2p / (1 - c\|p\|^2)`, :math:`x_0 = \sqrt{1/c + \|\bar x\|^2}`.

    (Nickel & Kiela 2018, eq. 11 inverted; :math:`x_0 = (1 + c\|p\|^2) / (\sqrt{c}(1 - c\|p\|^2))`.)

    Parameters
    ----------
    p : array, shape (..., n)
        Points with :math:`\sqrt{c}\|p\| < 1`.
    c : float, default 1.0

    Returns
    -------
    array, shape (..., n + 1)

    Raises
    ------
    ValueError
        If a point is not finite or not strictly inside the ball.
    """
    manifold = Lorentz(c)
    nx = get_namespace(p)
    if not p.ndim:
        raise ValueError("poincare_to_lorentz works on arrays of shape (..., n); got a 0-d array")
    if not bool(nx.isfinite(p).all()):
        raise ValueError("poincare_to_lorentz: the points contain NaN or inf")
    scaled = math.sqrt(manifold.c) * nx.norm(p)
    if math.prod(p.shape) and float(scaled.max()) >= 1.0:
        raise ValueError(
            f"poincare_to_lorentz: points must lie inside the ball sqrt(c) |p| < 1 (c = {manifold.c}); "
            f"the largest has sqrt(c) |p| = {float(scaled.max()):.17g}"
        )
    xs = 2.0 * p / ((1.0 - scaled) * (1.0 + scaled))
    return nx.concat([manifold._time(nx, xs), xs])
