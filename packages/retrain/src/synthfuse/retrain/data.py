"""Data handling: every entry point takes a ``DataLoader`` or an ``(X, y)`` pair.

A ``DataLoader`` is read once, in order, into two tensors: the methods need a fixed index per
sample (the incumbent's prediction on sample ``i`` weights its focal term), which a shuffling
loader does not give. The data sets used here (tabular, digits, small images) fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["Dataset", "DataLike", "as_dataset", "check_architectures", "batches"]

#: What the public API accepts as data.
DataLike = Union[DataLoader, tuple, list, "Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Inputs and integer labels held as two tensors of equal length.

    Attributes
    ----------
    X : torch.Tensor
        Inputs, shape ``(N, ...)``, floating point.
    y : torch.Tensor
        Labels, shape ``(N,)``, ``int64`` in ``[0, n_classes)``.
    """

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_classes(self) -> int:
        """``max(y) + 1``: the fewest classes a classifier of this data must output."""
        return int(self.y.max().item()) + 1

    def to(self, device: torch.device | str) -> "Dataset":
        """The same data on ``device``."""
        return Dataset(self.X.to(device), self.y.to(device))

    def subset(self, index: torch.Tensor | slice) -> "Dataset":
        """The samples at ``index``."""
        return Dataset(self.X[index], self.y[index])


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(value).__name__}")


def _from_loader(loader: DataLoader, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(
                f"{name}: each DataLoader batch must be an (inputs, labels) pair; batch {i} is "
                f"{type(batch).__name__}"
            )
        xs.append(_as_tensor(batch[0], f"{name} inputs"))
        ys.append(_as_tensor(batch[1], f"{name} labels"))
    if not xs:
        raise ValueError(f"{name}: the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def as_dataset(data: DataLike | None, name: str = "data") -> Dataset:
    """Validate ``data`` and return it as a :class:`Dataset`.

    Parameters
    ----------
    data : DataLoader, (X, y) or Dataset
        A loader yielding ``(inputs, labels)`` batches (read once, in order), or a pair of tensors
        / numpy arrays with ``len(X) == len(y)``.
    name : str
        Used in error messages (``"train"``, ``"val"``).

    Raises
    ------
    ValueError
        Missing or empty data, mismatched lengths, non-finite inputs, negative labels.
    TypeError
        Anything that is not one of the accepted forms, or non-integer labels.
    """
    if data is None:
        raise ValueError(
            f"{name} data is required: pass {name}=(X, y) tensors or a torch DataLoader of (x, y) batches"
        )
    if isinstance(data, Dataset):
        X, y = data.X, data.y
    elif isinstance(data, DataLoader):
        X, y = _from_loader(data, name)
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} must be an (X, y) pair, got a sequence of length {len(data)}")
        X, y = _as_tensor(data[0], f"{name} X"), _as_tensor(data[1], f"{name} y")
    else:
        raise TypeError(f"{name} must be a DataLoader or an (X, y) pair, got {type(data).__name__}")
    if y.ndim != 1:
        raise ValueError(f"{name} labels must be 1-D class indices, got shape {tuple(y.shape)}")
    if X.ndim < 2 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: X must have shape (N, ...) with N = len(y) = {y.shape[0]}, got {tuple(X.shape)}"
        )
    if y.shape[0] == 0:
        raise ValueError(f"{name} data is empty")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name} labels must be integers (class indices), got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError(f"{name} labels must be >= 0, got min {int(y.min())}")
    X = X.float() if not X.dtype.is_floating_point else X
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} inputs contain NaN or inf; clean or impute them first")
    return Dataset(X, y.long())


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Index batches covering ``range(n)``: shuffled with ``generator``, in order without one."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def check_architectures(incumbent: nn.Module, superior: nn.Module) -> None:
    """Raise unless the two models have the same parameters and buffers (names and shapes)."""
    for what, model in (("incumbent", incumbent), ("superior", superior)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")
    sa, sb = incumbent.state_dict(), superior.state_dict()
    missing, extra = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
    if missing or extra:
        raise ValueError(
            "incumbent and superior must share one architecture: "
            f"only in incumbent {missing[:5]}, only in superior {extra[:5]}"
        )
    for key, value in sa.items():
        if tuple(value.shape) != tuple(sb[key].shape):
            raise ValueError(
                f"incumbent and superior must share one architecture: {key!r} has shape "
                f"{tuple(value.shape)} in the incumbent and {tuple(sb[key].shape)} in the superior"
            )
