"""Start ``W`` local ranks of a function, as ``torchrun --nproc_per_node W`` would, and collect results.

For tests and benchmarks on one machine: the processes rendezvous through a ``file://`` store
in a temporary folder (no port to pick, nothing to clean up), each runs
``fn(env, *args)`` with its :class:`~synthfuse.shared.distributed.DistributedEnv`, and what each
returns comes back to the caller. ``fn`` must be importable by name (defined at module level
in an installed module: the ranks are fresh interpreters started with ``spawn``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from synthfuse.shared.backend import import_optional
from synthfuse.shared.distributed._runtime import destroy_distributed, init_distributed
from synthfuse.shared.io import atomic_open

torch = import_optional("torch")
mp = import_optional("torch.multiprocessing")

__all__ = ["spawn_local"]


def _rank_main(rank: int, world_size: int, fn: Callable[..., Any], args: tuple, workdir: str,
               backend: str | None, device: str, threads: int, timeout_s: float) -> None:
    torch.set_num_threads(threads)
    env = init_distributed(backend=backend, device=f"cuda:{rank}" if device == "cuda" else device,
                           init_method=f"file://{workdir}/store", rank=rank, world_size=world_size,
                           local_rank=rank, timeout_s=timeout_s)
    try:
        result = fn(env, *args)
        with atomic_open(Path(workdir) / f"result_{rank}.pt") as fh:
            torch.save(result, fh)
    finally:
        destroy_distributed()


def spawn_local(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    backend: str | None = None,
    device: str | None = None,
    threads_per_rank: int = 1,
    timeout_s: float = 600.0,
) -> list[Any]:
    """Run ``fn(env, *args)`` on ``world_size`` local processes and return their results.

    Parameters
    ----------
    fn : callable
        ``fn(env: DistributedEnv, *args)``, importable by name. Its return value must load with
        ``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts).
    world_size : int
        Number of ranks.
    *args
        Picklable arguments given to every rank.
    backend : str, optional
        Default gloo on CPU, NCCL on CUDA (:func:`~synthfuse.shared.distributed.choose_backend`).
    device : {"cpu", "cuda"}, optional
        ``"cuda"`` puts rank ``r`` on ``cuda:r``; default CPU.
    threads_per_rank : int
        ``torch.set_num_threads`` in each rank (1 avoids oversubscribing small machines).
    timeout_s : float
        The process group's collective timeout: a rank left waiting in a collective that another
        rank never joins fails after this many seconds (a test of collective behaviour sets it low).

    Returns
    -------
    list
        ``[result of rank 0, ..., result of rank W-1]``.

    Raises
    ------
    torch.multiprocessing.ProcessRaisedException
        With the failing rank's traceback when ``fn`` raises on any rank.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    device = device or "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and torch.cuda.device_count() < world_size:
        raise ValueError(f"{world_size} CUDA ranks need {world_size} GPUs; {torch.cuda.device_count()} visible")
    with tempfile.TemporaryDirectory(prefix="synthfuse-spawn-") as workdir:
        mp.spawn(_rank_main, args=(world_size, fn, args, workdir, backend, device, threads_per_rank, timeout_s),
                 nprocs=world_size, join=True, start_method="spawn")
        return [torch.load(os.path.join(workdir, f"result_{r}.pt"), weights_only=True) for r in range(world_size)]
