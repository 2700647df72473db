"""One implementation, three array libraries: a small dispatch over numpy, torch and jax.

Code written against an :class:`ArrayNamespace` runs unchanged on numpy arrays, torch tensors
(autograd flows through) and jax arrays, in the spirit of POT's ``nx = get_backend(...)``::

    nx = get_namespace(x, y)
    d = nx.sqrt(nx.sum((x - y) ** 2))        # keepdims along the last axis by default

torch and jax are optional: they are imported only when a caller hands over one of their arrays
(so the library is already loaded), never at ``import synthfuse.shared``.

Operations
----------
Same name and meaning as numpy on every backend: ``sqrt sin cos sinh cosh tanh arcsinh arctanh
arctan2 abs where isfinite zeros_like ones_like`` (add a name to ``ArrayNamespace._SAME_AS_NUMPY`` when
numpy, torch and jax.numpy all spell it the same). Methods whose torch spelling differs
from numpy's: :meth:`ArrayNamespace.sum`, :meth:`~ArrayNamespace.clip`,
:meth:`~ArrayNamespace.norm` (zero gradient at 0, never NaN), :meth:`~ArrayNamespace.asarray`,
:meth:`~ArrayNamespace.eps`, :meth:`~ArrayNamespace.concat`, :meth:`~ArrayNamespace.first_argmin_onehot`,
:meth:`~ArrayNamespace.normal`, :meth:`~ArrayNamespace.to_numpy`.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ArrayNamespace", "get_namespace", "import_optional"]

def import_optional(name: str) -> ModuleType:
    """Import the optional dependency ``name`` ("torch" or "jax") or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        extra = name.split(".")[0]  # the extras are named after the libraries
        raise ImportError(
            f"this part of synthfuse.shared needs {name}; install it with "
            f"`pip install 'synthfuse-shared[{extra}]'`"
        ) from err


class ArrayNamespace:
    """Array operations for one library; get one with :func:`get_namespace`.

    Attributes
    ----------
    name : {"numpy", "torch", "jax"}
    xp : module
        ``numpy``, ``torch`` or ``jax.numpy``.
    """

    _SAME_AS_NUMPY = (
        "sqrt", "sin", "cos", "sinh", "cosh", "tanh", "arcsinh", "arctanh", "arctan2", "abs",
        "where", "isfinite", "zeros_like", "ones_like",
    )

    def __init__(self, name: str, xp: ModuleType):
        self.name = name
        self.xp = xp
        for op in self._SAME_AS_NUMPY:
            setattr(self, op, getattr(xp, op))

    def __repr__(self) -> str:
        return f"ArrayNamespace({self.name!r})"

    def sum(self, x, axis: int = -1, keepdims: bool = True):
        """Sum over ``axis``; keeps the axis by default (manifold code reduces the last axis)."""
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def clip(self, x, lo: float | None = None, hi: float | None = None):
        """Clamp ``x`` to ``[lo, hi]`` (either bound may be ``None``)."""
        return self.xp.clip(x, lo, hi)

    def norm(self, x, axis: int = -1, keepdims: bool = True):
        r"""Euclidean norm with a finite gradient everywhere.

        :math:`\|x\| = \sqrt{\sum_i x_i^2}`, computed as ``where(s > 0, sqrt(where(s > 0, s, 1)), 0)``
        with :math:`s = \sum_i x_i^2`: exactly 0 at ``x = 0`` with gradient 0 there (a
        subgradient) instead of the NaN a plain ``sqrt`` gives.
        """
        sq = self.sum(x * x, axis=axis, keepdims=keepdims)
        positive = sq > 0
        return self.where(positive, self.sqrt(self.where(positive, sq, 1.0)), 0.0)

    def asarray(self, x, like=None):
        """``x`` (array or scalar) as this backend's array, with ``like``'s dtype/device if given."""
        if like is None:
            return self.xp.asarray(x)
        return self.xp.asarray(x, dtype=like.dtype)

    def eps(self, x) -> float:
        """Machine epsilon of ``x``'s floating dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
        return float(self.xp.finfo(x.dtype).eps)

    def concat(self, arrays, axis: int = -1):
        """Join ``arrays`` along ``axis`` (the last one by default)."""
        return self.xp.concatenate(arrays, axis=axis)

    def first_argmin_onehot(self, x):
        """One-hot (dtype of ``x``) of the first minimum of ``x`` along the last axis."""
        idx = self.xp.argmin(x, axis=-1)[..., None]
        return (self.xp.arange(x.shape[-1]) == idx).astype(x.dtype)

    def normal(self, shape: tuple[int, ...], generator=None, like=None):
        """Standard normal samples of ``shape`` with ``like``'s dtype (float64 by default).

        ``generator``: ``None``, an ``int`` seed or a :class:`numpy.random.Generator` (drawn by
        numpy, then converted); torch also takes a :class:`torch.Generator` (drawn by torch on
        ``like``'s device; an ``int`` seed is used the same way).
        """
        if type(generator).__module__.split(".")[0] == "torch":
            raise TypeError(f"a torch.Generator needs torch tensors; got like={type(like).__name__}")
        sample = np.random.default_rng(generator).standard_normal(shape)
        return self.xp.asarray(sample, dtype=np.float64 if like is None else like.dtype)

    def to_numpy(self, x) -> np.ndarray:
        """``x`` as a numpy array (detached, on the CPU)."""
        return np.asarray(x)


class _TorchNamespace(ArrayNamespace):
    def sum(self, x, axis: int = -1, keepdims: bool = True):
        return self.xp.sum(x, dim=axis, keepdim=keepdims)

    def clip(self, x, lo=None, hi=None):
        return self.xp.clamp(x, lo, hi)

    def asarray(self, x, like=None):
        if like is None:
            return self.xp.as_tensor(x)
        return self.xp.as_tensor(x, dtype=like.dtype, device=like.device)

    def eps(self, x) -> float:
        return float(self.xp.finfo(x.dtype).eps)

    def concat(self, arrays, axis: int = -1):
        return self.xp.cat(arrays, dim=axis)

    def first_argmin_onehot(self, x):
        idx = self.xp.argmin(x, dim=-1, keepdim=True)
        return (self.xp.arange(x.shape[-1], device=x.device) == idx).to(x.dtype)

    def normal(self, shape, generator=None, like=None):
        torch = self.xp
        dtype = torch.get_default_dtype() if like is None else like.dtype
        device = None if like is None else like.device
        if isinstance(generator, int):
            generator = torch.Generator(device=device or "cpu").manual_seed(generator)
        if generator is None or isinstance(generator, torch.Generator):
            return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        sample = np.random.default_rng(generator).standard_normal(shape)
        return torch.as_tensor(sample, dtype=dtype, device=device)

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()


_CACHE: dict[str, ArrayNamespace] = {}


def _namespace(name: str) -> ArrayNamespace:
    if name not in _CACHE:
        if name == "torch":
            _CACHE[name] = _TorchNamespace("torch", import_optional("torch"))
        elif name == "jax":
            _CACHE[name] = ArrayNamespace("jax", import_optional("jax.numpy"))
        else:
            _CACHE[name] = ArrayNamespace("numpy", np)
    return _CACHE[name]


def _library_of(x: Any) -> str | None:
    """'torch' / 'jax' / 'numpy' for an array, ``None`` for Python scalars and ``None``."""
    if x is None or isinstance(x, (bool, int, float, complex, np.generic)):
        return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return "jax"
    return "numpy"


def get_namespace(*arrays: Any) -> ArrayNamespace:
    """The :class:`ArrayNamespace` for ``arrays`` (numpy when all are scalars, lists or ``None``).

    Raises
    ------
    TypeError
        If the arrays come from two different libraries (e.g. a torch tensor and a numpy
        array): convert one of them first.
    """
    found = {lib for lib in map(_library_of, arrays) if lib is not None}
    if len(found) > 1:
        raise TypeError(
            f"arrays from different libraries ({', '.join(sorted(found))}) cannot be mixed; "
            "convert them to one library first (e.g. torch.as_tensor(a) or t.numpy())"
        )
    return _namespace(found.pop() if found else "numpy")
