"""Program graphs, Laplacian spectra, boundary matrices, Hodge Laplacians and Betti numbers."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import sympy
import torch

from synthfuse.koda.analysis import (Graph, ast_graph, betti_numbers, boundary_matrix, clique_complex,
                                     control_flow_graph, euler_characteristic, graph_betti, hodge_laplacian,
                                     hypergraph_complex, laplacian, laplacian_spectrum, program_graph,
                                     simplicial_closure, spectral_signature)
from synthfuse.koda.data.generator import generate
from synthfuse.koda.examples import TEXTBOOK
from synthfuse.koda.lang import load


def _reference_components(graph: Graph) -> int:
    """Connected components by breadth-first search."""
    neighbours = {v: set() for v in range(graph.num_nodes)}
    for u, v in graph.edges:
        neighbours[u].add(v)
        neighbours[v].add(u)
    seen, components = set(), 0
    for start in range(graph.num_nodes):
        if start in seen:
            continue
        components += 1
        frontier = [start]
        seen.add(start)
        while frontier:
            frontier = [w for v in frontier for w in neighbours[v] if w not in seen and not seen.add(w)]
    return components


def _reference_betti(simplices) -> tuple[int, ...]:
    """Betti numbers from exact rational ranks of the boundary matrices (sympy)."""
    complex_ = simplicial_closure(simplices)
    ranks = [0]
    for k in range(1, len(complex_) + 1):
        mat = boundary_matrix(complex_, k)
        ranks.append(sympy.Matrix(mat.long().tolist()).rank() if mat.numel() else 0)
    return tuple(len(complex_[k]) - ranks[k] - ranks[k + 1] for k in range(len(complex_)))


# ------------------------------------------------------------------------------ graphs
def test_laplacian_spectra_of_known_graphs():
    n = 9
    path = Graph.from_arcs(n, [(i, i + 1) for i in range(n - 1)], ["v"] * n)
    cycle = Graph.from_arcs(n, [(i, (i + 1) % n) for i in range(n)], ["v"] * n)
    complete = Graph.from_arcs(n, list(itertools.combinations(range(n), 2)), ["v"] * n)
    expected_path = sorted(2 - 2 * math.cos(math.pi * k / n) for k in range(n))
    expected_cycle = sorted(2 - 2 * math.cos(2 * math.pi * k / n) for k in range(n))
    torch.testing.assert_close(laplacian_spectrum(path), torch.tensor(expected_path, dtype=torch.float64))
    torch.testing.assert_close(laplacian_spectrum(cycle), torch.tensor(expected_cycle, dtype=torch.float64))
    torch.testing.assert_close(laplacian_spectrum(complete), torch.tensor([0.0] + [n] * (n - 1), dtype=torch.float64))
    assert graph_betti(path) == (1, 0) and graph_betti(cycle) == (1, 1) and graph_betti(complete) == (1, 28)


def test_graph_betti_matches_bfs_and_simplicial_betti_on_random_graphs():
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 25)
        edges = [(rng.randrange(n), rng.randrange(n)) for _ in range(rng.randint(0, 2 * n))]
        multigraph = Graph.from_arcs(n, edges, ["v"] * n)
        beta0, beta1 = graph_betti(multigraph)
        assert beta0 == _reference_components(multigraph)
        assert beta1 == len(edges) - n + beta0  # every repeated edge and self-loop is a cycle
        graph = multigraph.simple()
        as_complex = [(v,) for v in range(n)] + list(graph.edges)
        expected = graph_betti(graph) if graph.edges else graph_betti(graph)[:1]
        assert betti_numbers(as_complex) == expected


def test_ast_graph_is_a_tree(textbook):
    _, source, _, _ = textbook
    graph = ast_graph(load(source))
    assert len(graph.edges) == graph.num_nodes - 1
    assert graph_betti(graph) == (1, 0)
    spectrum = laplacian_spectrum(graph)
    assert math.isclose(float(spectrum.sum()), 2 * len(graph.edges))  # trace of L = 2E
    assert graph.labels[0] == "Program" and graph.labels[1].startswith("Function:")


def test_control_flow_graph_cyclomatic_number():
    fn = load("""
def f(n: int) {
    if n <= 1 { return; }
    f(n / 2);
    for i in range(0, n) { work(1); }
}""").entry
    cfg = control_flow_graph(fn)
    assert cfg.labels == ("entry", "exit", "If", "Return", "Call:f", "For", "Work")
    assert set(cfg.directed) == {(0, 2), (2, 3), (3, 1), (2, 4), (4, 5), (5, 6), (6, 5), (5, 1)}
    assert graph_betti(cfg) == (1, 2)  # two decisions: the if and the loop
    assert graph_betti(cfg.simple()) == (1, 1)  # the simple graph loses the 2-cycle For -> Work -> For


def test_cfg_cyclomatic_number_counts_decisions_on_the_corpus():
    for record in generate(80, seed=1):
        program = load(record.source)
        fn = program.entry
        decisions = sum(type(node).__name__ in ("If", "For", "While") for node in _statements(fn.body))
        beta0, beta1 = graph_betti(control_flow_graph(fn))
        assert beta0 == 1 and beta1 == decisions, record.id


def _statements(block):
    for stmt in block.stmts:
        yield stmt
        for child in ("then", "orelse", "body"):
            sub = getattr(stmt, child, None)
            if sub is not None:
                yield from _statements(sub)


def test_program_graph_cycles_from_recursion_and_def_use():
    program = load(TEXTBOOK["karatsuba"][0])
    tree, graph = ast_graph(program), program_graph(program)
    assert graph.num_nodes == tree.num_nodes and len(graph.edges) > len(tree.edges)
    beta0, beta1 = graph_betti(graph)
    assert beta0 == 1 and beta1 == len(graph.edges) - len(tree.edges)
    signature = spectral_signature(graph)
    assert signature["beta1"] == beta1 and signature["fiedler"] > 0
    assert math.isclose(signature["mean"], 2 * len(graph.edges) / graph.num_nodes)
    lap = laplacian(graph)
    torch.testing.assert_close(lap.sum(dim=1), torch.zeros(graph.num_nodes, dtype=torch.float64))


# ------------------------------------------------------------------------------ complexes
def _torus_grid(m: int = 3):
    """The m x m grid on the torus, each square cut along a diagonal (2 m^2 triangles)."""
    v = lambda i, j: (i % m) * m + (j % m)  # noqa: E731
    triangles = []
    for i in range(m):
        for j in range(m):
            triangles += [(v(i, j), v(i + 1, j), v(i + 1, j + 1)), (v(i, j), v(i, j + 1), v(i + 1, j + 1))]
    return triangles


CSASZAR_TORUS = [(i, (i + 1) % 7, (i + 3) % 7) for i in range(7)] + [(i, (i + 2) % 7, (i + 3) % 7) for i in range(7)]
RP2 = [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5), (0, 5, 1), (1, 2, 4), (2, 3, 5), (3, 4, 1), (4, 5, 2), (5, 1, 3)]


def _klein_grid(m: int = 3):
    """The m x m grid with (i, j) ~ (i, j + m) and (m, j) ~ (0, -j): the Klein bottle."""
    def v(i, j):
        if i == m:  # the twisted gluing of the last column onto the first
            i, j = 0, -j
        return i * m + j % m
    triangles = []
    for i in range(m):
        for j in range(m):
            a, b, c, d = v(i, j), v(i + 1, j), v(i + 1, j + 1), v(i, j + 1)
            triangles += [(a, b, c), (a, d, c)]
    return triangles


@pytest.mark.parametrize("name, simplices, betti", [
    ("circle", [(0, 1), (1, 2), (0, 2)], (1, 1)),
    ("disk", [(0, 1, 2)], (1, 0, 0)),
    ("sphere", [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)], (1, 0, 1)),
    ("torus 3x3 grid", _torus_grid(3), (1, 2, 1)),
    ("torus 4x4 grid", _torus_grid(4), (1, 2, 1)),
    ("Möbius–Császár torus", CSASZAR_TORUS, (1, 2, 1)),
    ("projective plane (over R)", RP2, (1, 0, 0)),
    ("two circles", [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)], (2, 2)),
    ("solid tetrahedron", [(0, 1, 2, 3)], (1, 0, 0, 0)),
    ("boundary of a 4-simplex", list(itertools.combinations(range(5), 4)), (1, 0, 0, 1)),
    ("points", [(0,), (5,)], (2,)),
])
def test_betti_numbers_of_known_spaces(name, simplices, betti):
    assert betti_numbers(simplices) == betti
    if name != "points":
        assert _reference_betti(simplices) == betti
    chi = euler_characteristic(simplices)
    assert chi == sum((-1) ** k * b for k, b in enumerate(betti))


@pytest.mark.parametrize("m", [3, 4])
def test_klein_bottle_over_the_reals(m):
    triangles = _klein_grid(m)
    edges = [tuple(sorted(e)) for t in triangles for e in itertools.combinations(t, 2)]
    assert set(edges.count(e) for e in edges) == {2}  # a closed surface
    assert euler_characteristic(triangles) == 0
    assert betti_numbers(triangles) == _reference_betti(triangles) == (1, 1, 0)


def test_csaszar_torus_is_a_triangulated_surface():
    complex_ = simplicial_closure(CSASZAR_TORUS)
    assert [len(level) for level in complex_] == [7, 21, 14]  # the 1-skeleton is K7
    for edge in complex_[1]:
        assert sum(set(edge) <= set(t) for t in complex_[2]) == 2


def test_boundary_of_boundary_is_zero_and_hodge_laplacian_structure():
    complex_ = simplicial_closure(_torus_grid(3) + [(0, 1, 2, 3)])
    for k in range(1, len(complex_)):
        product = boundary_matrix(complex_, k) @ boundary_matrix(complex_, k + 1)
        assert product.numel() == 0 or product.abs().max().item() == 0
    lap0 = hodge_laplacian(complex_, 0)
    one_skeleton = Graph.from_arcs(len(complex_[0]), list(complex_[1]), ["v"] * len(complex_[0]))
    assert complex_[0] == [(v,) for v in range(len(complex_[0]))]
    torch.testing.assert_close(lap0, laplacian(one_skeleton))
    lap1 = hodge_laplacian(_torus_grid(3), 1)
    torch.testing.assert_close(lap1, lap1.T)
    assert torch.linalg.eigvalsh(lap1).min() > -1e-10
    assert int((torch.linalg.eigvalsh(lap1).abs() < 1e-8).sum()) == 2  # harmonic 1-forms of the torus
    with pytest.raises(ValueError, match="k must be"):
        hodge_laplacian(_torus_grid(3), 3)


def test_clique_complexes():
    octahedron = [(a, b) for a, b in itertools.combinations(range(6), 2) if {a, b} not in ({0, 1}, {2, 3}, {4, 5})]
    assert betti_numbers(clique_complex(6, octahedron, max_dim=2)) == (1, 0, 1)
    square = [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert betti_numbers(clique_complex(4, square)) == (1, 1)
    k4 = list(itertools.combinations(range(4), 2))
    assert clique_complex(4, k4, max_dim=3)[3] == [(0, 1, 2, 3)]
    assert betti_numbers(clique_complex(4, k4, max_dim=3)) == (1, 0, 0, 0)
    assert betti_numbers(clique_complex(4, k4, max_dim=1)) == (1, 3)
    with pytest.raises(ValueError, match="outside"):
        clique_complex(3, [(0, 3)])


def test_hypergraph_closure():
    complex_ = hypergraph_complex([(0, 1, 2), (2, 3), (3, 4, 0)])
    assert betti_numbers(complex_) == (1, 1, 0)
    assert len(hypergraph_complex([tuple(range(20))], max_dim=2)[2]) == math.comb(20, 3)
    with pytest.raises(ValueError, match="max_dim"):
        hypergraph_complex([tuple(range(20))])


@pytest.mark.parametrize("bad", [[()], [(0, 0)], [(-1, 2)], [(0.5, 1)]])
def test_simplex_validation(bad):
    with pytest.raises(ValueError):
        simplicial_closure(bad)
