"""Program graphs of KL and their Laplacian spectra.

* :func:`ast_graph`: the syntax tree (one node per AST node, parent-child edges).
* :func:`control_flow_graph`: statement-level CFG of a function (``entry``, ``exit``, one
  node per statement; ``if`` branches and rejoins, loops have a back edge to their header,
  ``return`` jumps to ``exit``).
* :func:`program_graph`: the AST plus def-use edges (each variable use to its declaration)
  and call edges (each call to the called function), which close cycles.

Spectra are those of the combinatorial Laplacian ``L = D - A`` of the undirected
(multi)graph, computed with :func:`torch.linalg.eigvalsh`. The multiplicity of the
eigenvalue 0 is the number of connected components ``β0``, and ``β1 = E - N + β0`` is the
number of independent cycles (for a connected CFG, ``E - N + 1``: the number of decisions,
McCabe's cyclomatic complexity minus one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthfuse.koda.lang import ast as A

__all__ = ["Graph", "ast_graph", "control_flow_graph", "graph_betti", "laplacian", "laplacian_spectrum",
           "program_graph", "spectral_signature"]

_ZERO_TOL = 1e-8


@dataclass(frozen=True)
class Graph:
    """An undirected multigraph: ``edges`` are sorted pairs ``(u, v)``, ``u <= v``.

    Repeated edges and self-loops are kept (a control-flow graph has both: a loop whose body
    is one statement closes a 2-cycle, an empty ``while`` a self-loop), so that
    ``β1 = E - N + β0`` counts every independent cycle. ``directed`` keeps the arcs as built
    (for the CFG, the direction of control flow).
    """

    num_nodes: int
    edges: tuple[tuple[int, int], ...]
    labels: tuple[str, ...]
    directed: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_arcs(cls, num_nodes: int, arcs: list[tuple[int, int]], labels: list[str]) -> "Graph":
        """Build from arcs; each arc becomes one undirected edge."""
        for u, v in arcs:
            if not (0 <= u < num_nodes and 0 <= v < num_nodes):
                raise ValueError(f"arc ({u}, {v}) has a node outside [0, {num_nodes})")
        edges = sorted((min(u, v), max(u, v)) for u, v in arcs)
        return cls(num_nodes, tuple(edges), tuple(labels), tuple(arcs))

    def simple(self) -> "Graph":
        """The underlying simple graph: repeated edges merged, self-loops dropped."""
        edges = tuple(sorted({e for e in self.edges if e[0] != e[1]}))
        return Graph(self.num_nodes, edges, self.labels, self.directed)


def _node_label(node: A.Node) -> str:
    name = type(node).__name__
    for attr in ("op", "func", "id", "name"):
        if hasattr(node, attr) and isinstance(getattr(node, attr), str):
            return f"{name}:{getattr(node, attr)}"
    return name


def _index_tree(root: A.Node) -> tuple[list[A.Node], list[tuple[int, int]]]:
    nodes: list[A.Node] = []
    arcs: list[tuple[int, int]] = []
    stack: list[tuple[A.Node, int]] = [(root, -1)]
    while stack:
        node, parent = stack.pop()
        idx = len(nodes)
        nodes.append(node)
        if parent >= 0:
            arcs.append((parent, idx))
        stack.extend((child, idx) for child in reversed(list(A.children(node))))
    return nodes, arcs


def ast_graph(root: A.Node) -> Graph:
    """The syntax tree of ``root`` (nodes in pre-order, labelled ``Type[:detail]``)."""
    nodes, arcs = _index_tree(root)
    return Graph.from_arcs(len(nodes), arcs, [_node_label(n) for n in nodes])


def program_graph(program: A.Program) -> Graph:
    """AST + def-use edges (use -> declaration) + call edges (call -> called function)."""
    nodes, arcs = _index_tree(program)
    position = {id(n): i for i, n in enumerate(nodes)}
    functions = {fn.name: position[id(fn)] for fn in program.functions}

    def visit(node: A.Node, scopes: list[dict[str, int]]) -> None:
        if isinstance(node, A.Name):
            for scope in reversed(scopes):
                if node.id in scope:
                    arcs.append((position[id(node)], scope[node.id]))
                    break
            return
        if isinstance(node, A.Call) and node.func in functions:
            arcs.append((position[id(node)], functions[node.func]))
        if isinstance(node, A.Function):
            scopes = [{p.name: position[id(p)] for p in node.params}]
        if isinstance(node, A.Block):
            scopes = scopes + [{}]
        if isinstance(node, A.For):
            for child in (node.start, node.stop):
                visit(child, scopes)
            visit(node.body, scopes + [{node.var: position[id(node)]}])
            return
        for child in A.children(node):
            visit(child, scopes)
        if isinstance(node, A.Let):
            scopes[-1][node.name] = position[id(node)]

    visit(program, [{}])
    return Graph.from_arcs(len(nodes), arcs, [_node_label(n) for n in nodes])


def control_flow_graph(function: A.Function) -> Graph:
    """Statement-level control-flow graph of ``function`` (node 0 ``entry``, node 1 ``exit``)."""
    labels = ["entry", "exit"]
    arcs: list[tuple[int, int]] = []

    def new(label: str) -> int:
        labels.append(label)
        return len(labels) - 1

    def block(b: A.Block, preds: list[int]) -> list[int]:
        """Wire ``b`` after ``preds``; return the nodes that fall through its end."""
        for stmt in b.stmts:
            node = new(_node_label(stmt) if not isinstance(stmt, A.ExprStmt) else f"Call:{stmt.call.func}")
            arcs.extend((p, node) for p in preds)
            if isinstance(stmt, A.Return):
                arcs.append((node, 1))
                preds = []
            elif isinstance(stmt, A.If):
                then_end = block(stmt.then, [node])
                else_end = block(stmt.orelse, [node]) if stmt.orelse is not None else [node]
                preds = then_end + else_end
            elif isinstance(stmt, (A.For, A.While)):
                body_end = block(stmt.body, [node])
                arcs.extend((p, node) for p in body_end)
                preds = [node]
            else:
                preds = [node]
        return preds

    ends = block(function.body, [0])
    arcs.extend((p, 1) for p in ends)
    return Graph.from_arcs(len(labels), arcs, labels)


def laplacian(graph: Graph, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """The combinatorial Laplacian ``L = B Bᵀ = D - A`` (dense, ``(N, N)``).

    ``B`` is the oriented node-edge incidence matrix, so a repeated edge counts with its
    multiplicity and a self-loop (a zero column of ``B``) drops out.
    """
    n = graph.num_nodes
    lap = torch.zeros(n, n, dtype=dtype, device=device)
    proper = [(u, v) for u, v in graph.edges if u != v]
    if proper:
        idx = torch.tensor(proper, dtype=torch.long, device=device)  # (E, 2)
        ones = torch.ones(len(proper), dtype=dtype, device=device)
        lap.index_put_((idx[:, 0], idx[:, 1]), -ones, accumulate=True)
        lap.index_put_((idx[:, 1], idx[:, 0]), -ones, accumulate=True)
        lap.index_put_((idx[:, 0], idx[:, 0]), ones, accumulate=True)
        lap.index_put_((idx[:, 1], idx[:, 1]), ones, accumulate=True)
    return lap


def laplacian_spectrum(graph: Graph, device: torch.device | str | None = None) -> torch.Tensor:
    """Eigenvalues of :func:`laplacian` in ascending order (``torch.linalg.eigvalsh``)."""
    if graph.num_nodes == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.linalg.eigvalsh(laplacian(graph, device=device))


def graph_betti(graph: Graph, spectrum: torch.Tensor | None = None) -> tuple[int, int]:
    """``(β0, β1)``: zero eigenvalues of the Laplacian, and ``E - N + β0``."""
    spectrum = laplacian_spectrum(graph) if spectrum is None else spectrum
    scale = max(1.0, float(spectrum.abs().max())) if spectrum.numel() else 1.0
    beta0 = int((spectrum.abs() < _ZERO_TOL * scale).sum())
    return beta0, len(graph.edges) - graph.num_nodes + beta0


def spectral_signature(graph: Graph) -> dict[str, float]:
    """Size, Betti numbers and Laplacian spectrum statistics of ``graph``.

    ``fiedler`` is the algebraic connectivity ``λ2`` (0 if disconnected), ``lambda_max``
    the spectral radius of ``L``, ``mean`` equals the average degree ``2E/N``, and
    ``energy`` is ``mean |λ - mean|``.
    """
    spectrum = laplacian_spectrum(graph)
    beta0, beta1 = graph_betti(graph, spectrum)
    n = graph.num_nodes
    mean = float(spectrum.mean()) if n else 0.0
    return {
        "nodes": float(n), "edges": float(len(graph.edges)), "beta0": float(beta0), "beta1": float(beta1),
        "fiedler": float(spectrum[1]) if n > 1 and beta0 == 1 else 0.0,
        "lambda_max": float(spectrum[-1]) if n else 0.0,
        "mean": mean, "energy": float((spectrum - mean).abs().mean()) if n else 0.0,
    }
