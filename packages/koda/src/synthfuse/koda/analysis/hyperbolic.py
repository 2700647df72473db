r"""Hyperbolic embeddings of trees (ASTs): Sarkar's construction plus Riemannian refinement.

Everything is computed in the Lorentz (hyperboloid) model of the hyperbolic plane,
:class:`synthfuse.shared.manifold.Lorentz`, whose cancellation-free distance keeps float64
points usable out to distance :func:`max_radius` = 29.1 from the origin (a point there is known
to about 1e-3); the Poincaré disk of :class:`~synthfuse.shared.manifold.PoincareBall` stops at
12.2 (its float64 boundary margin), too close for deep trees with hubs.
:attr:`TreeEmbedding.disk_points` maps the result to the Poincaré disk for drawing only: nodes
farther than about 19 from the origin then lie within 1e-8 of the unit circle, where disk
coordinates no longer separate them.

*Combinatorial construction* (Sarkar 2011; Sala, De Sa, Gu & Ré 2018, Alg. 1): the root (by
default the tree's centre) sits at the origin. The children of a node ``u`` leave it along
geodesics (``exp_u``) of length ``τ_u`` in the ``deg(u)`` directions evenly spaced away from
the direction of its parent (``log_u``), measured in the orthonormal frame of the tangent
plane at ``u`` (one axis away from the origin, one along the circle through ``u``).

Sarkar uses one edge length ``τ`` and lets ``τ`` grow to reach distortion ``1 + ε``; floating
point caps the radius at ``R`` (:func:`max_radius`). Within that budget the edge lengths are
chosen so that neighbours stay the nearest points, which is what graph reconstruction (MAP)
needs: two adjacent children of ``u``, ``2π / deg(u)`` apart at distance ``τ_u``, are
``σ(τ_u) = 2 asinh(sinh τ_u sin(π / deg u))`` apart, and we require
``σ(τ_u) >= κ max(τ_u, τ_c)`` for every child ``c`` (κ = 1.1), and ``τ_c >= r τ_u`` with
``r + r² = κ`` so that grandchildren (about ``τ_c + τ_c'`` away) stay farther than the parent
(raising ``τ_c`` keeps the first condition, as ``σ`` grows and ``r τ_u <= τ_u <= σ(τ_u) / κ``);
the common lower bound ``τ_0`` of all lengths is then the largest whose layout stays within
``R`` of the origin (bisection on the laid-out points). A tree of bounded degree gets
Sarkar's uniform ``τ``; hubs get longer edges. If even ``τ_0 → 0`` does not fit, all lengths
are scaled down to fit, keeping the ``τ_0`` of a short grid that reconstructs best; the MAP
may then fall short of 1.

*Refinement*: Riemannian Adam (:class:`synthfuse.shared.optim.RiemannianAdam`) on the
hyperboloid minimises the relative distortion plus a reconstruction (softmax ranking) term,

.. math::  \mathcal{L}(x, s) = \frac{1}{\binom{N}{2}} \sum_{i<j}
           \Big(\frac{d(x_i, x_j)}{e^{s}\, d_T(i, j)} - 1\Big)^2
           \;+\; \frac{λ}{|E|} \sum_{(a, b) \in E}
           -\log \frac{e^{-d(x_a, x_b)}}{e^{-d(x_a, x_b)} + \sum_{k \notin N(a) \cup \{a\}} e^{-d(x_a, x_k)}}

(the second term is Nickel & Kiela's loss, over both directions of each edge). The 2-D
Euclidean baseline minimises the same loss in the plane, starting from classical MDS.

*Quality* (from the distances of the model the points live in): average distortion
``mean |d / (s* d_T) - 1|`` at the least-squares scale ``s*``, worst-case distortion
``max(d/d_T) / min(d/d_T)``, and the mean average precision of graph reconstruction
(Nickel & Kiela 2017): for each node ``a`` with neighbours ``N_a``, the precision of ``N_a``
within every ball around ``a`` that reaches one of them, averaged.

References
----------
.. [1] R. Sarkar, "Low distortion Delaunay embedding of trees in hyperbolic plane", GD 2011.
.. [2] F. Sala, C. De Sa, A. Gu, C. Ré, "Representation tradeoffs for hyperbolic embeddings", ICML 2018.
.. [3] M. Nickel, D. Kiela, "Poincaré embeddings for learning hierarchical representations", NeurIPS 2017.
.. [4] M. Nickel, D. Kiela, "Learning continuous hierarchies in the Lorentz model of hyperbolic geometry", ICML 2018.
.. [5] T. Yu, C. De Sa, "Numerically accurate hyperbolic embeddings using tiling-based models", NeurIPS 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synthfuse.koda.analysis.graphs import Graph
from synthfuse.shared.manifold import Euclidean, Lorentz, Manifold, lorentz_to_poincare
from synthfuse.shared.optim import RiemannianAdam

__all__ = ["TreeEmbedding", "embed_tree", "embedding_quality", "euclidean_embedding", "max_radius",
           "mean_average_precision", "sarkar_embedding", "tree_center", "tree_distances"]


@dataclass(frozen=True)
class TreeEmbedding:
    """Embedded points and their quality against the tree metric (``scale`` is ``s*``).

    ``points`` live on ``manifold``: ``(N, 3)`` hyperboloid coordinates for :func:`embed_tree`
    (:class:`~synthfuse.shared.manifold.Lorentz`), ``(N, 2)`` for :func:`euclidean_embedding`.
    """

    points: torch.Tensor
    manifold: Manifold
    scale: float
    distortion: float
    worst_distortion: float
    map: float

    @property
    def disk_points(self) -> torch.Tensor:
        """``(N, 2)`` coordinates to draw: the Poincaré disk for a hyperbolic embedding (deep nodes
        sit at the float64 edge of the disk, see the module notes), the plane itself otherwise."""
        return self.to_plane(self.points)

    def to_plane(self, points: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Map any points of ``manifold`` (e.g. samples along geodesics) to the drawing plane of
        :attr:`disk_points`.

        ``scale < 1`` first pulls every point towards the origin along its ray,
        ``x ↦ exp_o(scale · log_o x)`` (a fish-eye view, not an isometry), so that nodes far out
        can be told apart in a picture of the disk.
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if isinstance(self.manifold, Lorentz):
            if scale != 1.0:
                origin = self.manifold.origin(points)
                points = self.manifold.exp(origin, scale * self.manifold.log(origin, points))
            return lorentz_to_poincare(points, self.manifold.c)
        return scale * points


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


def max_radius(c: float = 1.0, tolerance: float = 1e-3) -> float:
    r"""Largest distance from the origin at which float64 Lorentz coordinates are known to ``tolerance``.

    A coordinate of size :math:`e^{\sqrt{c} r}/2` is rounded by :math:`\epsilon e^{\sqrt{c} r}/2`, which
    moves the point by about :math:`\epsilon e^{\sqrt{c} r}` along the hyperboloid (Yu & De Sa 2019), so
    :math:`R = \ln(\text{tolerance} / \epsilon) / \sqrt{c}` (29.1 for ``c = 1``).
    """
    if not (c > 0 and 0 < tolerance < 1):
        raise ValueError(f"need c > 0 and 0 < tolerance < 1, got c={c}, tolerance={tolerance}")
    return math.log(tolerance / np.finfo(np.float64).eps) / math.sqrt(c)


def sarkar_embedding(graph: Graph, root: int | None = None, c: float = 1.0, kappa: float = 1.1,
                     radius: float | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Sarkar's construction in the hyperbolic plane (Lorentz model) with degree-aware edge lengths.

    Returns the points ``(N, 3)`` (float64, on :class:`~synthfuse.shared.manifold.Lorentz` ``(c)``)
    and, per node, the length of its child edges. Every point stays within ``radius`` of the
    origin (default :func:`max_radius`). Placement is batched by tree level.
    """
    if kappa <= 1:
        raise ValueError(f"kappa must be > 1 (siblings farther than neighbours), got {kappa}")
    manifold = Lorentz(c)
    budget = max_radius(c) if radius is None else float(radius)
    if not budget > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    root = tree_center(graph) if root is None else root
    parent, _, depth, _ = _tree_structure(graph, root)
    n = graph.num_nodes
    children = np.bincount(parent[parent >= 0], minlength=n)
    slots = children + (np.arange(n) != root)  # directions around each node (the parent's included)
    floor = _self_separated(slots, kappa)
    lengths = lambda base: _edge_lengths(parent, depth, slots, base, kappa, floor)  # noqa: E731
    place = lambda tau: _place(manifold, parent, depth, slots, tau, root)  # noqa: E731
    if _radius(manifold, place(lengths(0.0))) <= budget:
        base = _largest_fitting(lambda b: place(lengths(b)), manifold, budget, hi=budget)
        tau = lengths(base)
        return place(tau), tau
    # Even the separation floors do not fit: shrink them to the budget, keeping the floor τ_0
    # (from a short grid) that reconstructs the tree best.
    best = None
    for fraction in (0.02, 0.05, 0.1, 0.2):
        tau = lengths(fraction * budget / max(int(depth.max()), 1))
        tau = tau * _largest_fitting(lambda s, t=tau: place(s * t), manifold, budget, hi=1.0)
        points = place(tau)
        score = mean_average_precision(manifold.dist(points[:, None, :], points[None, :, :]), graph)
        if best is None or score > best[0]:
            best = (score, points, tau)
    return best[1], best[2]


def _radius(manifold: Lorentz, points: torch.Tensor) -> float:
    """Largest distance of ``points`` from the origin."""
    return float(manifold.dist(points, manifold.origin(points)).max())


def _largest_fitting(layout, manifold: Lorentz, budget: float, hi: float, iterations: int = 30) -> float:
    """Bisection for the largest ``t`` in ``[0, hi]`` whose ``layout(t)`` stays within ``budget`` of the origin."""
    lo = 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _radius(manifold, layout(mid)) <= budget else (lo, mid)
    return lo


def _place(manifold: Lorentz, parent: np.ndarray, depth: np.ndarray, slots: np.ndarray, tau: np.ndarray,
           root: int) -> torch.Tensor:
    """Lay the tree out level by level (module docstring); child edges of ``u`` have length ``tau[u]``.

    Directions at ``u`` are angles in the orthonormal frame of its tangent plane whose spatial parts
    are ``e_r = sqrt(c) u_0 û`` (away from the origin) and ``e_t = û`` turned by 90° (û = ū / |ū|).
    """
    n = len(parent)
    rank = np.zeros(n, dtype=np.int64)  # position of each child among the directions around its parent
    seen = np.zeros(n, dtype=np.int64)
    for v in np.argsort(depth, kind="stable")[1:]:
        rank[v] = seen[parent[v]] + (parent[v] != root)
        seen[parent[v]] += 1
    points = manifold.origin(torch.zeros(n, 3, dtype=torch.float64))
    for level in range(1, int(depth.max()) + 1):
        kids = np.flatnonzero(depth == level)
        dads = parent[kids]
        at_dad = points[dads]  # (K, 3)
        spatial = at_dad[:, 1:]
        norm = spatial.norm(dim=1, keepdim=True)
        outward = torch.where(norm > 0, spatial / norm.clamp(min=1e-300), torch.tensor([1.0, 0.0], dtype=torch.float64))
        e_r = math.sqrt(manifold.c) * at_dad[:, :1] * outward  # (K, 2), unit radial tangent (spatial part)
        e_t = torch.stack([-outward[:, 1], outward[:, 0]], dim=1)  # (K, 2), unit tangent along the circle
        base = torch.zeros(len(kids), dtype=torch.float64)
        grand = parent[dads]
        has_grand = torch.from_numpy(grand >= 0)
        if has_grand.any():  # angle of the direction towards the grandparent in the (e_r, e_t) frame
            back = manifold.log(at_dad[has_grand], points[grand[has_grand.numpy()]])[:, 1:]
            radial = (back * outward[has_grand]).sum(dim=1) / (math.sqrt(manifold.c) * at_dad[has_grand, 0])
            base[has_grand] = torch.atan2((back * e_t[has_grand]).sum(dim=1), radial)
        angle = (base + 2 * math.pi * torch.from_numpy(rank[kids] / slots[dads]))[:, None]
        step = torch.from_numpy(tau[dads])[:, None] * (torch.cos(angle) * e_r + torch.sin(angle) * e_t)
        points[kids] = manifold.exp(at_dad, torch.cat([torch.zeros(len(kids), 1, dtype=torch.float64), step], dim=1))
    return points


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
               rank_weight: float = 0.1, radius: float | None = None) -> TreeEmbedding:
    """2-D hyperbolic embedding of a tree (Lorentz model): Sarkar's construction, then ``steps`` of refinement.

    Parameters
    ----------
    graph : Graph
        A tree.
    root : int, optional
        Node placed at the origin (default: the tree's centre).
    c : float, default 1.0
        Curvature magnitude (curvature ``-c``).
    steps, lr, rank_weight : refinement length, Riemannian Adam step size, and ``λ`` of the loss.
    radius : float, optional
        Largest distance of the construction from the origin (default :func:`max_radius`).

    Returns
    -------
    TreeEmbedding
        ``points`` ``(N, 3)`` on :class:`~synthfuse.shared.manifold.Lorentz` ``(c)``; distortion and MAP
        from the Lorentz distances.
    """
    manifold = Lorentz(c)
    tree_dist = tree_distances(graph)
    points, _ = sarkar_embedding(graph, root, c, radius=radius)
    if steps > 0 and graph.num_nodes > 2:
        points = _refine(points, manifold, graph, tree_dist, steps, lr, rank_weight)
    return _finish(points, manifold, graph, tree_dist)


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
