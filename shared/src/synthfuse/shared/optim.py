"""Riemannian SGD and Adam: torch optimizers for parameters that live on a manifold.

Each parameter group carries a ``manifold`` (default :class:`~synthfuse.shared.manifold.Euclidean`;
every row ``p[..., :]`` of a parameter is one point, batched like the manifold methods)::

    opt = RiemannianAdam(
        [{"params": [embeddings], "manifold": PoincareBall(c=1.0)},
         {"params": head.parameters()}],          # Euclidean: plain Adam
        lr=1e-2,
    )

A step turns the Euclidean gradient into the Riemannian one (``egrad2rgrad``), moves along the
exponential map and carries the momentum to the new point by parallel transport (``transp``)
— Bécigneul & Ganea (2019). On :class:`Euclidean` both reduce exactly to
:class:`torch.optim.SGD` / :class:`torch.optim.Adam`.

``state_dict()`` stores each group's manifold as its ``repr`` string (so checkpoints load with
``torch.load(..., weights_only=True)``); ``load_state_dict`` checks it against the manifolds the
optimizer was built with and keeps those.

References
----------
G. Bécigneul, O. Ganea (2019). Riemannian Adaptive Optimization Methods. ICLR.
S. Bonnabel (2013). Stochastic Gradient Descent on Riemannian Manifolds. IEEE TAC 58(9).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer

from synthfuse.shared.manifold import Euclidean, Manifold

__all__ = ["RiemannianAdam", "RiemannianSGD"]


class _RiemannianOptimizer(Optimizer):
    """Manifold bookkeeping shared by the two optimizers."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        manifold = group["manifold"]
        if not isinstance(manifold, Manifold):
            raise TypeError(
                f"param group {len(self.param_groups) - 1}: manifold must be a "
                f"synthfuse.shared.manifold.Manifold (e.g. Sphere()), got {type(manifold).__name__}"
            )
        for i, p in enumerate(group["params"]):
            try:
                manifold.check_point(p.detach())
            except ValueError as err:
                raise ValueError(
                    f"param group {len(self.param_groups) - 1}, parameter {i} "
                    f"(shape {tuple(p.shape)}): {err}"
                ) from err

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for group in state["param_groups"]:
            group["manifold"] = repr(group["manifold"])
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        manifolds = [group["manifold"] for group in self.param_groups]
        for i, (mine, saved) in enumerate(zip(manifolds, state_dict["param_groups"])):
            if saved.get("manifold") != repr(mine):
                raise ValueError(
                    f"param group {i}: the state was saved for manifold {saved.get('manifold')!r} "
                    f"but this optimizer has {mine!r}"
                )
        super().load_state_dict(state_dict)
        for group, manifold in zip(self.param_groups, manifolds):
            group["manifold"] = manifold

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        ``closure`` re-evaluates the loss (with gradients), as for any torch optimizer.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p, rgrad in self._gradients(group):
                self._update(group, p, rgrad)
        return loss

    def _update(self, group: dict[str, Any], p: torch.Tensor, rgrad: torch.Tensor) -> None:
        """Move ``p`` (in place) given its Riemannian gradient; defined by each optimizer."""
        raise NotImplementedError

    def _gradients(self, group: dict[str, Any]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """``(p, Riemannian gradient)`` for each parameter of ``group`` that has a gradient;
        weight decay is added to the Euclidean gradient first (as in torch)."""
        manifold, weight_decay = group["manifold"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            grad = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
            yield p, manifold.egrad2rgrad(p, grad)


class RiemannianSGD(_RiemannianOptimizer):
    r"""Riemannian SGD with transported momentum (Bonnabel 2013; Bécigneul & Ganea 2019).

    With :math:`g_t = \operatorname{grad} f(x_t)` (``egrad2rgrad`` of the Euclidean gradient
    plus weight decay), momentum :math:`\mu`, dampening :math:`\tau`:

    .. math::
        m_t &= \mu\, \tilde m_{t-1} + (1 - \tau)\, g_t \quad (m_1 = g_1), \qquad
        d_t = g_t + \mu m_t \ \text{(Nesterov)} \ \text{or}\ d_t = m_t \\
        x_{t+1} &= \exp_{x_t}(-\eta\, d_t), \qquad
        \tilde m_t = P_{x_t \to x_{t+1}}(m_t).

    Parameters
    ----------
    params : iterable of tensors or of dicts (param groups)
        A group may set its own ``manifold`` and any hyper-parameter below.
    lr : float, default 1e-3
    momentum, dampening, weight_decay : float, default 0
    nesterov : bool, default False
    manifold : Manifold, default Euclidean()
        Manifold of groups that do not name one. Parameters must start on it
        (``manifold.proj`` or ``manifold.random``); a clear ``ValueError`` says which does not.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        manifold: Manifold | None = None,
    ):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        manifold=Euclidean() if manifold is None else manifold)
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], p: torch.Tensor, rgrad: torch.Tensor) -> None:
        manifold, lr, momentum = group["manifold"], group["lr"], group["momentum"]
        if momentum == 0:
            p.copy_(manifold.exp(p, -lr * rgrad))
            return
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = rgrad.clone()
        else:
            buf = buf.mul_(momentum).add_(rgrad, alpha=1 - group["dampening"])
        direction = rgrad.add(buf, alpha=momentum) if group["nesterov"] else buf
        new_p = manifold.exp(p, -lr * direction)
        state["momentum_buffer"] = manifold.transp(p, new_p, buf)
        p.copy_(new_p)


class RiemannianAdam(_RiemannianOptimizer):
    r"""Riemannian Adam / AMSGrad (Bécigneul & Ganea 2019, Algorithm 1 with transported momentum).

    With :math:`g_t` the Riemannian gradient and :math:`\|g_t\|^2_{x_t}` its squared norm per
    manifold factor (:meth:`~synthfuse.shared.manifold.Manifold.component_inner`: per
    coordinate on :class:`Euclidean`, per point on the sphere and the ball):

    .. math::
        m_t &= \beta_1 \tilde m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) \|g_t\|^2_{x_t}
        \quad(\hat v_t = \max(\hat v_{t-1}, v_t) \text{ with AMSGrad}) \\
        x_{t+1} &= \exp_{x_t}\Big(-\frac{\eta}{1 - \beta_1^t}
            \frac{m_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}\Big), \qquad
        \tilde m_t = P_{x_t \to x_{t+1}}(m_t).

    Parameters
    ----------
    params : iterable of tensors or of dicts (param groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0 (added to the Euclidean gradient, as in torch's Adam)
    amsgrad : bool, default False
    manifold : Manifold, default Euclidean()
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        manifold: Manifold | None = None,
    ):
        if not lr > 0 or not eps >= 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0, eps >= 0, weight_decay >= 0; got {lr}, {eps}, {weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, manifold=Euclidean() if manifold is None else manifold)
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], p: torch.Tensor, rgrad: torch.Tensor) -> None:
        manifold, (beta1, beta2) = group["manifold"], group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(rgrad, 1 - beta1)
        exp_avg_sq.mul_(beta2).add_(manifold.component_inner(p, rgrad), alpha=1 - beta2)
        if group["amsgrad"]:
            second = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        else:
            second = exp_avg_sq
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        denom = second.sqrt() / math.sqrt(1 - beta2 ** state["step"]) + group["eps"]
        new_p = manifold.exp(p, -step_size * (exp_avg / denom))
        exp_avg.copy_(manifold.transp(p, new_p, exp_avg))
        p.copy_(new_p)
