"""Attention probe: causal sliding-window attention that fires only where the model is unsure.

For a token t that *fires* (present and ``confidence_t < threshold``), multi-head softmax
attention over the present tokens among the last ``w`` positions ``[t - w + 1, t]``::

    y_t = W_o concat_h softmax_j(q_t^h . k_j^h / sqrt(d)) v_j^h

and ``y_t = 0`` for every other token. Keys and values are computed for every present token
(they fill the window cache); queries, scores and the output projection only for firing tokens
at inference. During training (gradients enabled) the same result comes from a blocked dense
computation (query blocks of ``w`` against key blocks of ``2w - 1``) masked to the firing tokens.

The state is the window cache of the last ``w - 1`` positions: keys and values
``(B, w - 1, H, d)`` and a ``valid`` flag ``(B, w - 1)`` (False for positions before the
sequence start and for absent tokens). Memory and work per token are O(w), whatever the context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.synthe.layers._common import check_input, check_state, masked_linear, normalize_mask, run_token_by_token


def _naive_sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, valid: Tensor, window: int) -> Tensor:
    """Reference: full masked softmax attention with an explicit band.

    q, k, v: (B, T, H, d) over one sequence (no cache); valid: (B, T). Query i sees key j iff
    ``i - window < j <= i`` and (``valid[j]`` or ``j == i``).
    """
    t = q.shape[1]
    i = torch.arange(t).unsqueeze(1)
    j = torch.arange(t).unsqueeze(0)
    allowed = ((j <= i) & (j > i - window)).unsqueeze(0) & (valid.unsqueeze(1) | (i == j))  # (B, T, T)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)


class AttentionProbe(nn.Module):
    """Causal sliding-window attention, computed only for low-confidence tokens.

    Parameters
    ----------
    d_model, n_heads : int
    window : int
        Each firing token attends to the present tokens among the last ``window`` positions
        (itself included).
    threshold : float
        A present token fires when its confidence is below it (``confidence=None``: all fire).
    """

    #: Check inputs for NaN/inf (a full pass); a SyntheBlock turns it off for its layers.
    check_finite = True

    def __init__(self, d_model: int, n_heads: int, window: int = 64, threshold: float = 0.5) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if window < 1:
            raise ValueError(f"window must be >= 1; got {window}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.window, self.threshold = window, float(threshold)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        """An empty window: no valid positions."""
        shape = (batch, self.window - 1, self.n_heads, self.head_dim)
        return {
            "keys": torch.zeros(shape, device=device, dtype=dtype),
            "values": torch.zeros(shape, device=device, dtype=dtype),
            "valid": torch.zeros(batch, self.window - 1, dtype=torch.bool, device=device),
        }

    def fire_mask(self, confidence: Tensor | None, mask: Tensor | None, batch: int, length: int, device=None) -> Tensor:
        """Which tokens fire, (B, T) bool: present and ``confidence < threshold``."""
        fire = torch.ones(batch, length, dtype=torch.bool, device=device) if confidence is None else confidence < self.threshold
        return fire if mask is None else fire & mask

    def forward(
        self, x: Tensor, state: dict | None = None, mask: Tensor | None = None, confidence: Tensor | None = None
    ) -> tuple[Tensor, dict]:
        """x: (B, T, d_model), confidence: (B, T) -> (y (B, T, d_model), state)."""
        check_input(x, self.d_model, self.check_finite)
        b, t, dm = x.shape
        h, d, w = self.n_heads, self.head_dim, self.window
        state = self.init_state(b, x.device, x.dtype) if state is None else state
        check_state(state, {"keys": (b, w - 1, h, d), "values": (b, w - 1, h, d), "valid": (b, w - 1)}, "AttentionProbe")
        if confidence is not None and tuple(confidence.shape) != (b, t):
            raise ValueError(f"confidence must have shape (B, T) = ({b}, {t}); got {tuple(confidence.shape)}")
        mask = normalize_mask(mask, b, t)
        k, v = masked_linear(x, mask, self.kv_proj.weight).view(b, t, 2, h, d).unbind(2)
        keys = torch.cat([state["keys"], k], dim=1)  # (B, w-1+T, H, d): position t sits at index t+w-1
        values = torch.cat([state["values"], v], dim=1)
        present = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask
        valid = torch.cat([state["valid"], present], dim=1)
        fire = self.fire_mask(confidence, mask, b, t, x.device)
        if torch.is_grad_enabled():
            y = self._dense(x, keys, values, valid, fire, mask)
        else:
            y = self._gathered(x, keys, values, valid, fire)
        cut = keys.shape[1] - (w - 1)
        return y, {"keys": keys[:, cut:], "values": values[:, cut:], "valid": valid[:, cut:]}

    def _gathered(self, x: Tensor, keys: Tensor, values: Tensor, valid: Tensor, fire: Tensor) -> Tensor:
        """Inference: queries, scores and output only for the firing tokens."""
        b, t, dm = x.shape
        y = x.new_zeros(b, t, dm)
        rows, cols = fire.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return y
        q = self.q_proj(x[rows, cols]).view(-1, self.n_heads, self.head_dim)  # (n, H, d)
        positions = cols.unsqueeze(1) + torch.arange(self.window, device=x.device)  # (n, w)
        k = keys[rows.unsqueeze(1), positions].transpose(1, 2)  # (n, H, w, d)
        v = values[rows.unsqueeze(1), positions].transpose(1, 2)
        scores = (k @ q.unsqueeze(-1)).squeeze(-1) / self.head_dim**0.5  # (n, H, w)
        scores = scores.masked_fill(~valid[rows.unsqueeze(1), positions].unsqueeze(1), float("-inf"))
        out = (scores.softmax(-1).unsqueeze(-2) @ v).reshape(-1, dm)
        y[rows, cols] = self.out_proj(out)
        return y

    def _dense(self, x: Tensor, keys: Tensor, values: Tensor, valid: Tensor, fire: Tensor, mask: Tensor | None) -> Tensor:
        """Training: blocked banded attention for every present token, kept where it fires."""
        b, t, dm = x.shape
        h, d, w = self.n_heads, self.head_dim, self.window
        nb = -(-t // w)
        pad = nb * w - t
        q = F.pad(masked_linear(x, mask, self.q_proj.weight), (0, 0, 0, pad)).view(b, nb, w, h, d)
        keys, values = F.pad(keys, (0, 0, 0, 0, 0, pad)), F.pad(values, (0, 0, 0, 0, 0, pad))
        valid = F.pad(valid, (0, pad))
        k = keys.unfold(1, 2 * w - 1, w)  # (B, nb, H, d, 2w-1): block n holds positions [n w - w + 1, n w + w)
        v = values.unfold(1, 2 * w - 1, w)
        i = torch.arange(w, device=x.device).unsqueeze(1)
        m = torch.arange(2 * w - 1, device=x.device).unsqueeze(0)
        band = (m >= i) & (m <= i + w - 1)  # (w, 2w-1): query i of a block sees keys i .. i+w-1
        allowed = band & (valid.unfold(1, 2 * w - 1, w).unsqueeze(2) | (m == i + w - 1))  # (B, nb, w, 2w-1)
        scores = torch.einsum("bnihd,bnhdm->bnhim", q, k) / d**0.5
        scores = scores.masked_fill(~allowed.unsqueeze(2), float("-inf"))
        out = torch.einsum("bnhim,bnhdm->bnihd", scores.softmax(-1), v).reshape(b, nb * w, dm)[:, :t]
        return masked_linear(out, fire, self.out_proj.weight)

    def advance_absent(self, state: dict, steps: int) -> dict:
        """The window after ``steps`` absent tokens: positions move on, the new slots are empty."""
        if self.window == 1:
            return state
        n = min(steps, self.window - 1)
        return {key: torch.cat([s[:, n:], torch.zeros_like(s[:, :n])], dim=1) for key, s in state.items()}

    def _naive_forward(
        self, x: Tensor, state: dict | None = None, mask: Tensor | None = None, confidence: Tensor | None = None
    ) -> tuple[Tensor, dict]:
        """Reference: :meth:`forward` one token at a time (the decoding path)."""
        return run_token_by_token(self, x, state, mask, confidence=confidence)
