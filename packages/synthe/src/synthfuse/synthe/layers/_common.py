"""Small helpers shared by the SYNTHE layers: masked projections, L2 norm, shape checks.

A *mask* everywhere in this package is a boolean ``(B, T)`` tensor, ``True`` where the token is
present. An absent token (padding, or a token that left the network early through the depth
router) is an identity step for every recurrence: the layer's memory is not written and its output
there is exactly zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_linear(x: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` computed only for present tokens; zeros elsewhere.

    Parameters
    ----------
    x : Tensor, shape (B, T, D_in)
    mask : Tensor of bool, shape (B, T), or None (every token present)
    weight : Tensor, shape (D_out, D_in)

    Returns
    -------
    Tensor, shape (B, T, D_out)
        With ``mask`` given, only the present rows go through the matrix product (real compute
        saved); absent rows are exactly zero.
    """
    if mask is None:
        return F.linear(x, weight, bias)
    out = x.new_zeros(*x.shape[:-1], weight.shape[0])
    out[mask] = F.linear(x[mask], weight, bias)
    return out


def normalize_mask(mask: Tensor | None, batch: int, length: int) -> Tensor | None:
    """Validate a presence mask; return ``None`` when every token is present (the fast path)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, length):
        raise ValueError(
            f"mask must be a bool tensor of shape (B, T) = ({batch}, {length}); "
            f"got dtype {mask.dtype} and shape {tuple(mask.shape)}"
        )
    return None if bool(mask.all()) else mask


def l2_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``x / sqrt(|x|^2 + eps)`` over the last axis (smooth at zero, so gradients stay finite)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def check_input(x: Tensor, d_model: int, finite: bool = True, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is a floating ``(B, T, d_model)`` tensor, finite when
    ``finite`` (a full pass over ``x``; a model whose layers only see its own activations skips it)."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (batch, time, {d_model}) tensor; got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got {x.dtype}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; clean the input before calling the layer")


def check_state(state: dict, expected: dict[str, tuple[int, ...]], layer: str) -> None:
    """Raise a clear error when a carried state does not match this layer and batch size."""
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{layer} state is missing {missing}; pass the state this layer returned")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(
                f"{layer} state[{key!r}] has shape {tuple(state[key].shape)}, expected {shape}: "
                "was it produced by a layer of another size or for another batch size?"
            )


def run_token_by_token(layer, x: Tensor, state: dict | None, mask: Tensor | None, **per_token: Tensor | None):
    """Reference driver: call ``layer`` on one token at a time, carrying the state.

    ``per_token`` holds extra ``(B, T, ...)`` inputs (e.g. confidence) sliced like ``x``.
    Returns the outputs concatenated over time and the final state.
    """
    ys = []
    for t in range(x.shape[1]):
        extra = {k: (None if v is None else v[:, t : t + 1]) for k, v in per_token.items()}
        y, state = layer(x[:, t : t + 1], state, None if mask is None else mask[:, t : t + 1], **extra)
        ys.append(y)
    return torch.cat(ys, dim=1), state
