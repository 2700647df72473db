"""Chunkwise-parallel building blocks shared by the delta-rule and momentum layers.

A sequence of length T is cut into N chunks of C tokens. Inside a chunk, products of the
per-token decays alpha_t become differences of the cumulative log-decay
``g_i = sum_{j <= i} log alpha_j`` (relative to the chunk start), so every factor we form is
``exp(g_i - g_j) <= 1`` for ``j <= i``: no overflow, whatever the decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def chunk_length(chunk_size: int, length: int) -> int:
    """The chunk actually used: ``chunk_size``, or the smallest power of two >= ``length``."""
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 1; got {chunk_size}")
    return min(chunk_size, 1 << max(length - 1, 0).bit_length())


def pad_time(x: Tensor, pad: int, dim: int = 2) -> Tensor:
    """Append ``pad`` zero steps along ``dim``.

    The callers pad with identity steps (zero input, zero write strength, zero log-decay), which
    leave the recurrent state bit-identical, so the padded tail never changes the final state.
    """
    if pad == 0:
        return x
    widths = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, pad]
    return F.pad(x, widths)


def split_chunks(chunk_size: int, *xs: Tensor) -> tuple[int, list[Tensor]]:
    """Pad tensors of shape (B, H, T, ...) with zero steps to a chunk multiple and reshape them
    to (B, H, N, C, ...). Returns the chunk length C and the reshaped tensors."""
    t = xs[0].shape[2]
    c = chunk_length(chunk_size, t)
    pad = (-t) % c
    n = (t + pad) // c
    return c, [pad_time(x, pad).reshape(*x.shape[:2], n, c, *x.shape[3:]) for x in xs]


def chunk_decay(log_alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative log-decay and the causal decay matrix of each chunk.

    Parameters
    ----------
    log_alpha : Tensor, shape (..., N, C)
        Per-token log decay, ``<= 0``.

    Returns
    -------
    g : Tensor, shape (..., N, C)
        ``g_i = sum_{j <= i} log alpha_j`` within the chunk.
    decay : Tensor, shape (..., N, C, C)
        ``decay[i, j] = exp(g_i - g_j)`` for ``j <= i`` and exactly 0 above the diagonal.
    """
    g = log_alpha.cumsum(-1)
    c = g.shape[-1]
    upper = torch.ones(c, c, dtype=torch.bool, device=g.device).triu(1)
    diff = (g.unsqueeze(-1) - g.unsqueeze(-2)).masked_fill(upper, float("-inf"))
    return g, diff.exp()


def unit_lower_inverse(a: Tensor) -> Tensor:
    """``(I + A)^{-1}`` for strictly lower-triangular ``A`` using matrix products only.

    Recursive block doubling: with the inverses of the two diagonal halves of a block known,

    .. math::
        \\begin{pmatrix} L_{11} & 0 \\\\ L_{21} & L_{22} \\end{pmatrix}^{-1} =
        \\begin{pmatrix} L_{11}^{-1} & 0 \\\\ -L_{22}^{-1} L_{21} L_{11}^{-1} & L_{22}^{-1}
        \\end{pmatrix},

    starting from 1x1 blocks (all equal to 1) and doubling the block size log2(C) times. This is
    exact (no truncated series) and as stable as forward substitution, unlike the Neumann
    product, whose partial sums can grow like binomial coefficients before they cancel.

    Parameters
    ----------
    a : Tensor, shape (..., C, C)
        Strictly lower triangular (the diagonal and above are ignored); C a power of two.

    Returns
    -------
    Tensor, shape (..., C, C)
        The unit-lower-triangular inverse; entries above the diagonal are exact zeros.
    """
    c = a.shape[-1]
    batch = a.shape[:-2]
    inv = a.new_ones(*batch, c, 1, 1)  # (..., n_blocks, b, b): diagonal blocks of the inverse
    b = 1
    while b < c:
        n = c // (2 * b)
        blocks = a.reshape(*batch, n, 2 * b, n, 2 * b).diagonal(dim1=-4, dim2=-2)  # (..., 2b, 2b, n)
        a21 = blocks.movedim(-1, -3)[..., b:, :b]  # (..., n, b, b)
        i11, i22 = inv[..., 0::2, :, :], inv[..., 1::2, :, :]
        i21 = -(i22 @ (a21 @ i11))
        top = torch.cat([i11, torch.zeros_like(i11)], dim=-1)
        inv = torch.cat([top, torch.cat([i21, i22], dim=-1)], dim=-2)  # (..., n, 2b, 2b)
        b *= 2
    return inv[..., 0, :, :]
