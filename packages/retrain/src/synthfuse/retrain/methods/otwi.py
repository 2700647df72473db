"""OTWI: optimal-transport weight interpolation from θ* to the aligned θ†.

1. **Align** θ†'s hidden units to θ*'s: :math:`\\pi\\theta^\\dagger` by weight matching
   (coordinate descent over layers, each an exact assignment = optimal transport between unit
   weight vectors) or by activation matching (:func:`synthfuse.retrain.alignment.align`). The
   function is unchanged: :math:`f_{\\pi\\theta^\\dagger} = f_{\\theta^\\dagger}`.
2. **Interpolate** along :math:`\\theta(t) = (1-t)\\,\\theta^\\star + t\\,\\pi\\theta^\\dagger`
   (or the per-layer spherical or Fisher-weighted path, :mod:`synthfuse.retrain.path`) on a
   grid of :math:`t`, re-estimating BatchNorm statistics at each point.
3. **Pick** the point maximizing the validation score
   :math:`\\mathrm{acc}(t) - \\gamma\\,\\mathrm{NFR}(\\theta^\\star \\to \\theta(t))` among those whose
   validation NLL is within ``nll_margin`` of θ†'s (dominance's calibration criterion).
4. Optionally **fine-tune** briefly from it (cross-entropy, distillation from θ†, focal
   distillation from θ*), keeping the epoch with the best validation score (the same score).

The loss barriers of the naive path (θ* → θ†) and of the aligned path are reported in the
result's ``details``: alignment removes most of the barrier, so the path passes through
models that keep θ*'s predictions while gaining θ†'s accuracy.

References
----------
Singh & Jaggi. Model Fusion via Optimal Transport. NeurIPS 2020. Ainsworth, Hayase &
Srinivasa. Git Re-Basin: Merging Models modulo Permutation Symmetries. ICLR 2023.
Wortsman et al. Robust fine-tuning of zero-shot models (WiSE-FT). CVPR 2022 (picking a point on
the interpolation path).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from synthfuse.retrain.alignment import align
from synthfuse.retrain.fisher import diagonal_fisher
from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective, _check,
)
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.path import interpolate_models, loss_barrier, recompute_batchnorm
from synthfuse.retrain.training import fit, make_optimizer

__all__ = ["OTWI"]


@dataclass
class OTWIOptions(SuperiorDistillOptions, FocalOptions):
    """Options of :class:`OTWI` (plus the focal-distillation ones of :class:`FocalOptions`).

    matching : {"weights", "activations"}
        How θ† is aligned to θ*.
    mode : {"linear", "spherical", "fisher"}
        The interpolation path.
    n_points : int
        Grid points on :math:`t \\in [0, 1]`.
    nfr_penalty : float
        :math:`\\gamma` in the selection score.
    nll_margin : float
        Points whose validation NLL exceeds θ†'s by more than this rank last (as in dominance).
    finetune_epochs : int
        Epochs of fine-tuning from the chosen point (0: none).
    select_epoch : bool
        Keep the fine-tuning epoch (0 = the chosen path point) with the best validation score
        instead of the last one.
    lr, batch_size, weight_decay, optimizer
        The fine-tuning schedule.
    kd_weight, temperature : float
        Distillation from θ† during the fine-tune (:class:`SuperiorDistillOptions`).
    fisher_kind, fisher_samples
        The diagonal Fishers of the ``"fisher"`` path.
    """

    focal_weight: float = 1.0
    kd_weight: float = 0.9
    temperature: float = 4.0
    matching: str = "weights"
    mode: str = "linear"
    n_points: int = 11
    nfr_penalty: float = 1.0
    nll_margin: float = 0.02
    finetune_epochs: int = 20
    select_epoch: bool = True
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: str = "adam"
    fisher_kind: str = "empirical"
    fisher_samples: int = 2048

    def __post_init__(self) -> None:
        SuperiorDistillOptions.__post_init__(self)
        FocalOptions.__post_init__(self)
        _check(self.matching in ("weights", "activations"), f"matching must be 'weights' or 'activations', got {self.matching!r}")
        _check(self.mode in ("linear", "spherical", "fisher"), f"mode must be 'linear', 'spherical' or 'fisher', got {self.mode!r}")
        _check(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        _check(self.nfr_penalty >= 0 and self.nll_margin >= 0, f"nfr_penalty and nll_margin must be >= 0, got {self.nfr_penalty}, {self.nll_margin}")
        _check(self.finetune_epochs >= 0 and self.batch_size >= 1, "finetune_epochs must be >= 0 and batch_size >= 1")


@register
class OTWI(RetrainMethod):
    """Align, interpolate, pick the best point, fine-tune (module docstring)."""

    name = "otwi"
    Options = OTWIOptions

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        alignment = align(ctx.incumbent, ctx.superior, data=ctx.train, matching=o.matching)
        target = alignment.model
        fishers = None
        if o.mode == "fisher":
            sample = ctx.train.subset(slice(0, o.fisher_samples))
            fishers = [diagonal_fisher(m, sample, kind=o.fisher_kind) for m in (ctx.incumbent, target)]
        bn_data = ctx.train.X
        aligned_path = loss_barrier(ctx.incumbent, target, ctx.val, n_points=o.n_points, mode=o.mode,
                                    fishers=fishers, batchnorm_data=bn_data)
        naive_path = loss_barrier(ctx.incumbent, ctx.superior, ctx.val, n_points=o.n_points, mode="linear",
                                  batchnorm_data=bn_data)
        nll_limit = ctx.superior_nll_limit(o.nll_margin)
        on_path = BestSnapshot(ctx, o.nfr_penalty, nll_limit)
        for t, loss in zip(aligned_path.ts, aligned_path.losses):
            model = recompute_batchnorm(interpolate_models(ctx.incumbent, target, t, mode=o.mode, fishers=fishers), bn_data)
            on_path(model, stage="path", t=t, loss=loss)
        model = on_path.restore(copy.deepcopy(ctx.incumbent))
        best_t, chosen = on_path.where["t"], {"stage": "path"}
        if o.finetune_epochs > 0:
            finetuned = BestSnapshot(ctx, o.nfr_penalty, nll_limit) if o.select_epoch else None
            record = finetuned or ctx.record
            record(model, stage="finetune", epoch=0)
            teacher = ctx.superior_probs(o.temperature) if o.kd_weight > 0 else None
            objective = UpgradeObjective(ctx, o, teacher_probs=teacher, kd_weight=o.kd_weight, temperature=o.temperature)
            fit(model, objective, len(ctx.train), optimizer=make_optimizer(model, o.optimizer, o.lr, o.weight_decay),
                epochs=o.finetune_epochs, batch_size=o.batch_size, seed=ctx.seed,
                on_epoch=lambda e: record(model, stage="finetune", epoch=e), progress=ctx.progress_label("otwi"))
            if finetuned is not None:
                finetuned.restore(model)
                chosen = finetuned.where
        naive, aligned = naive_path.barrier, aligned_path.barrier
        details = {
            "t": best_t,
            "chosen": chosen,
            "barrier_naive": naive,
            "barrier_aligned": aligned,
            "barrier_reduction": 1.0 - aligned / naive if naive > 0 else float("nan"),
            "path_t": aligned_path.ts,
            "loss_naive": naive_path.losses,
            "loss_aligned": aligned_path.losses,
            "alignment_output_error": alignment.output_error,
            "matching_objective": alignment.objective,
        }
        return MethodOutput(model, details)
