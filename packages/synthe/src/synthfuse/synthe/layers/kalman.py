"""Kalman layer: a diagonal Kalman filter over a learned projection of the hidden state.

Per channel, the latent ``s_t`` follows ``s_t = a s_{t-1} + w_t`` (``w_t ~ N(0, Q)``) and each
token observes ``z_t = W_z x_t = s_t + e_t`` with ``e_t ~ N(0, R_t)``, where the observation
noise ``R_t = exp(W_r x_t + b_r)`` depends on the token (how much to trust it), and the transition
``a = sigmoid(.)`` and process noise ``Q = exp(.)`` are learned per channel. The filter
(Kalman 1960)::

    P^-_t = a^2 P_{t-1} + Q                      (predict)
    K_t   = P^-_t / (P^-_t + R_t)                (gain)
    m_t   = a m_{t-1} + K_t (z_t - a m_{t-1})    (update)
    P_t   = (1 - K_t) P^-_t = R_t (a^2 P_{t-1} + Q) / (a^2 P_{t-1} + Q + R_t)

Parallel over time: ``P_t`` is a Moebius map of ``P_{t-1}`` with matrix
``[[R a^2, R Q], [a^2, Q + R]]``, so all variances come from one prefix scan of 2x2 matrices;
the mean is then the linear recurrence ``m_t = (1 - K_t) a m_{t-1} + K_t z_t`` (a second scan).

Per-token confidence compares the innovation with the observation, both known before the
token updates the filter (the prediction ``a m_{t-1}`` uses past tokens only)::

    IOR_t = |z_t - a m_{t-1}|^2 / (|z_t|^2 + eps),        confidence_t = exp(-IOR_t)

so IOR ~ 0 (the past predicts the token) gives confidence ~ 1 and IOR > 1 gives < 0.37.

References
----------
.. [1] R. E. Kalman, "A New Approach to Linear Filtering and Prediction Problems", Journal of
   Basic Engineering 82(1), 1960.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.synthe.layers._common import check_input, check_state, masked_linear, normalize_mask
from synthfuse.synthe.layers._scan import linear_scan, mobius_scan

#: Added per channel to ``|z_t|^2`` in the innovation-to-observation ratio.
IOR_EPS = 1e-6


@dataclass
class KalmanOutput:
    """Everything :meth:`KalmanLayer.filter` computes (time axis second)."""

    y: Tensor  #: (B, T, d_model) layer output
    state: dict  #: {"mean": (B, n), "variance": (B, n)}
    mean: Tensor  #: (B, T, n) filtered means m_t
    variance: Tensor  #: (B, T, n) posterior variances P_t
    prediction: Tensor  #: (B, T, n) one-step predictions a m_{t-1}
    confidence: Tensor  #: (B, T) per-token confidence in (0, 1]


def kalman_filter_scan(
    z: Tensor, r: Tensor, a: Tensor, q: Tensor, mean0: Tensor, var0: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Diagonal Kalman filter over a sequence, parallel over time.

    Parameters
    ----------
    z, r : Tensor, shape (B, T, n)
        Observations and observation-noise variances (> 0).
    a, q : Tensor, shape (n,)
        Transition and process-noise variance (> 0).
    mean0, var0 : Tensor, shape (B, n)
        Filter state before the first token.
    mask : Tensor of bool, shape (B, T), optional
        Absent tokens are identity steps: mean and variance carry over unchanged.

    Returns
    -------
    mean, variance, prediction : Tensor, shape (B, T, n)
    """
    a2 = a * a
    m11, m12, m21, m22 = r * a2, r * q, a2.expand_as(r), q + r
    if mask is not None:
        absent = ~mask.unsqueeze(-1)
        m11, m22 = m11.masked_fill(absent, 1.0), m22.masked_fill(absent, 1.0)
        m12, m21 = m12.masked_fill(absent, 0.0), m21.masked_fill(absent, 0.0)
    variance = mobius_scan((m11, m12, m21, m22), var0)
    var_prev = torch.cat([var0.unsqueeze(1), variance[:, :-1]], dim=1)
    p_pred = a2 * var_prev + q
    gain = p_pred / (p_pred + r)
    keep = a * r / (p_pred + r)  # (1 - K_t) a
    b = gain * z
    if mask is not None:
        keep, b = keep.masked_fill(absent, 1.0), b.masked_fill(absent, 0.0)
    mean = linear_scan(keep, b, mean0)
    prediction = a * torch.cat([mean0.unsqueeze(1), mean[:, :-1]], dim=1)
    return mean, variance, prediction


def kalman_filter_step(
    z: Tensor, r: Tensor, a: Tensor, q: Tensor, mean: Tensor, var: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One textbook predict/update step; z, r, mean, var: (B, n). Returns (mean, var, prediction)."""
    prediction = a * mean
    p_pred = a * a * var + q
    gain = p_pred / (p_pred + r)
    return prediction + gain * (z - prediction), (1.0 - gain) * p_pred, prediction


def _naive_kalman_filter(
    z: Tensor, r: Tensor, a: Tensor, q: Tensor, mean0: Tensor, var0: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference: :func:`kalman_filter_step` one token at a time; absent tokens are skipped."""
    mean, var = mean0, var0
    means, variances, predictions = [], [], []
    for t in range(z.shape[1]):
        new_mean, new_var, pred = kalman_filter_step(z[:, t], r[:, t], a, q, mean, var)
        if mask is not None:
            present = mask[:, t, None]
            new_mean, new_var = torch.where(present, new_mean, mean), torch.where(present, new_var, var)
        mean, var = new_mean, new_var
        means.append(mean)
        variances.append(var)
        predictions.append(pred)
    return torch.stack(means, 1), torch.stack(variances, 1), torch.stack(predictions, 1)


def innovation_confidence(z: Tensor, prediction: Tensor) -> Tensor:
    """``exp(-|z - prediction|^2 / (|z|^2 + eps n))`` over the last axis: (B, T, n) -> (B, T)."""
    ior = (z - prediction).pow(2).sum(-1) / (z.pow(2).sum(-1) + IOR_EPS * z.shape[-1])
    return torch.exp(-ior)


class KalmanLayer(nn.Module):
    """Diagonal Kalman filter token mixer with learned process and observation noise.

    ``y_t = W_o (m_t * silu(W_g x_t))`` where ``m_t`` is the filtered mean of the observations
    ``z_t = W_z x_t``. :meth:`filter` also returns the per-token confidence used by the
    attention probe and the depth router.

    Parameters
    ----------
    d_model : int
    d_state : int, optional
        Number of filtered channels ``n`` (default ``d_model``).

    The state is ``{"mean": (B, n), "variance": (B, n)}``; a fresh state has mean 0 and the
    stationary variance ``Q / (1 - a^2)`` of the latent process.
    """

    #: Check inputs for NaN/inf (a full pass); a SyntheBlock turns it off for its layers.
    check_finite = True

    def __init__(self, d_model: int, d_state: int | None = None) -> None:
        super().__init__()
        n = d_model if d_state is None else d_state
        self.d_model, self.d_state = d_model, n
        self.in_proj = nn.Linear(d_model, 3 * n, bias=False)  # observation z, log R, output gate
        self.log_r_bias = nn.Parameter(torch.zeros(n))
        self.log_q = nn.Parameter(torch.full((n,), math.log(0.1)))
        # a = sigmoid(logit) spread over [0.5, 0.999]: memories from ~1 to ~1000 tokens.
        self.transition_logit = nn.Parameter(torch.logit(1.0 - torch.logspace(math.log10(0.5), -3, n)))
        self.out_proj = nn.Linear(n, d_model, bias=False)

    def transition(self) -> Tensor:
        """``a`` per channel, in (0, 1)."""
        return torch.sigmoid(self.transition_logit)

    def process_noise(self) -> Tensor:
        """``Q`` per channel, > 0."""
        return self.log_q.exp()

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        a, q = self.transition(), self.process_noise()
        var = (q / (1.0 - a * a)).to(device=device, dtype=dtype).detach().expand(batch, -1).clone()
        return {"mean": torch.zeros(batch, self.d_state, device=device, dtype=dtype), "variance": var}

    def filter(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> KalmanOutput:
        """Run the filter on x (B, T, d_model); see :class:`KalmanOutput`."""
        check_input(x, self.d_model, self.check_finite)
        b, t, _ = x.shape
        n = self.d_state
        state = self.init_state(b, x.device, x.dtype) if state is None else state
        check_state(state, {"mean": (b, n), "variance": (b, n)}, "KalmanLayer")
        mask = normalize_mask(mask, b, t)
        z, log_r, gate = masked_linear(x, mask, self.in_proj.weight).split(n, dim=-1)
        r = (log_r + self.log_r_bias).exp()
        a, q = self.transition().to(x.dtype), self.process_noise().to(x.dtype)
        if t == 1:
            mean, var, pred = kalman_filter_step(z[:, 0], r[:, 0], a, q, state["mean"], state["variance"])
            if mask is not None:
                mean = torch.where(mask, mean, state["mean"])
                var = torch.where(mask, var, state["variance"])
            mean, var, pred = mean.unsqueeze(1), var.unsqueeze(1), pred.unsqueeze(1)
        else:
            mean, var, pred = kalman_filter_scan(z, r, a, q, state["mean"], state["variance"], mask)
        confidence = innovation_confidence(z, pred)
        if mask is not None:
            confidence = confidence.masked_fill(~mask, 1.0)
        y = masked_linear(mean * F.silu(gate), mask, self.out_proj.weight)
        new_state = {"mean": mean[:, -1], "variance": var[:, -1]}
        return KalmanOutput(y=y, state=new_state, mean=mean, variance=var, prediction=pred, confidence=confidence)

    def forward(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """x: (B, T, d_model) -> (y (B, T, d_model), state)."""
        out = self.filter(x, state, mask)
        return out.y, out.state

    def advance_absent(self, state: dict, steps: int) -> dict:
        """Absent tokens leave the filter unchanged."""
        return state

    def _naive_filter(self, x: Tensor, state: dict | None = None, mask: Tensor | None = None) -> KalmanOutput:
        """Reference: :meth:`filter` one token at a time (the decoding path)."""
        steps = []
        for t in range(x.shape[1]):
            out = self.filter(x[:, t : t + 1], state, None if mask is None else mask[:, t : t + 1])
            state = out.state
            steps.append(out)
        cat = {f: torch.cat([getattr(o, f) for o in steps], dim=1) for f in ("y", "mean", "variance", "prediction", "confidence")}
        return KalmanOutput(state=state, **cat)
