"""Paths between two models: interpolation (linear, per-layer spherical, Fisher-weighted) and loss barriers.

The loss barrier of the path :math:`\\theta(t)` from :math:`\\theta_A` to :math:`\\theta_B`
(Frankle et al. 2020; Entezari et al. 2022; Ainsworth et al. 2023) is the largest bump of the
loss above the straight line between the endpoint losses:

.. math:: B = \\max_{t \\in [0, 1]} \\; L(\\theta(t)) - \\big[(1 - t)\\,L(\\theta_A) + t\\,L(\\theta_B)\\big].

Along the naive path it is large for independently trained networks; after aligning their
units (:mod:`synthfuse.retrain.alignment`) it mostly vanishes (linear mode connectivity modulo
permutations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.retrain.data import DataLike, as_dataset
from synthfuse.retrain.fisher import fisher_merge
from synthfuse.retrain.metrics import logits_of
from synthfuse.shared.params import interpolate

__all__ = ["BarrierResult", "interpolate_models", "loss_barrier", "recompute_batchnorm"]

_MODES = ("linear", "spherical", "fisher")


def interpolate_models(
    model_a: nn.Module,
    model_b: nn.Module,
    t: float,
    *,
    mode: str = "linear",
    fishers: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """The model at ``t`` on the path from ``model_a`` (t = 0) to ``model_b`` (t = 1).

    ``"linear"`` and ``"spherical"`` (per-layer norm-preserving slerp) are
    :func:`synthfuse.shared.params.interpolate`; ``"fisher"`` is the Fisher-weighted merge
    :math:`((1-t)F_A\\theta_A + tF_B\\theta_B) / ((1-t)F_A + tF_B)`
    (:func:`synthfuse.retrain.fisher.fisher_merge`; ``fishers`` = the two diagonal Fishers).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    if mode == "fisher":
        if fishers is None or len(fishers) != 2:
            raise ValueError("mode='fisher' needs fishers=(F_a, F_b), e.g. from diagonal_fisher")
        if t in (0.0, 1.0):  # exact endpoints even where a Fisher entry is zero
            return interpolate(model_a, model_b, float(t))
        return fisher_merge([model_a, model_b], fishers, [1.0 - t, float(t)])
    return interpolate(model_a, model_b, float(t), mode=mode)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``X`` (cumulative average), in place.

    Interpolated networks' activations no longer match either endpoint's statistics; without
    this their BatchNorm layers mis-normalize (Jordan et al., REPAIR, ICLR 2023).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    model.train()
    try:
        for i in range(0, len(X), batch_size):
            model(X[i : i + batch_size])
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was_training)
    return model


@dataclass(frozen=True)
class BarrierResult:
    """Losses along a path and its barrier.

    Attributes
    ----------
    ts : list of float
        Grid of :math:`t`.
    losses : list of float
        Mean cross-entropy at each :math:`t`.
    accuracies : list of float
        Accuracy at each :math:`t`.
    barrier : float
        :math:`\\max_t L(t) - [(1-t)L(0) + tL(1)]` over the grid (module docstring).
    """

    ts: list[float]
    losses: list[float]
    accuracies: list[float]
    barrier: float


def loss_barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    data: DataLike,
    *,
    n_points: int = 11,
    mode: str = "linear",
    fishers: Sequence[Mapping[str, torch.Tensor]] | None = None,
    batchnorm_data: torch.Tensor | None = None,
) -> BarrierResult:
    """Loss and accuracy along the path between the models on ``data``; the loss barrier.

    ``batchnorm_data`` (inputs): recompute BatchNorm statistics at each point first.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    ds = as_dataset(data, "data")
    ts = torch.linspace(0.0, 1.0, n_points).tolist()
    losses, accs = [], []
    for t in ts:
        m = interpolate_models(model_a, model_b, t, mode=mode, fishers=fishers)
        if batchnorm_data is not None:
            recompute_batchnorm(m, batchnorm_data)
        z = logits_of(m, ds.X)
        y = ds.y.to(z.device)
        losses.append(float(F.cross_entropy(z.double(), y)))
        accs.append(float((z.argmax(1) == y).double().mean()))
    l0, l1 = losses[0], losses[-1]
    barrier = max(l - ((1 - t) * l0 + t * l1) for t, l in zip(ts, losses))
    return BarrierResult(ts, losses, accs, float(barrier))
