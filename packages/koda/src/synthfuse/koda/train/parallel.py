"""Data-parallel KODA training on ``torch.distributed``: the trainer's parallelism component.

:class:`Parallelism` is everything in :class:`~synthfuse.koda.train.KodaTrainer` that depends
on how many processes run the job, built on :mod:`synthfuse.shared.distributed` (the helpers
KODA and SYNTHE share):

- **process group** -- :func:`~synthfuse.shared.distributed.init_distributed` reads
  ``torchrun``'s environment (gloo on CPU, NCCL on CUDA, ``cuda:LOCAL_RANK``); without a
  launcher the trainer is one plain process;
- **sharding** -- :func:`parallelize`: FSDP2 ``fully_shard`` on every transformer
  :class:`~synthfuse.koda.model.transformer.Block` and on the root, or DDP with the
  communication plan's bucket size; the model file knows nothing about it;
- **batches** -- ``train.batch_size`` is the *global* batch ``B``; a
  :class:`~synthfuse.shared.distributed.ResumableSampler` gives rank ``r`` the positions
  ``r, r + W, ...`` of each epoch's permutation, ``B / W`` per step, so the ``W`` local
  batches together are exactly the batch one process would take;
- **losses** -- a token-averaged loss is a ratio of sums over the whole batch; each rank
  optimizes :math:`\\ell_r = W \\sum_{i \\in r} \\ell_i / N` with :math:`N = \\sum_r n_r` the
  global count (:meth:`Parallelism.global_mean`), so the averaged gradient
  :math:`\\frac1W \\sum_r \\nabla \\ell_r = \\nabla \\frac1N \\sum_i \\ell_i` is the one-process
  gradient even when ranks hold different numbers of unpadded tokens;
- **randomness** -- reseeded at every step from ``(seed, rank, step)`` (resumes draw what the
  uninterrupted run drew, on any world size); K-FAC's sampled targets come from
  :func:`~synthfuse.koda.optim.keyed_categorical`, keyed by example, so they do not depend
  on the split at all;
- **faults** -- :meth:`Parallelism.fault_point`, a test hook that kills one rank once.

Equal to one process up to float rounding: CE, structure loss, SGD/AdamW/K-FAC updates,
gradient clipping. Statistically but not bitwise equal: Switch MoE (Gumbel routing noise per
rank, capacity and balance loss per rank's tokens, as in distributed Switch training, Fedus
et al. 2021) and the WGAN-GP critic (per-rank noise; its gradients are DDP-averaged).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from torch import Tensor, nn

from synthfuse.koda.model.transformer import Block
from synthfuse.koda.topology_model import NetworkModel, fit_ring_allreduce, time_allreduce
from synthfuse.koda.train.config import CommConfig, ParallelConfig
from synthfuse.koda.train.data import Batch
from synthfuse.shared.distributed import (
    DistributedEnv, ResumableSampler, all_reduce_mean, all_reduce_sum, apply_ddp, apply_fsdp, init_distributed,
    seed_everything,
)
from synthfuse.shared.io import atomic_write_text

__all__ = ["FAULT_RANK_ENV", "FAULT_STEP_ENV", "Parallelism", "parallelize", "shard_rows"]

#: ``SYNTHFUSE_FAULT_AT_STEP=k``: a rank kills itself (SIGKILL) right after completing step ``k``, once per out_dir.
FAULT_STEP_ENV = "SYNTHFUSE_FAULT_AT_STEP"
#: Which rank :data:`FAULT_STEP_ENV` kills (default: the last one).
FAULT_RANK_ENV = "SYNTHFUSE_FAULT_RANK"

#: Message sizes (bytes) timed by ``parallel.measure_comm``: 1 KiB .. 4 MiB.
MEASURE_BYTES = tuple(1 << e for e in range(10, 23, 3))


def _check_strategy(config: ParallelConfig, env: DistributedEnv) -> None:
    if config.strategy == "none" and env.world_size > 1:
        raise ValueError(f"parallel.strategy is 'none' but the job has {env.world_size} processes; "
                         "use 'fsdp' or 'ddp', or launch one process")


def parallelize(model: nn.Module, config: ParallelConfig, env: DistributedEnv, *,
                bucket_bytes: float | None = None) -> nn.Module:
    """Apply ``config.strategy`` to a KODA model; return the module to call for forward passes.

    ``fsdp``: :func:`~synthfuse.shared.distributed.apply_fsdp` on every
    :class:`~synthfuse.koda.model.transformer.Block` and on the root (embedding, ball
    projection, structural biases, final norm and head form the root unit), in place -- the
    returned module is ``model``. ``ddp``: :func:`~synthfuse.shared.distributed.apply_ddp`
    with ``bucket_cap_mb = bucket_bytes / 2**20``; the returned wrapper runs the forward, the
    plain ``model`` keeps its parameters. Without a process group (or with ``none``) the model
    is only moved to the device. Build optimizers after this call.

    Raises
    ------
    ValueError
        For ``strategy: none`` on more than one process.
    """
    _check_strategy(config, env)
    model = model.to(env.device)
    if not env.is_distributed or config.strategy == "none":
        return model
    if config.strategy == "fsdp":
        return apply_fsdp(model, Block, reshard_after_forward=config.reshard_after_forward,
                          balanced=config.balanced_shards)
    kwargs = {"bucket_cap_mb": bucket_bytes / 2**20} if bucket_bytes else {}
    return apply_ddp(model, env.device, **kwargs)


def shard_rows(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rows ``rank, rank + W, ...`` of ``batch``.

    A rank without a row gets row 0 with nothing to score (``loss_mask`` and ``program``
    cleared): it must still run the forward pass, because a sharded model's forward is
    collective.
    """
    rows = torch.arange(rank, batch.inputs.shape[0], world_size)
    empty = len(rows) == 0
    if empty:
        rows = torch.zeros(1, dtype=torch.long)
    part = Batch(*(getattr(batch, f)[rows] for f in batch.__dataclass_fields__))
    if empty:
        part.loss_mask.zero_()
        part.program.zero_()
    return part


class Parallelism:
    """Process group, sharding, per-rank batches and cross-rank reductions of one training job.

    Parameters
    ----------
    config : ParallelConfig
    device : str
        ``train.device``: ``cpu``, ``cuda`` (rank ``r`` of a node uses ``cuda:LOCAL_RANK``) or
        ``cuda:k`` (one process only).

    Attributes
    ----------
    env : DistributedEnv
        Rank, world size, backend and device of this process.
    """

    def __init__(self, config: ParallelConfig, device: str) -> None:
        self.config = config
        wanted = torch.device(device)
        explicit = wanted.type != "cuda" or wanted.index is not None
        backend = None if config.backend == "auto" else config.backend
        self.env = init_distributed(backend=backend, device=wanted if explicit else None)
        if wanted.type == "cuda" and wanted.index is not None and self.env.world_size > 1:
            raise ValueError(f"train.device {device!r} names one GPU for {self.env.world_size} processes; "
                             "use device 'cuda' (each rank takes cuda:LOCAL_RANK)")
        if self.env.device.type != wanted.type:
            raise ValueError(f"train.device is {device!r} but this process got {self.env.device}; "
                             "is CUDA available here?")
        _check_strategy(config, self.env)  # before the corpus and model are built

    # --- who am I -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.env.device

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def is_distributed(self) -> bool:
        """True when a process group exists: sharded checkpoints, collective reductions."""
        return self.env.is_distributed

    @property
    def is_main(self) -> bool:
        """Rank 0: logs, progress bar, shared files."""
        return self.env.is_main

    # --- model --------------------------------------------------------------------------------
    def shard(self, model: nn.Module, *, bucket_bytes: float | None = None) -> nn.Module:
        """:func:`parallelize` with this job's config and process group."""
        return parallelize(model, self.config, self.env, bucket_bytes=bucket_bytes)

    def replicate(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, DDP-wrapped in a process group (small side models: the critic)."""
        module = module.to(self.device)
        return apply_ddp(module, self.device) if self.is_distributed and self.world_size > 1 else module

    def network(self, comm: CommConfig) -> tuple[NetworkModel, int]:
        """The link model and world size the communication plan is made for.

        One process: the ``comm`` section as written. A process group: its real world size, and
        with ``parallel.measure_comm`` the latency and bandwidth fitted
        (:func:`~synthfuse.koda.topology_model.fit_ring_allreduce`) to all-reduces timed on the
        group itself (collective; the same numbers on every rank).
        """
        configured = NetworkModel(comm.alpha, comm.beta, comm.gamma, comm.beta_byte)
        if not self.is_distributed or self.world_size == 1:
            return configured, comm.world_size
        if not self.config.measure_comm:
            return configured, self.world_size
        times = time_allreduce(MEASURE_BYTES, repeats=5)
        return NetworkModel.from_fit(fit_ring_allreduce(MEASURE_BYTES, times, self.world_size)), self.world_size

    # --- data and randomness ------------------------------------------------------------------
    def local_batch_size(self, global_batch: int) -> int:
        """``B / W``; ``ValueError`` unless ``W`` divides ``B``."""
        if global_batch % self.world_size:
            raise ValueError(f"train.batch_size {global_batch} is the global batch and must be a multiple of "
                             f"the {self.world_size} processes")
        return global_batch // self.world_size

    def sampler(self, n: int, seed: int) -> ResumableSampler:
        """This rank's share of every epoch (``drop_last``: each rank sees ``n // W`` examples)."""
        return ResumableSampler(n, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed,
                                drop_last=True)

    def seed_step(self, seed: int, step: int) -> None:
        """Seed ``random``, numpy and torch from ``(seed, rank, step)`` (per-rank, per-step streams)."""
        seed_everything(seed, self.rank, step=step)

    # --- reductions ---------------------------------------------------------------------------
    def global_mean(self, total: Tensor, count: Tensor | int) -> Tensor:
        """This rank's share :math:`W\\,\\text{total} / N` of a mean over the global batch.

        ``total``: the sum of the per-item losses on this rank; ``count``: its number of items;
        :math:`N` is the count summed over ranks. The ranks' values average (as gradients do)
        to the global mean; on one process this is ``total / count``. 0 when ``N = 0``.
        """
        count = torch.as_tensor(count, dtype=total.dtype, device=total.device)
        n = all_reduce_sum(count)
        return total * self.world_size / n.clamp_min(1)

    def mean_over_ranks(self, values: dict[str, Tensor | float]) -> dict[str, float]:
        """Average logged scalars over ranks (one all-reduce); the per-rank shares of
        :meth:`global_mean` average to the global value."""
        if not values:
            return {}
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device).detach().reshape(())
                               for v in values.values()])
        return dict(zip(values, all_reduce_mean(stacked).tolist()))

    def sum_over_ranks(self, value: Tensor) -> Tensor:
        """Sum over ranks (a copy on one process)."""
        return all_reduce_sum(value)

    # --- faults -------------------------------------------------------------------------------
    def fault_point(self, step: int, out_dir: Path) -> None:
        """Test hook: with ``SYNTHFUSE_FAULT_AT_STEP=k``, rank ``SYNTHFUSE_FAULT_RANK`` (default the
        last) dies by SIGKILL right after completing step ``k`` -- once: a marker file in
        ``out_dir`` keeps the restarted job from dying again. Without the variable it does nothing.
        """
        at = os.environ.get(FAULT_STEP_ENV)
        if at is None or int(at) != step:
            return
        victim = int(os.environ.get(FAULT_RANK_ENV, self.world_size - 1))
        marker = Path(out_dir) / f".fault-injected-step-{step}"
        if self.rank != victim or marker.exists():
            return
        atomic_write_text(marker, f"rank {self.rank} killed after step {step}\n")
        os.kill(os.getpid(), signal.SIGKILL)
