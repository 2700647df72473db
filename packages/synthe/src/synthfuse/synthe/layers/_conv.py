"""Depthwise short causal convolution with a cache of the last ``K - 1`` inputs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShortConv(nn.Module):
    """``y_t = sum_{m=0}^{K-1} w_m * x_{t-K+1+m}`` per channel (causal, depthwise, no bias).

    The state is the last ``K - 1`` inputs, shape ``(B, K - 1, channels)``, oldest first, so a
    sequence cut into pieces gives the same outputs as one pass. An absent token enters the
    window as a zero input (its projection is exactly zero), so positions keep advancing.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1; got {kernel_size}")
        self.channels, self.kernel_size = channels, kernel_size
        bound = 1.0 / math.sqrt(kernel_size)
        self.weight = nn.Parameter(torch.empty(channels, kernel_size).uniform_(-bound, bound))

    def init_state(self, batch: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch, self.kernel_size - 1, self.channels, device=device, dtype=dtype)

    def forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, T, channels); cache: (B, K - 1, channels) -> (y (B, T, channels), new cache)."""
        k = self.kernel_size
        full = torch.cat([cache, x], dim=1)  # (B, K-1+T, C)
        new_cache = full[:, full.shape[1] - (k - 1):]
        if x.shape[1] == 1:  # decoding: one dot product per channel
            return (full * self.weight.t()).sum(1, keepdim=True), new_cache
        y = F.conv1d(full.transpose(1, 2), self.weight.unsqueeze(1), groups=self.channels)
        return y.transpose(1, 2), new_cache

    def advance(self, cache: Tensor, steps: int) -> Tensor:
        """The cache after ``steps`` absent tokens (zero inputs), without any arithmetic."""
        k = self.kernel_size
        if k == 1:
            return cache
        zeros = cache.new_zeros(cache.shape[0], min(steps, k - 1), cache.shape[2])
        return torch.cat([cache, zeros], dim=1)[:, -(k - 1):]
