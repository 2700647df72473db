"""``retrain``: build θ‡ from the incumbent θ* and the superior model θ† with a registered method."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from synthfuse.retrain.data import DataLike, as_dataset, check_architectures
from synthfuse.retrain.metrics import Metrics, logits_of
from synthfuse.retrain.methods import Context, get_method
from synthfuse.retrain.verdict import Verdict, dominates

__all__ = ["RetrainResult", "retrain"]


@dataclass
class RetrainResult:
    """What :func:`retrain` returns.

    Attributes
    ----------
    model : nn.Module
        θ‡, the upgraded model (θ*'s architecture), in eval mode.
    metrics : Metrics
        θ‡ on the validation data: accuracy, NLL, negative-flip rate vs θ*, disagreement.
    baselines : dict of str to Metrics
        ``"incumbent"`` (θ*) and ``"superior"`` (θ†) on the same data.
    verdict : Verdict
        :func:`~synthfuse.retrain.verdict.dominates` (θ‡ vs θ†, flips vs θ*) on the validation data.
    trace : list of dict
        Validation metrics along the method's path (per epoch, or per point of an interpolation).
    method : str
    options : dict
        The method's options as used.
    details : dict
        Method-specific figures (OTWI: loss barriers naive vs aligned, the chosen point).
    """

    model: nn.Module
    metrics: Metrics
    baselines: dict[str, Metrics]
    verdict: Verdict
    trace: list[dict[str, Any]]
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def retrain(
    incumbent: nn.Module,
    superior: nn.Module,
    *,
    train: DataLike | None = None,
    val: DataLike | None = None,
    method: str = "otwi",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **options: Any,
) -> RetrainResult:
    """Upgrade ``incumbent`` (θ*) toward ``superior`` (θ†) without its negative flips.

    Parameters
    ----------
    incumbent : nn.Module
        θ*, the deployed classifier (returns logits ``(N, n_classes)``). Not modified.
    superior : nn.Module
        θ†, the more accurate model of the same architecture. Not modified.
    train : DataLoader or (X, y)
        Training data the method fits on (a loader is read once, in order).
    val : DataLoader or (X, y)
        Held-out data for choices along the path (OTWI's point), the trace and the verdict.
    method : str
        A registered method: ``"wsft"``, ``"kdt"``, ``"otwi"``, ``"frr"``, ``"til"``, ``"dbsd"``,
        ``"fdd"``, ``"sb"`` or ``"auto"`` (:func:`synthfuse.retrain.methods.available_methods`).
    seed : int
        Fixes shuffling, initialization and the bootstrap: same seed, same θ‡.
    device : str or torch.device
        Where the models and data are put for the run.
    progress : bool
        Show tqdm progress bars.
    **options
        The method's options (its ``Options`` dataclass); unknown names raise ``TypeError``.

    Returns
    -------
    RetrainResult

    Raises
    ------
    ValueError
        Missing or malformed data, architectures that differ, models whose output size does
        not cover the labels.

    Examples
    --------
    >>> result = retrain(old, new, train=(X, y), val=(Xv, yv), method="kdt")  # doctest: +SKIP
    >>> bool(result.verdict), result.metrics.negative_flip_rate  # doctest: +SKIP
    """
    check_architectures(incumbent, superior)
    runner = get_method(method)(**options)  # validates the options before any work
    device = torch.device(device)
    train_ds, val_ds = as_dataset(train, "train").to(device), as_dataset(val, "val").to(device)
    if train_ds.X.shape[1:] != val_ds.X.shape[1:]:
        raise ValueError(f"train and val inputs differ in shape per sample: {tuple(train_ds.X.shape[1:])} vs {tuple(val_ds.X.shape[1:])}")
    inc, sup = (copy.deepcopy(m).to(device).eval() for m in (incumbent, superior))
    for what, m in (("incumbent", inc), ("superior", sup)):
        try:
            n_out = logits_of(m, train_ds.X[:2]).shape[1]
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"the {what} cannot be evaluated on the train inputs of shape {tuple(train_ds.X.shape[1:])}: {err}") from err
        needed = max(train_ds.n_classes, val_ds.n_classes)
        if n_out < needed:
            raise ValueError(f"the {what} outputs {n_out} classes but the labels need {needed}")
    ctx = Context(incumbent=inc, superior=sup, train=train_ds, val=val_ds, seed=seed, device=device, progress=progress)
    out = runner.run(ctx)
    model = out.model.eval()
    verdict = dominates(model, sup, inc, val_ds, seed=seed)
    return RetrainResult(
        model=model,
        metrics=ctx.metrics(model),
        baselines={"incumbent": ctx.metrics(inc), "superior": ctx.metrics(sup)},
        verdict=verdict,
        trace=ctx.trace,
        method=method,
        options={k: v for k, v in vars(runner.options).items() if k != "teachers"},
        details=out.details,
    )
