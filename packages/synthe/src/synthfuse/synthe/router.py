"""Depth Router: per-token early exit with a CALM-style confidence head at each exit point.

After block ``k`` in ``exit_layers`` a head scores every still-running token::

    r_k(t) = w_k . [RMSNorm(h_k(t)); c_k(t)] + b_k,        exit  iff  sigmoid(r_k(t)) > threshold

with ``c_k(t)`` the block's Kalman confidence. An exited token's prediction is the LM head on its
hidden state at exit. **Skip rule**: for every later block the token is *absent* - an identity
step of each recurrence (delta and momentum memories are not written, the Kalman filter keeps its
mean and variance), a zero input to the short convolution and an empty slot in the probe window.
The rule is causal and per token, so a sequence split into pieces gives exactly the full-pass
result; and at inference the absent tokens cost nothing in those blocks (their projections are
never computed).

Auxiliary objective (training, on every ``stride``-th position), averaged over exit points::

    L_aux = CE(head(h_k), y) + BCE(r_k, 1[argmax head(h_k) == argmax head(h_N)])

the first term makes the early prediction usable (deep supervision), the second teaches the
head to exit exactly where the early prediction already agrees with the full-depth one (the
consistency oracle of CALM).

References
----------
.. [1] T. Schuster et al., "Confident Adaptive Language Modeling", NeurIPS 2022.
.. [2] D. Raposo et al., "Mixture-of-Depths: Dynamically allocating compute in
   transformer-based language models", 2024.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DepthRouter(nn.Module):
    """Exit heads for the blocks in ``exit_layers`` (see the module docstring).

    Parameters
    ----------
    d_model : int
    exit_layers : list of int
        Block indices after which tokens may exit.
    threshold : float
        Exit when ``sigmoid(score) > threshold``; any value >= 1 means never.
    """

    def __init__(self, d_model: int, exit_layers: list[int], threshold: float) -> None:
        super().__init__()
        self.exit_layers = list(exit_layers)
        self.threshold = float(threshold)
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.heads = nn.ModuleList(nn.Linear(d_model + 1, 1) for _ in self.exit_layers)

    def score(self, index: int, h: Tensor, confidence: Tensor) -> Tensor:
        """Router logit ``r`` (B, T) of exit point ``index`` (position in ``exit_layers``)."""
        features = torch.cat([self.norm(h), confidence.unsqueeze(-1).to(h.dtype)], dim=-1)
        return self.heads[index](features).squeeze(-1)

    def exits(self, score: Tensor) -> Tensor:
        """Which tokens leave, (B, T) bool."""
        return torch.sigmoid(score) > self.threshold


def router_aux_loss(
    early_logits: list[Tensor], router_scores: list[Tensor], final_logits: Tensor, targets: Tensor
) -> Tensor:
    """The auxiliary objective above. ``early_logits[i]``: (N, V); ``router_scores[i]``, targets: (N,).

    Both terms are means over the scored positions (``targets != -100``), written as sums over
    all positions divided by their count, so every head and router parameter is in the graph
    whatever the targets (0 with nothing scored): data-parallel training (DDP, FSDP) needs the
    same parameters to receive gradients on every rank.
    """
    final_pred = final_logits.detach().argmax(-1)
    keep = targets != -100
    count = keep.sum().clamp_min(1)
    total = final_logits.new_zeros(())
    for logits, score in zip(early_logits, router_scores):
        agree = (logits.detach().argmax(-1) == final_pred).to(score.dtype)
        total = total + F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum") / count
        bce = F.binary_cross_entropy_with_logits(score, agree, reduction="none")
        total = total + (bce * keep.to(bce.dtype)).sum() / count
    return total / max(len(early_logits), 1)
