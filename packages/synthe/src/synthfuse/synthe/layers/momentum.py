"""Momentum layer: a gated exponential moving average of key-value associations.

Per head, with input-dependent decay ``lambda_t = exp(-exp(A) softplus(W_l x_t + b)) in (0, 1]``::

    M_t = lambda_t M_{t-1} + (1 - lambda_t) k_t v_t^T,        o_t = M_t^T q_t

``M`` is the momentum (EMA) of the Hebbian gradient ``k_t v_t^T``: a scalar-decay linear attention
(as in RetNet / Mamba-2's SSD with a data-dependent decay). Chunkwise form, with ``g`` the
cumulative log-decay inside a chunk started from ``M_0`` and ``v'_t = (1 - lambda_t) v_t``::

    O = diag(exp(g)) Q M_0 + (Q K^T * Gamma) V',      Gamma_ij = exp(g_i - g_j) [j <= i]
    M_C = exp(g_C) M_0 + (K * exp(g_C - g))^T V'

References
----------
.. [1] Y. Sun et al., "Retentive Network: A Successor to Transformer for Large Language Models",
   2023.
.. [2] T. Dao, A. Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
   Structured State Space Duality", ICML 2024.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.synthe.layers._chunk import chunk_decay, chunk_length, split_chunks
from synthfuse.synthe.layers._common import check_input, check_state, l2_normalize, masked_linear, normalize_mask, run_token_by_token


def chunk_decayed_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, initial_state: Tensor, chunk_size: int = 64
) -> tuple[Tensor, Tensor]:
    """``M_t = lambda_t M_{t-1} + k_t v_t^T``, ``o_t = M_t^T q_t`` over a sequence, chunkwise.

    Parameters
    ----------
    q, k : Tensor, shape (B, H, T, d_k)
    v : Tensor, shape (B, H, T, d_v)
        Already scaled by the write strength (``1 - lambda`` in the layer; 0 for absent tokens).
    log_decay : Tensor, shape (B, H, T)
        ``log lambda_t <= 0``; 0 with ``v = 0`` is an identity step.
    initial_state : Tensor, shape (B, H, d_k, d_v)
    chunk_size : int
        A power of two.

    Returns
    -------
    o : Tensor, shape (B, H, T, d_v)
    final_state : Tensor, shape (B, H, d_k, d_v)
    """
    b, h, t, _ = q.shape
    c, (q, k, v, log_decay) = split_chunks(chunk_size, q, k, v, log_decay)

    g, decay = chunk_decay(log_decay)
    g_last = g[..., -1:]
    k_decayed = k * (g_last - g).exp().unsqueeze(-1)
    chunk_writes = k_decayed.transpose(-1, -2) @ v  # (B,H,N,dk,dv): what each chunk adds
    chunk_decay_total = g_last.exp().unsqueeze(-1)  # (B,H,N,1,1)

    state = initial_state
    starts = []
    for decay_i, write_i in zip(chunk_decay_total.unbind(2), chunk_writes.unbind(2)):  # across chunks
        starts.append(state)
        state = decay_i * state + write_i
    inter = (q * g.exp().unsqueeze(-1)) @ torch.stack(starts, dim=2)
    intra = ((q @ k.transpose(-1, -2)) * decay) @ v
    return (inter + intra).reshape(b, h, -1, v.shape[-1])[:, :, :t], state


def decayed_linear_attention_step(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One step: q, k (B, H, d_k); v (B, H, d_v); log_decay (B, H); state (B, H, d_k, d_v)."""
    state = log_decay.exp()[..., None, None] * state + k.unsqueeze(-1) * v.unsqueeze(-2)
    return (q.unsqueeze(-2) @ state).squeeze(-2), state


def _naive_decayed_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, initial_state: Tensor
) -> tuple[Tensor, Tensor]:
    """Reference: the recurrence one token at a time (shapes as the chunked form)."""
    state = initial_state
    outputs = []
    for t in range(q.shape[2]):
        state = log_decay[:, :, t, None, None].exp() * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append((q[:, :, t, :, None] * state).sum(-2))
    return torch.stack(outputs, dim=2), state


class MomentumLayer(nn.Module):
    """Gated EMA token mixer: ``y = W_o RMSNorm(M_t^T q_t)`` with the momentum memory above.

    Parameters
    ----------
    d_model, n_heads : int
        Head width ``d_model / n_heads`` for keys and values.
    chunk_size : int
        Chunk length of the parallel form (a power of two).

    The state is ``{"memory": (B, H, d_k, d_v)}``.
    """

    #: Check inputs for NaN/inf (a full pass); a SyntheBlock turns it off for its layers.
    check_finite = True

    def __init__(self, d_model: int, n_heads: int, chunk_size: int = 64) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        chunk_length(chunk_size, 1)
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 3 * d_model + n_heads, bias=False)  # q k v decay
        # Per-head time scales from ~1 to ~100 tokens at initialisation.
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 0.01, n_heads)))
        self.decay_bias = nn.Parameter(torch.full((n_heads,), math.log(math.e - 1.0)))  # softplus = 1
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        d = self.head_dim
        return {"memory": torch.zeros(batch, self.n_heads, d, d, device=device, dtype=dtype)}

    def forward(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """x: (B, T, d_model) -> (y (B, T, d_model), state). ``mask`` (B, T) marks present tokens."""
        check_input(x, self.d_model, self.check_finite)
        b, t, dm = x.shape
        h, d = self.n_heads, self.head_dim
        state = self.init_state(b, x.device, x.dtype) if state is None else state
        check_state(state, {"memory": (b, h, d, d)}, "MomentumLayer")
        mask = normalize_mask(mask, b, t)
        proj = masked_linear(x, mask, self.in_proj.weight)
        qkv, a = proj.split([3 * dm, h], dim=-1)
        q, k, v = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
        q, k = l2_normalize(q) * d**-0.5, l2_normalize(k)
        log_decay = (-self.A_log.exp() * F.softplus(a + self.decay_bias)).transpose(1, 2)  # (B, H, T)
        if mask is not None:
            log_decay = log_decay * mask.unsqueeze(1).to(x.dtype)
        v = v * (-torch.expm1(log_decay)).unsqueeze(-1)  # (1 - lambda) v; 0 for absent tokens
        if t == 1:
            o, memory = decayed_linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], log_decay[..., 0], state["memory"])
            o = o.unsqueeze(2)
        else:
            o, memory = chunk_decayed_linear_attention(q, k, v, log_decay, state["memory"], self.chunk_size)
        y = self.o_norm(o.transpose(1, 2)).reshape(b, t, dm)
        return masked_linear(y, mask, self.out_proj.weight), {"memory": memory}

    def advance_absent(self, state: dict, steps: int) -> dict:
        """Absent tokens leave the momentum memory unchanged."""
        return state

    def _naive_forward(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """Reference: :meth:`forward` one token at a time (the decoding path)."""
        return run_token_by_token(self, x, state, mask)
