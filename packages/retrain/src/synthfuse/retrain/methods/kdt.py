"""KDT: knowledge-distillation training of the incumbent's architecture from θ† or an ensemble.

The student (θ*'s architecture, by default initialised at θ*) minimizes on the train set

.. math:: L = \\frac1B\\sum_i \\Big[(1-\\lambda)\\,\\mathrm{CE}(z_i, y_i)
          + \\lambda\\,T^2\\,\\mathrm{KL}\\big(\\bar q_i \\,\\|\\, \\mathrm{softmax}(z_i/T)\\big)\\Big]
          + \\lambda_{FD}\\,\\ell_{FD}(z; z^\\star),
   \\qquad \\bar q_i = \\frac1M\\sum_{m=1}^M \\mathrm{softmax}(z^{(m)}_i / T)

with teachers :math:`m = 1..M` (θ† alone, or an ensemble of superior models trained with
different seeds), temperature :math:`T` and the optional focal-distillation term from θ*.
Distilling an ensemble lowers the prediction variance between training runs that causes most
negative flips (ELODI); the focal term keeps θ*'s correct predictions (PCT).

References
----------
Hinton, Vinyals & Dean. Distilling the Knowledge in a Neural Network. NIPS DL Workshop, 2015.
Zhao, Xiong, Kundu, Yang, et al. ELODI: Ensemble Logit Difference Inhibition for
Positive-Congruent Training. arXiv:2205.06265, 2022.
Yan et al. Positive-Congruent Training: Towards Regression-Free Model Updates. CVPR 2021.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.retrain.metrics import logits_of
from synthfuse.retrain.methods._base import Context, FocalOptions, MethodOutput, RetrainMethod, UpgradeObjective, _check
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.training import fit, make_optimizer

__all__ = ["KDT", "reinitialize"]


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Reset every parameterized submodule with its own ``reset_parameters`` under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            if not own:
                continue
            if not hasattr(module, "reset_parameters"):
                raise TypeError(
                    f"cannot re-initialize submodule {name!r} ({type(module).__name__}): it has no "
                    "reset_parameters(); use init='incumbent' or 'superior'"
                )
            module.reset_parameters()
    return model


@dataclass
class KDTOptions(FocalOptions):
    """Options of :class:`KDT` (plus the focal-distillation ones of :class:`FocalOptions`).

    teachers : sequence of nn.Module, optional
        Superior models to distill (an ensemble); default ``[θ†]``.
    temperature : float
        Softening temperature :math:`T`.
    kd_weight : float
        :math:`\\lambda \\in [0, 1]`, the weight of the distillation term against cross-entropy.
    init : {"incumbent", "superior", "scratch"}
        Where the student starts.
    epochs, lr, batch_size, weight_decay, optimizer
        The training schedule (AdamW by default, cosine-decayed learning rate).
    """

    focal_weight: float = 0.5
    teachers: Sequence[nn.Module] | None = None
    temperature: float = 4.0
    kd_weight: float = 0.9
    init: str = "incumbent"
    epochs: int = 60
    lr: float = 3e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0.0 <= self.kd_weight <= 1.0, f"kd_weight must lie in [0, 1], got {self.kd_weight}")
        _check(self.init in ("incumbent", "superior", "scratch"), f"init must be 'incumbent', 'superior' or 'scratch', got {self.init!r}")
        _check(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        if self.teachers is not None:
            _check(len(self.teachers) > 0, "teachers must hold at least one model (or be None for θ† alone)")
            for t in self.teachers:
                if not isinstance(t, nn.Module):
                    raise TypeError(f"teachers must be nn.Modules, got {type(t).__name__}")


@register
class KDT(RetrainMethod):
    """Knowledge-distillation training (module docstring: equation and references)."""

    name = "kdt"
    Options = KDTOptions

    def teacher_probs(self, ctx: Context) -> torch.Tensor:
        """:math:`\\bar q`: the teachers' mean softened probabilities on the train set, ``(N, C)``."""
        teachers = self.options.teachers or [ctx.superior]
        n_classes = ctx.incumbent_train_logits.shape[1]
        probs = []
        for i, teacher in enumerate(teachers):
            z = logits_of(copy.deepcopy(teacher).to(ctx.device), ctx.train.X)
            if z.shape[1] != n_classes:
                raise ValueError(f"teacher {i} outputs {z.shape[1]} classes, the incumbent {n_classes}")
            probs.append(F.softmax(z / self.options.temperature, dim=1))
        return torch.stack(probs).mean(0)

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        start = {"incumbent": ctx.incumbent, "superior": ctx.superior, "scratch": ctx.incumbent}[o.init]
        student = copy.deepcopy(start)
        if o.init == "scratch":
            reinitialize(student, ctx.seed)
        objective = UpgradeObjective(ctx, o, teacher_probs=self.teacher_probs(ctx), kd_weight=o.kd_weight, temperature=o.temperature)
        ctx.record(student, epoch=0)
        fit(
            student, objective, len(ctx.train),
            optimizer=make_optimizer(student, o.optimizer, o.lr, o.weight_decay),
            epochs=o.epochs, batch_size=o.batch_size, seed=ctx.seed,
            on_epoch=lambda e: ctx.record(student, epoch=e), progress=ctx.progress_label("kdt"),
        )
        return MethodOutput(student, {"n_teachers": len(o.teachers or [ctx.superior])})
