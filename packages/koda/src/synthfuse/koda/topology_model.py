"""A communication cost model: k-ary n-dimensional torus, link latency, ring all-reduce.

Topology. The k-ary n-cube torus has :math:`k^n` nodes with coordinates in
:math:`\\mathbb{Z}_k^n`, each linked to its :math:`\\pm 1` neighbours in every dimension
(with wrap-around). The hop distance is
:math:`h(u, v) = \\sum_{i=1}^{n} \\min(|u_i - v_i|,\\, k - |u_i - v_i|)`, so the diameter is
:math:`n\\lfloor k/2 \\rfloor` and the mean distance to a uniformly random node is
:math:`n k/4` for even ``k`` and :math:`n (k^2 - 1)/(4k)` for odd ``k`` (Dally & Towles,
*Principles and Practices of Interconnection Networks*, 2004, ch. 5). :class:`Torus` also
computes them by breadth-first search, as a check.

Latency. One message over ``h`` hops behind ``q`` queued messages costs
:math:`L(h, q) = \\alpha + \\beta h + \\gamma q`, plus :math:`m\\,\\beta_B` for ``m`` bytes
(:math:`\\beta_B` = 1/bandwidth).

Ring all-reduce (Patarasuk & Yuan 2009; Thakur, Rabenseifner & Gropp 2005). ``p`` ranks
on a ring do a reduce-scatter then an all-gather, :math:`2(p-1)` steps that each move
:math:`m/p` bytes to the next rank:

.. math:: T(m) = 2(p-1)\\,\\bigl(L(h_{\\text{ring}}, q) + \\beta_B\\, m / p\\bigr).

:func:`fit_ring_allreduce` fits the per-step latency :math:`\\alpha_{\\text{step}} = L(h, q)` and
:math:`\\beta_B` by least squares to measured times (:func:`time_allreduce` on a live process
group, e.g. the trainer's with ``parallel.measure_comm``; :func:`measure_gloo_allreduce` starts
local gloo processes for it), and reports :math:`R^2`. The fitted model then chooses gradient bucket sizes
(:func:`optimal_bucket_bytes`) and the learning-rate scale of delayed updates
(:func:`staleness_steps`, :func:`delayed_lr_scale`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "AllReduceFit", "NetworkModel", "Torus", "delayed_lr_scale", "fit_ring_allreduce",
    "measure_gloo_allreduce", "optimal_bucket_bytes", "staleness_steps", "time_allreduce",
]


@dataclass(frozen=True)
class Torus:
    """The k-ary n-dimensional torus (k-ary n-cube); nodes are numbered in mixed radix ``k``.

    Parameters
    ----------
    k : int
        Nodes per ring (>= 2).
    n : int
        Dimensions (>= 1).
    """

    k: int
    n: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"torus radix k must be an integer >= 2, got {self.k!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"torus dimension n must be an integer >= 1, got {self.n!r}")

    @property
    def num_nodes(self) -> int:
        """:math:`k^n`."""
        return self.k**self.n

    def coords(self, node: np.ndarray | int) -> np.ndarray:
        """Coordinates in :math:`\\mathbb{Z}_k^n` of node ids ``node`` (any shape) -> shape (..., n)."""
        node = np.asarray(node, dtype=np.int64)
        if node.size and (node.min() < 0 or node.max() >= self.num_nodes):
            raise ValueError(f"node ids must lie in [0, {self.num_nodes})")
        return (node[..., None] // self.k ** np.arange(self.n)) % self.k

    def hop_distance(self, u: np.ndarray | int, v: np.ndarray | int) -> np.ndarray:
        """Closed form :math:`\\sum_i \\min(|u_i - v_i|, k - |u_i - v_i|)`, broadcast over ``u``, ``v``."""
        diff = np.abs(self.coords(u) - self.coords(v))
        return np.minimum(diff, self.k - diff).sum(axis=-1)

    def distance_matrix(self) -> np.ndarray:
        """All-pairs hop distances, shape (N, N)."""
        ids = np.arange(self.num_nodes)
        return self.hop_distance(ids[:, None], ids[None, :])

    def neighbors(self, node: int) -> list[int]:
        """The distinct nodes one hop from ``node`` (``2n`` of them for ``k > 2``)."""
        c = self.coords(node)
        out = set()
        for dim in range(self.n):
            for step in (-1, 1):
                nb = c.copy()
                nb[dim] = (nb[dim] + step) % self.k
                out.add(int((nb * self.k ** np.arange(self.n)).sum()))
        return sorted(out)

    def bfs_distances(self, source: int) -> np.ndarray:
        """Hop distances from ``source`` by breadth-first search over :meth:`neighbors`."""
        dist = np.full(self.num_nodes, -1, dtype=np.int64)
        dist[source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            for v in self.neighbors(u):
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        return dist

    def mean_hop(self) -> float:
        """Mean hop distance to a uniformly random node: :math:`nk/4` (even k), :math:`n(k^2-1)/(4k)` (odd k)."""
        k = self.k
        return self.n * (k / 4 if k % 2 == 0 else (k * k - 1) / (4 * k))

    def diameter(self) -> int:
        """:math:`n \\lfloor k/2 \\rfloor`."""
        return self.n * (self.k // 2)

    def ring_order(self) -> np.ndarray:
        """A ring through all nodes: the reflected k-ary Gray code (consecutive nodes 1 hop apart)."""
        order = [[]]
        for _ in range(self.n):
            order = [[d] + rest for d in range(self.k)
                     for rest in (order if d % 2 == 0 else order[::-1])]
        digits = np.asarray(order, dtype=np.int64)[:, ::-1]  # least significant digit first
        return (digits * self.k ** np.arange(self.n)).sum(axis=1)

    def ring_hops(self) -> int:
        """Largest hop distance between consecutive ranks of :meth:`ring_order` (wrap included)."""
        ring = self.ring_order()
        return int(self.hop_distance(ring, np.roll(ring, -1)).max())


@dataclass(frozen=True)
class NetworkModel:
    """Link costs: latency :math:`L(h, q) = \\alpha + \\beta h + \\gamma q` and :math:`\\beta_B` per byte.

    Attributes
    ----------
    alpha : float
        Per-message start-up time (s).
    beta : float
        Time per hop (s).
    gamma : float
        Time per message already queued on the link (s).
    beta_byte : float
        Time per byte (s), the inverse bandwidth.
    """

    alpha: float
    beta: float = 0.0
    gamma: float = 0.0
    beta_byte: float = 0.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "beta_byte"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"NetworkModel.{name} must be a finite number >= 0, got {value!r}")

    def latency(self, hops: np.ndarray | float, queue: np.ndarray | float = 0) -> np.ndarray:
        """:math:`\\alpha + \\beta h + \\gamma q` (s)."""
        return self.alpha + self.beta * np.asarray(hops, dtype=np.float64) + self.gamma * np.asarray(queue, dtype=np.float64)

    def ring_allreduce_time(self, nbytes: np.ndarray | float, world_size: int, hops: int = 1,
                            queue: float = 0) -> np.ndarray:
        """:math:`2(p-1)\\,(L(h, q) + \\beta_B m/p)`; 0 for a single rank."""
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        m = np.asarray(nbytes, dtype=np.float64)
        if (m < 0).any():
            raise ValueError("message sizes must be >= 0 bytes")
        p = world_size
        return 2 * (p - 1) * (self.latency(hops, queue) + self.beta_byte * m / p)

    @classmethod
    def from_fit(cls, fit: "AllReduceFit") -> "NetworkModel":
        """A model with the fitted per-step latency (all of it in ``alpha``) and per-byte time."""
        return cls(alpha=max(fit.alpha, 0.0), beta_byte=max(fit.beta_byte, 0.0))


@dataclass(frozen=True)
class AllReduceFit:
    """Least-squares fit of :math:`T(m) = 2(p-1)\\alpha + 2(p-1)\\beta_B m/p`.

    Attributes
    ----------
    alpha : float
        Per-step latency (s).
    beta_byte : float
        Seconds per byte.
    r2 : float
        Coefficient of determination of the fit.
    world_size : int
    """

    alpha: float
    beta_byte: float
    r2: float
    world_size: int

    def predict(self, nbytes: np.ndarray | float) -> np.ndarray:
        """Model all-reduce time (s) of ``nbytes``."""
        p = self.world_size
        return 2 * (p - 1) * (self.alpha + self.beta_byte * np.asarray(nbytes, dtype=np.float64) / p)


def fit_ring_allreduce(nbytes: Sequence[float], seconds: Sequence[float], world_size: int, *,
                       relative: bool = True) -> AllReduceFit:
    """Fit the ring all-reduce model to measured times by least squares.

    Parameters
    ----------
    nbytes, seconds : sequences of the same length (>= 3)
        Message sizes (bytes, > 0) and measured all-reduce times (s, > 0).
    world_size : int
        Ranks ``p`` (>= 2) in the measurement.
    relative : bool, default True
        Minimize relative residuals :math:`\\sum_i ((t_i - T(m_i))/t_i)^2` so that sizes spanning
        four decades weigh alike (ordinary least squares lets the largest messages decide
        :math:`\\alpha`). :math:`R^2` is always that of the plain residuals.
    """
    m = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if m.ndim != 1 or m.shape != t.shape:
        raise ValueError(f"nbytes and seconds must be 1-D of equal length; got {m.shape} and {t.shape}")
    if m.size < 3 or np.unique(m).size < 2:
        raise ValueError("need at least 3 measurements over at least 2 distinct sizes to fit 2 parameters")
    if not (np.isfinite(m).all() and np.isfinite(t).all()) or (m <= 0).any() or (t <= 0).any():
        raise ValueError("sizes and times must be finite and > 0")
    if world_size < 2:
        raise ValueError(f"an all-reduce measurement needs world_size >= 2, got {world_size}")
    p = world_size
    design = np.stack([np.full_like(m, 2 * (p - 1)), 2 * (p - 1) * m / p], axis=1)
    weight = 1.0 / t if relative else np.ones_like(t)
    (alpha, beta_byte), *_ = np.linalg.lstsq(design * weight[:, None], t * weight, rcond=None)
    resid = t - design @ np.array([alpha, beta_byte])
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return AllReduceFit(float(alpha), float(beta_byte), r2, p)


def optimal_bucket_bytes(total_bytes: float, world_size: int, model: NetworkModel, *, hops: int = 1,
                         min_bytes: float = 1024.0) -> float:
    """Gradient bucket size minimizing latency overhead plus the non-overlapped last bucket.

    With ``K = M/b`` buckets of ``b`` bytes all-reduced while back-propagation continues, the
    buckets cost :math:`K\\,2(p-1)L` of start-up beyond the bandwidth term, and the last bucket
    (ready only when the backward pass ends) is exposed for :math:`2(p-1)(L + \\beta_B b/p)`.
    Minimizing the sum over ``b`` gives

    .. math:: b^\\star = \\sqrt{M p L / \\beta_B},

    clipped to ``[min_bytes, M]`` (one bucket when bandwidth is free or ``p = 1``).
    """
    if not total_bytes > 0:
        raise ValueError(f"total_bytes must be > 0, got {total_bytes}")
    if world_size < 2 or model.beta_byte == 0:
        return float(total_bytes)
    latency = float(model.latency(hops))
    best = math.sqrt(total_bytes * world_size * latency / model.beta_byte)
    return float(min(max(best, min(min_bytes, total_bytes)), total_bytes))


def _reference_bucket_cost(bucket: float, total_bytes: float, world_size: int, model: NetworkModel,
                           hops: int = 1) -> float:
    """The objective :func:`optimal_bucket_bytes` minimizes in closed form (testing only)."""
    p, latency = world_size, float(model.latency(hops))
    return (total_bytes / bucket) * 2 * (p - 1) * latency + 2 * (p - 1) * model.beta_byte * bucket / p


def staleness_steps(comm_seconds: float, compute_seconds: float) -> int:
    """Steps :math:`\\tau = \\lceil T_{\\text{comm}} / T_{\\text{compute}} \\rceil` a gradient is late when its
    all-reduce overlaps the following steps' compute (0 when there is nothing to send)."""
    if not compute_seconds > 0:
        raise ValueError(f"compute_seconds must be > 0, got {compute_seconds}")
    if comm_seconds < 0:
        raise ValueError(f"comm_seconds must be >= 0, got {comm_seconds}")
    return int(math.ceil(comm_seconds / compute_seconds - 1e-12)) if comm_seconds > 0 else 0


def delayed_lr_scale(staleness: int) -> float:
    """Learning-rate factor for gradients ``staleness`` steps old: :math:`\\sin\\bigl(\\pi / (2(2\\tau+1))\\bigr)`.

    Gradient descent with delay :math:`\\tau` on a quadratic of curvature ``h``,
    :math:`x_{t+1} = x_t - \\eta h\\, x_{t-\\tau}`, is stable iff
    :math:`0 < \\eta h < 2\\sin(\\pi/(2(2\\tau + 1)))` (Levin & May 1976); the factor is that bound
    divided by its value 2 at :math:`\\tau = 0`, so a step size stable without delay stays
    stable with it.
    """
    if isinstance(staleness, bool) or int(staleness) != staleness or staleness < 0:
        raise ValueError(f"staleness must be an integer >= 0, got {staleness!r}")
    return math.sin(math.pi / (2 * (2 * staleness + 1)))


# --- measurement ------------------------------------------------------------------------------
def time_allreduce(nbytes: Sequence[int], repeats: int = 5) -> np.ndarray:
    """Best-of-``repeats`` wall time (s) of a float32 all-reduce of each size on the current process group.

    Collective: every rank of the default group must call it with the same arguments. Times
    are the slowest rank's (a MAX all-reduce of each rank's best), so every rank gets the same
    array -- and the same communication plan from it. Runs on the group's device (the current
    CUDA device under NCCL). The minimum over repeats, not the mean: on a shared machine other
    work only ever adds time, so the fastest repeat is the least contaminated estimate.
    """
    import torch
    import torch.distributed as dist

    sizes = [int(s) for s in nbytes]
    if not sizes or min(sizes) < 4:
        raise ValueError("give at least one message size of >= 4 bytes")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("time_allreduce needs a process group (synthfuse.shared.distributed.init_distributed); "
                           "measure_gloo_allreduce starts local processes for you")
    cuda = "nccl" in str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    best = []
    for size in sizes:
        buf = torch.ones(max(1, size // 4), dtype=torch.float32, device=device)
        dist.all_reduce(buf)  # warm-up: connection set-up and allocation are not the model's
        times = []
        for _ in range(repeats):
            dist.barrier()
            synchronize()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            synchronize()
            times.append(time.perf_counter() - t0)
        best.append(min(times))
    slowest = torch.tensor(best, dtype=torch.float64, device=device)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return slowest.cpu().numpy()


def _allreduce_rank(env, sizes: list[int], repeats: int) -> list[float]:
    """One rank of :func:`measure_gloo_allreduce` (started by :func:`~synthfuse.shared.distributed.spawn_local`)."""
    return time_allreduce(sizes, repeats).tolist()


def measure_gloo_allreduce(nbytes: Sequence[int], world_size: int = 2, repeats: int = 5) -> np.ndarray:
    """:func:`time_allreduce` over gloo on ``world_size`` local processes (1 thread each) started for it."""
    from synthfuse.shared.distributed import spawn_local

    sizes = [int(s) for s in nbytes]
    if not sizes or min(sizes) < 4:
        raise ValueError("give at least one message size of >= 4 bytes")
    if world_size < 2 or repeats < 1:
        raise ValueError(f"need world_size >= 2 and repeats >= 1, got {world_size}, {repeats}")
    return np.asarray(spawn_local(_allreduce_rank, world_size, sizes, repeats, backend="gloo")[0])
