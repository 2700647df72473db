"""One SYNTHE block: ``[Momentum -> Delta -> Kalman -> (Probe)]``, each pre-normed and residual."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from synthfuse.synthe.config import SyntheConfig
from synthfuse.synthe.layers import AttentionProbe, DeltaLayer, KalmanLayer, MomentumLayer


@dataclass
class BlockOutput:
    hidden: Tensor  #: (B, T, d_model)
    state: dict
    confidence: Tensor  #: (B, T) Kalman confidence (1 for absent tokens)
    fire: Tensor | None  #: (B, T) where the probe fired, None without a probe


class SyntheBlock(nn.Module):
    """``h += Momentum(n(h)); h += Delta(n(h)); h += Kalman(n(h)); h += Probe(n(h), confidence)``.

    ``config.delta = False`` drops the delta layer (an ablation).

    Absent tokens (``mask`` False) are identity steps for every layer and keep ``h`` unchanged;
    when no token is present at all the block does no arithmetic and only moves its
    convolution and probe windows forward (:meth:`advance_absent`).
    """

    def __init__(self, config: SyntheConfig, probe: bool) -> None:
        super().__init__()
        d, h = config.d_model, config.n_heads
        self.momentum_norm, self.kalman_norm = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.momentum = MomentumLayer(d, h, config.chunk_size)
        self.delta_norm = nn.RMSNorm(d, eps=1e-6) if config.delta else None
        self.delta = DeltaLayer(d, h, config.conv_size, config.chunk_size, config.delta_dt_range) if config.delta else None
        self.kalman = KalmanLayer(d, config.kalman_dim)
        self.probe_norm = nn.RMSNorm(d, eps=1e-6) if probe else None
        self.probe = AttentionProbe(d, h, config.probe_window, config.probe_threshold) if probe else None
        for layer in self._layers().values():
            layer.check_finite = False  # the model's input is token ids: activations need no scan

    def _layers(self) -> dict[str, nn.Module]:
        layers = {"momentum": self.momentum, "delta": self.delta, "kalman": self.kalman, "probe": self.probe}
        return {name: layer for name, layer in layers.items() if layer is not None}

    def init_state(self, batch: int, device=None, dtype=None) -> dict:
        return {name: layer.init_state(batch, device, dtype) for name, layer in self._layers().items()}

    def advance_absent(self, state: dict, steps: int) -> dict:
        return {name: layer.advance_absent(state[name], steps) for name, layer in self._layers().items()}

    def forward(self, h: Tensor, state: dict | None = None, mask: Tensor | None = None) -> BlockOutput:
        """``state`` None: the initial state, built here from this block's (gathered) parameters."""
        b, t, _ = h.shape
        state = self.init_state(b, h.device, h.dtype) if state is None else state
        if mask is not None and not bool(mask.any()):
            ones = torch.ones(b, t, dtype=h.dtype, device=h.device)
            fire = None if self.probe is None else torch.zeros(b, t, dtype=torch.bool, device=h.device)
            return BlockOutput(h, self.advance_absent(state, t), ones, fire)
        y, momentum = self.momentum(self.momentum_norm(h), state["momentum"], mask)
        h = h + y
        new_state = {"momentum": momentum}
        if self.delta is not None:
            y, new_state["delta"] = self.delta(self.delta_norm(h), state["delta"], mask)
            h = h + y
        filtered = self.kalman.filter(self.kalman_norm(h), state["kalman"], mask)
        h = h + filtered.y
        new_state["kalman"] = filtered.state
        fire = None
        if self.probe is not None:
            fire = self.probe.fire_mask(filtered.confidence, mask, b, t, h.device)
            y, new_state["probe"] = self.probe(self.probe_norm(h), state["probe"], mask, filtered.confidence)
            h = h + y
        return BlockOutput(h, new_state, filtered.confidence, fire)
