"""Next-token sampling: temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token per row of ``logits`` (B, V) -> (B,) int64.

    ``temperature == 0`` is greedy decoding (argmax). ``top_k`` keeps the k largest logits;
    ``top_p`` keeps the smallest set of tokens whose probability reaches ``p`` (Holtzman et al.
    2020), always at least the most likely one.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy); got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None; got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None; got {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


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
