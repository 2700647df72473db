"""Zoology synthetic tasks, generated on the fly from a seeded ``torch.Generator``.

Every task returns ``(inputs, targets)`` of shape ``(B, T)``; ``targets`` is ``-100`` wherever no
prediction is scored, so the loss and the accuracy count only the scored positions.

- **MQAR** (multi-query associative recall; Arora et al. 2023, "Zoology", ``multiquery_ar``):
  ``K`` distinct keys from ``[1, V/2)`` each followed by its value from ``[V/2, V)``, then the keys
  again as queries, the ``i``-th one at offset ``2 g_i`` of the query region, with distinct gaps
  ``g_i`` drawn with ``P(g) ~ (g + 1)^(a - 1)`` (``a = 0.01``: a power law favouring short gaps);
  every other position holds a random token. The target of a query is its key's value.
- **Copy**: ``L`` random tokens from ``[1, V)``, the separator ``0``, then the same tokens; scored
  on the copy.
- **Parity**: random bits, target at ``t`` the parity of bits ``1..t``.
- **S5**: random permutations of 5 elements (ids into the 120 permutations in lexicographic
  order), target at ``t`` the composition ``p_t o ... o p_1`` (Merrill et al. 2024, "The illusion
  of state in state-space models"): a non-solvable group, so no constant-depth circuit tracks it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

TASKS = ("mqar", "copy", "parity", "s5")


def _permutations() -> tuple[Tensor, Tensor]:
    """The 120 permutations of S5 (lexicographic) and the table ``mult[a, b] = id(a o b)``."""
    perms = torch.tensor(list(itertools.permutations(range(5))), dtype=torch.long)  # (120, 5)
    composed = perms[:, None, :].expand(-1, 120, -1).gather(2, perms[None, :, :].expand(120, -1, -1))  # a[b[i]]
    code = (composed * (5 ** torch.arange(4, -1, -1))).sum(-1)
    lookup = torch.full((5**5,), -1, dtype=torch.long)
    lookup[(perms * (5 ** torch.arange(4, -1, -1))).sum(-1)] = torch.arange(120)
    return perms, lookup[code]


S5_PERMUTATIONS, S5_TABLE = _permutations()


def prefix_compose(ids: Tensor, table: Tensor) -> Tensor:
    """Prefix products ``out[:, t] = x_t o ... o x_0`` of group elements by Hillis-Steele doubling.

    ``table[a, b] = a o b`` must be associative; log2(T) rounds of gathers, no loop over tokens.
    """
    out, shift = ids.clone(), 1
    while shift < ids.shape[1]:
        out = torch.cat([out[:, :shift], table[out[:, shift:], out[:, :-shift]]], dim=1)
        shift *= 2
    return out


def mqar(batch: int, seq_len: int, vocab_size: int, num_kv_pairs: int, generator: torch.Generator,
         power_a: float = 0.01) -> tuple[Tensor, Tensor]:
    """Zoology's multi-query associative recall (see the module docstring)."""
    k = num_kv_pairs
    if seq_len % 2 or 4 * k > seq_len or vocab_size <= seq_len or vocab_size // 2 - 1 < k:
        raise ValueError(
            f"MQAR needs an even seq_len >= 4 * num_kv_pairs and vocab_size > seq_len with >= num_kv_pairs keys; "
            f"got seq_len={seq_len}, num_kv_pairs={k}, vocab_size={vocab_size}"
        )
    half = vocab_size // 2
    keys = 1 + torch.rand(batch, half - 1, generator=generator).argsort(1)[:, :k]
    values = half + torch.rand(batch, vocab_size - half, generator=generator).argsort(1)[:, :k]
    context = 2 * k
    space = (seq_len - context) // 2
    p = power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (power_a - 1)
    gaps = torch.multinomial((p / p.sum()).expand(batch, -1), k, replacement=False, generator=generator)
    inputs = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    query_pos = context + 2 * gaps
    inputs.scatter_(1, query_pos, keys)
    targets = torch.full((batch, seq_len), -100, dtype=torch.long).scatter_(1, query_pos, values)
    return inputs, targets


def copy_task(batch: int, seq_len: int, vocab_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``[x_1..x_L, 0, x_1..x_{L-1}]`` with targets ``x_1..x_L`` on the second half (``T = 2L``)."""
    if seq_len % 2 or seq_len < 2 or vocab_size < 2:
        raise ValueError(f"copy needs an even seq_len >= 2 and vocab_size >= 2; got {seq_len}, {vocab_size}")
    n = seq_len // 2
    x = torch.randint(1, vocab_size, (batch, n), generator=generator)
    inputs = torch.cat([x, torch.zeros(batch, 1, dtype=torch.long), x[:, :-1]], dim=1)
    targets = torch.cat([torch.full((batch, n), -100, dtype=torch.long), x], dim=1)
    return inputs, targets


def parity(batch: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random bits and their running parity."""
    bits = torch.randint(0, 2, (batch, seq_len), generator=generator)
    return bits, bits.cumsum(1) % 2


def s5(batch: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random S5 elements and their running composition (newest applied last: ``p_t o prefix``)."""
    ids = torch.randint(0, 120, (batch, seq_len), generator=generator)
    return ids, prefix_compose(ids, S5_TABLE)


@dataclass
class SyntheticData:
    """One Zoology task as a batch source (same interface as :class:`~.text.TextData`).

    ``vocab_size`` is the model vocabulary: ``vocab_size`` for MQAR and copy, 2 for parity,
    120 for S5. Train and val batches come from independent generator streams, so a validation
    example is never a training example by construction of the seed, not by chance.
    """

    task: str
    seq_len: int
    vocab: int = 8192
    num_kv_pairs: int = 4

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown synthetic task {self.task!r}; choose one of {TASKS}")

    @property
    def vocab_size(self) -> int:
        return {"parity": 2, "s5": 120}.get(self.task, self.vocab)

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.task == "mqar":
            return mqar(batch_size, self.seq_len, self.vocab, self.num_kv_pairs, generator)
        if self.task == "copy":
            return copy_task(batch_size, self.seq_len, self.vocab, generator)
        return (parity if self.task == "parity" else s5)(batch_size, self.seq_len, generator)
