"""Which tokens a decoder may emit next: program tokens only, and ``<eos>`` only where a program can end.

A KL program is a sequence of functions ``def ... { ... }``, so it can only end right after a
``}`` that closes its outermost brace. With ``depth`` the number of open braces and ``last``
the previous token, the allowed set at every step is

- every program token (keywords, operators, digits, identifiers), never the prompt's
  specials (``<pad> <bos> <sep> <sig> <unk> <theta:...>``);
- ``}`` only when ``depth > 0``;
- ``<eos>`` only when ``depth == 0`` and ``last == "}"``.

This is a stopping rule, not a grammar: it keeps decoding from ending in the middle of a
block (or running on after the last one) and nothing more.
"""

from __future__ import annotations

import torch
from torch import Tensor

from synthfuse.koda.model.tokenizer import SPECIALS, KLTokenizer

__all__ = ["ProgramConstraint"]


class ProgramConstraint:
    """The allowed-token masks of :mod:`this module <synthfuse.koda.decode.constraint>` for ``tokenizer``.

    Parameters
    ----------
    tokenizer : KLTokenizer
    device : torch.device or str, optional
    """

    def __init__(self, tokenizer: KLTokenizer, device: torch.device | str | None = None) -> None:
        self.vocab_size = len(tokenizer)
        self.open_id, self.close_id, self.eos_id = tokenizer.index["{"], tokenizer.index["}"], tokenizer.eos_id
        base = torch.ones(self.vocab_size, dtype=torch.bool, device=device)
        banned = [tokenizer.index[s] for s in SPECIALS if s != "<eos>"]
        banned += [i for i, t in enumerate(tokenizer.vocab) if t.startswith("<theta:")]
        base[banned] = False
        self.base = base

    def allowed(self, depth: Tensor, last: Tensor) -> Tensor:
        """Allowed next tokens (N, V) bool for brace depths ``depth`` (N,) and previous tokens ``last`` (N,)."""
        mask = self.base.expand(depth.shape[0], -1).clone()
        mask[:, self.close_id] &= depth > 0
        mask[:, self.eos_id] &= (depth == 0) & (last == self.close_id)
        return mask

    def start(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The state ``(depth, last)`` before the first program token (``last = -1``: nothing yet)."""
        zeros = torch.zeros(batch_size, dtype=torch.long, device=self.base.device)
        return zeros, zeros - 1

    def advance(self, depth: Tensor, last: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """The state after emitting ``tokens`` (N,)."""
        return depth + (tokens == self.open_id).long() - (tokens == self.close_id).long(), tokens

    def allowed_along(self, ids: Tensor) -> Tensor:
        """Allowed-token masks before each of the program tokens ``ids`` (B, T) and after the last: (B, T+1, V).

        Vectorized: the depth before token ``t`` is an exclusive cumulative sum of
        ``[open] - [close]``. Used to score a whole sampled program under the constrained policy.
        """
        b, t = ids.shape
        step = (ids == self.open_id).long() - (ids == self.close_id).long()  # (B, T)
        depth = torch.cat([ids.new_zeros(b, 1), step.cumsum(dim=1)], dim=1)  # (B, T+1)
        last = torch.cat([ids.new_full((b, 1), -1), ids], dim=1)  # (B, T+1)
        return self.allowed(depth.reshape(-1), last.reshape(-1)).view(b, t + 1, self.vocab_size)

    def _reference_allowed_along(self, ids: Tensor) -> Tensor:
        """The same masks by stepping the state token by token (testing only)."""
        depth, last = self.start(ids.shape[0])
        masks = [self.allowed(depth, last)]
        for t in range(ids.shape[1]):
            depth, last = self.advance(depth, last, ids[:, t])
            masks.append(self.allowed(depth, last))
        return torch.stack(masks, dim=1)
