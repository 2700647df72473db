"""WSFT: warm-started fine-tuning of θ* with an initial velocity toward θ†.

Heavy-ball descent from :math:`\\theta_0 = \\theta^\\star` on the upgrade objective
:math:`L` (cross-entropy plus the optional focal distillation from θ*), in a metric :math:`M`:

.. math:: v_{k+1} = \\mu v_k - \\eta\\, M^{-1} \\nabla L(\\theta_k), \\qquad
          \\theta_{k+1} = \\theta_k + v_{k+1}, \\qquad
          v_0 = \\rho\\,\\frac{1-\\mu}{\\mu}\\,\\log_{\\theta^\\star}(\\pi\\theta^\\dagger)

where :math:`\\pi\\theta^\\dagger` is θ† with its hidden units aligned to θ* (weight matching,
:mod:`synthfuse.retrain.alignment`) so that the direction means something, and
:math:`\\log_{\\theta^\\star}(\\pi\\theta^\\dagger) = \\pi\\theta^\\dagger - \\theta^\\star` is the geodesic
direction of the (flat) parameter chart. Left alone, the initial velocity carries the weights
:math:`\\rho \\sum_{k\\ge1}\\mu^k (1-\\mu)/\\mu = \\rho` of the way to :math:`\\pi\\theta^\\dagger`
("reach"); the gradient bends the path toward low loss on the way.

The metric is Euclidean (:math:`M = I`: plain heavy ball), the diagonal Fisher of θ* or its
K-FAC blocks (:mod:`synthfuse.retrain.fisher`; natural-gradient heavy ball). In the Fisher
metric, steps along directions θ*'s predictions are sensitive to are shortened, so the fine-tune
changes less of what θ* does. Both metrics are normalized to mean eigenvalue 1 and damped
(:math:`M + \\delta I`) so one learning rate suits both.

References
----------
Polyak, B. Some methods of speeding up the convergence of iteration methods, 1964 (heavy ball).
Amari, S. Natural gradient works efficiently in learning. Neural Computation, 1998.
Martens & Grosse, K-FAC, ICML 2015. Yan et al., Positive-Congruent Training, CVPR 2021 (focal
distillation). Ainsworth, Hayase & Srinivasa, Git Re-Basin, ICLR 2023 (alignment).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from synthfuse.retrain.fisher import diagonal_fisher, kfac_fisher
from synthfuse.retrain.methods._base import Context, FocalOptions, MethodOutput, RetrainMethod, UpgradeObjective, _check
from synthfuse.retrain.methods._registry import register
from synthfuse.retrain.training import fit
from synthfuse.shared.manifold import Sphere

__all__ = ["WSFT", "HeavyBall", "initial_direction"]

_UNIT_SPHERE = Sphere(radius=1.0)


def initial_direction(start: nn.Module, target: nn.Module, geodesic: str = "linear") -> dict[str, torch.Tensor]:
    """Velocity at ``t = 0`` of the path from ``start`` to ``target``, per parameter (module docstring).

    ``"linear"``: ``target - start``. ``"spherical"``: the derivative at 0 of the per-layer
    norm-linear great-circle path; tensors with one entry or a zero norm fall back to linear.
    """
    if geodesic not in ("linear", "spherical"):
        raise ValueError(f"geodesic must be 'linear' or 'spherical', got {geodesic!r}")
    goal = dict(target.named_parameters())
    out = {}
    for name, p in start.named_parameters():
        a, b = p.detach(), goal[name].detach()
        na, nb = a.norm(), b.norm()
        if geodesic == "linear" or a.numel() < 2 or na == 0 or nb == 0:
            out[name] = b - a
            continue
        a_hat, b_hat = a.reshape(-1) / na, b.reshape(-1) / nb
        out[name] = ((nb - na) * a_hat + na * _UNIT_SPHERE.log(a_hat, b_hat)).reshape(a.shape)
    return out

Preconditioner = Callable[[list[torch.Tensor]], list[torch.Tensor]]


class HeavyBall(torch.optim.Optimizer):
    """Heavy ball with a preconditioner and a given initial velocity.

    :math:`v \\leftarrow \\mu v - \\eta\\, P(g)`, :math:`\\theta \\leftarrow \\theta + v`, with
    :math:`v` starting at ``velocity`` (zeros when ``None``) and :math:`P` the identity when
    ``precondition`` is ``None``. Weight decay is added to the gradient before preconditioning.
    """

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float,
                 velocity: list[torch.Tensor] | None = None, precondition: Preconditioner | None = None,
                 weight_decay: float = 0.0) -> None:
        super().__init__(list(params), dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        ps = self.param_groups[0]["params"]
        velocity = velocity if velocity is not None else [torch.zeros_like(p) for p in ps]
        if len(velocity) != len(ps) or any(v.shape != p.shape for v, p in zip(velocity, ps)):
            raise ValueError("the initial velocity must have one tensor per parameter, of the same shape")
        for p, v in zip(ps, velocity):
            self.state[p]["velocity"] = v.detach().clone()
        self.precondition = precondition

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim API
        group = self.param_groups[0]
        ps = [p for p in group["params"]]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad + group["weight_decay"] * p for p in ps]
        if self.precondition is not None:
            grads = self.precondition(grads)
        for p, g in zip(ps, grads):
            v = self.state[p]["velocity"]
            v.mul_(group["momentum"]).sub_(group["lr"] * g)
            p.add_(v)


def _diagonal_preconditioner(fisher: dict[str, torch.Tensor], names: list[str], damping: float) -> Preconditioner:
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp_min(1e-12)
    inv = [1.0 / (fisher[n] / mean + damping) for n in names]
    return lambda grads: [g * i for g, i in zip(grads, inv)]


def _kfac_preconditioner(model: nn.Module, blocks: dict, names: list[str], damping: float) -> Preconditioner:
    """:math:`[W|b] \\mapsto (G+\\delta)^{-1} [\\nabla W|\\nabla b] (A+\\delta)^{-1}` per block, identity elsewhere."""
    modules = dict(model.named_modules())
    where = {n: i for i, n in enumerate(names)}
    plans = []
    for mod_name, b in blocks.items():
        m = modules[mod_name]
        def inv(M: torch.Tensor) -> torch.Tensor:
            M = M / M.diagonal().mean().clamp_min(1e-12)
            return torch.linalg.inv(M + damping * torch.eye(len(M), dtype=M.dtype, device=M.device))
        prefix = f"{mod_name}." if mod_name else ""
        wi = where[prefix + "weight"]
        bi = where[prefix + "bias"] if b.has_bias else None
        plans.append((wi, bi, inv(b.G), inv(b.A), m.weight.shape))

    def precondition(grads: list[torch.Tensor]) -> list[torch.Tensor]:
        out = list(grads)
        for wi, bi, g_inv, a_inv, shape in plans:
            mat = grads[wi].reshape(shape[0], -1)
            if bi is not None:
                mat = torch.cat([mat, grads[bi][:, None]], 1)
            mat = g_inv @ mat @ a_inv
            out[wi] = (mat[:, :-1] if bi is not None else mat).reshape(shape)
            if bi is not None:
                out[bi] = mat[:, -1]
        return out

    return precondition


@dataclass
class WSFTOptions(FocalOptions):
    """Options of :class:`WSFT` (plus the focal-distillation ones of :class:`FocalOptions`).

    metric : {"euclidean", "fisher", "kfac"}
        The metric :math:`M` (module docstring).
    geodesic : {"linear", "spherical"}
        The path whose initial velocity gives the direction toward θ†.
    reach : float
        :math:`\\rho >= 0`, the fraction of the way to θ† the initial velocity alone travels.
    align : bool
        Align θ†'s hidden units to θ* before taking the direction (MLPs and conv nets only;
        ``False`` for other architectures, where the raw difference is used).
    lr, momentum, epochs, batch_size, weight_decay
        Heavy-ball schedule (cosine-decayed learning rate).
    fisher_kind : {"empirical", "true"}
        Which Fisher, estimated at θ* on at most ``fisher_samples`` training samples.
    damping : float
        :math:`\\delta`, relative to the mean eigenvalue.
    """

    focal_weight: float = 1.0
    metric: str = "euclidean"
    geodesic: str = "linear"
    reach: float = 0.5
    align: bool = True
    lr: float = 0.05
    momentum: float = 0.9
    epochs: int = 20
    batch_size: int = 128
    weight_decay: float = 0.0
    fisher_kind: str = "empirical"
    fisher_samples: int = 2048
    damping: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.metric in ("euclidean", "fisher", "kfac"), f"metric must be 'euclidean', 'fisher' or 'kfac', got {self.metric!r}")
        _check(self.geodesic in ("linear", "spherical"), f"geodesic must be 'linear' or 'spherical', got {self.geodesic!r}")
        _check(self.reach >= 0, f"reach must be >= 0, got {self.reach}")
        _check(0.0 < self.momentum < 1.0, f"momentum must lie in (0, 1), got {self.momentum}")
        _check(self.lr > 0 and self.damping > 0, "lr and damping must be > 0")
        _check(self.epochs >= 1 and self.batch_size >= 1 and self.fisher_samples >= 1, "epochs, batch_size and fisher_samples must be >= 1")


@register
class WSFT(RetrainMethod):
    """Warm-started fine-tuning with an initial velocity toward θ† (module docstring)."""

    name = "wsft"
    Options = WSFTOptions

    def _preconditioner(self, ctx: Context, model: nn.Module, names: list[str]) -> Preconditioner | None:
        o = self.options
        if o.metric == "euclidean":
            return None
        sample = ctx.train.subset(slice(0, o.fisher_samples))
        if o.metric == "fisher":
            return _diagonal_preconditioner(diagonal_fisher(model, sample, kind=o.fisher_kind), names, o.damping)
        return _kfac_preconditioner(model, kfac_fisher(model, sample, kind=o.fisher_kind), names, o.damping)

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        target = ctx.aligned_superior("wsft") if o.align else ctx.superior
        model = copy.deepcopy(ctx.incumbent)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        direction = initial_direction(model, target, o.geodesic)
        scale = o.reach * (1.0 - o.momentum) / o.momentum
        velocity = [scale * direction[n] for n in names]
        optimizer = HeavyBall([params[n] for n in names], lr=o.lr, momentum=o.momentum, velocity=velocity,
                              precondition=self._preconditioner(ctx, model, names), weight_decay=o.weight_decay)
        ctx.record(model, epoch=0)
        fit(model, UpgradeObjective(ctx, o), len(ctx.train), optimizer=optimizer, epochs=o.epochs,
            batch_size=o.batch_size, seed=ctx.seed, on_epoch=lambda e: ctx.record(model, epoch=e),
            progress=ctx.progress_label("wsft"))
        return MethodOutput(model, {"metric": o.metric, "initial_speed": float(torch.cat([v.flatten() for v in velocity]).norm())})
