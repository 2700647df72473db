r"""TIL: teacher-injected Langevin dynamics from θ* toward θ†.

Stochastic-gradient Langevin dynamics (SGLD; Welling & Teh 2011) on the upgrade objective
:math:`L` (cross-entropy, distillation from θ†, focal distillation from θ*) with an extra pull
toward θ† (aligned to θ*, :math:`\pi\theta^\dagger`) and a temperature schedule:

.. math:: d\theta_t = \big[-\nabla \hat L_{B_k}(\theta_t) + \lambda_t\,(\pi\theta^\dagger - \theta_t)\big]\,dt
          + \sqrt{2 T_t}\; dW_t ,

integrated by :func:`synthfuse.retrain.sde.integrate` with step :math:`\Delta t = \eta` (the
learning rate) on minibatch :math:`B_k` at step :math:`k`. One Euler–Maruyama step is

.. math:: \theta_{k+1} = \theta_k - \eta\,\nabla \hat L_{B_k}(\theta_k) + \eta\,\lambda_k (\pi\theta^\dagger - \theta_k)
          + \sqrt{2\eta T_k}\,\xi_k, \qquad \xi_k \sim N(0, I),

so with :math:`T = 0, \lambda = 0` it is plain SGD step for step, and the injected noise has
variance :math:`2\eta T` per coordinate. :math:`T_k = T_0\,s_T(k/n)` and
:math:`\lambda_k = \lambda_0\,s_\lambda(k/n)` with :math:`s` constant, linear or cosine decay to 0.

**The pull's strength is set by its reach.** Alone, the pull contracts the distance to
:math:`\pi\theta^\dagger` by :math:`\prod_k (1 - \eta\lambda_k) \approx e^{-\Lambda}`,
:math:`\Lambda = \eta\lambda_0 \sum_{k<n} s_\lambda(k/n)`; its stationary law (with the loss
switched off) is the Gaussian prior :math:`N(\pi\theta^\dagger, (T/\lambda) I)`. By default
:math:`\lambda_0` is derived from the ``reach`` :math:`\rho`, the fraction of the way to
:math:`\pi\theta^\dagger` the pull alone would carry θ*: :math:`\Lambda = -\ln(1 - \rho)`. A fixed
:math:`\lambda_0` does not do what it says when the schedule changes: the former default
:math:`\lambda = 0.1` over 20 epochs of :math:`\eta = 0.05` is :math:`\Lambda = 25`, so the chain
ended at :math:`\pi\theta^\dagger + O(\nabla L / \lambda)`, i.e. θ† itself with its negative flips
(synthetic benchmark, seed 0: NFR × 0.97, not dominating). The default :math:`\rho = 0.7` with a
cosine-decayed pull injects the teacher early, moving the chain from θ* into θ†'s basin (the
aligned line has almost no loss barrier), and hands the last steps to the objective alone, whose focal
term (weight 2 by default: it is the only term asking θ‡ to keep θ*'s correct answers) then
settles the chain where θ*'s correct predictions are kept — the same division of labour as the
temperature annealing of simulated-annealing SGLD. The returned θ‡ is the tail average
(Polyak–Ruppert / SWA) of a particle or its last state, the particle and the candidate chosen by
validation score :math:`\mathrm{acc} - \mathrm{NFR}` among those within 0.02 of θ†'s validation NLL.

Gradients of the K particles are taken at once with ``torch.func.vmap(torch.func.grad(...))``
over the flat parameter vector, model in eval mode (BatchNorm running statistics, no dropout).

References
----------
Welling & Teh. Bayesian Learning via Stochastic Gradient Langevin Dynamics. ICML 2011.
Polyak & Juditsky. Acceleration of stochastic approximation by averaging. SIAM J. Control
Optim., 1992. Izmailov et al. Averaging Weights Leads to Wider Optima (SWA). UAI 2018.
Yan et al. Positive-Congruent Training. CVPR 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from synthfuse.retrain.data import batches
from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective, _check,
)
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.sde import SDEPath, integrate
from synthfuse.shared.params import flatten, unflatten, unflatten_dict

__all__ = ["LangevinOptions", "TIL", "TILOptions", "decay", "minibatch_schedule", "particle_gradients", "particle_losses"]

_SCHEDULES = ("constant", "linear", "cosine")


def decay(kind: str, fraction: float) -> float:
    """:math:`s(u)` at ``fraction`` :math:`u \\in [0, 1]`: 1, :math:`1-u` or :math:`\\tfrac12(1+\\cos\\pi u)`."""
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return 1.0 - fraction
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * fraction))
    raise ValueError(f"schedule must be one of {_SCHEDULES}, got {kind!r}")


def minibatch_schedule(n: int, batch_size: int, epochs: int, seed: int) -> list[torch.Tensor]:
    """The index batches of every step: ``epochs`` shuffled passes over ``range(n)`` (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    return [idx for _ in range(epochs) for idx in batches(n, batch_size, generator)]


class _Functional(nn.Module):
    """``like``'s forward with its parameters taken from the flat vector ``vector``."""

    def __init__(self, like: nn.Module, vector: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["like"], self.__dict__["vector"] = like, vector  # not registered: no copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.like, unflatten_dict(self.vector, self.like), (x,))


def particle_gradients(objective: UpgradeObjective, like: nn.Module, thetas: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """:math:`\\nabla_\\theta \\hat L_B(\\theta_k)` for each row of ``thetas`` ``(K, P)``, by ``vmap(grad)``."""
    return vmap(grad(lambda v: objective(_Functional(like, v), idx)))(thetas)


def particle_losses(objective: UpgradeObjective, like: nn.Module, thetas: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """:math:`\\hat L_B(\\theta_k)` for each row of ``thetas`` ``(K, P)``, by ``vmap`` (no gradients), ``(K,)``."""
    with torch.no_grad():
        return vmap(lambda v: objective(_Functional(like, v), idx))(thetas)


def _naive_particle_gradients(objective: UpgradeObjective, like: nn.Module, thetas: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`particle_gradients`: one ``autograd.grad`` per particle (missing -> error)."""
    out = []
    for theta in thetas:
        v = theta.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(_Functional(like, v), idx), v, allow_unused=False)
        out.append(g)
    return torch.stack(out)


@dataclass
class LangevinOptions(SuperiorDistillOptions, FocalOptions):
    """What the Langevin methods (TIL, FDD) share (plus :class:`FocalOptions`, :class:`SuperiorDistillOptions`).

    lr : float
        :math:`\\eta = \\Delta t`, the step size.
    epochs, batch_size
        Number of passes over the train set and minibatch size (steps = epochs · ⌈N / batch⌉).
    langevin_temperature : float
        :math:`T_0 \\ge 0` (0: no noise).
    n_particles : int
        K independent chains (different noise).
    tail : float
        Fraction of the last steps averaged (Polyak / SWA).
    """

    focal_weight: float = 1.0
    kd_weight: float = 0.9
    temperature: float = 4.0
    lr: float = 0.05
    epochs: int = 20
    batch_size: int = 64
    langevin_temperature: float = 1e-5
    n_particles: int = 1
    tail: float = 0.5

    def __post_init__(self) -> None:
        SuperiorDistillOptions.__post_init__(self)
        FocalOptions.__post_init__(self)
        _check(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        _check(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        _check(self.langevin_temperature >= 0, f"langevin_temperature must be >= 0, got {self.langevin_temperature}")
        _check(self.n_particles >= 1, f"n_particles must be >= 1, got {self.n_particles}")
        _check(0.0 < self.tail <= 1.0, f"tail must lie in (0, 1], got {self.tail}")


@dataclass
class TILOptions(LangevinOptions):
    """Options of :class:`TIL` (plus those of :class:`LangevinOptions`).

    temperature_schedule, pull_schedule : {"constant", "linear", "cosine"}
        Decay :math:`s` of :math:`T_k` and :math:`\\lambda_k`.
    reach : float
        :math:`\\rho \\in [0, 1)`: the pull alone would carry θ this fraction of the way to
        πθ†; sets :math:`\\lambda_0 = -\\ln(1-\\rho) / (\\eta \\sum_k s_\\lambda(k/n))`.
    pull : float, optional
        :math:`\\lambda_0 \\ge 0` directly (overrides ``reach``; 0 switches the pull off).
    init : {"incumbent", "superior"}
        Start at θ* or at (aligned) θ†.
    align : bool
        Align θ† to θ* first (chain networks only).
    scheme : {"euler", "heun"}
        The integrator (Heun: two gradients per step).
    """

    focal_weight: float = 2.0
    temperature_schedule: str = "cosine"
    reach: float = 0.7
    pull: float | None = None
    pull_schedule: str = "cosine"
    init: str = "incumbent"
    align: bool = True
    scheme: str = "euler"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0.0 <= self.reach < 1.0, f"reach must lie in [0, 1), got {self.reach}")
        _check(self.pull is None or self.pull >= 0, f"pull must be >= 0 (or None: set by reach), got {self.pull}")
        for s in (self.temperature_schedule, self.pull_schedule):
            _check(s in _SCHEDULES, f"schedules must be one of {_SCHEDULES}, got {s!r}")
        _check(self.init in ("incumbent", "superior"), f"init must be 'incumbent' or 'superior', got {self.init!r}")
        _check(self.scheme in ("euler", "heun"), f"scheme must be 'euler' or 'heun', got {self.scheme!r}")


@register
class TIL(RetrainMethod):
    """Teacher-injected Langevin dynamics (module docstring: equation and references)."""

    name = "til"
    Options = TILOptions

    def pull_strength(self, n_steps: int) -> float:
        """:math:`\\lambda_0`: ``pull`` if given, else :math:`-\\ln(1-\\rho) / (\\eta \\sum_{k<n} s_\\lambda(k/n))`."""
        o = self.options
        if o.pull is not None:
            return o.pull
        mass = o.lr * sum(decay(o.pull_schedule, k / n_steps) for k in range(n_steps))
        return -math.log1p(-o.reach) / mass

    def langevin(self, ctx: Context, *, keep_path: bool = False) -> tuple[SDEPath, nn.Module]:
        """Run the chains; returns the :class:`~synthfuse.retrain.sde.SDEPath` and the target (aligned θ†)."""
        o = self.options
        target = ctx.aligned_superior("til") if o.align else ctx.superior
        like = (ctx.incumbent if o.init == "incumbent" else target).eval()
        target_theta = flatten(target).detach()
        teacher = ctx.superior_probs(o.temperature) if o.kd_weight > 0 else None
        objective = UpgradeObjective(ctx, o, teacher_probs=teacher, kd_weight=o.kd_weight, temperature=o.temperature)
        steps = minibatch_schedule(len(ctx.train), o.batch_size, o.epochs, ctx.seed)
        n = len(steps)
        pull = self.pull_strength(n)

        def drift(theta: torch.Tensor, t: float, k: int) -> torch.Tensor:
            g = particle_gradients(objective, like, theta, steps[k].to(ctx.device))
            lam = pull * decay(o.pull_schedule, k / n)
            return -g + lam * (target_theta - theta) if lam > 0 else -g

        def monitor(theta: torch.Tensor, t: float) -> dict[str, float]:
            m = ctx.metrics(unflatten(theta[0], like))
            return {"accuracy": m.accuracy, "negative_flip_rate": m.negative_flip_rate, "nll": m.nll}

        path = integrate(
            drift, flatten(like).detach(), dt=o.lr, n_steps=n, scheme=o.scheme, seed=ctx.seed,
            diffusion=lambda t: math.sqrt(2.0 * o.langevin_temperature * decay(o.temperature_schedule, min(t / (o.lr * n), 1.0))),
            n_particles=o.n_particles, tail=o.tail, keep_path=keep_path, monitor=monitor,
            trace_every=max(1, n // o.epochs),
        )
        return path, like

    def run(self, ctx: Context) -> MethodOutput:
        path, like = self.langevin(ctx)
        n_steps = path.times.numel() - 1
        ctx.trace.extend({"epoch": r["step"] * self.options.epochs // n_steps, **r} for r in path.trace)
        best = BestSnapshot(ctx, nfr_penalty=1.0, nll_limit=ctx.superior_nll_limit(0.02))
        model = unflatten(path.average[0], like)
        for i in range(path.final.shape[0]):
            for kind, states in (("average", path.average), ("last", path.final)):
                best(unflatten(states[i], like), candidate=kind, particle=i)
        best.restore(model)
        return MethodOutput(model.eval(), {"candidate": best.where["candidate"], "particle": best.where["particle"],
                                           "n_steps": n_steps})
