"""Hyperbolic (Lorentz-model) embeddings of trees: Sarkar's construction, refinement, distortion and MAP."""

from __future__ import annotations

import math
import random

import pytest
import torch

from synthfuse.koda.analysis.graphs import Graph, ast_graph
from synthfuse.koda.analysis.hyperbolic import (embed_tree, embedding_quality, euclidean_embedding, max_radius,
                                                mean_average_precision, sarkar_embedding, tree_center,
                                                tree_distances)
from synthfuse.koda.data.generator import generate
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import load
from synthfuse.shared.manifold import Lorentz, PoincareBall


def _random_tree(n: int, seed: int, kind: str = "recursive") -> Graph:
    rng = random.Random(seed)
    parents = [(v - 1) // 2 if kind == "binary" else rng.randrange(v) for v in range(1, n)]
    return Graph.from_arcs(n, [(p, v) for v, p in enumerate(parents, 1)], ["v"] * n)


def _module_ast(num_programs: int, seed: int = 0) -> Graph:
    """The AST of a module made of the functions of several generated programs."""
    programs = [load(r.source) for r in generate(num_programs, seed=seed)]
    return ast_graph(A.Program(tuple(fn for p in programs for fn in p.functions)))


def _reference_distances(graph: Graph) -> torch.Tensor:
    n = graph.num_nodes
    neighbours = {v: [] for v in range(n)}
    for u, v in graph.edges:
        neighbours[u].append(v)
        neighbours[v].append(u)
    dist = torch.full((n, n), math.inf, dtype=torch.float64)
    for s in range(n):
        dist[s, s], frontier = 0, [s]
        while frontier:
            nxt = []
            for u in frontier:
                for v in neighbours[u]:
                    if dist[s, v] == math.inf:
                        dist[s, v] = dist[s, u] + 1
                        nxt.append(v)
            frontier = nxt
    return dist


def _reference_map(dist: torch.Tensor, graph: Graph) -> float:
    """Nickel & Kiela's MAP with explicit balls."""
    n = graph.num_nodes
    neighbours = {v: set() for v in range(n)}
    for u, v in graph.edges:
        neighbours[u].add(v)
        neighbours[v].add(u)
    scores = []
    for a in range(n):
        if not neighbours[a]:
            continue
        precisions = []
        for b in neighbours[a]:
            ball = {j for j in range(n) if j != a and dist[a, j] <= dist[a, b]}
            precisions.append(len(ball & neighbours[a]) / len(ball))
        scores.append(sum(precisions) / len(precisions))
    return sum(scores) / len(scores)


def test_tree_distances_match_bfs():
    for seed in range(5):
        graph = _random_tree(40, seed)
        torch.testing.assert_close(tree_distances(graph, root=seed), _reference_distances(graph))
    graph = _module_ast(3)
    torch.testing.assert_close(tree_distances(graph), _reference_distances(graph))


def test_center_minimises_eccentricity():
    path = Graph.from_arcs(7, [(i, i + 1) for i in range(6)], ["v"] * 7)
    assert tree_center(path) == 3


def test_mean_average_precision_matches_reference():
    for seed in range(4):
        graph = _random_tree(30, seed)
        points = torch.randn(30, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        dist = torch.cdist(points, points)
        assert math.isclose(mean_average_precision(dist, graph), _reference_map(dist, graph), rel_tol=1e-12)
    graph = _random_tree(30, 0)
    assert mean_average_precision(tree_distances(graph), graph) == 1.0


def test_least_squares_scale_and_distortion():
    tree = tree_distances(_random_tree(25, 1))
    noise = 1 + 0.1 * torch.rand(25, 25, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = (noise + noise.T) / 2
    avg, worst, scale = embedding_quality(3.0 * tree * noise, tree)
    iu = torch.triu_indices(25, 25, offset=1)
    ratio = (3.0 * tree * noise / tree)[iu[0], iu[1]]
    grid = torch.linspace(2.5, 3.5, 2001, dtype=torch.float64)
    best = grid[((ratio[None, :] / grid[:, None] - 1) ** 2).sum(dim=1).argmin()]
    assert abs(scale - float(best)) < 1e-3
    assert math.isclose(worst, float(ratio.max() / ratio.min()))
    assert 0 < avg < 0.1


def _pairwise(points: torch.Tensor) -> torch.Tensor:
    return Lorentz().dist(points[:, None, :], points[None, :, :])


def test_max_radius_is_where_float64_coordinates_reach_the_tolerance():
    radius = max_radius()
    assert math.isclose(math.exp(radius) * torch.finfo(torch.float64).eps, 1e-3, rel_tol=1e-12)
    assert math.isclose(max_radius(4.0), radius / 2)
    with pytest.raises(ValueError, match="tolerance"):
        max_radius(tolerance=2.0)


def test_sarkar_construction_lengths_and_reconstruction():
    manifold = Lorentz()
    graph = _random_tree(127, 0, "binary")
    points, tau = sarkar_embedding(graph, root=0)
    manifold.check_point(points)
    assert float(manifold.dist(points, manifold.origin(points)).max()) <= max_radius() + 1e-9
    dist = _pairwise(points)
    edges = torch.tensor(graph.edges)
    # points 29 from the origin are known to ~1e-3 (max_radius), so edges match τ to that precision
    assert torch.allclose(dist[edges[:, 0], edges[:, 1]], torch.tensor([tau[u] for u, _ in graph.edges]), atol=5e-3)
    assert len({round(t, 9) for t in tau[tau > 0]}) == 1  # bounded degree: Sarkar's single τ
    assert mean_average_precision(dist, graph) == 1.0
    # a hub above a long path: the radius binds, so the hub's edges are longer than the path's
    arcs = [(0, i) for i in range(1, 13)] + [(12 + i, 13 + i) for i in range(12)]
    hub = Graph.from_arcs(25, arcs, ["v"] * 25)
    points, tau = sarkar_embedding(hub, root=0, radius=12.0)
    assert tau[0] > 1.5 * tau[13] > 0
    assert float(manifold.dist(points, manifold.origin(points)).max()) <= 12.0
    assert mean_average_precision(_pairwise(points), hub) == 1.0


def test_construction_beyond_the_poincare_ball_radius():
    """Random recursive trees of 500 nodes need radius ~29, where the ball (12.2) cannot go."""
    graph = _random_tree(500, 2)
    points, _ = sarkar_embedding(graph)
    assert mean_average_precision(_pairwise(points), graph) >= 0.95
    squeezed, _ = sarkar_embedding(graph, radius=12.2)  # the radius the float64 Poincaré ball allows
    assert mean_average_precision(_pairwise(squeezed), graph) < 0.9
    with pytest.raises(ValueError, match="kappa"):
        sarkar_embedding(graph, kappa=1.0)


def test_random_recursive_tree_of_500_nodes_reaches_map_095():
    graph = _random_tree(500, 0)
    hyperbolic = embed_tree(graph, steps=5)
    euclidean = euclidean_embedding(graph, steps=5)
    assert hyperbolic.map >= 0.95 and hyperbolic.map > euclidean.map + 0.2
    assert hyperbolic.distortion < euclidean.distortion
    Lorentz().check_point(hyperbolic.points)
    disk = hyperbolic.disk_points
    assert disk.shape == (500, 2) and float(disk.norm(dim=1).max()) < 1.0


def test_embedding_of_an_ast_beats_euclidean():
    graph = _module_ast(4)
    assert 100 <= graph.num_nodes <= 250
    hyperbolic = embed_tree(graph, steps=40)
    euclidean = euclidean_embedding(graph, steps=40)
    assert hyperbolic.map >= 0.95 and hyperbolic.map > euclidean.map + 0.1
    assert hyperbolic.distortion < euclidean.distortion
    # the reported figures are those of the points' own (Lorentz) distances
    dist = _pairwise(hyperbolic.points)
    assert hyperbolic.map == mean_average_precision(dist, graph)
    assert hyperbolic.distortion == embedding_quality(dist, tree_distances(graph))[0]
    # drawing coordinates: the same distances in the Poincaré disk while the nodes stay off its float64 edge
    disk = hyperbolic.disk_points
    if float(disk.norm(dim=1).max()) < 1 - 1e-5:
        torch.testing.assert_close(PoincareBall().dist(disk[:, None], disk[None]), dist, atol=1e-6, rtol=1e-6)
    # the fish-eye drawing scales every distance from the centre by the same factor
    radius = Lorentz().dist(hyperbolic.points, Lorentz().origin(hyperbolic.points))
    view = hyperbolic.to_plane(hyperbolic.points, 0.25)
    torch.testing.assert_close(PoincareBall().dist(torch.zeros_like(view), view), 0.25 * radius, atol=1e-8, rtol=1e-8)
    with pytest.raises(ValueError, match="scale"):
        hyperbolic.to_plane(hyperbolic.points, 0.0)


@pytest.mark.slow
def test_500_node_trees_reach_map_095_and_beat_euclidean():
    for graph in (_module_ast(14), _random_tree(511, 0, "binary"), *(_random_tree(500, s) for s in range(3))):
        assert graph.num_nodes >= 400
        hyperbolic = embed_tree(graph, steps=150)
        euclidean = euclidean_embedding(graph, steps=150)
        assert hyperbolic.map >= 0.95 and hyperbolic.map > euclidean.map


@pytest.mark.parametrize("arcs, n", [([(0, 1), (1, 2), (2, 0)], 3), ([(0, 1)], 3), ([(0, 0), (0, 1)], 3)])
def test_non_trees_are_rejected(arcs, n):
    with pytest.raises(ValueError, match="tree"):
        tree_distances(Graph.from_arcs(n, arcs, ["v"] * n))
