"""FRR: function-regularized reset toward θ†, anchored to θ* in the NTK metric.

Start from a point reset toward θ†, :math:`\\theta_0 = (1-\\rho)\\,\\theta^\\star + \\rho\\,\\pi\\theta^\\dagger`
(:math:`\\pi\\theta^\\dagger` = θ† aligned to θ*; :math:`\\rho = 1` starts at θ† itself), and
minimize the upgrade objective plus a function-space penalty toward θ* on an anchor set
:math:`X_a` (by default the training samples θ* classifies correctly and the start point does
not: the negative flips to undo):

.. math:: L(\\theta) + \\lambda\\, d_\\Theta(f_\\theta, f_{\\theta^\\star})^2, \\qquad
          d_\\Theta^2 = \\delta^\\top (G + \\epsilon I)^{-1} \\delta, \\quad
          \\delta = \\mathrm{vec}\\big(f_\\theta(X_a) - f_{\\theta^\\star}(X_a)\\big),

with :math:`G = J_{\\theta^\\star}(X_a) J_{\\theta^\\star}(X_a)^\\top` the empirical NTK Gram matrix
of θ* on the anchors (:func:`synthfuse.shared.ntk.ntk_distance`). :math:`d_\\Theta^2` is the
squared length of the smallest parameter step (θ* linearized) that makes the output change
:math:`\\delta`: output changes θ* could make easily cost little, changes against its grain
cost a lot, so the reset keeps θ*'s predictions where they are hard to move back.

References
----------
Jacot, Gabriel & Hongler. Neural Tangent Kernel. NeurIPS 2018. Benjamin, Rolnick & Kording.
Measuring and regularizing networks in function space. ICLR 2019. Zhou et al. Fortuitous
Forgetting in Connectionist Networks (reset-based retraining). ICLR 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synthfuse.retrain.metrics import logits_of
from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective, _check,
)
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.path import interpolate_models
from synthfuse.retrain.training import fit, make_optimizer
from synthfuse.shared.ntk import empirical_ntk, ntk_distance

__all__ = ["FRR"]


@dataclass
class FRROptions(SuperiorDistillOptions, FocalOptions):
    """Options of :class:`FRR` (plus the focal-distillation ones of :class:`FocalOptions`).

    reset : float
        :math:`\\rho \\in [0, 1]`: how far toward θ† the start lies (1 = at θ†).
    align : bool
        Align θ† to θ* first (needed for ``reset < 1`` to mean something; MLPs and conv nets only).
    ntk_weight : float
        :math:`\\lambda`, the weight of the NTK function-space penalty.
    anchor_size : int
        Number of anchor samples (the NTK Gram matrix is ``anchor_size · n_classes`` square).
    anchors : {"flips", "correct", "all"}
        ``"flips"``: the training samples θ* gets right and the start point gets wrong (its
        negative flips on the train set), topped up with other θ*-correct samples;
        ``"correct"``: a draw among the samples θ* gets right; ``"all"``: a draw among all.
    ridge : float
        :math:`\\epsilon`, relative to the mean eigenvalue of :math:`G`.
    epochs, lr, batch_size, weight_decay, optimizer
        The training schedule.
    kd_weight, temperature : float
        Distillation from θ† (:class:`SuperiorDistillOptions`).
    select_epoch : bool
        Keep the epoch (0 = the reset point) with the best validation score
        :math:`\\mathrm{acc} - \\mathrm{NFR}` (among those within 0.02 of θ†'s validation NLL)
        instead of the last one.
    """

    focal_weight: float = 1.0
    kd_weight: float = 0.9
    temperature: float = 4.0
    reset: float = 0.9
    align: bool = True
    ntk_weight: float = 0.01
    anchor_size: int = 64
    anchors: str = "flips"
    ridge: float = 1e-3
    epochs: int = 10
    lr: float = 5e-4
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: str = "adam"
    select_epoch: bool = True

    def __post_init__(self) -> None:
        SuperiorDistillOptions.__post_init__(self)
        FocalOptions.__post_init__(self)
        _check(0.0 <= self.reset <= 1.0, f"reset must lie in [0, 1], got {self.reset}")
        _check(self.ntk_weight >= 0 and self.ridge > 0, "ntk_weight must be >= 0 and ridge > 0")
        _check(self.anchor_size >= 1, f"anchor_size must be >= 1, got {self.anchor_size}")
        _check(self.anchors in ("flips", "correct", "all"), f"anchors must be 'flips', 'correct' or 'all', got {self.anchors!r}")
        _check(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")


@register
class FRR(RetrainMethod):
    """Reset toward θ† with an NTK function-space penalty toward θ* (module docstring)."""

    name = "frr"
    Options = FRROptions

    def anchor_inputs(self, ctx: Context, start: nn.Module) -> torch.Tensor:
        """The anchor set :math:`X_a`, a seeded draw of training inputs (see ``anchors``)."""
        o = self.options
        order = torch.randperm(len(ctx.train), generator=torch.Generator().manual_seed(ctx.seed)).to(ctx.device)
        correct = ctx.incumbent_train_correct[order]
        if o.anchors == "all":
            return ctx.train.X[order[: o.anchor_size]]
        if not bool(correct.any()):
            raise ValueError("θ* classifies no training sample correctly: use anchors='all'")
        if o.anchors == "correct":
            return ctx.train.X[order[correct][: o.anchor_size]]
        # "flips": θ*-correct samples the start point gets wrong first, then other θ*-correct ones
        wrong = logits_of(start, ctx.train.X).argmax(1)[order] != ctx.train.y[order]
        ranked = torch.cat([order[correct & wrong], order[correct & ~wrong]])
        return ctx.train.X[ranked[: o.anchor_size]]

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        target = ctx.aligned_superior("frr") if o.align else ctx.superior
        model = interpolate_models(ctx.incumbent, target, o.reset)
        anchors = self.anchor_inputs(ctx, model)
        kernel = empirical_ntk(ctx.incumbent, anchors, kind="full")

        def distance2(m: nn.Module) -> torch.Tensor:
            return ntk_distance(m, ctx.incumbent, anchors, ridge=o.ridge, squared=True, reference_kernel=kernel)

        with torch.no_grad():
            start_distance = float(distance2(model.eval()))
        best = BestSnapshot(ctx, nfr_penalty=1.0, nll_limit=ctx.superior_nll_limit(0.02)) if o.select_epoch else None
        record = best or ctx.record
        record(model, epoch=0)
        penalty = (lambda m: o.ntk_weight * distance2(m)) if o.ntk_weight > 0 else None
        teacher = ctx.superior_probs(o.temperature) if o.kd_weight > 0 else None
        objective = UpgradeObjective(ctx, o, teacher_probs=teacher, kd_weight=o.kd_weight, temperature=o.temperature, penalty=penalty)
        fit(model, objective, len(ctx.train), optimizer=make_optimizer(model, o.optimizer, o.lr, o.weight_decay),
            epochs=o.epochs, batch_size=o.batch_size, seed=ctx.seed,
            on_epoch=lambda e: record(model, epoch=e), progress=ctx.progress_label("frr"))
        if best is not None:
            best.restore(model)
        with torch.no_grad():
            end_distance = float(distance2(model))
        return MethodOutput(model, {"ntk_distance2_start": start_distance, "ntk_distance2_end": end_distance,
                                    "n_anchors": len(anchors), "epoch": best.where["epoch"] if best else o.epochs})
