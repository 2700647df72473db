"""Deterministic seeding, the same or different on every rank.

Every rank must build *identical* initial weights (FSDP shards each rank's copy, DDP checks
they agree), but per-rank randomness (dropout, data augmentation, sampling) must differ between
ranks. So the seed is derived from ``(seed, rank)`` with numpy's
:class:`~numpy.random.SeedSequence` (O'Neill 2015; hashing keeps nearby seeds and ranks
statistically independent, unlike ``seed + rank``)::

    seed_everything(cfg.seed)            # rank 0's stream on every rank -> same weights
    model = build_model(cfg)
    seed_everything(cfg.seed, env.rank)  # now each rank draws its own stream
"""

from __future__ import annotations

import random

import numpy as np

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")

__all__ = ["rank_seed", "seed_everything"]


def rank_seed(seed: int, rank: int = 0) -> int:
    """The 63-bit seed of ``rank`` derived from ``seed``: ``SeedSequence([seed, rank])``.

    Raises
    ------
    ValueError
        If ``seed`` or ``rank`` is negative or not an integer.
    """
    for name, value in (("seed", seed), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    state = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))  # < 2**63: fits torch's int64 seeds


def seed_everything(seed: int, rank: int = 0, *, deterministic: bool = False) -> int:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and all GPUs).

    Parameters
    ----------
    seed : int
        The run's seed.
    rank : int
        0 (the default) gives every rank the same stream; pass the process's rank for
        per-rank streams.
    deterministic : bool
        Also ask torch for deterministic kernels (``torch.use_deterministic_algorithms``,
        cuDNN autotuning off); slower on GPU. On CUDA this needs
        ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment.

    Returns
    -------
    int
        The derived seed, :func:`rank_seed` ``(seed, rank)``.
    """
    derived = rank_seed(seed, rank)
    random.seed(derived)
    np.random.seed(derived % 2**32)  # numpy's legacy seeding takes 32 bits
    torch.manual_seed(derived)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return derived
