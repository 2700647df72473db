r"""Poincaré-ball embeddings of trees (ASTs): Sarkar's construction plus Riemannian refinement.

*Combinatorial construction* (Sarkar 2011; Sala, De Sa, Gu & Ré 2018, Alg. 1): the root (by
default the tree's centre) sits at the origin of the Poincaré disk. A node ``u`` with parent
``p`` is moved to the origin by the isometry ``z ↦ (-u) ⊕ z`` (Möbius addition of
:class:`synthfuse.shared.manifold.PoincareBall`), its children are placed at hyperbolic
distance ``τ_u`` in the ``deg(u)`` directions evenly spaced away from the direction of
``p``, and mapped back by ``z ↦ u ⊕ z``.

Sarkar uses one edge length ``τ`` and lets ``τ`` grow to reach distortion ``1 + ε``. Floating
point forbids that: the ball keeps points within hyperbolic radius ``R = 2 artanh(1 - ε_b)``
(12.2 in float64 for ``c = 1``), so root-to-leaf length sums must stay below ``0.9 R``. Within
that budget the edge lengths are chosen so that neighbours stay the nearest points, which is
what graph reconstruction (MAP) needs: two adjacent children of ``u``, ``2π / deg(u)`` apart
at distance ``τ_u``, are ``σ(τ_u) = 2 asinh(sinh τ_u sin(π / deg u))`` apart, and we require
``σ(τ_u) >= κ max(τ_u, τ_c)`` for every child ``c`` (κ = 1.1), and ``τ_c >= r τ_u`` with
``r + r² = κ`` so that grandchildren (about ``τ_c + τ_c'`` away) stay farther than the parent
(raising ``τ_c`` keeps the first condition, as ``σ`` grows and ``r τ_u <= τ_u <= σ(τ_u) / κ``);
the common lower bound
``τ_0`` of all lengths is then the largest that fits the radius (bisection). A tree of
bounded degree gets Sarkar's uniform ``τ``; hubs get longer edges. If even ``τ_0 → 0`` does not
fit (deep trees with many hubs, e.g. random recursive trees of 500 nodes), all lengths are
scaled down to fit, keeping the ``τ_0`` of a short grid that reconstructs best; the MAP
then falls short of 1.

*Refinement*: Riemannian Adam (:class:`synthfuse.shared.optim.RiemannianAdam`) on the ball
minimises the relative distortion plus a reconstruction (softmax ranking) term,

.. math::  \mathcal{L}(x, s) = \frac{1}{\binom{N}{2}} \sum_{i<j}
           \Big(\frac{d(x_i, x_j)}{e^{s}\, d_T(i, j)} - 1\Big)^2
           \;+\; \frac{λ}{|E|} \sum_{(a, b) \in E}
           -\log \frac{e^{-d(x_a, x_b)}}{e^{-d(x_a, x_b)} + \sum_{k \notin N(a) \cup \{a\}} e^{-d(x_a, x_k)}}

(the second term is Nickel & Kiela's loss, over both directions of each edge). The 2-D
Euclidean baseline minimises the same loss in the plane, starting from classical MDS.

*Quality*: average distortion ``mean |d / (s* d_T) - 1|`` at the least-squares scale ``s*``,
worst-case distortion ``max(d/d_T) / min(d/d_T)``, and the mean average precision of graph
reconstruction (Nickel & Kiela 2017): for each node ``a`` with neighbours ``N_a``, the
precision of ``N_a`` within every ball around ``a`` that reaches one of them, averaged.

References
----------
.. [1] R. Sarkar, "Low distortion Delaunay embedding of trees in hyperbolic plane", GD 2011.
.. [2] F. Sala, C. De Sa, A. Gu, C. Ré, "Representation tradeoffs for hyperbolic embeddings", ICML 2018.
.. [3] M. Nickel, D. Kiela, "Poincaré embeddings for learning hierarchical representations", NeurIPS 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synthfuse.koda.analysis.graphs import Graph
from synthfuse.shared.manifold import Euclidean, Manifold, PoincareBall
from synthfuse.shared.optim import RiemannianAdam

__all__ = ["TreeEmbedding", "embed_tree", "embedding_quality", "euclidean_embedding", "mean_average_precision",
           "sarkar_embedding", "tree_center", "tree_distances"]


@dataclass(frozen=True)
class TreeEmbedding:
    """Embedded points and their quality against the tree metric (``scale`` is ``s*``)."""

    points: torch.Tensor
    manifold: Manifold
    scale: float
    distortion: float
    worst_distortion: float
    map: float


def _tree_structure(graph: Graph, root: int) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """Parent array, BFS order, depth, and DFS entry/exit times; checks that ``graph`` is a tree."""
    n = graph.num_nodes
    if n == 0:
        raise ValueError("the tree has no nodes")
    if not 0 <= root < n:
        raise ValueError(f"root {root} is not a node of a {n}-node tree")
    if len(graph.edges) != n - 1 or any(u == v for u, v in graph.edges):
        raise ValueError(f"a tree on {n} nodes has {n - 1} edges and no loops; got {len(graph.edges)} edges")
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for u, v in graph.edges:
        neighbours[u].append(v)
        neighbours[v].append(u)
    parent = np.full(n, -1)
    depth = np.zeros(n, dtype=np.int64)
    order, seen = [root], np.zeros(n, dtype=bool)
    seen[root] = True
    for u in order:
        for v in neighbours[u]:
            if not seen[v]:
                seen[v], parent[v], depth[v] = True, u, depth[u] + 1
                order.append(v)
    if len(order) != n:
        raise ValueError("the graph is not connected, so it is not a tree")
    tin, tout = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    clock, stack = 0, [(root, False)]
    while stack:
        u, done = stack.pop()
        if done:
            tout[u] = clock - 1
            continue
        tin[u] = clock
        clock += 1
        stack.append((u, True))
        stack.extend((v, False) for v in reversed(neighbours[u]) if v != parent[u])
    return parent, order, depth, np.stack([tin, tout])


def tree_distances(graph: Graph, root: int = 0) -> torch.Tensor:
    """All-pairs path lengths ``d_T`` of a tree, ``(N, N)`` float64.

    Row ``i`` comes from its parent's row: ``d(i, j) = d(p, j) + 1``, minus 2 inside the
    subtree of ``i`` (a contiguous range of DFS entry times).
    """
    parent, order, depth, (tin, tout) = _tree_structure(graph, root)
    n = graph.num_nodes
    dist = np.zeros((n, n))
    dist[root] = depth
    for i in order[1:]:
        inside = (tin >= tin[i]) & (tin <= tout[i])
        dist[i] = dist[parent[i]] + 1 - 2 * inside
    return torch.from_numpy(dist)


def tree_center(graph: Graph) -> int:
    """A node of minimum eccentricity (the centre of the tree; the smaller id if there are two)."""
    return int(torch.argmin(tree_distances(graph).max(dim=1).values))


def _separation(tau: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Distance between adjacent directions, ``2 asinh(sinh τ sin(π / slots))`` (inf for one slot)."""
    with np.errstate(over="ignore"):
        sep = 2 * np.arcsinh(np.sinh(tau) * np.sin(np.pi / np.maximum(slots, 2)))
    return np.where(slots <= 1, np.inf, sep)


def _self_separated(slots: np.ndarray, kappa: float) -> np.ndarray:
    """Least ``τ`` with ``σ(t) >= κ t`` for all ``t >= τ`` (per number of slots)."""
    lo, hi = np.zeros(len(slots)), np.full(len(slots), 40.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        ok = _separation(mid, slots) >= kappa * mid
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    small = _separation(np.full(len(slots), 1e-6), slots) >= kappa * 1e-6
    return np.where(small, 0.0, hi)


def _edge_lengths(parent: np.ndarray, depth: np.ndarray, slots: np.ndarray, base: float, kappa: float,
                  floor: np.ndarray) -> np.ndarray:
    """Length of the edges from each node to its children (bottom-up, then top-down, by level)."""
    n = len(parent)
    tau = np.zeros(n)
    has_children = np.bincount(parent[parent >= 0], minlength=n) > 0
    for level in range(int(depth.max()), -1, -1):
        nodes = np.flatnonzero((depth == level) & has_children)
        if not len(nodes):
            continue
        longest_child = np.zeros(n)
        kids = np.flatnonzero((depth == level + 1))
        np.maximum.at(longest_child, parent[kids], tau[kids])
        need = np.maximum(base, longest_child[nodes])
        # σ(τ) >= κ need  <=>  sinh τ >= sinh(κ need / 2) / sin(π / slots)
        by_children = np.arcsinh(np.sinh(kappa * need / 2) / np.sin(np.pi / np.maximum(slots[nodes], 2)))
        tau[nodes] = np.maximum.reduce([np.full(len(nodes), base), floor[nodes], by_children])
    # top-down: a grandchild (about τ_c + τ_c' away) must stay farther than the parent (τ_u);
    # with τ_c >= r τ_u at every level, τ_c + τ_c' >= (r + r²) τ_u = κ τ_u
    ratio = (math.sqrt(1 + 4 * kappa) - 1) / 2
    for level in range(1, int(depth.max()) + 1):
        nodes = np.flatnonzero((depth == level) & has_children)
        tau[nodes] = np.maximum(tau[nodes], ratio * tau[parent[nodes]])
    return tau


def _path_lengths(parent: np.ndarray, depth: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Distance from the root along the tree, with the given edge lengths."""
    length = np.zeros(len(parent))
    for level in range(1, int(depth.max()) + 1):
        nodes = np.flatnonzero(depth == level)
        length[nodes] = length[parent[nodes]] + tau[parent[nodes]]
    return length


def sarkar_embedding(graph: Graph, root: int | None = None, c: float = 1.0,
                     kappa: float = 1.1) -> tuple[torch.Tensor, np.ndarray]:
    """Sarkar's construction in the 2-D Poincaré disk with degree-aware edge lengths.

    Returns the points ``(N, 2)`` (float64) and, per node, the length of its child edges.
    Placement is batched by tree level through the ball's Möbius addition and ``exp``.
    """
    if kappa <= 1:
        raise ValueError(f"kappa must be > 1 (siblings farther than neighbours), got {kappa}")
    ball = PoincareBall(c)
    root = tree_center(graph) if root is None else root
    parent, _, depth, _ = _tree_structure(graph, root)
    n = graph.num_nodes
    children = np.bincount(parent[parent >= 0], minlength=n)
    slots = children + (np.arange(n) != root)  # directions around each node (the parent's included)
    budget = 0.9 * 2 / math.sqrt(c) * math.atanh(1 - ball.margin(torch.zeros(1, dtype=torch.float64)))
    floor = _self_separated(slots, kappa)
    fits = lambda tau: _path_lengths(parent, depth, tau).max() <= budget  # noqa: E731
    lengths = lambda base: _edge_lengths(parent, depth, slots, base, kappa, floor)  # noqa: E731
    if fits(lengths(0.0)):
        lo, hi = 0.0, budget
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(lengths(mid)) else (lo, mid)
        return _place(ball, parent, depth, slots, lengths(lo), root)
    # Even the separation floors do not fit: shrink to the budget, keeping the floor τ_0 (from
    # a short grid) that reconstructs the tree best.
    best = None
    for fraction in (0.02, 0.05, 0.1, 0.2):
        tau = lengths(fraction * budget / max(int(depth.max()), 1))
        tau *= budget / _path_lengths(parent, depth, tau).max()
        points, _ = _place(ball, parent, depth, slots, tau, root)
        score = mean_average_precision(ball.dist(points[:, None, :], points[None, :, :]), graph)
        if best is None or score > best[0]:
            best = (score, points, tau)
    return best[1], best[2]


def _place(ball: PoincareBall, parent: np.ndarray, depth: np.ndarray, slots: np.ndarray, tau: np.ndarray,
           root: int) -> tuple[torch.Tensor, np.ndarray]:
    """Lay the tree out level by level (see the module docstring); child edges of ``u`` have length ``tau[u]``."""
    n = len(parent)
    rank = np.zeros(n, dtype=np.int64)  # position of each child among the directions around its parent
    seen = np.zeros(n, dtype=np.int64)
    for v in np.argsort(depth, kind="stable")[1:]:
        rank[v] = seen[parent[v]] + (parent[v] != root)
        seen[parent[v]] += 1
    points = torch.zeros(n, 2, dtype=torch.float64)
    for level in range(1, int(depth.max()) + 1):
        kids = np.flatnonzero(depth == level)
        dads = parent[kids]
        at_dad = points[dads]
        base = torch.zeros(len(kids), dtype=torch.float64)
        grand = parent[dads]
        has_grand = grand >= 0
        if has_grand.any():  # direction of the grandparent seen from the parent moved to 0
            seen_from_dad = ball.mobius_add(-at_dad[has_grand], points[grand[has_grand]])
            base[torch.from_numpy(has_grand)] = torch.atan2(seen_from_dad[:, 1], seen_from_dad[:, 0])
        angle = base + 2 * math.pi * torch.from_numpy(rank[kids] / slots[dads])
        half = torch.from_numpy(tau[dads] / 2)[:, None]  # |v| = τ/2 gives d(0, exp_0 v) = τ
        step = half * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        points[kids] = ball.proj(ball.mobius_add(at_dad, ball.exp(torch.zeros_like(step), step)))
    return points, tau


def mean_average_precision(dist: torch.Tensor, graph: Graph) -> float:
    """MAP of reconstructing ``graph``'s edges from the distance matrix ``dist`` (N, N)."""
    n = graph.num_nodes
    adjacency = _adjacency(graph)
    d = dist.clone()
    d.fill_diagonal_(-math.inf)  # self first, then rank 1, 2, ... for the others
    ranks = torch.argsort(torch.argsort(d, dim=1), dim=1).to(torch.float64)  # (N, N)
    neighbour_ranks = torch.sort(torch.where(adjacency, ranks, math.inf), dim=1).values
    count = adjacency.sum(dim=1)  # (N,)
    k = torch.arange(1, n + 1, dtype=torch.float64)[None, :]
    valid = k <= count[:, None]
    precision = torch.where(valid, k / neighbour_ranks, 0.0)
    has = count > 0
    return float((precision.sum(dim=1)[has] / count[has]).mean())


def embedding_quality(dist: torch.Tensor, tree_dist: torch.Tensor) -> tuple[float, float, float]:
    """``(average distortion, worst-case distortion, scale s*)`` over pairs ``i < j``.

    ``s* = Σ r² / Σ r`` (with ``r = d / d_T``) minimises ``Σ (r / s - 1)²``.
    """
    iu = torch.triu_indices(len(dist), len(dist), offset=1)
    ratio = dist[iu[0], iu[1]] / tree_dist[iu[0], iu[1]]
    scale = float((ratio**2).sum() / ratio.sum())
    return float((ratio / scale - 1).abs().mean()), float(ratio.max() / ratio.min()), scale


def _adjacency(graph: Graph) -> torch.Tensor:
    n = graph.num_nodes
    adjacency = torch.zeros(n, n, dtype=torch.bool)
    if graph.edges:
        idx = torch.tensor(graph.edges)
        adjacency[idx[:, 0], idx[:, 1]] = True
        adjacency[idx[:, 1], idx[:, 0]] = True
    return adjacency.fill_diagonal_(False)


def _refine(points: torch.Tensor, manifold: Manifold, graph: Graph, tree_dist: torch.Tensor, steps: int,
            lr: float, rank_weight: float) -> torch.Tensor:
    """``steps`` of Riemannian Adam on distortion + λ ranking loss (module docstring)."""
    n = len(points)
    x = torch.nn.Parameter(points.clone())
    dist0 = manifold.dist(points[:, None, :], points[None, :, :])
    log_scale = torch.nn.Parameter(torch.tensor(math.log(embedding_quality(dist0, tree_dist)[2]), dtype=torch.float64))
    optimizer = RiemannianAdam([{"params": [x], "manifold": manifold}, {"params": [log_scale]}], lr=lr)
    adjacency = _adjacency(graph)
    excluded = adjacency | torch.eye(n, dtype=torch.bool)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    target = torch.where(upper, tree_dist, 1.0)
    for _ in range(steps):
        optimizer.zero_grad()
        dist = manifold.dist(x[:, None, :], x[None, :, :])  # (N, N)
        distortion = ((dist / (log_scale.exp() * target) - 1) ** 2)[upper].mean()
        negatives = torch.logsumexp(torch.where(excluded, -math.inf, -dist), dim=1, keepdim=True)  # (N, 1)
        ranking = (torch.logaddexp(-dist, negatives) + dist)[adjacency].mean()
        (distortion + rank_weight * ranking).backward()
        optimizer.step()
    return x.detach()


def _finish(points: torch.Tensor, manifold: Manifold, graph: Graph, tree_dist: torch.Tensor) -> TreeEmbedding:
    dist = manifold.dist(points[:, None, :], points[None, :, :])
    avg, worst, scale = embedding_quality(dist, tree_dist)
    return TreeEmbedding(points, manifold, scale, avg, worst, mean_average_precision(dist, graph))


def embed_tree(graph: Graph, *, root: int | None = None, c: float = 1.0, steps: int = 200, lr: float = 0.01,
               rank_weight: float = 0.1) -> TreeEmbedding:
    """2-D Poincaré embedding of a tree: Sarkar's construction, then ``steps`` of refinement."""
    ball = PoincareBall(c)
    tree_dist = tree_distances(graph)
    points, _ = sarkar_embedding(graph, root, c)
    if steps > 0 and graph.num_nodes > 2:
        points = _refine(points, ball, graph, tree_dist, steps, lr, rank_weight)
    return _finish(points, ball, graph, tree_dist)


def euclidean_embedding(graph: Graph, *, steps: int = 200, lr: float = 0.01, rank_weight: float = 0.1) -> TreeEmbedding:
    """The 2-D Euclidean baseline: classical MDS of ``d_T``, then the same refinement."""
    tree_dist = tree_distances(graph)
    n = graph.num_nodes
    centre = torch.eye(n, dtype=torch.float64) - 1.0 / n
    gram = -0.5 * centre @ tree_dist**2 @ centre
    values, vectors = torch.linalg.eigh(gram)
    points = vectors[:, -2:] * values[-2:].clamp(min=0).sqrt()
    if steps > 0 and n > 2:
        points = _refine(points, Euclidean(), graph, tree_dist, steps, lr, rank_weight)
    return _finish(points, Euclidean(), graph, tree_dist)
