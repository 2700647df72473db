"""Mixture-of-experts feed-forward: Gumbel-softmax top-1 routing and the Switch balance loss.

Routing (Jang, Gu & Poole 2017; Maddison et al. 2017). With router logits :math:`\\ell(x)` and
Gumbel noise :math:`g_e = -\\log(-\\log u_e)`, :math:`u_e \\sim U(0, 1)`,

.. math::
    y^{\\text{soft}} = \\operatorname{softmax}\\bigl((\\ell + g) / \\tau\\bigr), \\qquad
    e^\\star = \\arg\\max_e y^{\\text{soft}}_e \\sim \\operatorname{Categorical}(\\operatorname{softmax}\\ell),

and the token goes to expert :math:`e^\\star` only (top-1). The gate is the straight-through
value :math:`1 + y^{\\text{soft}}_{e^\\star} - \\operatorname{sg}(y^{\\text{soft}}_{e^\\star})`:
exactly 1 in the forward pass, with the relaxed sample's gradient in the backward pass.
In eval mode the noise is dropped and :math:`e^\\star = \\arg\\max_e \\ell_e`.

Load balancing (Fedus, Zoph & Shazeer 2021, eq. 4): with :math:`f_e` the fraction of tokens
sent to expert ``e`` and :math:`P_e` the mean router probability
:math:`\\operatorname{softmax}(\\ell)_e`,

.. math:: \\mathcal{L}_{\\text{bal}} = E \\sum_{e=1}^{E} f_e P_e ,

which equals 1 under uniform routing and E when every token goes to one confident expert.

Dispatch follows the Switch Transformer: each expert takes at most
:math:`C = \\lceil \\text{capacity\\_factor} \\cdot N / E \\rceil` tokens (first come, first
served in token order); overflowing tokens skip the layer (output 0, the residual carries
them). All experts run as one batched matrix product over an ``(E, C, d)`` buffer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwitchFeedForward", "gumbel_top1", "switch_balance_loss"]


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"Gumbel-softmax temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def gumbel_top1(logits: Tensor, temperature: float, *, noise: bool = True,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Top-1 choice by the Gumbel-max trick with a straight-through Gumbel-softmax gate.

    Parameters
    ----------
    logits : Tensor, shape (N, E)
    temperature : float
        Softmax temperature :math:`\\tau > 0` of the relaxation (``ValueError`` otherwise).
    noise : bool
        Add Gumbel noise (sampling); ``False`` gives the deterministic argmax.
    generator : torch.Generator, optional

    Returns
    -------
    index : LongTensor, shape (N,)
        The chosen expert per row.
    gate : Tensor, shape (N,)
        Equal to 1 in value; its gradient is that of :math:`y^{\\text{soft}}_{e^\\star}`.
    """
    tau = _check_temperature(temperature)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, E), got {tuple(logits.shape)}")
    scores = logits
    if noise:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        tiny = torch.finfo(logits.dtype).tiny
        gumbel = -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))  # g = -log(-log u)
        scores = logits + gumbel
    soft = torch.softmax(scores / tau, dim=-1)
    index = soft.argmax(dim=-1)
    chosen = soft.gather(1, index[:, None])[:, 0]
    return index, 1.0 + chosen - chosen.detach()


def switch_balance_loss(router_probs: Tensor, index: Tensor) -> Tensor:
    """Switch Transformer load-balancing loss :math:`E \\sum_e f_e P_e`.

    Parameters
    ----------
    router_probs : Tensor, shape (N, E)
        :math:`\\operatorname{softmax}` of the router logits (no noise), one row per token.
    index : LongTensor, shape (N,)
        The expert each token was dispatched to.
    """
    if router_probs.dim() != 2 or index.shape != router_probs.shape[:1]:
        raise ValueError(f"router_probs must be (N, E) and index (N,); got {tuple(router_probs.shape)} "
                         f"and {tuple(index.shape)}")
    n, e = router_probs.shape
    if n == 0:
        return router_probs.new_zeros(())
    fraction = torch.bincount(index, minlength=e).to(router_probs.dtype) / n  # f_e
    mean_prob = router_probs.mean(dim=0)  # P_e
    return e * torch.sum(fraction * mean_prob)


class SwitchFeedForward(nn.Module):
    """Top-1 mixture of ``n_experts`` two-layer GELU MLPs ``d_model -> d_ff -> d_model``.

    Parameters
    ----------
    d_model, d_ff, n_experts : int
    temperature : float
        Gumbel-softmax temperature, > 0.
    capacity_factor : float
        Expert capacity :math:`C = \\lceil \\text{capacity\\_factor} \\cdot N / E \\rceil`; >= 1 / E.

    ``forward(x, mask)`` returns ``(y, balance_loss, index)`` where ``index`` (N,) is the expert of
    each kept (``mask``) token, in row-major order.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, *, temperature: float = 1.0,
                 capacity_factor: float = 1.25) -> None:
        super().__init__()
        if min(d_model, d_ff, n_experts) < 1:
            raise ValueError(f"d_model, d_ff and n_experts must be >= 1; got {d_model}, {d_ff}, {n_experts}")
        if not capacity_factor * n_experts >= 1:
            raise ValueError(f"capacity_factor must be >= 1/n_experts so every token can fit; got {capacity_factor}")
        self.temperature = _check_temperature(temperature)
        self.capacity_factor = float(capacity_factor)
        self.n_experts = n_experts
        self.router = nn.Linear(d_model, n_experts, bias=False)
        bound_in, bound_out = 1 / math.sqrt(d_model), 1 / math.sqrt(d_ff)
        self.w_in = nn.Parameter(torch.empty(n_experts, d_model, d_ff).uniform_(-bound_in, bound_in))
        self.b_in = nn.Parameter(torch.zeros(n_experts, d_ff))
        self.w_out = nn.Parameter(torch.empty(n_experts, d_ff, d_model).uniform_(-bound_out, bound_out))
        self.b_out = nn.Parameter(torch.zeros(n_experts, d_model))

    def capacity(self, n_tokens: int) -> int:
        """Tokens one expert takes per call: :math:`\\lceil \\text{capacity\\_factor}\\cdot N/E\\rceil`."""
        return max(1, math.ceil(self.capacity_factor * n_tokens / self.n_experts))

    def forward(self, x: Tensor, mask: Tensor | None = None, *,
                drop_tokens: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """``x``: (B, T, d); ``mask``: (B, T) bool of real (non-padding) tokens.

        ``drop_tokens=False`` lifts the capacity limit (every token reaches its expert), so a
        token's output depends on that token alone -- what incremental decoding needs.
        """
        b, t, d = x.shape
        flat = x.reshape(b * t, d)  # (N, d)
        keep = torch.ones(b * t, dtype=torch.bool, device=x.device) if mask is None else mask.reshape(-1)
        tokens = flat[keep]  # (n, d): padding is never routed
        logits = self.router(tokens)  # (n, E)
        index, gate = gumbel_top1(logits, self.temperature, noise=self.training)
        balance = switch_balance_loss(torch.softmax(logits, dim=-1), index)

        # Position of each token in its expert's queue (token order), then capacity drop.
        capacity = self.capacity(tokens.shape[0]) if drop_tokens else max(1, tokens.shape[0])
        onehot = F.one_hot(index, self.n_experts)  # (n, E)
        slot = (onehot.cumsum(dim=0) * onehot).sum(dim=1) - 1  # (n,)
        fits = slot < capacity
        buffer = tokens.new_zeros(self.n_experts, capacity, d)  # (E, C, d)
        buffer[index[fits], slot[fits]] = tokens[fits]
        hidden = F.gelu(torch.baddbmm(self.b_in[:, None, :], buffer, self.w_in))  # (E, C, d_ff)
        expert_out = torch.baddbmm(self.b_out[:, None, :], hidden, self.w_out)  # (E, C, d)
        routed = tokens.new_zeros(tokens.shape)
        routed[fits] = expert_out[index[fits], slot[fits]] * gate[fits, None]
        out = flat.new_zeros(flat.shape)
        out[keep] = routed
        return out.reshape(b, t, d), balance, index

    def _reference_forward(self, x: Tensor, index: Tensor) -> Tensor:
        """Per-token loop with unlimited capacity and the given routing (testing only)."""
        rows = []
        for token, e in zip(x.reshape(-1, x.shape[-1]), index.tolist()):
            h = F.gelu(token @ self.w_in[e] + self.b_in[e])
            rows.append(h @ self.w_out[e] + self.b_out[e])
        return torch.stack(rows).reshape(x.shape)
