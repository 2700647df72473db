"""The interface every manifold implements, and what the three share."""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from typing import Any

from synthfuse.shared.backend import ArrayNamespace, get_namespace

Array = Any  # numpy.ndarray | torch.Tensor | jax.Array


class Manifold(ABC):
    r"""A Riemannian manifold embedded in :math:`\mathbb{R}^n`, points of shape ``(..., n)``.

    Every method is batched over the leading dimensions (they broadcast like numpy) and works
    on numpy arrays, torch tensors (autograd flows through) and jax arrays alike; the last
    axis holds the ``n`` ambient coordinates. Tangent vectors are represented in the same
    ambient coordinates.

    Methods
    -------
    proj(x)                 nearest point of the manifold (used to undo round-off drift)
    proju(x, u)             projection of an ambient vector onto the tangent space at ``x``
    inner(x, u, v)          Riemannian metric :math:`\langle u, v\rangle_x`
    exp(x, v)               exponential map :math:`\exp_x(v)`
    retr(x, v)              a cheaper first-order retraction
    log(x, y)               logarithmic map, the inverse of ``exp``: :math:`\exp_x(\log_x y) = y`
    dist(x, y)              geodesic distance :math:`d(x, y) = \|\log_x y\|_x`
    geodesic(x, y, t)       :math:`\gamma(t) = \exp_x(t \log_x y)`, ``gamma(0) = x``, ``gamma(1) = y``
    transp(x, y, v)         parallel transport of ``v`` from ``x`` to ``y`` along the geodesic
    egrad2rgrad(x, g)       Riemannian gradient from the Euclidean gradient ``g``
    random(*shape, ...)     random points
    check_point(x)          raise a clear ``ValueError`` when ``x`` is not on the manifold
    """

    def _ns(self, *arrays: Array) -> ArrayNamespace:
        """Namespace of ``arrays``; checks they share the last (coordinate) axis."""
        nx = get_namespace(*arrays)
        dims = {a.shape[-1] if a.ndim else None for a in arrays}
        if None in dims:
            raise ValueError(
                f"{self!r} works on arrays of shape (..., n); got a 0-d array "
                "(add the coordinate axis, e.g. x[..., None])"
            )
        if len(dims) > 1:
            raise ValueError(
                f"{self!r}: points and vectors must share the last (coordinate) axis; "
                f"got sizes {sorted(dims)}"
            )
        return nx

    @staticmethod
    def _squeeze(value: Array, keepdims: bool) -> Array:
        return value if keepdims else value[..., 0]

    # --- implemented by each manifold (documented there) -------------------------------------
    @abstractmethod
    def proj(self, x: Array) -> Array:
        ...

    @abstractmethod
    def proju(self, x: Array, u: Array) -> Array:
        ...

    @abstractmethod
    def inner(self, x: Array, u: Array, v: Array, *, keepdims: bool = False) -> Array:
        ...

    @abstractmethod
    def exp(self, x: Array, v: Array) -> Array:
        ...

    @abstractmethod
    def retr(self, x: Array, v: Array) -> Array:
        ...

    @abstractmethod
    def log(self, x: Array, y: Array) -> Array:
        ...

    @abstractmethod
    def dist(self, x: Array, y: Array, *, keepdims: bool = False) -> Array:
        ...

    @abstractmethod
    def transp(self, x: Array, y: Array, v: Array) -> Array:
        ...

    @abstractmethod
    def egrad2rgrad(self, x: Array, g: Array) -> Array:
        ...

    @abstractmethod
    def _violation(self, nx: ArrayNamespace, x: Array) -> tuple[float, str]:
        """Largest constraint violation of ``x`` (0 on the manifold) and what it measures."""

    # --- shared -----------------------------------------------------------------------------
    def geodesic(self, x: Array, y: Array, t: Array | float) -> Array:
        r"""Point at time ``t`` on the geodesic from ``x`` (``t = 0``) to ``y`` (``t = 1``).

        .. math:: \gamma(t) = \exp_x\bigl(t \log_x y\bigr), \qquad d(x, \gamma(t)) = t\, d(x, y)

        so the curve has constant speed :math:`d(x, y)`.

        Parameters
        ----------
        x, y : array, shape (..., n)
        t : float or array broadcastable to the batch shape ``(...)``
            E.g. ``t`` of shape ``(k,)`` with single points ``x, y`` of shape ``(n,)`` gives
            ``k`` points of shape ``(k, n)`` along the path.
        """
        nx = self._ns(x, y)
        t = nx.asarray(t, like=x)[..., None]
        return self.exp(x, t * self.log(x, y))

    def component_inner(self, x: Array, u: Array) -> Array:
        r"""Squared norm :math:`\|u\|_x^2` broadcast over the coordinates of each point.

        The second-moment statistic of :class:`~synthfuse.shared.optim.RiemannianAdam`: one
        adaptive scale per manifold factor (Bécigneul & Ganea, 2019).
        """
        return self.inner(x, u, u, keepdims=True) * self._ns(x, u).ones_like(u)

    def _random_normal(self, shape: tuple, generator, like) -> tuple[ArrayNamespace, Array]:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape or any(int(s) < 1 for s in shape):
            raise ValueError(f"random: shape must be positive sizes (..., n); got {shape}")
        if like is None and type(generator).__module__.split(".")[0] == "torch":
            like = sys.modules["torch"].zeros(())  # a torch.Generator: torch, default dtype
        nx = get_namespace(like)
        return nx, nx.normal(tuple(int(s) for s in shape), generator=generator, like=like)

    def check_point(self, x: Array, *, atol: float | None = None) -> None:
        """Raise ``ValueError`` unless every point in ``x`` lies on the manifold.

        Parameters
        ----------
        x : array, shape (..., n)
        atol : float, optional
            Allowed violation; by default ``sqrt(eps)`` of the dtype (times the radius for a
            sphere).
        """
        nx = get_namespace(x)
        if not bool(nx.isfinite(x).all()):
            raise ValueError(f"{self!r}: the points contain NaN or inf")
        tol = (math.sqrt(nx.eps(x)) if atol is None else atol) * self._scale()
        worst, what = self._violation(nx, x)
        if worst > tol:
            raise ValueError(
                f"points are not on {self!r}: {what} = {worst:.3g} > {tol:.3g}; "
                "map them onto the manifold with .proj(x) first"
            )

    def _scale(self) -> float:
        return 1.0


def _store_curvature(manifold: Manifold) -> None:
    """Check a hyperbolic manifold's ``c`` (positive, finite) and store it as a float, so that
    ``M(1) == M(1.0)`` with the same repr (the optimizers' state key)."""
    c = manifold.c
    if not (math.isfinite(c) and c > 0):
        raise ValueError(
            f"{type(manifold).__name__} curvature c must be a positive finite number, got {c!r} "
            "(use Euclidean() for the flat case c = 0)"
        )
    object.__setattr__(manifold, "c", float(c))
