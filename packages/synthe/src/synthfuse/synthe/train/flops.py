r"""Model FLOPs per token, peak FLOP/s and MFU (model FLOPs utilisation) of a training run.

MFU (Chowdhery et al. 2022, PaLM, appendix B) is the throughput the model's arithmetic
achieves relative to the hardware's peak:

.. math:: \mathrm{MFU} = \frac{F_{\text{token}} \cdot \text{tokens/s}}{W \cdot P_{\text{peak}}},

with :math:`W` devices of peak :math:`P_{\text{peak}}` FLOP/s each. :math:`F_{\text{token}}`
counts the matrix products of one training step per token, 2 FLOPs per multiply-add, with the
backward pass twice the forward (Kaplan et al. 2020; Hoffmann et al. 2022, Chinchilla,
appendix F): :math:`F_{\text{token}} = 3 F_{\text{fwd}}`. Recomputation (activation
checkpointing) is not counted: MFU measures the model's work, not the hardware's.

For SYNTHE, per token of a length-:math:`T` window (``d`` model width, ``H`` heads of width
``d_h = d / H``, chunk ``c`` (``chunk_length``), padded length :math:`T_c`, ``V`` vocabulary):

- projections, :math:`2 N_{\text{matmul}}`: momentum :math:`2d(3d + H) + 2d^2`, delta
  :math:`2d(4d + 2H) + 2d^2` and its depthwise convolution :math:`2 \cdot 3d \cdot K`, Kalman
  :math:`8 d n` (``n = kalman_dim``), probe :math:`8 d^2`, hub, router heads :math:`2(d + 1)`
  per exit, LM head :math:`2 d V` -- the "6N" of PaLM, with the LM head counted and the
  embedding lookup not;
- sequence mixing (the analogue of PaLM's attention term :math:`12 L d T`), per token
  (:math:`T_c / T` accounts for the padding to whole chunks):
  momentum (chunked decayed linear attention) :math:`4 c d + 4 d d_h`, delta (chunked gated
  delta rule: intra-chunk products, UT transform by block doubling, state reads and writes)
  :math:`10 c d + 6 d d_h + 2 H (c^2 - 1) / 3`, attention probe (banded blocks of ``w``
  queries against ``2w - 1`` keys) :math:`4 (2w - 1) d`;
- the router's auxiliary objective in training: :math:`2 d V` per exit point on every
  ``router_aux_stride``-th position.

Probes are counted as if every token fired (their output projection runs only for firing
tokens). The Transformer baseline uses the PaLM formula :math:`6N + 12 L d T` with
:math:`N` its non-embedding parameters plus the LM head.

Training runs the vocabulary heads only where a target is scored (:mod:`synthfuse.synthe.head`:
MQAR scores 4 of 64 positions), so a step's count is taken from :class:`FlopCount`, which keeps
the heads apart: :math:`3 (B F_{\text{body}} + n\, 2 d V + n_{\text{aux}}\, E\, 2 d V)` for
:math:`B` windows with :math:`n` scored positions, :math:`n_{\text{aux}}` of them on the router's
stride and :math:`E` exit points. :func:`model_flops_per_token` is the count with every position
scored (language modelling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from synthfuse.synthe.config import SyntheConfig

__all__ = ["PEAK_FLOPS", "FlopCount", "mfu", "model_flops", "model_flops_per_token", "peak_flops",
           "synthe_forward_flops"]

#: Dense bf16 peak FLOP/s by GPU name fragment (vendor data sheets, without sparsity).
PEAK_FLOPS = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "A10G": 70e12,
    "L4": 121e12,
    "4090": 165e12,
}


def _chunk(chunk_size: int, length: int) -> int:
    return min(chunk_size, 1 << max(length - 1, 0).bit_length())


def synthe_forward_flops(config: SyntheConfig, seq_len: int, training: bool = True) -> float:
    """Matrix-product FLOPs of one forward pass over a window of ``seq_len`` tokens, the heads at
    every position.

    See the module docstring for the terms; ``training`` adds the router's auxiliary heads
    (when ``router_aux_weight > 0``). Divide by ``seq_len`` for a per-token count.
    """
    count = _synthe_flop_count(config, seq_len)
    aux_rows = -(-seq_len // config.router_aux_stride) if training else 0
    return count.body + seq_len * count.head + aux_rows * count.aux_head


def _synthe_flop_count(config: SyntheConfig, seq_len: int) -> FlopCount:
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1; got {seq_len}")
    t, d, h, v = seq_len, config.d_model, config.n_heads, config.vocab_size
    dh = d // h
    c = _chunk(config.chunk_size, t)
    n_chunks = -(-t // c)
    tc = n_chunks * c
    momentum = 2 * t * d * (3 * d + h) + 2 * t * d * d + 4 * tc * d * dh + 4 * tc * c * d
    delta = (2 * t * d * (4 * d + 2 * h) + 2 * t * d * d + 2 * t * 3 * d * config.conv_size
             + 10 * tc * c * d + 6 * tc * d * dh + h * n_chunks * 2 * c * (c * c - 1) / 3)
    kalman = 8 * t * d * config.kalman_dim
    w = config.probe_window
    probe = 8 * t * d * d + 4 * (-(-t // w)) * w * (2 * w - 1) * d
    total = config.n_layers * (momentum + kalman + (delta if config.delta else 0)) + len(config.probe_layers) * probe
    if config.hub:
        hd = config.hub_dim
        total += 2 * t * d * hd + 2 * t * d * d + 4 * t * hd * d
        total += 2 * hd * hd * (2 * (t // config.sentence_len) + t // config.discourse_len)
    exits = len(config.exit_layers)
    total += exits * 2 * t * (d + 1)  # router scores
    aux_head = exits * 2 * d * v if config.router_aux_weight > 0 else 0
    return FlopCount(seq_len=t, body=float(total), head=float(2 * d * v), aux_head=float(aux_head))


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs of one window, the vocabulary heads apart (they run only at scored rows).

    ``body``: everything but the heads, per window of ``seq_len`` tokens; ``head``: the LM head
    per row it runs on (:math:`2 d V`); ``aux_head``: the router's auxiliary heads per row
    (:math:`E \\cdot 2 d V`, 0 without exits or auxiliary objective).
    """

    seq_len: int
    body: float
    head: float
    aux_head: float = 0.0

    def step(self, windows: int, head_rows: int, aux_rows: int = 0) -> float:
        """Training FLOPs (3x forward) of a step over ``windows`` windows whose LM head ran on
        ``head_rows`` rows and the auxiliary heads on ``aux_rows``."""
        return 3.0 * (windows * self.body + head_rows * self.head + aux_rows * self.aux_head)

    def per_token(self, windows: int, head_rows: int, aux_rows: int = 0) -> float:
        """:meth:`step` divided by the ``windows * seq_len`` tokens of the step."""
        return self.step(windows, head_rows, aux_rows) / (windows * self.seq_len)


def model_flops(model: nn.Module, seq_len: int) -> FlopCount:
    """The :class:`FlopCount` of a SYNTHE or Transformer model on windows of ``seq_len`` tokens.

    The Transformer's body is PaLM's :math:`2 N_{\\text{body}} T + 4 L d T^2` (a third of
    :math:`(6N + 12 L d T) T`), :math:`N_{\\text{body}}` its parameters less the tied embedding.
    """
    config = getattr(model, "config", None)
    if isinstance(config, SyntheConfig):
        return _synthe_flop_count(config, seq_len)
    if config is not None and hasattr(config, "n_layers"):  # tied embedding = the LM head: counted once
        d, v = config.d_model, config.vocab_size
        body_params = sum(p.numel() for p in model.parameters()) - d * v
        body = 2.0 * body_params * seq_len + 4.0 * config.n_layers * d * seq_len * seq_len
        return FlopCount(seq_len=seq_len, body=body, head=float(2 * d * v))
    raise TypeError(f"no FLOP count for {type(model).__name__}; expected Synthe or TransformerBaseline")


def model_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token, :math:`3 F_{\\text{fwd}} / T`, of a SYNTHE or Transformer model,
    every position scored (the auxiliary heads on every ``router_aux_stride``-th)."""
    count = model_flops(model, seq_len)
    stride = getattr(model.config, "router_aux_stride", 1)
    return count.per_token(1, seq_len, -(-seq_len // stride) if count.aux_head else 0)


def peak_flops(device: torch.device, configured: float | None = None) -> float | None:
    """Peak FLOP/s of one ``device``: ``configured`` if given, else the :data:`PEAK_FLOPS` entry
    of a known CUDA GPU, else ``None`` (CPU: MFU is not reported without a configured peak)."""
    if configured is not None:
        return float(configured)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None, world_size: int = 1) -> float | None:
    """Model FLOPs utilisation :math:`F_{\\text{token}} \\cdot \\text{tokens/s} / (W P)`; ``None`` without a peak."""
    if peak is None or not math.isfinite(tokens_per_s):
        return None
    return flops_per_token * tokens_per_s / (world_size * peak)
