"""The trainer's communication plan, from the topology model, and delayed gradient application.

For the configured deployment (``p`` ranks, possibly a k-ary n-cube torus whose ring
embedding has ``h`` hops per step) and link costs, :func:`plan_communication` picks the
gradient bucket size :math:`b^\\star = \\sqrt{M p L / \\beta_B}`
(:func:`~synthfuse.koda.topology_model.optimal_bucket_bytes`), prices the all-reduce of the
whole gradient in those buckets with the ring model, and -- when the all-reduce is overlapped
with later steps (``delayed``) -- derives the staleness
:math:`\\tau = \\lceil T_{\\text{comm}} / T_{\\text{step}} \\rceil` and the learning-rate factor
:math:`\\sin(\\pi / (2(2\\tau + 1)))` that keeps delayed gradient descent stable.
:class:`DelayedGradients` then applies every gradient ``tau`` steps after it was computed,
reproducing the optimization of an overlapped all-reduce in one process.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import nn

from synthfuse.koda.topology_model import (
    NetworkModel, Torus, delayed_lr_scale, optimal_bucket_bytes, staleness_steps,
)

__all__ = ["CommPlan", "DelayedGradients", "plan_communication"]


@dataclass(frozen=True)
class CommPlan:
    """What the topology model decided for a run.

    Attributes
    ----------
    world_size, ring_hops : int
    grad_bytes : int
        Bytes of one full gradient.
    bucket_bytes : float
        Gradient bucket size (e.g. DDP's ``bucket_cap_mb = bucket_bytes / 2**20``).
    n_buckets : int
    allreduce_seconds : float
        Predicted time to all-reduce the whole gradient in those buckets.
    staleness : int
        Steps a gradient is applied late (0 unless ``delayed``).
    lr_scale : float
        Learning-rate factor for that staleness.
    """

    world_size: int
    ring_hops: int
    grad_bytes: int
    bucket_bytes: float
    n_buckets: int
    allreduce_seconds: float
    staleness: int
    lr_scale: float

    def to_dict(self) -> dict:
        """Plain dict (written to ``comm_plan.json``)."""
        return asdict(self)


def plan_communication(grad_bytes: int, *, world_size: int = 1, torus: Torus | None = None,
                       network: NetworkModel, step_seconds: float, delayed: bool) -> CommPlan:
    """Bucket size, all-reduce time, staleness and LR scale for ``grad_bytes`` of gradient.

    ``torus`` (if given) fixes the world size to its node count and the per-step hops to its
    ring embedding's (:meth:`Torus.ring_hops`); otherwise the ranks sit one hop apart.
    """
    if grad_bytes < 1:
        raise ValueError(f"grad_bytes must be >= 1, got {grad_bytes}")
    p, hops = (torus.num_nodes, torus.ring_hops()) if torus is not None else (world_size, 1)
    bucket = optimal_bucket_bytes(grad_bytes, p, network, hops=hops)
    n_buckets = math.ceil(grad_bytes / bucket - 1e-9)
    sizes = [bucket] * (n_buckets - 1) + [grad_bytes - bucket * (n_buckets - 1)]
    comm = float(sum(network.ring_allreduce_time(s, p, hops) for s in sizes))
    tau = staleness_steps(comm, step_seconds) if delayed else 0
    return CommPlan(p, hops, int(grad_bytes), bucket, n_buckets, comm, tau, delayed_lr_scale(tau))


class DelayedGradients:
    """Apply each step's gradient ``delay`` steps later (a FIFO of gradient snapshots).

    Call :meth:`exchange` after ``backward()``: it stores the fresh gradients and puts the
    gradients of ``delay`` steps ago into ``.grad``, returning ``False`` while the queue is
    still filling (then skip the optimizer step). ``delay = 0`` is the identity.
    """

    def __init__(self, params: Iterable[nn.Parameter], delay: int) -> None:
        if isinstance(delay, bool) or int(delay) != delay or delay < 0:
            raise ValueError(f"delay must be an integer >= 0, got {delay!r}")
        self.params = [p for p in params if p.requires_grad]
        self.delay = int(delay)
        self.queue: deque[list[torch.Tensor | None]] = deque()

    @torch.no_grad()
    def exchange(self) -> bool:
        """Queue the fresh ``.grad`` and load the one from ``delay`` steps ago; ``False`` while filling."""
        if self.delay == 0:
            return True
        self.queue.append([None if p.grad is None else p.grad.detach().clone() for p in self.params])
        if len(self.queue) <= self.delay:
            return False
        for p, g in zip(self.params, self.queue.popleft()):
            p.grad = g
        return True

    def state_dict(self) -> dict:
        """The queued gradients (for checkpoints)."""
        return {"delay": self.delay, "queue": [list(entry) for entry in self.queue]}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the delay must match."""
        if int(state["delay"]) != self.delay:
            raise ValueError(f"checkpoint was made with gradient delay {state['delay']}, this run uses {self.delay}")
        self.queue = deque(list(entry) for entry in state["queue"])
