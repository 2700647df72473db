"""A per-rank sampler that can stop anywhere and continue from the exact next batch.

Same indices as :class:`torch.utils.data.DistributedSampler` (the oracle in the tests): in
epoch :math:`e` the global order is ``randperm(n)`` drawn from a generator seeded
``seed + e`` (or ``arange(n)`` without shuffling), padded by wrapping around to a multiple of
``W`` (or truncated with ``drop_last``), and rank ``r`` takes positions ``r, r + W, r + 2W, ...``.
On top of that it remembers its **state** ``(epoch, position)``, where ``position`` is the
number of this rank's indices already handed out in the epoch; ``load_state_dict`` resumes
there. Because ranks interleave, after every rank handed out ``p`` indices exactly the first
``pW`` global positions are consumed, so a state saved on ``W`` ranks resumes on ``W'``
ranks too (``position' = pW / W'``, when that divides).

    sampler = ResumableSampler(len(dataset), num_replicas=env.world_size, rank=env.rank, seed=0)
    sampler.load_state_dict(info.extra["sampler"])            # after a restart
    for epoch in range(sampler.epoch, epochs):
        sampler.set_epoch(epoch)                              # keeps the position if unchanged
        for idx in sampler.batches(batch_size):               # LongTensor of this rank's indices
            train_step(x[idx], y[idx])
            save_checkpoint(..., extra={"sampler": sampler.state_dict()})
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sized

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")
dist = import_optional("torch.distributed")

__all__ = ["ResumableSampler"]


class ResumableSampler(torch.utils.data.Sampler):
    """Per-rank, resumable replacement for ``DistributedSampler``.

    Parameters
    ----------
    data : int or sized
        Dataset length, or anything with ``len()``.
    num_replicas, rank : int, optional
        World size and rank; default from the process group (1 and 0 without one).
    shuffle : bool
        Reshuffle every epoch with the generator seeded ``seed + epoch``.
    seed : int
        Must be the same on every rank.
    drop_last : bool
        Drop the tail that does not divide evenly instead of padding by wrapping around.

    Attributes
    ----------
    epoch : int
    position : int
        Indices of this rank already handed out in ``epoch``.
    """

    def __init__(self, data: "int | Sized", *, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        n = data if isinstance(data, int) else len(data)
        grouped = dist.is_available() and dist.is_initialized()
        num_replicas = (dist.get_world_size() if grouped else 1) if num_replicas is None else num_replicas
        rank = (dist.get_rank() if grouped else 0) if rank is None else rank
        if n < 0:
            raise ValueError(f"dataset length must be >= 0, got {n}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas; got {num_replicas}, {rank}")
        self.dataset_len, self.num_replicas, self.rank = n, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.position = 0

    @property
    def num_samples(self) -> int:
        """Indices per rank per epoch: :math:`\\lceil n/W\\rceil` (padding) or :math:`\\lfloor n/W\\rfloor`."""
        if self.drop_last:
            return self.dataset_len // self.num_replicas
        return math.ceil(self.dataset_len / self.num_replicas)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (position 0); the same epoch again keeps the position (resume)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def indices(self) -> "torch.Tensor":
        """All of this rank's indices for the current epoch, shape ``(num_samples,)``, int64."""
        n, total = self.dataset_len, self.num_samples * self.num_replicas
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if total > n:  # pad by wrapping around, as often as needed
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        """This rank's remaining indices of the epoch, one by one (for ``DataLoader``).

        ``position`` advances as indices are handed out; with ``DataLoader(num_workers > 0)``
        the loader draws ahead of training, so save :meth:`state_dict` from
        :meth:`batches` (or with ``num_workers=0``) to resume exactly.
        """
        remaining = self.indices()[self.position:].tolist()
        for i in remaining:
            self.position += 1
            yield i

    def batches(self, batch_size: int, *, drop_last: bool = False) -> Iterator["torch.Tensor"]:
        """This rank's remaining indices of the epoch in batches (LongTensor views).

        ``position`` counts a batch as consumed once it has been handed out, so a
        :meth:`state_dict` saved after training on a batch resumes at the next one.
        ``drop_last`` skips a final batch shorter than ``batch_size``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = self.indices()
        while self.position < len(order):
            batch = order[self.position:self.position + batch_size]
            if drop_last and len(batch) < batch_size:
                return
            self.position += len(batch)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """JSON-friendly state: ``epoch``, ``position`` and the settings it is valid for."""
        return {"epoch": self.epoch, "position": self.position, "num_replicas": self.num_replicas,
                "dataset_len": self.dataset_len, "seed": self.seed, "shuffle": self.shuffle,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``, possibly saved with another number of ranks.

        Raises
        ------
        ValueError
            If the dataset length, seed, shuffle or drop_last differ from this sampler's, or
            if the ``position * num_replicas`` consumed global indices cannot be split evenly
            over this sampler's ranks.
        """
        missing = {"epoch", "position", "num_replicas", "dataset_len", "seed", "shuffle", "drop_last"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}; pass ResumableSampler.state_dict()")
        for key in ("dataset_len", "seed", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state was saved with {key}={state[key]!r} but this sampler has "
                                 f"{getattr(self, key)!r}; build the sampler with the same settings")
        saved_w, position = int(state["num_replicas"]), int(state["position"])
        saved_len = (self.dataset_len // saved_w if self.drop_last else math.ceil(self.dataset_len / saved_w))
        if not 0 <= position <= saved_len:
            raise ValueError(f"sampler state position {position} is outside [0, {saved_len}]")
        if saved_w != self.num_replicas:
            consumed = position * saved_w  # the first `consumed` global positions of the epoch
            if position == saved_len:  # the epoch was finished
                position = self.num_samples
            elif consumed % self.num_replicas or consumed > self.dataset_len:
                raise ValueError(
                    f"{consumed} consumed indices (saved on {saved_w} ranks) cannot be split evenly "
                    f"over {self.num_replicas} ranks; resume on a world size dividing {consumed}, "
                    "or start the next epoch with set_epoch()"
                )
            else:
                position = consumed // self.num_replicas
        self.epoch, self.position = int(state["epoch"]), position
