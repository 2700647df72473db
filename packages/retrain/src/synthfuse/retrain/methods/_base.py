"""What every retraining method shares: options, the run context, the fine-tuning objective."""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.retrain.alignment import AlignmentError, align
from synthfuse.retrain.data import Dataset
from synthfuse.retrain.losses import focal_distillation, kd_loss
from synthfuse.retrain.metrics import Metrics, evaluate, logits_of

__all__ = [
    "BestSnapshot", "Context", "FocalOptions", "MethodOutput", "RetrainMethod", "SuperiorDistillOptions",
    "UpgradeObjective", "parse_options",
]


def parse_options(cls: type, method: str, options: dict[str, Any]) -> Any:
    """Build the options dataclass ``cls`` from ``options``; unknown keys are an error."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method {method!r}; valid options: {names}")
    return cls(**options)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class FocalOptions:
    """The focal-distillation term from θ* (Yan et al. 2021), shared by the fine-tuning methods.

    ``focal_weight`` λ multiplies :func:`synthfuse.retrain.losses.focal_distillation` with weights
    ``focal_alpha + focal_beta · 1[θ* correct]``; ``focal_weight = 0`` switches it off.
    """

    focal_weight: float = 0.0
    focal_alpha: float = 0.0
    focal_beta: float = 1.0
    focal_temperature: float = 1.0
    focal_kind: str = "kl"

    def __post_init__(self) -> None:
        _check(self.focal_weight >= 0 and self.focal_alpha >= 0 and self.focal_beta >= 0,
               "focal_weight, focal_alpha and focal_beta must be >= 0")
        _check(self.focal_temperature > 0, f"focal_temperature must be > 0, got {self.focal_temperature}")
        _check(self.focal_kind in ("kl", "logit"), f"focal_kind must be 'kl' or 'logit', got {self.focal_kind!r}")


@dataclass
class SuperiorDistillOptions:
    """Distillation from θ† itself while fine-tuning (keeps θ‡ near θ†'s function).

    ``kd_weight`` λ ∈ [0, 1] weighs :func:`~synthfuse.retrain.losses.kd_loss` of θ†'s
    probabilities at ``temperature`` T against cross-entropy; 0 switches it off.
    """

    kd_weight: float = 0.0
    temperature: float = 2.0

    def __post_init__(self) -> None:
        _check(0.0 <= self.kd_weight <= 1.0, f"kd_weight must lie in [0, 1], got {self.kd_weight}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


@dataclass
class Context:
    """Everything a method sees: copies of both models and the data, on ``device``.

    ``incumbent`` and ``superior`` are private copies in eval mode; the method may not modify
    them. ``incumbent_train_logits`` and ``incumbent_train_correct`` are θ*'s outputs on the train
    set (for focal distillation), ``incumbent_val_pred`` its predictions on val.
    """

    incumbent: nn.Module
    superior: nn.Module
    train: Dataset
    val: Dataset
    seed: int
    device: torch.device
    progress: bool = False
    trace: list[dict[str, Any]] = field(default_factory=list)
    incumbent_train_logits: torch.Tensor = field(init=False)
    incumbent_train_correct: torch.Tensor = field(init=False)
    incumbent_val_pred: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.incumbent_train_logits = logits_of(self.incumbent, self.train.X)
        self.incumbent_train_correct = self.incumbent_train_logits.argmax(1) == self.train.y
        self.incumbent_val_pred = logits_of(self.incumbent, self.val.X).argmax(1).cpu()

    def metrics(self, model: nn.Module) -> Metrics:
        """``model``'s :class:`Metrics` on the validation data."""
        return evaluate(logits_of(model, self.val.X), self.val.y, self.incumbent_val_pred)

    def record(self, model: nn.Module, **where: Any) -> Metrics:
        """Append ``model``'s validation metrics, tagged with ``where`` (e.g. ``epoch=3``), to the trace."""
        m = self.metrics(model)
        self.trace.append({**where, **m.as_dict()})
        return m

    def superior_nll_limit(self, margin: float) -> float:
        """θ†'s validation NLL plus ``margin``: the calibration bound of dominance."""
        return self.metrics(self.superior).nll + margin

    def superior_probs(self, temperature: float) -> torch.Tensor:
        """θ†'s softened probabilities :math:`\\mathrm{softmax}(z^\\dagger / T)` on the train set."""
        return F.softmax(logits_of(self.superior, self.train.X) / temperature, dim=1)

    def aligned_superior(self, method: str) -> nn.Module:
        """θ† with its hidden units aligned to θ* (:func:`~synthfuse.retrain.alignment.align`)."""
        try:
            return align(self.incumbent, self.superior, data=self.train).model
        except AlignmentError as err:
            raise AlignmentError(f"{err}. {method} aligns θ† to θ* by default: pass align=False for this architecture") from err

    def progress_label(self, label: str) -> str | None:
        """``label`` when progress bars are on, else ``None`` (for :func:`~synthfuse.retrain.training.fit`)."""
        return label if self.progress else None


class BestSnapshot:
    """Keep the best model seen along a path by the validation score
    :math:`\\mathrm{acc} - \\gamma\\,\\mathrm{NFR}` (ties: lower NLL; then the earlier point).

    Candidates whose validation NLL exceeds ``nll_limit`` (dominance's calibration criterion)
    rank below all others. Call it on each candidate (it records the candidate's metrics in the
    trace); ``restore`` loads the best state into a model.
    """

    def __init__(self, ctx: Context, nfr_penalty: float, nll_limit: float = float("inf")) -> None:
        self.ctx, self.nfr_penalty, self.nll_limit = ctx, nfr_penalty, nll_limit
        self.key: tuple[bool, float, float] | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.where: dict[str, Any] = {}

    def __call__(self, model: nn.Module, **where: Any) -> Metrics:
        m = self.ctx.record(model, **where)
        key = (m.nll <= self.nll_limit, m.accuracy - self.nfr_penalty * m.negative_flip_rate, -m.nll)
        if self.key is None or key > self.key:
            self.key, self.where = key, where
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return m

    def restore(self, model: nn.Module) -> nn.Module:
        """Load the best state seen into ``model`` (same architecture) and return it."""
        if self.state is None:
            raise RuntimeError("no candidate was scored")
        model.load_state_dict(self.state)
        return model


@dataclass
class MethodOutput:
    """A method's result: the upgraded model θ‡ and method-specific figures (e.g. loss barriers)."""

    model: nn.Module
    details: dict[str, Any] = field(default_factory=dict)


class UpgradeObjective:
    """The fine-tuning objective the methods share, on the train set:

    .. math:: L(\\theta) = \\frac1B\\sum_i \\big[(1-\\lambda_{KD})\\,\\mathrm{CE}(z_i, y_i)
              + \\lambda_{KD}\\,\\ell_{KD}(z_i; q_i)\\big] + \\lambda_{FD}\\,\\ell_{FD} + R(\\theta)

    with teacher probabilities :math:`q` (KDT), focal distillation from θ* (PCT) and an optional
    extra penalty :math:`R` (FRR's function-space term).
    """

    def __init__(
        self,
        ctx: Context,
        focal: FocalOptions,
        *,
        teacher_probs: torch.Tensor | None = None,
        kd_weight: float = 0.0,
        temperature: float = 1.0,
        penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    ) -> None:
        if kd_weight > 0 and teacher_probs is None:
            raise ValueError("kd_weight > 0 needs teacher probabilities")
        self.ctx, self.focal = ctx, focal
        self.teacher_probs, self.kd_weight, self.temperature = teacher_probs, kd_weight, temperature
        self.penalty = penalty

    def __call__(self, model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        ds, f = self.ctx.train, self.focal
        z = model(ds.X[idx])
        loss = F.cross_entropy(z, ds.y[idx]) * (1.0 - self.kd_weight)
        if self.kd_weight > 0:
            loss = loss + self.kd_weight * kd_loss(z, self.teacher_probs[idx], self.temperature).mean()
        if f.focal_weight > 0:
            loss = loss + f.focal_weight * focal_distillation(
                z, self.ctx.incumbent_train_logits[idx], self.ctx.incumbent_train_correct[idx],
                alpha=f.focal_alpha, beta=f.focal_beta, temperature=f.focal_temperature, kind=f.focal_kind,
            )
        if self.penalty is not None:
            loss = loss + self.penalty(model)
        return loss


class RetrainMethod(abc.ABC):
    """Base class of the registered methods.

    A subclass sets ``name`` and ``Options`` (a dataclass whose fields are the method's keyword
    options, validated in ``__post_init__``) and implements :meth:`run`.
    """

    name: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(self.Options, self.name, options)

    @abc.abstractmethod
    def run(self, ctx: Context) -> MethodOutput:
        """Build θ‡ from ``ctx``; append validation metrics along the way to ``ctx.trace``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"
