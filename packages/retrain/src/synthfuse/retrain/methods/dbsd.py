r"""DBSD: a diffusion bridge from θ* to θ† whose drift adds the superior objective's gradient.

The Brownian bridge pinned at :math:`\theta^\star` (t = 0) and the aligned :math:`\pi\theta^\dagger`
(t = 1) solves :math:`dX_t = \frac{\pi\theta^\dagger - X_t}{1 - t}\,dt + \sigma\,dW_t`
(Karatzas & Shreve 1991, sec. 5.6.B); its law at time t is
:math:`N\big((1-t)\theta^\star + t\,\pi\theta^\dagger,\ \sigma^2 t(1-t) I\big)`. DBSD adds the
gradient of the upgrade objective :math:`L` (cross-entropy, distillation from θ†, focal
distillation from θ*) on the minibatch of each step:

.. math:: dX_t = \Big[\frac{\pi\theta^\dagger - X_t}{1 - t} - \beta\,\nabla \hat L_{B_k}(X_t)\Big]dt + \sigma\,dW_t,
          \qquad t \in [0, 1),

integrated by Euler–Maruyama (or Heun) on :math:`n` steps of :math:`\Delta t = 1/n`
(:func:`synthfuse.retrain.sde.integrate`) for K particles. With :math:`\beta = \sigma = 0` the
Euler states are exactly the straight line :math:`\theta^\star + \tfrac kn(\pi\theta^\dagger - \theta^\star)`.
:math:`\sigma` is ``bridge_sigma`` times the RMS per-coordinate distance
:math:`\|\pi\theta^\dagger - \theta^\star\|/\sqrt P`. θ‡ is the state, over the particles and the
``n_candidates`` evaluation times, with the best validation score :math:`\mathrm{acc} - \gamma\,\mathrm{NFR}`
among those within 0.02 of θ†'s validation NLL. ``details["bridge_midpoint_nll"]`` (the mean
validation loss of the particles at t = 1/2, present when t = 1/2 is an evaluation time) and
``details["line_midpoint_nll"]`` (the aligned straight line's midpoint) compare the two paths.

References
----------
Karatzas & Shreve. Brownian Motion and Stochastic Calculus. Springer, 1991. Heng, De Bortoli,
Doucet & Thornton. Simulating Diffusion Bridges with Score Matching. arXiv:2111.07243, 2021.
Welling & Teh. SGLD. ICML 2011.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective, _check,
)
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.methods.til import minibatch_schedule, particle_gradients
from synthfuse.retrain.sde import integrate
from synthfuse.shared.params import flatten, unflatten

__all__ = ["DBSD", "DBSDOptions"]


@dataclass
class DBSDOptions(SuperiorDistillOptions, FocalOptions):
    """Options of :class:`DBSD` (plus :class:`FocalOptions` and :class:`SuperiorDistillOptions`).

    n_steps : int
        Steps on [0, 1] (:math:`\\Delta t = 1/n`).
    superior_drift : float
        :math:`\\beta \\ge 0` (per step the loss gradient moves θ by :math:`\\beta/n` times it).
    bridge_sigma : float
        :math:`\\sigma \\ge 0` relative to the RMS per-coordinate distance θ* → πθ†.
    batch_size : int
        Minibatch of each step's gradient.
    n_particles : int
    n_candidates : int
        Evaluation times along the bridge (evenly spaced steps, the last one included; at most
        ``n_steps``).
    scheme : {"euler", "heun"}
    align : bool
    nfr_penalty : float
        :math:`\\gamma` in the selection score.
    """

    focal_weight: float = 1.0
    kd_weight: float = 0.9
    temperature: float = 4.0
    n_steps: int = 100
    superior_drift: float = 5.0
    bridge_sigma: float = 0.02
    batch_size: int = 64
    n_particles: int = 1
    n_candidates: int = 20
    scheme: str = "euler"
    align: bool = True
    nfr_penalty: float = 1.0

    def __post_init__(self) -> None:
        SuperiorDistillOptions.__post_init__(self)
        FocalOptions.__post_init__(self)
        _check(self.n_steps >= 2 and self.batch_size >= 1 and self.n_particles >= 1, "n_steps >= 2, batch_size >= 1, n_particles >= 1")
        _check(self.superior_drift >= 0 and self.bridge_sigma >= 0, "superior_drift and bridge_sigma must be >= 0")
        _check(self.n_candidates >= 1, f"n_candidates must be >= 1, got {self.n_candidates}")
        _check(self.scheme in ("euler", "heun"), f"scheme must be 'euler' or 'heun', got {self.scheme!r}")
        _check(self.nfr_penalty >= 0, f"nfr_penalty must be >= 0, got {self.nfr_penalty}")


@register
class DBSD(RetrainMethod):
    """Diffusion bridge with superior drift (module docstring: equation and references)."""

    name = "dbsd"
    Options = DBSDOptions

    def bridge(self, ctx: Context, *, keep_path: bool = False, monitor=None):
        """Integrate the bridge; returns the :class:`~synthfuse.retrain.sde.SDEPath` and the flat ends."""
        o = self.options
        target = ctx.aligned_superior("dbsd") if o.align else ctx.superior
        like = ctx.incumbent
        start, end = flatten(like).detach(), flatten(target).detach()
        sigma = o.bridge_sigma * float((end - start).norm()) / math.sqrt(start.numel())
        objective = None
        if o.superior_drift > 0:
            teacher = ctx.superior_probs(o.temperature) if o.kd_weight > 0 else None
            objective = UpgradeObjective(ctx, o, teacher_probs=teacher, kd_weight=o.kd_weight, temperature=o.temperature)
        epochs = math.ceil(o.n_steps * o.batch_size / len(ctx.train))
        steps = minibatch_schedule(len(ctx.train), o.batch_size, epochs, ctx.seed)
        dt = 1.0 / o.n_steps

        def drift(theta: torch.Tensor, t: float, k: int) -> torch.Tensor:
            pull = (end - theta) / max(1.0 - t, dt)  # Heun's corrector at t = 1 uses the last step's rate
            if objective is None:
                return pull
            return pull - o.superior_drift * particle_gradients(objective, like, theta, steps[k].to(ctx.device))

        every = max(1, o.n_steps // o.n_candidates)
        path = integrate(drift, start, dt=dt, n_steps=o.n_steps, diffusion=sigma, scheme=o.scheme, seed=ctx.seed,
                         n_particles=o.n_particles, keep_path=keep_path, monitor=monitor, trace_every=every)
        return path, start, end

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        like = ctx.incumbent
        best = BestSnapshot(ctx, nfr_penalty=o.nfr_penalty, nll_limit=ctx.superior_nll_limit(0.02))
        midpoint: list[float] = []

        def monitor(theta: torch.Tensor, t: float) -> dict[str, float]:
            scores = [best(unflatten(theta[i], like), t=t, particle=i) for i in range(theta.shape[0])]
            if abs(t - 0.5) < 0.5 / o.n_steps:
                midpoint.extend(m.nll for m in scores)
            return {}

        _, start, end = self.bridge(ctx, monitor=monitor)
        model = best.restore(unflatten(start, like))
        line_mid = ctx.metrics(unflatten(0.5 * (start + end), like)).nll
        details = {"t": best.where["t"], "particle": best.where["particle"], "line_midpoint_nll": line_mid}
        if midpoint:
            details["bridge_midpoint_nll"] = sum(midpoint) / len(midpoint)
        return MethodOutput(model.eval(), details)
