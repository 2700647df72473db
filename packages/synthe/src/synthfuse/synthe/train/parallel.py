r"""How a SYNTHE training step is spread over processes, micro-batches and precision.

Built on :mod:`synthfuse.shared.distributed` (the helpers KODA and SYNTHE share):

- **process group** -- :func:`join` calls
  :func:`~synthfuse.shared.distributed.init_distributed` when ``train.parallel`` is ``ddp`` or
  ``fsdp`` or the job was launched with ``WORLD_SIZE > 1`` (``torchrun``): gloo on CPU, NCCL
  on CUDA (``cuda:LOCAL_RANK``). Without a launcher it is one plain process.
- **sharding** -- :func:`prepare_model`: optional activation checkpointing of every block
  (``torch.utils.checkpoint``, non-reentrant: each block's activations are recomputed in the
  backward pass instead of stored), optional ``torch.compile`` of every block, then FSDP2
  (:func:`~synthfuse.shared.distributed.apply_fsdp` with the units of :func:`fsdp_units`
  plus the root) or DDP.
- **rows** -- ``train.batch_size`` is the *global* batch ``B``; batch ``k`` depends only on
  ``(seed, split, k)``, so rank ``r`` of ``W`` takes rows ``r B / W .. (r + 1) B / W`` of it
  (:func:`rank_rows`, read with the data's ``batch_rows`` when it has one) and cuts them into
  ``grad_accum`` micro-batches of ``B / (W A)`` rows.
- **losses** -- a mean over scored tokens (targets ``!= -100``) is a ratio of sums over the
  whole batch. Micro-batch ``i`` of rank ``r`` with ``n_{ri}`` scored tokens and local mean
  :math:`\bar\ell_{ri}` contributes :math:`W n_{ri} \bar\ell_{ri} / N`, with
  :math:`N = \sum_{r,i} n_{ri}` counted over all ranks before the forward passes
  (:func:`loss_weights`). The micro-batch gradients add up on each rank and DDP/FSDP average
  them over ranks, so the step's gradient is that of :math:`\frac1N \sum \ell` -- the loss
  one process computes on the whole batch. The router's auxiliary objective (a mean over
  the scored positions of every ``router_aux_stride``-th column) is weighted the same way
  with its own count.
- **precision** -- :func:`autocast_dtype`: bf16 autocast on CUDA (``auto`` when the GPU
  supports bf16, or ``bf16``), fp32 everywhere else; parameters, optimizer state and the
  gradient reduction stay fp32.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
from torch import Tensor, nn

from synthfuse.shared.distributed import DistributedEnv, apply_ddp, apply_fsdp, init_distributed
from synthfuse.synthe.train.config import TrainConfig

__all__ = ["autocast", "autocast_dtype", "fsdp_units", "join", "loss_weights", "micro_batches", "prepare_model",
           "rank_rows",
           "read_rows", "scored_counts"]


def join(train: TrainConfig, device: torch.device) -> DistributedEnv:
    """This process's place in the job; joins the process group when the run is parallel.

    Raises
    ------
    ValueError
        ``parallel: none`` with several processes, or one GPU (``cuda:k``) named for several.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if train.parallel == "none" and not launched and not torch.distributed.is_initialized():
        return DistributedEnv(device=device)
    one_gpu = train.device.startswith("cuda:")
    env = init_distributed(device=device if device.type != "cuda" or one_gpu else None)  # None: cuda:LOCAL_RANK
    if env.world_size > 1 and train.parallel == "none":
        raise ValueError(f"train.parallel is 'none' but the job has {env.world_size} processes; "
                         "pass --parallel fsdp or ddp, or launch one process")
    if env.world_size > 1 and one_gpu:
        raise ValueError(f"train.device {train.device!r} names one GPU for {env.world_size} processes; "
                         "use device cuda (each rank takes cuda:LOCAL_RANK)")
    return env


def prepare_model(model: nn.Module, train: TrainConfig, env: DistributedEnv) -> tuple[nn.Module, nn.Module]:
    """Checkpoint, compile and shard ``model`` per ``train``; returns ``(model, net)``.

    ``model`` keeps the parameters (FSDP2 shards it in place); ``net`` runs the forward passes
    (``model`` itself, or its DDP wrapper). The blocks (``model.blocks``) are wrapped with
    ``checkpoint_wrapper`` for activation checkpointing -- its state-dict hooks keep the
    parameter names, so checkpoints load either way; FSDP2 shards the :func:`fsdp_units`.
    """
    model = model.to(env.device)
    if train.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper

        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    if train.compile:
        for block in model.blocks:
            block.compile()
    if not env.is_distributed or train.parallel == "none":
        return model, model
    if train.parallel == "fsdp":
        # The layers return their recurrent state as views (slices of windows); nothing writes to
        # them in place, so FSDP2's warning about in-place ops on views does not apply.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
        return apply_fsdp(model, fsdp_units(model)), model
    return model, apply_ddp(model, env.device)


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The FSDP2 communication units: every block (of SYNTHE or of the Transformer baseline).

    A SYNTHE block builds its initial state (the Kalman filters' stationary variance, read from
    its parameters) inside its own forward pass, after FSDP2 has gathered them, and calls its
    layers (the Kalman layer through ``filter``) from there; the embedding, memory hub, exit
    heads and final norm form the root unit.
    """
    return list(model.blocks)


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.autocast`` on ``device``: bf16 or ``None`` (fp32).

    ``auto``: bf16 on a CUDA device that supports it, else fp32. ``bf16``: bf16, which needs
    CUDA (``ValueError`` elsewhere: CPU training runs in fp32). ``off``: fp32.
    """
    if mode == "off":
        return None
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if mode == "bf16" and not cuda_bf16:
        raise ValueError(f"train.autocast 'bf16' needs a CUDA device with bf16 support; this run is on {device}. "
                         "Use autocast 'auto' or 'off' (CPU training runs in fp32)")
    return torch.bfloat16 if cuda_bf16 else None


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is ``None``."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def rank_rows(batch_size: int, world_size: int, rank: int, grad_accum: int = 1) -> slice:
    """Rows ``r B / W .. (r + 1) B / W`` of the global batch.

    Raises
    ------
    ValueError
        Unless ``W * grad_accum`` divides ``B``.
    """
    if batch_size % (world_size * grad_accum):
        raise ValueError(f"train.batch_size {batch_size} is the global batch: it must be a multiple of "
                         f"world_size * grad_accum = {world_size} * {grad_accum}")
    local = batch_size // world_size
    return slice(rank * local, (rank + 1) * local)


def read_rows(data, split: str, batch_size: int, generator: torch.Generator, rows: slice) -> tuple[Tensor, Tensor]:
    """Rows ``rows`` of the global batch drawn by ``generator``: the data's ``batch_rows`` when it
    has one (reads only those rows), else a slice of ``batch``."""
    if hasattr(data, "batch_rows"):
        return data.batch_rows(split, batch_size, generator, rows)
    x, y = data.batch(split, batch_size, generator)
    return x[rows], y[rows]


def micro_batches(x: Tensor, y: Tensor, grad_accum: int) -> list[tuple[Tensor, Tensor]]:
    """``grad_accum`` consecutive, equal row blocks of ``(x, y)``."""
    return list(zip(x.chunk(grad_accum), y.chunk(grad_accum)))


def scored_counts(targets: Tensor, aux_stride: int) -> Tensor:
    """``[scored tokens, scored tokens in every aux_stride-th column]`` of ``targets`` (int64)."""
    return torch.stack([(targets != -100).sum(), (targets[:, ::aux_stride] != -100).sum()])


def loss_weights(local: Tensor, total: Tensor, world_size: int) -> tuple[float, float]:
    """Weights of a micro-batch's mean LM loss and mean auxiliary loss.

    ``local``: its :func:`scored_counts`; ``total``: those counts summed over every micro-batch
    of every rank. Weight :math:`W n / N` (0 when nothing is scored), computed in double
    precision so one process without accumulation gets exactly 1.
    """
    n, n_aux = (int(v) for v in local.tolist())
    big_n, big_aux = (int(v) for v in total.tolist())
    return (world_size * n / big_n if n else 0.0), (world_size * n_aux / big_aux if n_aux else 0.0)
