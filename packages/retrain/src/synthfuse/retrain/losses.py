"""Losses shared by the fine-tuning methods: knowledge distillation and focal distillation.

Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015), per sample, with temperature :math:`T` and teacher probabilities
:math:`q = \\mathrm{softmax}(z^t / T)`:

.. math:: \\ell_{KD}(z) = T^2 \\, \\mathrm{KL}\\big(q \\,\\|\\, \\mathrm{softmax}(z / T)\\big)

(the :math:`T^2` keeps gradient magnitudes independent of :math:`T`).

Focal distillation (Yan et al., "Positive-Congruent Training", CVPR 2021) distills the old model
:math:`\\theta^\\star` with per-sample weight :math:`w_i = \\alpha + \\beta\\,\\mathbb 1[\\hat y^\\star_i = y_i]`,
so the samples θ* got right are protected most:

.. math:: \\ell_{FD} = \\frac1B \\sum_i w_i \\, d(z_i, z^\\star_i), \\quad
          d = T^2\\,\\mathrm{KL}(\\mathrm{softmax}(z^\\star/T)\\|\\mathrm{softmax}(z/T))
          \\ \\text{(kl)} \\ \\text{ or } \\ \\tfrac12 \\|z - z^\\star\\|^2 \\ \\text{(logit)}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["focal_distillation", "kd_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample :math:`T^2\\,\\mathrm{KL}(q\\|\\mathrm{softmax}(z/T))`, shape ``(B,)``.

    ``teacher_probs`` are already softened: ``softmax(z_teacher / T)`` (or the mean of an
    ensemble's softened probabilities).
    """
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    q = teacher_probs
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(1)
    return temperature**2 * kl


def focal_distillation(
    student_logits: torch.Tensor,
    incumbent_logits: torch.Tensor,
    incumbent_correct: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    temperature: float = 1.0,
    kind: str = "kl",
) -> torch.Tensor:
    """Mean focal-distillation loss :math:`\\frac1B\\sum_i (\\alpha + \\beta\\,c_i)\\, d_i` (module docstring)."""
    weights = alpha + beta * incumbent_correct.to(student_logits.dtype)
    if kind == "kl":
        d = kd_loss(student_logits, F.softmax(incumbent_logits / temperature, dim=1), temperature)
    elif kind == "logit":
        d = 0.5 * (student_logits - incumbent_logits).pow(2).sum(1)
    else:
        raise ValueError(f"focal distillation kind must be 'kl' or 'logit', got {kind!r}")
    return (weights * d).mean()
