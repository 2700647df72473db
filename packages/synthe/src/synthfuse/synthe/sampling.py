"""Autoregressive decoding with :func:`sample_next` (temperature, top-k, top-p; ``temperature=0``: greedy).

:func:`sample_next` is :func:`synthfuse.shared.sampling.sample_next` (``None`` switches top-k /
top-p off), re-exported here and as ``synthfuse.synthe.sample_next``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from synthfuse.shared.sampling import sample_next

__all__ = ["decode", "sample_next"]


def decode(
    first_logits: Tensor,
    step: Callable[[Tensor], Tensor],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Autoregressive decoding loop shared by the models' ``generate``.

    ``first_logits`` (B, V) are the logits after the prompt; ``step(tokens (B, 1))`` feeds the
    drawn tokens to the model (updating its cache or state) and returns the next logits (B, V).
    Returns the new tokens, (B, max_new_tokens); the last token is never fed back.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    tokens, logits = [], first_logits
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, generator).unsqueeze(1)
        tokens.append(nxt)
        if i + 1 < max_new_tokens:
            logits = step(nxt)
    return torch.cat(tokens, dim=1) if tokens else first_logits.new_zeros(first_logits.shape[0], 0, dtype=torch.long)
