"""Hyperbolic structure: token states mapped into the Poincaré ball and an attention bias.

A hidden state :math:`h_i` is mapped to the ball by the exponential map at the origin
(Ganea, Bécigneul & Hofmann 2018), :math:`z_i = \\exp_0(W_z h_i)`, and the geodesic
distances :math:`d_{ij} = d_{\\mathbb{D}_c}(z_i, z_j)` bias attention head ``h``:

.. math:: \\text{score}_{h,ij} = \\frac{\\langle q_i, k_j\\rangle}{\\sqrt{d_h}} - w_h\\, d_{ij}, \\qquad
          w_h = \\operatorname{softplus}(\\omega_h) \\ge 0,

so tokens close in the (learned) syntax tree attend to each other more. The training loss
:func:`structure_stress_loss` pulls :math:`d_{ij}` towards ``scale`` times the AST tree
distance of the tokens' nodes; trees embed in the ball with low distortion, unlike in flat
space (Nickel & Kiela 2017; Sarkar 2011). All ball arithmetic is
:class:`synthfuse.shared.manifold.PoincareBall`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.shared.manifold import PoincareBall

__all__ = ["BallProjection", "StructuralBias", "pairwise_ball_distance", "structure_stress_loss"]


def pairwise_ball_distance(ball: PoincareBall, z: Tensor) -> Tensor:
    """All geodesic distances within each sequence: ``z`` (B, T, c) -> (B, T, T)."""
    return ball.dist(z[:, :, None, :], z[:, None, :, :])


class BallProjection(nn.Module):
    """:math:`z = \\exp_0(W_z \\operatorname{LN}(h) / \\sqrt{d})` into the ball of curvature ``-c``.

    (B, T, d) -> (B, T, ball_dim). The layer norm and the :math:`1/\\sqrt{d}` keep the tangent
    vectors at norm ~ :math:`\\sqrt{\\text{ball\\_dim}/d}` under an isometric ``W_z``, so
    the points start well inside the ball whatever the depth of the residual stream.
    """

    def __init__(self, d_model: int, ball_dim: int, curvature: float = 1.0) -> None:
        super().__init__()
        if ball_dim < 1:
            raise ValueError(f"ball_dim must be >= 1, got {ball_dim}")
        self.ball = PoincareBall(c=curvature)
        self.norm = nn.LayerNorm(d_model)
        self.linear = nn.Linear(d_model, ball_dim, bias=False)
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, h: Tensor) -> Tensor:
        v = self.linear(self.norm(h)) * self.scale
        return self.ball.exp(torch.zeros_like(v), v)


class StructuralBias(nn.Module):
    """Per-head additive attention bias :math:`-\\operatorname{softplus}(\\omega_h)\\, d_{ij}`.

    ``forward(dist)`` maps (B, T, T) distances to a (B, H, T, T) bias.
    """

    def __init__(self, n_heads: int, init_weight: float = 0.1) -> None:
        super().__init__()
        if not init_weight > 0:
            raise ValueError(f"init_weight must be > 0 (it is a softplus value), got {init_weight}")
        omega = math.log(math.expm1(init_weight))  # softplus^{-1}
        self.omega = nn.Parameter(torch.full((n_heads,), omega))

    def forward(self, dist: Tensor) -> Tensor:
        return -F.softplus(self.omega)[None, :, None, None] * dist[:, None, :, :]


def structure_stress_loss(dist: Tensor, tree_dist: Tensor, mask: Tensor, scale: float) -> Tensor:
    """Mean squared stress :math:`\\frac{1}{|P|}\\sum_{(i,j)\\in P}(d_{ij} - s\\,\\delta_{ij})^2`.

    Parameters
    ----------
    dist : Tensor, shape (B, T, T)
        Ball distances :math:`d_{ij}`.
    tree_dist : Tensor, shape (B, T, T)
        Tree distances :math:`\\delta_{ij}` between the tokens' AST nodes.
    mask : BoolTensor, shape (B, T)
        Tokens that belong to a program; the pairs ``P`` are ``i != j`` with both masked in.
    scale : float
        :math:`s > 0`, ball units per tree edge.
    """
    if not scale > 0:
        raise ValueError(f"structure scale must be > 0, got {scale}")
    if dist.shape != tree_dist.shape or dist.shape[:2] != mask.shape:
        raise ValueError(f"shapes disagree: dist {tuple(dist.shape)}, tree_dist {tuple(tree_dist.shape)}, "
                         f"mask {tuple(mask.shape)}")
    t = mask.shape[1]
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(t, dtype=torch.bool, device=mask.device)
    if not pairs.any():
        return dist.new_zeros(())
    err = dist - scale * tree_dist.to(dist.dtype)
    return (err.square() * pairs).sum() / pairs.sum()
