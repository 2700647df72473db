"""Deterministic seeding, the same or different on every rank.

Every rank must build *identical* initial weights (FSDP shards each rank's copy, DDP checks
they agree), but per-rank randomness (dropout, data augmentation, sampling) must differ between
ranks. So the seed is derived from ``(seed, rank)`` with numpy's
:class:`~numpy.random.SeedSequence` (O'Neill 2015; hashing keeps nearby seeds and ranks
statistically independent, unlike ``seed + rank``)::

    seed_everything(cfg.seed)            # rank 0's stream on every rank -> same weights
    model = build_model(cfg)
    seed_everything(cfg.seed, env.rank)  # now each rank draws its own stream

With ``step=`` the stream is also a function of the training step
(``SeedSequence([seed, rank, step + 1])``; the 1 keeps step 0 apart from the step-free
stream, as ``SeedSequence`` ignores trailing zeros): reseeding at the start of every step
makes a resumed run draw exactly the numbers of the uninterrupted one without saving any RNG
state, on any number of ranks.
"""

from __future__ import annotations

import random

import numpy as np

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")

__all__ = ["rank_seed", "seed_everything"]


def rank_seed(seed: int, rank: int = 0, *, step: int | None = None) -> int:
    """The 63-bit seed of ``rank`` derived from ``seed``: ``SeedSequence([seed, rank])``.

    With ``step``, the seed of that rank at that training step: ``SeedSequence([seed, rank, step + 1])``
    (``SeedSequence`` ignores trailing zeros, so ``step`` alone would give step 0 the step-free seed).

    Raises
    ------
    ValueError
        If ``seed``, ``rank`` or ``step`` is negative or not an integer.
    """
    entropy = [("seed", seed), ("rank", rank)] + ([("step", step)] if step is not None else [])
    for name, value in entropy:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    words = [int(seed), int(rank)] + ([int(step) + 1] if step is not None else [])
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))  # < 2**63: fits torch's int64 seeds


def seed_everything(seed: int, rank: int = 0, *, step: int | None = None, deterministic: bool = False) -> int:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and all GPUs).

    Parameters
    ----------
    seed : int
        The run's seed.
    rank : int
        0 (the default) gives every rank the same stream; pass the process's rank for
        per-rank streams.
    step : int, optional
        Also derive the stream from the training step (reseed at the start of each step).
    deterministic : bool
        Also ask torch for deterministic kernels (``torch.use_deterministic_algorithms``,
        cuDNN autotuning off); slower on GPU. On CUDA this needs
        ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment.

    Returns
    -------
    int
        The derived seed, :func:`rank_seed` ``(seed, rank, step=step)``.
    """
    derived = rank_seed(seed, rank, step=step)
    random.seed(derived)
    np.random.seed(derived % 2**32)  # numpy's legacy seeding takes 32 bits
    torch.manual_seed(derived)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return derived
