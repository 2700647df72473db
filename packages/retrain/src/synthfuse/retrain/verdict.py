"""Does a candidate θ‡ dominate the superior model θ† as an upgrade of the incumbent θ*?

θ‡ dominates θ† on data :math:`\\{(x_i, y_i)\\}_{i=1}^N` when all three hold:

1. **accuracy**: θ‡ is not significantly less accurate than θ†. Exact McNemar test on the
   discordant pairs: with :math:`b = \\#\\{θ‡ \\text{ wrong}, θ† \\text{ right}\\}` and
   :math:`c = \\#\\{θ‡ \\text{ right}, θ† \\text{ wrong}\\}`, under :math:`H_0` (equal accuracy)
   :math:`b \\sim \\mathrm{Bin}(b + c, 1/2)`; the one-sided p-value
   :math:`P(B \\ge b)` must be :math:`\\ge \\alpha` (0.05).
2. **negative flips**: :math:`\\mathrm{NFR}(θ^\\star\\toθ‡) < \\mathrm{NFR}(θ^\\star\\toθ†)`, with
   the paired-bootstrap confidence interval (95%) of the difference entirely below 0.
3. **calibration**: :math:`\\mathrm{NLL}(θ‡) \\le \\mathrm{NLL}(θ†) + 0.02`.

θ‡ = θ† never dominates (the NFR difference is exactly 0).

References
----------
McNemar, Q. Note on the sampling error of the difference between correlated proportions or
percentages. Psychometrika 12, 1947. Efron, B. & Tibshirani, R. An Introduction to the
Bootstrap, 1993 (paired bootstrap percentile interval). Yan et al., CVPR 2021 (negative flips).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Union

import numpy as np
import torch
from torch import nn

from synthfuse.retrain.data import DataLike, as_dataset
from synthfuse.retrain.metrics import logits_of, negative_flips, nll

__all__ = ["Verdict", "dominates", "mcnemar_exact", "paired_bootstrap_ci"]

ModelOrLogits = Union[nn.Module, torch.Tensor]


def mcnemar_exact(n_worse: int, n_better: int) -> float:
    """One-sided exact McNemar p-value that the candidate is *worse*: :math:`P(B \\ge b)`.

    .. math:: p = 2^{-n} \\sum_{k=b}^{n} \\binom{n}{k}, \\qquad n = b + c

    Parameters
    ----------
    n_worse : int
        Discordant pairs the candidate gets wrong and the reference gets right (``b``).
    n_better : int
        Discordant pairs the candidate gets right and the reference gets wrong (``c``).

    Returns 1.0 when there are no discordant pairs. Computed with exact integers.
    """
    if n_worse < 0 or n_better < 0:
        raise ValueError(f"counts must be >= 0, got {n_worse}, {n_better}")
    n = n_worse + n_better
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(n_worse, n + 1))
    return tail / 2**n  # exact big-integer ratio, correctly rounded to float


def paired_bootstrap_ci(
    diff: torch.Tensor | np.ndarray, *, n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of :math:`\\bar d` for paired per-sample differences in {-1, 0, 1}.

    Resampling N indices with replacement only changes how many -1, 0 and +1 are drawn, so the
    bootstrap mean is :math:`(n_{+} - n_{-})/N` with
    :math:`(n_-, n_0, n_+) \\sim \\mathrm{Multinomial}(N, (p_-, p_0, p_+))`: the same law as
    resampling indices, in O(n_bootstrap) instead of O(n_bootstrap · N).
    """
    d = np.asarray(diff.cpu() if isinstance(diff, torch.Tensor) else diff).ravel()
    if d.size == 0 or not np.isin(d, (-1, 0, 1)).all():
        raise ValueError("diff must be a non-empty vector of per-sample differences in {-1, 0, 1}")
    d = d.astype(np.int64)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = d.size
    probs = np.array([(d == -1).sum(), (d == 0).sum(), (d == 1).sum()], dtype=np.float64) / n
    counts = np.random.default_rng(seed).multinomial(n, probs, size=n_bootstrap)  # (B, 3)
    means = (counts[:, 2] - counts[:, 0]) / n
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def _reference_paired_bootstrap_ci(diff: np.ndarray, n_bootstrap: int, confidence: float, seed: int) -> tuple[float, float]:
    """Index-resampling bootstrap: the slow, obviously correct form of :func:`paired_bootstrap_ci`."""
    rng = np.random.default_rng(seed)
    d = np.asarray(diff, dtype=np.float64)
    means = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(n_bootstrap)])
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`dominates`; truthy when the candidate dominates.

    Attributes
    ----------
    dominates : bool
        All of ``accuracy_ok``, ``nfr_ok``, ``nll_ok``.
    accuracy, nfr, nll : tuple of float
        ``(candidate, superior)`` figures on the data; ``nfr`` is measured against the incumbent.
    n_worse, n_better : int
        McNemar discordant counts (candidate wrong & superior right; the converse).
    mcnemar_p : float
        One-sided exact p-value that the candidate is less accurate.
    nfr_diff_ci : tuple of float
        Paired-bootstrap interval of NFR(candidate) − NFR(superior).
    n : int
        Number of samples.
    """

    dominates: bool
    accuracy_ok: bool
    nfr_ok: bool
    nll_ok: bool
    accuracy: tuple[float, float]
    nfr: tuple[float, float]
    nll: tuple[float, float]
    n_worse: int
    n_better: int
    mcnemar_p: float
    nfr_diff_ci: tuple[float, float]
    n: int

    def __bool__(self) -> bool:
        return self.dominates

    @property
    def failed(self) -> list[str]:
        """Names of the criteria that failed (empty when it dominates)."""
        return [k for k, ok in (("accuracy", self.accuracy_ok), ("nfr", self.nfr_ok), ("nll", self.nll_ok)) if not ok]

    def summary(self) -> str:
        """One line: ``yes`` or ``no (failed criteria)``."""
        return "yes" if self.dominates else f"no ({', '.join(self.failed)})"

    def __str__(self) -> str:
        return (
            f"dominates: {self.summary()} | acc {self.accuracy[0]:.4f} vs {self.accuracy[1]:.4f} "
            f"(McNemar p_worse={self.mcnemar_p:.3g}, b={self.n_worse}, c={self.n_better}) | "
            f"NFR {self.nfr[0]:.4f} vs {self.nfr[1]:.4f} (CI of diff [{self.nfr_diff_ci[0]:.4f}, "
            f"{self.nfr_diff_ci[1]:.4f}]) | NLL {self.nll[0]:.4f} vs {self.nll[1]:.4f} (N={self.n})"
        )


def _logits(model: ModelOrLogits, X: torch.Tensor, what: str) -> torch.Tensor:
    if isinstance(model, torch.Tensor):
        if model.ndim != 2 or model.shape[0] != X.shape[0]:
            raise ValueError(f"{what} logits must have shape (N={X.shape[0]}, n_classes), got {tuple(model.shape)}")
        return model.detach().cpu()
    if isinstance(model, nn.Module):
        return logits_of(model, X).cpu()
    raise TypeError(f"{what} must be an nn.Module or a tensor of its logits, got {type(model).__name__}")


def dominates(
    candidate: ModelOrLogits,
    superior: ModelOrLogits,
    incumbent: ModelOrLogits,
    data: DataLike,
    *,
    alpha: float = 0.05,
    nll_margin: float = 0.02,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Verdict:
    """Test whether ``candidate`` (θ‡) dominates ``superior`` (θ†) as an upgrade of ``incumbent`` (θ*).

    Parameters
    ----------
    candidate, superior, incumbent : nn.Module or torch.Tensor
        Classifiers, or their logits on ``data`` (shape ``(N, n_classes)``).
    data : DataLoader or (X, y)
        Held-out data the verdict is measured on.
    alpha : float
        McNemar significance level for "significantly less accurate".
    nll_margin : float
        Allowed NLL increase over the superior model.
    n_bootstrap, confidence, seed
        Paired bootstrap of the NFR difference.

    Returns
    -------
    Verdict
        Truthy when all three criteria (module docstring) hold.
    """
    ds = as_dataset(data, "data")
    y = ds.y.cpu()
    zc, zs, zi = (_logits(m, ds.X, w) for m, w in ((candidate, "candidate"), (superior, "superior"), (incumbent, "incumbent")))
    pc, ps, pi = zc.argmax(1), zs.argmax(1), zi.argmax(1)
    right_c, right_s = pc == y, ps == y
    n_worse = int((~right_c & right_s).sum())
    n_better = int((right_c & ~right_s).sum())
    p_worse = mcnemar_exact(n_worse, n_better)
    flips_c, flips_s = negative_flips(y, pi, pc), negative_flips(y, pi, ps)
    ci = paired_bootstrap_ci(flips_c.long() - flips_s.long(), n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    nfr_c, nfr_s = float(flips_c.double().mean()), float(flips_s.double().mean())
    nll_c, nll_s = nll(y, zc), nll(y, zs)
    accuracy_ok = p_worse >= alpha
    nfr_ok = nfr_c < nfr_s and ci[1] < 0.0
    nll_ok = nll_c <= nll_s + nll_margin
    return Verdict(
        dominates=bool(accuracy_ok and nfr_ok and nll_ok),
        accuracy_ok=bool(accuracy_ok),
        nfr_ok=bool(nfr_ok),
        nll_ok=bool(nll_ok),
        accuracy=(float(right_c.double().mean()), float(right_s.double().mean())),
        nfr=(nfr_c, nfr_s),
        nll=(nll_c, nll_s),
        n_worse=n_worse,
        n_better=n_better,
        mcnemar_p=p_worse,
        nfr_diff_ci=ci,
        n=len(y),
    )
