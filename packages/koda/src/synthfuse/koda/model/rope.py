"""Rotary position embedding (RoPE; Su et al., RoFormer, 2021), in the rotate-half layout.

A head vector :math:`x \\in \\mathbb{R}^{d}` (``d`` even) is split into halves
:math:`x = (x^{(1)}, x^{(2)})`; coordinate pair ``(i, i + d/2)`` is rotated by the angle
:math:`m\\theta_i` at position ``m``, with :math:`\\theta_i = b^{-2i/d}` (``b`` = 10000):

.. math::
    R_m x = \\bigl(x^{(1)} \\odot \\cos m\\theta - x^{(2)} \\odot \\sin m\\theta,\\;
                  x^{(1)} \\odot \\sin m\\theta + x^{(2)} \\odot \\cos m\\theta\\bigr).

``R_m`` is orthogonal (norms are preserved) and :math:`R_m^\\top R_n = R_{n-m}`, so the
attention score :math:`\\langle R_m q, R_n k\\rangle = \\langle q, R_{n-m} k\\rangle` depends on
the positions only through their offset ``n - m``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RotaryEmbedding", "apply_rotary"]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` of shape ``(..., T, d)`` by the per-position angles in ``cos``/``sin`` ``(T, d/2)``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _reference_rotation_matrix(position: int, dim: int, base: float = 10000.0) -> Tensor:
    """The explicit ``(dim, dim)`` matrix :math:`R_m` (float64), for testing :func:`apply_rotary`."""
    half = dim // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / dim)
    rot = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(half):
        c, s = torch.cos(position * theta[i]), torch.sin(position * theta[i])
        rot[i, i], rot[i, i + half] = c, -s
        rot[i + half, i], rot[i + half, i + half] = s, c
    return rot


class RotaryEmbedding(nn.Module):
    """Cached RoPE angles for positions ``0 .. max_len - 1``.

    Parameters
    ----------
    head_dim : int
        Per-head dimension ``d``; must be even.
    max_len : int
        Longest sequence the cache covers (longer inputs raise ``ValueError``).
    base : float, default 10000
        The frequency base ``b``.
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim < 2 or head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension >= 2, got {head_dim}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if not base > 1.0:
            raise ValueError(f"RoPE base must be > 1, got {base}")
        self.head_dim, self.max_len, self.base = head_dim, max_len, base
        theta = base ** (-torch.arange(head_dim // 2, dtype=torch.float64) * 2 / head_dim)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * theta[None, :]  # (T, d/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` of shape ``(..., T, head_dim)``.

        Position ``t`` is its index along ``T``, or ``positions[t]`` when ``positions`` (T,)
        is given (incremental decoding: new tokens continue after the cached ones).
        """
        t = x.shape[-2]
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"RoPE built for head_dim={self.head_dim}, got vectors of size {x.shape[-1]}")
        last = t if positions is None else (int(positions.max()) + 1 if positions.numel() else 0)
        if last > self.max_len:
            raise ValueError(f"sequence of length {last} exceeds the RoPE cache (max_len={self.max_len}); "
                             "raise max_len in the model config")
        if positions is None:
            return apply_rotary(x, self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype))
        if positions.shape != (t,):
            raise ValueError(f"positions must have shape ({t},), got {tuple(positions.shape)}")
        return apply_rotary(x, self.cos[positions].to(x.dtype), self.sin[positions].to(x.dtype))
