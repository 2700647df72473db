"""Classification metrics of an upgrade: accuracy, NLL, negative flips, disagreement.

A *negative flip* is a sample the old model classified correctly and the new one does not
(Yan et al., "Positive-Congruent Training: Towards Regression-Free Model Updates", CVPR 2021):

.. math:: \\mathrm{NFR}(\\theta^\\star \\to \\theta) = \\frac1N \\sum_{i=1}^N
          \\mathbb 1[\\hat y^\\star_i = y_i] \\, \\mathbb 1[\\hat y_i \\ne y_i].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Metrics",
    "accuracy",
    "disagreement",
    "evaluate",
    "logits_of",
    "negative_flip_rate",
    "negative_flips",
    "nll",
]


def _labels(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        t = torch.as_tensor(np.asarray(value))
    if t.ndim != 1:
        raise ValueError(f"{what} must be 1-D class indices, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point:
        raise TypeError(f"{what} must hold integer class indices, got dtype {t.dtype}")
    return t.long()


def negative_flip_rate(y: Any, old_pred: Any, new_pred: Any) -> float:
    """Fraction of samples the old model got right and the new model gets wrong.

    .. math:: \\mathrm{NFR} = \\frac1N \\sum_i \\mathbb 1[o_i = y_i \\wedge n_i \\ne y_i]

    Parameters
    ----------
    y, old_pred, new_pred : array-like of int, shape (N,)
        True labels and the two models' predicted labels.

    References
    ----------
    Yan, Xiong, Kundu, Yang, Deng, Zhu, Wang, Xia, Soatto. Positive-Congruent Training: Towards
    Regression-Free Model Updates. CVPR 2021.
    """
    return float(negative_flips(y, old_pred, new_pred).double().mean())


def negative_flips(y: Any, old_pred: Any, new_pred: Any) -> torch.Tensor:
    """Boolean mask of the negative flips: ``old_pred == y`` and ``new_pred != y``."""
    y, o, n = _labels(y, "y"), _labels(old_pred, "old_pred"), _labels(new_pred, "new_pred")
    if not (len(y) == len(o) == len(n)) or len(y) == 0:
        raise ValueError(f"y, old_pred, new_pred must be non-empty and equally long, got {len(y)}, {len(o)}, {len(n)}")
    return (o == y) & (n != y)


def accuracy(y: Any, pred: Any) -> float:
    """Fraction of ``pred == y``."""
    y, p = _labels(y, "y"), _labels(pred, "pred")
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"y and pred must be non-empty and equally long, got {len(y)} and {len(p)}")
    return float((y == p).double().mean())


def disagreement(pred_a: Any, pred_b: Any) -> float:
    """Fraction of samples on which two models predict different labels."""
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"pred_a and pred_b must be non-empty and equally long, got {len(a)} and {len(b)}")
    return float((a != b).double().mean())


def nll(y: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean negative log-likelihood :math:`-\\frac1N\\sum_i \\log \\mathrm{softmax}(z_i)_{y_i}`."""
    return float(F.cross_entropy(logits.double(), y.to(logits.device).long()))


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Evaluate ``model`` on ``X`` in eval mode, in batches; restores the training flag."""
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), X.device)
        out = torch.cat([model(X[i : i + batch_size].to(device)) for i in range(0, len(X), batch_size)])
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"a classifier must return logits of shape (N, n_classes), got {tuple(out.shape)}")
    return out


@dataclass(frozen=True)
class Metrics:
    """Metrics of one model on one data set, relative to the incumbent θ*.

    Attributes
    ----------
    accuracy, nll : float
        Top-1 accuracy and mean negative log-likelihood.
    negative_flip_rate : float
        NFR(θ* → model); 0 for the incumbent itself.
    disagreement : float
        Fraction of predictions that differ from θ*'s.
    n_negative_flips : int
        The number of negative flips (few on small data: report counts).
    """

    accuracy: float
    nll: float
    negative_flip_rate: float
    disagreement: float
    n_negative_flips: int

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict."""
        return asdict(self)


def evaluate(logits: torch.Tensor, y: torch.Tensor, incumbent_pred: torch.Tensor) -> Metrics:
    """:class:`Metrics` of a model from its logits on data with labels ``y``."""
    if logits.ndim != 2 or logits.shape[0] != len(y):
        raise ValueError(f"logits must have shape (len(y)={len(y)}, n_classes), got {tuple(logits.shape)}")
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(
            f"the model outputs {logits.shape[1]} classes but the labels go up to {int(y.max())}"
        )
    pred = logits.argmax(1).cpu()
    y = y.cpu()
    flips = negative_flips(y, incumbent_pred, pred)
    return Metrics(
        accuracy=accuracy(y, pred),
        nll=nll(y, logits),
        negative_flip_rate=float(flips.double().mean()),
        disagreement=disagreement(incumbent_pred, pred),
        n_negative_flips=int(flips.sum()),
    )
