r"""Per-rank memory of parameters, gradients and optimizer state, measured and predicted.

**Measured** (:func:`measure_memory`): the bytes of the tensors this rank holds: for an
FSDP2 model the local shards of the ``DTensor`` parameters, of their ``DTensor`` gradients
and of the optimizer state built over them; for a plain or DDP model the full tensors.
Activations, communication buffers (DDP buckets, FSDP's all-gather buffers) and the
allocator's caching are not counted: this is the *model state* of ZeRO's accounting.

**Predicted** (:func:`zero_memory`), ZeRO (Rajbhandari et al. 2020, Sec. 5) for
:math:`\Psi` parameters on :math:`W` ranks, :math:`b` bytes per value and :math:`K` optimizer
values per parameter (Adam: :math:`K = 2`, the two moments; SGD with momentum: 1; plain SGD: 0):

=========  ==================  ==================  ======================
stage      parameters          gradients           optimizer state
=========  ==================  ==================  ======================
0 (DDP)    :math:`\Psi b`      :math:`\Psi b`      :math:`K\Psi b`
1          :math:`\Psi b`      :math:`\Psi b`      :math:`K\Psi b / W`
2          :math:`\Psi b`      :math:`\Psi b / W`  :math:`K\Psi b / W`
3 (FSDP)   :math:`\Psi b / W`  :math:`\Psi b / W`  :math:`K\Psi b / W`
=========  ==================  ==================  ======================

The prediction ignores scalar optimizer state (Adam's ``step`` counters, 4 bytes per
parameter tensor) and the padding of a dim-0 size that ``W`` does not divide; both are in the
measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")
dtensor = import_optional("torch.distributed.tensor")

__all__ = ["MemoryBreakdown", "count_parameters", "measure_memory", "optimizer_states_per_param", "zero_memory"]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes of model state on one rank."""

    params: float
    grads: float
    optimizer: float

    @property
    def total(self) -> float:
        """``params + grads + optimizer``."""
        return self.params + self.grads + self.optimizer

    def as_dict(self, unit: float = 1.0) -> dict[str, float]:
        """The four numbers divided by ``unit`` (e.g. ``2**20`` for MiB)."""
        return {"params": self.params / unit, "grads": self.grads / unit,
                "optimizer": self.optimizer / unit, "total": self.total / unit}


def _local_bytes(t: "torch.Tensor") -> int:
    if isinstance(t, dtensor.DTensor):
        t = t.to_local()
    return t.numel() * t.element_size()


def _tensors(values: Iterable) -> Iterable["torch.Tensor"]:
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v


def count_parameters(model: "torch.nn.Module") -> int:
    """Global number of parameters :math:`\\Psi` (a ``DTensor`` counts its full size), shared ones once."""
    return sum(p.numel() for p in model.parameters())


def measure_memory(model: "torch.nn.Module", optimizer: "torch.optim.Optimizer | None" = None) -> MemoryBreakdown:
    """Bytes of parameters, gradients and optimizer state held by this rank.

    Parameters
    ----------
    model : nn.Module
        Plain, DDP-wrapped or FSDP2-sharded (local shards counted).
    optimizer : torch.optim.Optimizer, optional
        Every tensor in its ``state`` counts (moments, ``step`` counters).

    Gradients that are ``None`` (before the first backward, after ``zero_grad()``) count 0.
    """
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    opt = 0
    if optimizer is not None:
        opt = sum(_local_bytes(t) for state in optimizer.state.values() for t in _tensors(state.values()))
    return MemoryBreakdown(params=float(sum(map(_local_bytes, params))),
                           grads=float(sum(map(_local_bytes, grads))), optimizer=float(opt))


def optimizer_states_per_param(optimizer: "torch.optim.Optimizer") -> int:
    """:math:`K`, optimizer values per parameter for the built-in optimizers.

    ``Adam``/``AdamW``: 2 (``exp_avg``, ``exp_avg_sq``), 3 with ``amsgrad``; ``SGD``: 1 with
    momentum, else 0; ``RMSprop``: 1, +1 with momentum, +1 when centered; ``Adagrad``: 1.

    Raises
    ------
    TypeError
        For another optimizer: pass ``optimizer_states`` to :func:`zero_memory` yourself.
    """
    group = optimizer.param_groups[0]
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return 3 if group.get("amsgrad") else 2
    if isinstance(optimizer, torch.optim.SGD):
        return 1 if group.get("momentum", 0) else 0
    if isinstance(optimizer, torch.optim.RMSprop):
        return 1 + bool(group.get("momentum", 0)) + bool(group.get("centered"))
    if isinstance(optimizer, torch.optim.Adagrad):
        return 1
    raise TypeError(f"unknown state size for {type(optimizer).__name__}; pass optimizer_states= to zero_memory")


def zero_memory(num_params: int, world_size: int, *, stage: int = 3, optimizer_states: int = 2,
                bytes_per_value: int = 4) -> MemoryBreakdown:
    """ZeRO's per-rank model-state bytes (see the module docstring's table).

    Parameters
    ----------
    num_params : int
        :math:`\\Psi`, e.g. :func:`count_parameters`.
    world_size : int
        :math:`W`.
    stage : {0, 1, 2, 3}
        0 is plain data parallelism (DDP), 3 is full sharding (FSDP2 ``fully_shard``).
    optimizer_states : int
        :math:`K`, e.g. :func:`optimizer_states_per_param`.
    bytes_per_value : int
        :math:`b`: 4 for float32 training.
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if num_params < 0 or world_size < 1 or optimizer_states < 0 or bytes_per_value < 1:
        raise ValueError("need num_params >= 0, world_size >= 1, optimizer_states >= 0, bytes_per_value >= 1; got "
                         f"{num_params}, {world_size}, {optimizer_states}, {bytes_per_value}")
    full = float(num_params * bytes_per_value)
    return MemoryBreakdown(
        params=full / world_size if stage >= 3 else full,
        grads=full / world_size if stage >= 2 else full,
        optimizer=optimizer_states * full / world_size if stage >= 1 else optimizer_states * full,
    )
