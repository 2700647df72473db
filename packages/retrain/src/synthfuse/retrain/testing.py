"""Helpers for tests of code built on synthfuse.retrain (not used at run time)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from synthfuse.retrain.alignment import apply_permutations, permutation_spec

__all__ = ["permute_hidden_units"]


def permute_hidden_units(model: nn.Module, example: torch.Tensor, seed: int) -> tuple[nn.Module, list[torch.Tensor]]:
    """A copy of a chain network with every hidden layer's units shuffled: same function, new weights.

    Returns the copy and the permutations (``perm[i]`` = the original unit now at position ``i``).
    """
    spec = permutation_spec(model, example)
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n, generator=g) for n in spec.sizes]
    out = copy.deepcopy(model)
    out.load_state_dict(apply_permutations(model.state_dict(), spec, perms))
    return out, perms
