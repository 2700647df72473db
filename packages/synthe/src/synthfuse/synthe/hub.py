"""Temporal Memory Hub: token / sentence / discourse tiers, strictly causal.

Positions are absolute token counts (a Python int carried in the model state; they never wrap).
Sentence ``j`` is positions ``[S j, S (j + 1))`` and discourse ``m`` is positions
``[L m, L (m + 1))`` (S = 16, L = 128 by default; L is a multiple of S).

Bottom-up compression (``u_t = W_down RMSNorm(h_t)``)::

    s_j = tanh(W_s mean_{t in sentence j} u_t)            sentence summary
    d_m = tanh(W_d mean_{j in discourse m} s_j)           discourse summary (from sentences)

Memories (EMA over completed segments, per-channel rates ``lambda = sigmoid(.)``)::

    D_m = lambda_d D_{m-1} + (1 - lambda_d) d_m
    M_j = lambda_s M_{j-1} + (1 - lambda_s) (s_j + W_td D_{(j // R) - 1})     (top-down, R = L / S)

Top-down broadcast to every token ``t``::

    h_t <- h_t + sigmoid(W_g RMSNorm(h_t)) * W_up [M_{t // S - 1}; D_{t // L - 1}]

Strict causality: a summary becomes visible only to tokens after its segment has ended (token t
reads the memories of the segments that ended before its own segment began), and the top-down
term for sentence j uses the discourse memory from before sentence j began. The state carries the
partial sums of the unfinished segments and the two memories, so any split of a sequence into
pieces gives the same result as one pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from synthfuse.synthe.layers._common import check_state
from synthfuse.synthe.layers._scan import linear_scan

_STATE_KEYS = ("sentence_sum", "discourse_sum", "sentence_memory", "discourse_memory")


class TemporalMemoryHub(nn.Module):
    """Three-tier memory hub (see the module docstring for the equations).

    Parameters
    ----------
    d_model : int
    d_hub : int
        Width of the summaries and memories.
    sentence_len, discourse_len : int
        Segment lengths in tokens; ``discourse_len`` must be a multiple of ``sentence_len``.
    """

    def __init__(self, d_model: int, d_hub: int, sentence_len: int = 16, discourse_len: int = 128) -> None:
        super().__init__()
        if sentence_len < 1 or discourse_len % sentence_len:
            raise ValueError(
                f"discourse_len ({discourse_len}) must be a positive multiple of sentence_len ({sentence_len})"
            )
        self.d_model, self.d_hub = d_model, d_hub
        self.sentence_len, self.discourse_len = sentence_len, discourse_len
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.down = nn.Linear(d_model, d_hub, bias=False)
        self.sentence_proj = nn.Linear(d_hub, d_hub)
        self.discourse_proj = nn.Linear(d_hub, d_hub)
        self.top_down = nn.Linear(d_hub, d_hub, bias=False)
        self.sentence_rate_logit = nn.Parameter(torch.linspace(0.0, 3.0, d_hub))  # lambda 0.5 .. 0.95
        self.discourse_rate_logit = nn.Parameter(torch.linspace(0.0, 3.0, d_hub))
        self.gate = nn.Linear(d_model, d_model)
        self.up = nn.Linear(2 * d_hub, d_model, bias=False)

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        return {key: torch.zeros(batch, self.d_hub, device=device, dtype=dtype) for key in _STATE_KEYS}

    def forward(self, h: Tensor, state: dict | None = None, position: int = 0) -> tuple[Tensor, dict]:
        """h: (B, T, d_model) holding absolute positions ``position .. position + T - 1``."""
        b, t, _ = h.shape
        state = self.init_state(b, h.device, h.dtype) if state is None else state
        check_state(state, {key: (b, self.d_hub) for key in _STATE_KEYS}, "TemporalMemoryHub")
        s_len, ratio = self.sentence_len, self.discourse_len // self.sentence_len
        normed = self.norm(h)
        u = self.down(normed)  # (B, T, d_hub)
        positions = position + torch.arange(t, device=h.device)

        # Sentence tier: sums over the touched sentences, the first one continuing the carried sum.
        j0 = position // s_len
        sentence_idx = positions // s_len - j0  # (T,) local sentence of each token
        n_touched = (position + t - 1) // s_len - j0 + 1
        n_done = (position + t) // s_len - j0  # sentences that end inside this piece
        sums = _segment_sums(u, sentence_idx, n_touched, state["sentence_sum"])
        sentences = torch.tanh(self.sentence_proj(sums[:, :n_done] / s_len))  # (B, n_done, d_hub)
        sentence_sum = sums[:, n_done] if n_done < n_touched else torch.zeros_like(state["sentence_sum"])

        # Discourse tier, built bottom-up from the completed sentences.
        m0 = j0 // ratio
        done_ids = j0 + torch.arange(n_done, device=h.device)  # absolute ids of completed sentences
        discourse_idx = done_ids // ratio - m0
        d_touched = (j0 + n_done - 1) // ratio - m0 + 1 if n_done else 1
        d_done = (j0 + n_done) // ratio - m0
        dsums = _segment_sums(sentences, discourse_idx, d_touched, state["discourse_sum"])
        discourses = torch.tanh(self.discourse_proj(dsums[:, :d_done] / ratio))
        discourse_sum = dsums[:, d_done] if d_done < d_touched else torch.zeros_like(state["discourse_sum"])

        # Memories: index i holds the memory after i of this piece's completed segments.
        disc_mem = _ema_memories(discourses, torch.sigmoid(self.discourse_rate_logit), state["discourse_memory"])
        top_down = self.top_down(disc_mem[:, done_ids // ratio - m0])  # discourse before sentence j began
        sent_mem = _ema_memories(sentences + top_down, torch.sigmoid(self.sentence_rate_logit), state["sentence_memory"])

        # Top-down broadcast: each token reads the memories of the segments finished before its own.
        context = torch.cat([sent_mem[:, sentence_idx], disc_mem[:, positions // self.discourse_len - m0]], dim=-1)
        out = h + torch.sigmoid(self.gate(normed)) * self.up(context)
        new_state = {
            "sentence_sum": sentence_sum,
            "discourse_sum": discourse_sum,
            "sentence_memory": sent_mem[:, -1],
            "discourse_memory": disc_mem[:, -1],
        }
        return out, new_state


def _segment_sums(x: Tensor, segment: Tensor, n_segments: int, carried: Tensor) -> Tensor:
    """Sum ``x`` (B, N, d) into ``n_segments`` bins by ``segment`` (N,); bin 0 starts at ``carried``."""
    first = torch.zeros(x.shape[0], n_segments, x.shape[-1], dtype=x.dtype, device=x.device)
    first[:, 0] = carried
    return first.index_add(1, segment, x)


def _ema_memories(summaries: Tensor, rate: Tensor, memory0: Tensor) -> Tensor:
    """``[M_0, M_1, ..., M_n]`` with ``M_i = rate M_{i-1} + (1 - rate) summary_i``; (B, n + 1, d)."""
    if summaries.shape[1] == 0:
        return memory0.unsqueeze(1)
    rate = rate.to(summaries.dtype).expand_as(summaries)
    later = linear_scan(rate, (1.0 - rate) * summaries, memory0)
    return torch.cat([memory0.unsqueeze(1), later], dim=1)
