"""Flat space: the manifold that turns the Riemannian optimizers into torch's SGD and Adam."""

from __future__ import annotations

from dataclasses import dataclass

from synthfuse.shared.backend import ArrayNamespace
from synthfuse.shared.manifold._base import Array, Manifold


@dataclass(frozen=True)
class Euclidean(Manifold):
    r"""Euclidean space :math:`\mathbb{R}^n` with the metric :math:`\langle u, v\rangle = u^\top v`.

    .. math::
        \exp_x(v) = x + v, \qquad \log_x(y) = y - x, \qquad d(x, y) = \|y - x\|_2,
        \qquad P_{x \to y}(v) = v.

    ``proj``, ``proju``, ``exp``, ``retr``, ``log``, ``transp``, ``egrad2rgrad`` and
    :meth:`component_inner` act element-wise, so they also accept 0-d arrays (scalar
    parameters in the optimizers); ``dist`` and ``inner`` reduce the last axis.

    Examples
    --------
    >>> import numpy as np
    >>> float(Euclidean().dist(np.zeros(2), np.array([3.0, 4.0])))
    5.0
    """

    def proj(self, x: Array) -> Array:
        """``x`` itself (every point is on the manifold)."""
        return x

    def proju(self, x: Array, u: Array) -> Array:
        """``u`` itself (the tangent space is the whole space)."""
        return u

    def inner(self, x: Array, u: Array, v: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\langle u, v\rangle = \sum_i u_i v_i` over the last axis."""
        return self._squeeze(self._ns(u, v).sum(u * v), keepdims)

    def exp(self, x: Array, v: Array) -> Array:
        """:math:`x + v`."""
        return x + v

    def retr(self, x: Array, v: Array) -> Array:
        """:math:`x + v` (the exponential map)."""
        return x + v

    def log(self, x: Array, y: Array) -> Array:
        """:math:`y - x`."""
        return y - x

    def dist(self, x: Array, y: Array, *, keepdims: bool = False) -> Array:
        r""":math:`\|y - x\|_2`; exactly 0 with gradient 0 at ``x = y``."""
        return self._squeeze(self._ns(x, y).norm(y - x), keepdims)

    def transp(self, x: Array, y: Array, v: Array) -> Array:
        """``v`` itself (parallel transport is the identity)."""
        return v

    def egrad2rgrad(self, x: Array, g: Array) -> Array:
        """``g`` itself."""
        return g

    def component_inner(self, x: Array, u: Array) -> Array:
        r""":math:`u \odot u`: each coordinate is its own factor :math:`\mathbb{R}`, which makes
        :class:`~synthfuse.shared.optim.RiemannianAdam` element-wise like :class:`torch.optim.Adam`.
        """
        return u * u

    def random(self, *shape: int, std: float = 1.0, generator=None, like: Array | None = None):
        """Normal samples :math:`\\mathcal{N}(0, \\text{std}^2 I)` of the given ``shape``.

        ``like``: an array whose library, dtype and device the result takes (numpy float64 by
        default); ``generator``: a seed, a numpy ``Generator`` or a ``torch.Generator``.
        """
        _, z = self._random_normal(shape, generator, like)
        return std * z

    def _violation(self, nx: ArrayNamespace, x: Array) -> tuple[float, str]:
        return 0.0, "violation"  # every finite point is on the manifold
