"""Data sets for the CLI, the demo, the benchmarks and the tests.

- ``"digits"``: scikit-learn's 8×8 handwritten digits (1797 samples, 10 classes), pixels / 16;
  needs scikit-learn (``pip install scikit-learn``).
- ``"synthetic"``: :func:`synthetic_classification`, Gaussian clusters in pure torch (no extra
  dependency), standardized.
- a path to ``.npz`` (arrays ``X``, ``y``) or ``.pt`` (a dict of tensors ``X``, ``y``, read
  with ``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthfuse.retrain.data import Dataset, as_dataset

__all__ = ["load_data", "load_digits", "split", "standardize", "synthetic_classification"]


def synthetic_classification(
    n_samples: int,
    *,
    n_features: int = 20,
    n_informative: int = 10,
    n_classes: int = 4,
    clusters_per_class: int = 2,
    class_sep: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Gaussian clusters on hypercube vertices in ``n_informative`` dims, plus noise dims.

    Each class owns ``clusters_per_class`` clusters centred on distinct vertices of
    :math:`\\{-s, s\\}^{d}` (:math:`s` = ``class_sep``, :math:`d` = ``n_informative``), mixed
    by a random linear map; the remaining features are standard noise. The result is
    standardized (zero mean, unit variance per feature). The same seed gives the same data.
    """
    if not (0 < n_informative <= n_features) or n_classes < 2 or clusters_per_class < 1 or n_samples < n_classes:
        raise ValueError("need 0 < n_informative <= n_features, n_classes >= 2, clusters_per_class >= 1, n_samples >= n_classes")
    n_clusters = n_classes * clusters_per_class
    if n_clusters > 2**n_informative:
        raise ValueError(f"{n_clusters} clusters need n_informative >= log2({n_clusters})")
    g = torch.Generator().manual_seed(seed)
    codes = torch.randperm(2**n_informative, generator=g)[:n_clusters]
    bits = (codes[:, None] >> torch.arange(n_informative)) & 1
    centroids = class_sep * (2.0 * bits.double() - 1.0)  # (n_clusters, d)
    cluster = torch.arange(n_samples) % n_clusters
    cluster = cluster[torch.randperm(n_samples, generator=g)]
    informative = centroids[cluster] + torch.randn(n_samples, n_informative, generator=g, dtype=torch.float64) @ (
        torch.rand(n_informative, n_informative, generator=g, dtype=torch.float64) * 2 - 1
    )
    noise = torch.randn(n_samples, n_features - n_informative, generator=g, dtype=torch.float64)
    X = torch.cat([informative, noise], 1)[:, torch.randperm(n_features, generator=g)]
    return Dataset(standardize(X).float(), (cluster % n_classes).long())


def standardize(X: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``(X - mean) / std`` per feature, with the statistics of ``reference`` (default ``X``)."""
    ref = X if reference is None else reference
    return (X - ref.mean(0)) / ref.std(0).clamp_min(1e-12)


def load_digits() -> Dataset:
    """scikit-learn's digits: ``X`` (1797, 64) in [0, 1], ``y`` in 0..9."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn") from err
    d = sk_load_digits()
    return Dataset(torch.from_numpy(d.data / 16.0).float(), torch.from_numpy(d.target).long())


def load_data(spec: str | Path, *, seed: int = 0) -> Dataset:
    """``"digits"``, ``"synthetic"`` (4000 samples, 20 features, 4 classes) or a ``.npz``/``.pt`` file."""
    if str(spec) == "digits":
        return load_digits()
    if str(spec) == "synthetic":
        return synthetic_classification(4000, seed=seed)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data {str(spec)!r} is neither 'digits', 'synthetic' nor an existing .npz/.pt file")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if not {"X", "y"} <= set(z.files):
                raise ValueError(f"{path} must hold arrays 'X' and 'y', has {sorted(z.files)}")
            return as_dataset((z["X"], z["y"]), str(path))
    if path.suffix == ".pt":
        obj = torch.load(path, weights_only=True, map_location="cpu")
        if not (isinstance(obj, dict) and {"X", "y"} <= set(obj)):
            raise ValueError(f"{path} must hold a dict with tensors 'X' and 'y'")
        return as_dataset((obj["X"], obj["y"]), str(path))
    raise ValueError(f"unsupported data file {path} (use .npz with X, y or .pt with a dict of X, y)")


def split(ds: Dataset, fractions: tuple[float, ...], *, seed: int = 0) -> list[Dataset]:
    """Shuffle with ``seed`` and cut into parts of the given fractions (summing to at most 1)."""
    if min(fractions) <= 0 or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be positive and sum to at most 1, got {fractions}")
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    sizes = [int(round(f * len(ds))) for f in fractions]
    starts = np.cumsum([0, *sizes])
    return [ds.subset(order[a:b]) for a, b in zip(starts[:-1], starts[1:])]
