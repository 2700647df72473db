"""Rank-aware logging: every line says which rank wrote it; by default only rank 0 speaks."""

from __future__ import annotations

import logging

__all__ = ["rank_logger"]


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, world_size: int, all_ranks: bool):
        super().__init__()
        self.rank, self.world_size, self.all_ranks = rank, world_size, all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank, record.world_size = self.rank, self.world_size
        # warnings and errors always pass: a failing rank must be heard
        return self.all_ranks or self.rank == 0 or record.levelno >= logging.WARNING


def rank_logger(
    name: str, rank: int, world_size: int, *, all_ranks: bool = False, level: int = logging.INFO
) -> logging.Logger:
    """A logger named ``"<name>.rank<rank>"`` that prefixes lines with ``[rank r/W]``.

    Parameters
    ----------
    name : str
        Logger name prefix (e.g. ``"synthfuse.koda.train"``).
    rank, world_size : int
        From :class:`~synthfuse.shared.distributed.DistributedEnv`.
    all_ranks : bool
        Emit INFO/DEBUG records on every rank (default: on rank 0 only; WARNING and above
        always pass).
    level : int
        Level of the returned logger.

    The logger has one stream handler (stderr) formatted
    ``"%(asctime)s [rank r/W] %(levelname)s %(message)s"`` and does not propagate, so lines
    are not printed twice; calling it again returns the same configured logger.
    """
    logger = logging.getLogger(f"{name}.rank{rank}")
    logger.setLevel(level)
    logger.propagate = False
    for f in list(logger.filters):
        logger.removeFilter(f)
    logger.addFilter(_RankFilter(rank, world_size, all_ranks))
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s [rank %(rank)d/%(world_size)d] %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
