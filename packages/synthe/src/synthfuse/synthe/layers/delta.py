"""Gated delta rule layer (Gated DeltaNet) with a chunkwise-parallel (WY/UT) form.

Recurrence, per head, with the memory stored as ``S in R^{d_k x d_v}`` (the transpose of the
papers' ``d_v x d_k`` convention; the algebra is identical)::

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,      o_t = S_t^T q_t

alpha_t in (0, 1] forgets, beta_t in (0, 1) is the write strength: each step is one step of
online gradient descent on ``|S^T k_t - v_t|^2 / 2`` (the delta rule) after a decay.

Chunkwise form (Yang et al. 2024; gating as in Yang et al. 2025). Within a chunk that starts
from ``S_0``, with ``g_i`` the cumulative log-decay and ``gamma_i = exp(g_i)``, write
``S_i = gamma_i S_0 + sum_{j<=i} (gamma_i / gamma_j) k_j u_j^T``. The pseudo-values
``u_i = beta_i (v_i - alpha_i S_{i-1}^T k_i)`` satisfy the unit-lower-triangular system
``(I + A) U = diag(beta) V - diag(beta gamma) K S_0`` with
``A_ij = beta_i exp(g_i - g_j) k_i^T k_j`` (j < i). With ``T = (I + A)^{-1}`` (the UT
transform, computed by block doubling with matrix products only)::

    U = T diag(beta) V - T diag(beta gamma) K S_0
    O = diag(gamma) Q S_0 + (Q K^T * Gamma) U,        Gamma_ij = exp(g_i - g_j) [j <= i]
    S_C = gamma_C S_0 + (K * exp(g_C - g))^T U

References
----------
.. [1] I. Schlag, K. Irie, J. Schmidhuber, "Linear Transformers Are Secretly Fast Weight
   Programmers", ICML 2021.
.. [2] S. Yang, B. Wang, Y. Zhang, Y. Shen, Y. Kim, "Parallelizing Linear Transformers with the
   Delta Rule over Sequence Length", NeurIPS 2024.
.. [3] S. Yang, J. Kautz, A. Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta
   Rule", ICLR 2025.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.synthe.layers._chunk import chunk_decay, chunk_length, split_chunks, unit_lower_inverse
from synthfuse.synthe.layers._common import check_input, check_state, l2_normalize, masked_linear, normalize_mask, run_token_by_token
from synthfuse.synthe.layers._conv import ShortConv


def chunk_gated_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor, initial_state: Tensor, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    """Gated delta rule over a whole sequence, chunkwise-parallel.

    Parameters
    ----------
    q, k : Tensor, shape (B, H, T, d_k)
    v : Tensor, shape (B, H, T, d_v)
    beta, log_alpha : Tensor, shape (B, H, T)
        Write strength in [0, 1] and log-decay <= 0. ``beta = 0, log_alpha = 0`` is an identity
        step (used for padding and absent tokens).
    initial_state : Tensor, shape (B, H, d_k, d_v)
    chunk_size : int
        A power of two; shorter sequences use the next power of two >= T.

    Returns
    -------
    o : Tensor, shape (B, H, T, d_v)
    final_state : Tensor, shape (B, H, d_k, d_v)
    """
    b, h, t, _ = q.shape
    c, (q, k, v, beta, log_alpha) = split_chunks(chunk_size, q, k, v, beta, log_alpha)
    n = q.shape[2]
    beta = beta.unsqueeze(-1)  # (B,H,N,C,1)

    g, decay = chunk_decay(log_alpha)  # (B,H,N,C), (B,H,N,C,C)
    k_beta = k * beta
    strictly_lower = torch.ones(c, c, dtype=torch.bool, device=q.device).tril(-1)
    a = ((k_beta @ k.transpose(-1, -2)) * decay).masked_fill(~strictly_lower, 0.0)
    t_inv = unit_lower_inverse(a)  # (B,H,N,C,C): the UT transform
    u = t_inv @ (v * beta)  # (B,H,N,C,dv)
    w = t_inv @ (k_beta * g.exp().unsqueeze(-1))  # (B,H,N,C,dk)
    attn = (q @ k.transpose(-1, -2)) * decay  # causal, decayed
    q_decayed = q * g.exp().unsqueeze(-1)
    g_last = g[..., -1:]  # (B,H,N,1)
    k_decayed = k * (g_last - g).exp().unsqueeze(-1)
    chunk_decay_total = g_last.exp().unsqueeze(-1)  # (B,H,N,1,1)

    state = initial_state
    outputs = []
    per_chunk = zip(*(x.unbind(2) for x in (u, w, q_decayed, attn, k_decayed.transpose(-1, -2), chunk_decay_total)))
    for u_i, w_i, q_i, attn_i, k_i, decay_i in per_chunk:  # a loop over chunks (T / C steps), not tokens
        u_i = u_i - w_i @ state  # pseudo-values of this chunk
        outputs.append(q_i @ state + attn_i @ u_i)
        state = decay_i * state + k_i @ u_i
    o = torch.stack(outputs, dim=2).reshape(b, h, n * c, -1)[:, :, :t]
    return o, state


def gated_delta_rule_step(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One recurrent step (decoding). q, k: (B, H, d_k); v: (B, H, d_v); beta, log_alpha: (B, H).

    ``S <- alpha S + k u^T`` with ``u = beta (v - alpha S^T k)``, then ``o = S^T q``.
    """
    alpha = log_alpha.exp().unsqueeze(-1)  # (B,H,1)
    u = beta.unsqueeze(-1) * (v - alpha * (k.unsqueeze(-2) @ state).squeeze(-2))
    state = alpha.unsqueeze(-1) * state + k.unsqueeze(-1) * u.unsqueeze(-2)
    return (q.unsqueeze(-2) @ state).squeeze(-2), state


def _naive_gated_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor, initial_state: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference: the textbook recurrence, one token at a time, with the explicit matrix
    ``alpha_t (I - beta_t k_t k_t^T)``. Shapes as in :func:`chunk_gated_delta_rule`."""
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    state = initial_state
    outputs = []
    for t in range(q.shape[2]):
        k_t, v_t = k[:, :, t], v[:, :, t]
        b_t = beta[:, :, t, None, None]
        transition = log_alpha[:, :, t, None, None].exp() * (eye - b_t * k_t.unsqueeze(-1) * k_t.unsqueeze(-2))
        state = transition @ state + b_t * k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        outputs.append((state.transpose(-1, -2) @ q[:, :, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(outputs, dim=2), state


class DeltaLayer(nn.Module):
    """Gated DeltaNet token mixer: projections, short convolution, gated delta rule, gated output.

    ``q, k, v = silu(conv(W x))``; q and k are L2-normalised per head (q also scaled by
    ``d_k^{-1/2}``); ``beta = sigmoid(W_b x)``; ``log alpha = -exp(A) softplus(W_a x + dt)``
    (Mamba-2 style); output ``W_o (RMSNorm(o) * silu(W_g x))``.

    Parameters
    ----------
    d_model : int
    n_heads : int
        ``d_model`` must be divisible by it; head width ``d_model / n_heads``.
    conv_size : int
        Kernel of the short causal convolution on q, k, v.
    chunk_size : int
        Chunk length of the parallel form (a power of two).
    dt_range : (float, float)
        Initial step sizes ``softplus(dt)`` are log-uniform in this range and ``exp(A)`` uniform
        in [1, 16], so a head initially forgets at ``exp(A) dt`` per token (Mamba-2's init, the
        default, spans 1e-3 to 1.6 per token); ``(1e-4, 1e-3)`` keeps > 35% of an association
        over 64 tokens in every head at initialisation.

    The state is ``{"conv": (B, K-1, 3 d_model), "memory": (B, H, d_k, d_v)}``.
    """

    #: Check inputs for NaN/inf (a full pass); a SyntheBlock turns it off for its layers.
    check_finite = True

    def __init__(self, d_model: int, n_heads: int, conv_size: int = 4, chunk_size: int = 64,
                 dt_range: tuple[float, float] = (1e-3, 1e-1)) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if not 0 < dt_range[0] <= dt_range[1]:
            raise ValueError(f"dt_range must satisfy 0 < low <= high; got {tuple(dt_range)}")
        chunk_length(chunk_size, 1)  # validates the chunk size
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 4 * d_model + 2 * n_heads, bias=False)  # q k v gate beta a
        self.conv = ShortConv(3 * d_model, conv_size)
        self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty(n_heads).uniform_(math.log(dt_range[0]), math.log(dt_range[1])))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        """Zero memory and an empty convolution window."""
        d = self.head_dim
        return {
            "conv": self.conv.init_state(batch, device, dtype),
            "memory": torch.zeros(batch, self.n_heads, d, d, device=device, dtype=dtype),
        }

    def _state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        d = self.head_dim
        return {"conv": (batch, self.conv.kernel_size - 1, 3 * self.d_model), "memory": (batch, self.n_heads, d, d)}

    def _features(self, x: Tensor, conv_cache: Tensor, mask: Tensor | None):
        """Per-token q, k, v (B, H, T, d), beta, log_alpha (B, H, T), gate (B, T, D), new conv cache."""
        b, t, dm = x.shape
        h, d = self.n_heads, self.head_dim
        proj = masked_linear(x, mask, self.in_proj.weight)
        qkv, gate, beta_logit, a = proj.split([3 * dm, dm, h, h], dim=-1)
        qkv, conv_cache = self.conv(qkv, conv_cache)
        q, k, v = F.silu(qkv).view(b, t, 3, h, d).permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
        q, k = l2_normalize(q) * d**-0.5, l2_normalize(k)
        beta = torch.sigmoid(beta_logit).transpose(1, 2)  # (B, H, T)
        log_alpha = (-self.A_log.exp() * F.softplus(a + self.dt_bias)).transpose(1, 2)
        if mask is not None:  # absent tokens: identity step
            present = mask.unsqueeze(1).to(x.dtype)
            beta, log_alpha = beta * present, log_alpha * present
        return q, k, v, beta, log_alpha, gate, conv_cache

    def _output(self, o: Tensor, gate: Tensor, mask: Tensor | None) -> Tensor:
        b, h, t, d = o.shape
        o = self.o_norm(o.transpose(1, 2)).reshape(b, t, h * d) * F.silu(gate)  # (B, T, D)
        return masked_linear(o, mask, self.out_proj.weight)

    def forward(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """x: (B, T, d_model) -> (y (B, T, d_model), state). ``mask`` (B, T) marks present tokens."""
        check_input(x, self.d_model, self.check_finite)
        b, t, _ = x.shape
        state = self.init_state(b, x.device, x.dtype) if state is None else state
        check_state(state, self._state_shapes(b), "DeltaLayer")
        mask = normalize_mask(mask, b, t)
        q, k, v, beta, log_alpha, gate, conv_cache = self._features(x, state["conv"], mask)
        if t == 1:
            o, memory = gated_delta_rule_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], beta[..., 0], log_alpha[..., 0], state["memory"])
            o = o.unsqueeze(2)
        else:
            o, memory = chunk_gated_delta_rule(q, k, v, beta, log_alpha, state["memory"], self.chunk_size)
        return self._output(o, gate, mask), {"conv": conv_cache, "memory": memory}

    def advance_absent(self, state: dict, steps: int) -> dict:
        """State after ``steps`` tokens that are all absent: only the convolution window moves."""
        return {"conv": self.conv.advance(state["conv"], steps), "memory": state["memory"]}

    def _naive_forward(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """Reference: :meth:`forward` one token at a time (the decoding path)."""
        return run_token_by_token(self, x, state, mask)
