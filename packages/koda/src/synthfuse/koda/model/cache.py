"""Key/value cache for incremental decoding with :meth:`KodaTransformer.extend`.

A decoding step feeds only the new token(s); every earlier position's attention keys and
values (per block), its Poincaré-ball point (for the structural bias) and whether it is a
real token (left padding is not) are kept here, in buffers preallocated to ``capacity``
positions. Shapes: ``B`` rows, ``H`` heads, ``hs`` head size, ``S`` capacity, ``L`` length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CacheEntries", "KVCache"]


@dataclass
class CacheEntries:
    """What :meth:`KodaTransformer.extend` computed for ``T`` new positions of ``B`` rows.

    Attributes
    ----------
    keys, values : list of Tensor (B, H, T, hs)
        Per block, after RoPE (keys).
    ball : Tensor (B, T, ball_dim)
    valid : BoolTensor (B, T)
    """

    keys: list[Tensor]
    values: list[Tensor]
    ball: Tensor
    valid: Tensor

    def take(self, index: Tensor) -> "CacheEntries":
        """Position ``index[b]`` of each row ``b`` (B,): the chosen one of ``T`` sibling candidates."""
        rows = torch.arange(self.ball.shape[0], device=self.ball.device)
        return CacheEntries([k[rows, :, index][:, :, None] for k in self.keys],
                            [v[rows, :, index][:, :, None] for v in self.values],
                            self.ball[rows, index][:, None], self.valid[rows, index][:, None])


@dataclass
class KVCache:
    """Preallocated per-block keys/values, ball points and validity of the first ``length`` positions.

    Build one with :meth:`allocate`; :meth:`append` writes new entries after the cached ones
    and :meth:`select` keeps a subset of the rows (e.g. the unfinished sequences).
    """

    keys: list[Tensor]
    values: list[Tensor]
    ball: Tensor
    valid: Tensor
    length: int = 0

    @classmethod
    def allocate(cls, model, batch_size: int, capacity: int | None = None) -> "KVCache":
        """An empty cache for ``batch_size`` rows of ``model`` (``capacity`` defaults to ``max_len``)."""
        cfg = model.config
        capacity = cfg.max_len if capacity is None else capacity
        if batch_size < 1 or not 1 <= capacity <= cfg.max_len:
            raise ValueError(f"need batch_size >= 1 and 1 <= capacity <= max_len={cfg.max_len}; "
                             f"got {batch_size}, {capacity}")
        ref = model.embed.weight
        head = cfg.d_model // cfg.n_heads
        shape = (batch_size, cfg.n_heads, capacity, head)
        return cls([ref.new_zeros(shape) for _ in range(cfg.n_layers)],
                   [ref.new_zeros(shape) for _ in range(cfg.n_layers)],
                   ref.new_zeros(batch_size, capacity, cfg.ball_dim),
                   torch.zeros(batch_size, capacity, dtype=torch.bool, device=ref.device))

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def capacity(self) -> int:
        return self.valid.shape[1]

    def past(self, block: int) -> tuple[Tensor, Tensor]:
        """Cached keys and values of ``block``: views (B, H, L, hs)."""
        return self.keys[block][:, :, :self.length], self.values[block][:, :, :self.length]

    def append(self, entries: CacheEntries) -> None:
        """Write ``entries`` (``T`` positions per row) at positions ``length .. length + T - 1``."""
        t = entries.valid.shape[1]
        if entries.valid.shape[0] != self.batch_size:
            raise ValueError(f"entries have {entries.valid.shape[0]} rows, the cache {self.batch_size}")
        if self.length + t > self.capacity:
            raise ValueError(f"cache full: {self.length} + {t} positions exceed its capacity {self.capacity}")
        end = self.length + t
        with torch.no_grad():
            for buf, new in zip(self.keys + self.values, entries.keys + entries.values):
                buf[:, :, self.length:end] = new
            self.ball[:, self.length:end] = entries.ball
            self.valid[:, self.length:end] = entries.valid
        self.length = end

    def select(self, rows: Tensor) -> "KVCache":
        """A cache of the rows ``rows`` (LongTensor), in that order."""
        return KVCache([k[rows] for k in self.keys], [v[rows] for v in self.values], self.ball[rows],
                       self.valid[rows], self.length)
