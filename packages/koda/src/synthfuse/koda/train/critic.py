"""WGAN-GP critic on hidden-state sequences (Arjovsky et al. 2017; Gulrajani et al. 2017).

The critic :math:`D` scores a sequence of hidden states. Real sequences are the model's
states under teacher forcing; fake ones are its states when the program tokens it reads
are its own (straight-through Gumbel-softmax) samples of the previous step's prediction --
a parallel form of Professor Forcing (Lamb et al. 2016). The critic minimizes

.. math::
    L_D = \\mathbb{E}[D(\\tilde x)] - \\mathbb{E}[D(x)]
          + \\lambda\\, \\mathbb{E}_{\\hat x}\\big[(\\|\\nabla_{\\hat x} D(\\hat x)\\|_2 - 1)^2\\big],
    \\qquad \\hat x = \\epsilon x + (1 - \\epsilon)\\tilde x,\\; \\epsilon \\sim U[0, 1],

with :math:`\\lambda = 10` and ``n_critic = 5`` critic steps per model step; the model adds
:math:`-\\mathbb{E}[D(\\tilde x)]` to its loss. The gradient norm is taken per sequence over
all time steps and features. As the paper requires, the critic has no batch normalization
(which would make each score depend on the rest of the batch and break the per-sample
penalty): two 1-D convolutions with leaky ReLUs, a masked mean over time and a linear read-out.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SequenceCritic", "critic_loss", "gradient_penalty"]


class SequenceCritic(nn.Module):
    """Score ``(B, T, d)`` sequences (``mask`` (B, T) marks the positions that count) -> ``(B,)``."""

    def __init__(self, d_model: int, channels: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        if channels < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"channels must be >= 1 and kernel_size odd; got {channels}, {kernel_size}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(d_model, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.out = nn.Linear(channels, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.to(x.dtype)[:, None, :]  # (B, 1, T)
        h = x.transpose(1, 2) * m  # (B, d, T): masked positions contribute nothing
        h = F.leaky_relu(self.conv1(h), 0.2) * m
        h = F.leaky_relu(self.conv2(h), 0.2) * m
        pooled = h.sum(dim=2) / m.sum(dim=2).clamp_min(1.0)  # (B, C)
        return self.out(pooled)[:, 0]


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, lambda_gp: float = 10.0,
                     generator: torch.Generator | None = None) -> Tensor:
    """:math:`\\lambda\\,\\mathbb{E}[(\\|\\nabla_{\\hat x} D(\\hat x)\\|_2 - 1)^2]` on random interpolates.

    Parameters
    ----------
    critic : callable
        Maps a batch ``(B, ...)`` to scores ``(B,)``.
    real, fake : Tensor, same shape (B, ...)
    lambda_gp : float
    generator : torch.Generator, optional
        For the interpolation weights :math:`\\epsilon`.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if lambda_gp < 0:
        raise ValueError(f"lambda_gp must be >= 0, got {lambda_gp}")
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, dtype=real.dtype,
                     device=real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.reshape(grad.shape[0], -1).norm(dim=1)
    return lambda_gp * ((norms - 1) ** 2).mean()


def critic_loss(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, lambda_gp: float = 10.0
                ) -> tuple[Tensor, Tensor, Tensor]:
    """``(L_D, wasserstein_estimate, penalty)`` with :math:`L_D = E[D(\\tilde x)] - E[D(x)] + GP`."""
    w = critic(real.detach()).mean() - critic(fake.detach()).mean()
    gp = gradient_penalty(critic, real, fake, lambda_gp)
    return gp - w, w.detach(), gp.detach()
