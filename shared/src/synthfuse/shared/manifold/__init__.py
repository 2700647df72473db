"""Riemannian manifolds on numpy arrays, torch tensors and jax arrays.

:class:`Euclidean`, :class:`Sphere`, :class:`PoincareBall` and :class:`Lorentz` share the :class:`Manifold`
interface (``proj``, ``proju``, ``inner``, ``exp``, ``retr``, ``log``, ``dist``, ``geodesic``,
``transp``, ``egrad2rgrad``, ``random``, ``check_point``), batched over leading dimensions.
:func:`lorentz_to_poincare` and :func:`poincare_to_lorentz` map between the two models of
hyperbolic space. The torch optimizers that use them live in :mod:`synthfuse.shared.optim`.
"""

from synthfuse.shared.manifold._base import Manifold
from synthfuse.shared.manifold._euclidean import Euclidean
from synthfuse.shared.manifold._lorentz import Lorentz, lorentz_to_poincare, poincare_to_lorentz
from synthfuse.shared.manifold._poincare import PoincareBall
from synthfuse.shared.manifold._sphere import Sphere

__all__ = ["Euclidean", "Lorentz", "Manifold", "PoincareBall", "Sphere", "lorentz_to_poincare",
           "poincare_to_lorentz"]
