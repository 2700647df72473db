"""The process group: which backend, which device, who am I (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

:func:`init_distributed` is the one call a training script makes first. Under ``torchrun`` it
reads the launcher's environment; in a test it takes an explicit ``rank``, ``world_size`` and a
``file://`` rendezvous; with neither it returns a single-process :class:`DistributedEnv` and
creates no process group, so the same script runs unchanged on a laptop.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")
dist = import_optional("torch.distributed")

__all__ = [
    "DistributedEnv", "all_reduce_mean", "all_reduce_sum", "barrier", "choose_backend", "destroy_distributed",
    "init_distributed",
]

_BACKEND_FOR_DEVICE = {"cpu": "gloo", "cuda": "nccl"}


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in the job.

    Attributes
    ----------
    rank, world_size : int
        Global rank and number of processes (0 and 1 without a process group).
    local_rank : int
        Rank on this machine; picks the GPU (``cuda:local_rank``).
    backend : str or None
        ``"gloo"``, ``"nccl"``, ... or ``None`` when no process group exists.
    device : torch.device
        The device this rank computes on (default CPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", torch.device("cpu" if self.device is None else self.device))

    @property
    def is_distributed(self) -> bool:
        """True when a process group exists (even one of size 1 under ``torchrun``)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """True on global rank 0: the rank that logs and writes shared files."""
        return self.rank == 0


def choose_backend(device: "str | torch.device") -> str:
    """The collective backend for ``device``: ``"gloo"`` on CPU, ``"nccl"`` on CUDA.

    Raises
    ------
    ValueError
        For another device type (pass ``backend=`` to :func:`init_distributed` yourself).
    RuntimeError
        For CUDA when this torch build has no NCCL.
    """
    kind = torch.device(device).type
    if kind not in _BACKEND_FOR_DEVICE:
        raise ValueError(
            f"no default collective backend for device type {kind!r}; known: "
            f"{_BACKEND_FOR_DEVICE}; pass backend= explicitly"
        )
    backend = _BACKEND_FOR_DEVICE[kind]
    if backend == "nccl" and not dist.is_nccl_available():
        raise RuntimeError("this torch build has no NCCL; use backend='gloo' or a CUDA build of torch")
    return backend


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _elastic_agent_store(world_size: int, timeout_s: float) -> Any:
    """torchrun's agent store with a per-attempt key prefix, or ``None`` outside torchelastic.

    Under ``torchrun`` (c10d rendezvous) the workers of every restart attempt share the
    agent's TCP store. Without a prefix, a restarted worker can read the address a dead peer
    of the previous attempt left there and fail to connect, so ``--max-restarts`` never
    recovers a gloo job (pytorch/pytorch#135712). Keys go under
    ``synthfuse/attempt_<TORCHELASTIC_RESTART_COUNT>/``.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = _env_int("TORCHELASTIC_RESTART_COUNT") or 0
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                           is_master=False, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.PrefixStore(f"synthfuse/attempt_{attempt}", client)  # keys: <prefix>/<key>


def _default_device(local_rank: int) -> "torch.device":
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _env_of_current_group(device: "torch.device | None") -> DistributedEnv:
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = _env_int("LOCAL_RANK")
    local_rank = rank if local_rank is None else local_rank
    return DistributedEnv(rank, world_size, local_rank, dist.get_backend(),
                          torch.device(device) if device is not None else _default_device(local_rank))


def init_distributed(
    *,
    backend: str | None = None,
    device: "str | torch.device | None" = None,
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    store: Any = None,
    timeout_s: float = 600.0,
) -> DistributedEnv:
    """Join the process group described by the arguments or by ``torchrun``'s environment.

    Parameters
    ----------
    backend : str, optional
        Collective backend; default :func:`choose_backend` of ``device`` (gloo on CPU, NCCL on
        CUDA). ``"fake"`` (with ``store=FakeStore()``) builds a single-process stand-in for a
        large world, for memory accounting.
    device : str or torch.device, optional
        Default ``cuda:LOCAL_RANK`` when CUDA is available (also made the current device),
        else ``cpu``.
    init_method : str, optional
        Rendezvous URL: ``"env://"`` (default: ``MASTER_ADDR``/``MASTER_PORT``, set by
        torchrun), ``"file:///shared/path"`` or ``"tcp://host:port"``. Under torchrun's agent
        store the keys of each restart attempt get their own prefix, so ``--max-restarts``
        can bring a job back after a rank died.
    rank, world_size, local_rank : int, optional
        Override ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (local rank defaults to ``rank``).
    store : torch.distributed.Store, optional
        A ready key-value store instead of ``init_method``.
    timeout_s : float
        Collective timeout in seconds.

    Returns
    -------
    DistributedEnv
        With ``backend=None`` (no process group) when neither arguments nor ``RANK`` /
        ``WORLD_SIZE`` describe a group: a plain single-process run. If a process group
        already exists it is described, not re-created.

    Raises
    ------
    ValueError
        When ``rank`` comes without ``world_size`` (or the reverse), ``rank`` is outside
        ``[0, world_size)``, or ``env://`` lacks ``MASTER_ADDR``/``MASTER_PORT``.
    """
    if dist.is_initialized():
        return _env_of_current_group(device)
    rank = _env_int("RANK") if rank is None else rank
    world_size = _env_int("WORLD_SIZE") if world_size is None else world_size
    if rank is None and world_size is None and init_method is None and store is None:
        local = 0 if local_rank is None else local_rank
        return DistributedEnv(0, 1, local, None, torch.device(device) if device else _default_device(local))
    if rank is None or world_size is None:
        raise ValueError(
            f"a process group needs both rank and world_size (got rank={rank}, "
            f"world_size={world_size}); launch with torchrun or pass both"
        )
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size) with world_size >= 1; "
                         f"got rank={rank}, world_size={world_size}")
    if store is not None and init_method is not None:
        raise ValueError("pass either store= or init_method=, not both")
    if store is None and init_method in (None, "env://"):
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(
                f"init_method 'env://' needs {' and '.join(missing)} in the environment "
                "(torchrun sets them); or pass init_method='file:///path' / 'tcp://host:port'"
            )
        init_method = "env://"
        store = _elastic_agent_store(world_size, timeout_s)
        if store is not None:
            init_method = None
    if local_rank is None:
        local_rank = _env_int("LOCAL_RANK")
        local_rank = rank if local_rank is None else local_rank
    device = torch.device(device) if device is not None else _default_device(local_rank)
    backend = choose_backend(device) if backend is None else backend
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if backend == "nccl":
            kwargs["device_id"] = device  # eager NCCL communicator on the right GPU
    dist.init_process_group(
        backend, init_method=None if store is not None else init_method, store=store,
        rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s), **kwargs,
    )
    return DistributedEnv(rank, world_size, local_rank, backend, device)


def destroy_distributed() -> None:
    """Tear down the default process group (no-op without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(value: "torch.Tensor") -> "torch.Tensor":
    """The mean of ``value`` over ranks, as a new tensor (a copy of ``value`` on one process).

    Used to log the global loss: with equal local batch sizes, the mean of the per-rank mean
    losses equals the mean loss over the global batch.
    """
    out = value.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_reduce_sum(value: "torch.Tensor") -> "torch.Tensor":
    """The sum of ``value`` over ranks, as a new tensor (a copy of ``value`` on one process).

    E.g. the number of loss tokens in the global batch, to normalise a per-token loss by the
    global count rather than by each rank's own.
    """
    out = value.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
