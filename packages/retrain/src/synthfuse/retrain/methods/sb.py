r"""SB: a Schrödinger bridge between a population around θ* and one around θ†.

Two populations of K particles, :math:`x_{0,i} = \theta^\star + s \odot \xi_i` and
:math:`x_{1,j} = \pi\theta^\dagger + s \odot \xi'_j` (:math:`\pi\theta^\dagger` = θ† aligned to θ*;
:math:`s` = ``spread`` times each layer's RMS weight), are coupled by the static Schrödinger
bridge, i.e. entropic OT with :math:`\varepsilon = 2\sigma^2` (Sinkhorn,
:func:`synthfuse.retrain.bridge.entropic_plan`), and joined by Brownian bridges

.. math:: X_t = (1-t)\,x_{0,i} + t\,x_{1,j} + \sigma\sqrt{t(1-t)}\,Z, \qquad (i, j) \sim \pi^\star,

with :math:`\sigma` = ``bridge_sigma`` times the RMS per-coordinate distance
:math:`\|\pi\theta^\dagger - \theta^\star\|/\sqrt P`. Candidates are drawn on a grid of times
(plus each time's population mean, an SWA-style average); θ‡ is the candidate with the best
validation score :math:`\mathrm{acc} - \gamma\,\mathrm{NFR}` among those within 0.02 of θ†'s
validation NLL (BatchNorm statistics re-estimated at every candidate).

``details`` holds the mean validation loss of the bridge's midpoint population and of the
aligned straight line's midpoint :math:`\tfrac12(\theta^\star + \pi\theta^\dagger)`.

References
----------
Léonard 2014; Cuturi 2013; Bunne, Hsieh, Cuturi & Krause, AISTATS 2023; De Bortoli, Thornton,
Heng & Doucet. Diffusion Schrödinger Bridge. NeurIPS 2021 (see :mod:`synthfuse.retrain.bridge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from synthfuse.retrain.bridge import bridge_points, coupling_statistics, entropic_plan
from synthfuse.retrain.methods._base import BestSnapshot, Context, MethodOutput, RetrainMethod, _check
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.path import recompute_batchnorm
from synthfuse.shared.params import flatten, unflatten

__all__ = ["SB", "SBOptions", "layer_scales"]


def layer_scales(model: nn.Module) -> torch.Tensor:
    """Per-coordinate scale: each parameter tensor's RMS value, repeated over its entries, ``(P,)``."""
    return torch.cat([p.detach().pow(2).mean().sqrt().expand(p.numel()) for p in model.parameters()])


@dataclass
class SBOptions:
    """Options of :class:`SB`.

    n_particles : int
        K, the size of each population.
    spread : float
        Population noise, relative to each layer's RMS weight (0: Dirac populations).
    bridge_sigma : float
        :math:`\\sigma` relative to the RMS per-coordinate distance between θ* and πθ† (> 0).
    n_points : int
        Number of times on :math:`[0, 1]` (ends included).
    samples_per_time : int
        Bridge samples evaluated per time.
    align : bool
        Align θ† to θ* first (chain networks only).
    nfr_penalty : float
        :math:`\\gamma` in the selection score.
    """

    n_particles: int = 8
    spread: float = 0.01
    bridge_sigma: float = 0.05
    n_points: int = 11
    samples_per_time: int = 4
    align: bool = True
    nfr_penalty: float = 1.0

    def __post_init__(self) -> None:
        _check(self.n_particles >= 1 and self.samples_per_time >= 1, "n_particles and samples_per_time must be >= 1")
        _check(self.spread >= 0, f"spread must be >= 0, got {self.spread}")
        _check(self.bridge_sigma > 0, f"bridge_sigma must be > 0, got {self.bridge_sigma}")
        _check(self.n_points >= 2, f"n_points must be >= 2, got {self.n_points}")
        _check(self.nfr_penalty >= 0, f"nfr_penalty must be >= 0, got {self.nfr_penalty}")


@register
class SB(RetrainMethod):
    """Schrödinger bridge between populations around θ* and θ† (module docstring)."""

    name = "sb"
    Options = SBOptions

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        target = ctx.aligned_superior("sb") if o.align else ctx.superior
        start, end = flatten(ctx.incumbent).detach(), flatten(target).detach()
        gen = torch.Generator().manual_seed(ctx.seed)
        scale = o.spread * layer_scales(ctx.incumbent).to(start)

        def population(center: torch.Tensor) -> torch.Tensor:
            return center + scale * torch.randn((o.n_particles, center.numel()), generator=gen).to(center)

        x0, x1 = population(start), population(end)
        sigma2 = float((o.bridge_sigma * (end - start).norm() / math.sqrt(start.numel())) ** 2)
        if sigma2 == 0.0:
            raise ValueError("θ* and θ† are identical: there is no bridge to build")
        work = torch.float64
        plan = entropic_plan(x0.to(work), x1.to(work), sigma2)
        times = torch.linspace(0.0, 1.0, o.n_points, dtype=work)
        times = torch.unique(torch.cat([times, torch.tensor([0.5], dtype=work)]))
        points, _, _ = bridge_points(x0.to(work), x1.to(work), plan, times, sigma2,
                                     n_samples=o.samples_per_time, generator=gen)
        best = BestSnapshot(ctx, nfr_penalty=o.nfr_penalty, nll_limit=ctx.superior_nll_limit(0.02))

        def candidate(theta: torch.Tensor) -> nn.Module:
            return recompute_batchnorm(unflatten(theta.to(start), ctx.incumbent), ctx.train.X).eval()

        midpoint_nll = []
        for k, t in enumerate(times.tolist()):
            for s in range(o.samples_per_time):
                m = best(candidate(points[s, k]), t=t, sample=s)
                if t == 0.5:
                    midpoint_nll.append(m.nll)
            best(candidate(points[:, k].mean(0)), t=t, sample="mean")
        line_mid = ctx.metrics(candidate(0.5 * (start + end))).nll
        stats = coupling_statistics(x0.to(work), x1.to(work), plan)
        model = best.restore(candidate(start))
        return MethodOutput(model, {
            "t": best.where["t"], "sample": best.where["sample"], "sigma2": sigma2,
            "transport_cost": stats.transport_cost, "bridge_midpoint_nll": sum(midpoint_nll) / len(midpoint_nll),
            "line_midpoint_nll": line_mid,
        })
