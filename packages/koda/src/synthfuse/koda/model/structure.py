"""Syntax-tree distances between the tokens of a KL program (targets of the structure loss).

Each token is assigned to an AST node: the deepest node whose *core range* -- from the
first to the last start position in its subtree -- contains the token's position. A token
that starts a node belongs to it (``<=`` to its comparison, ``def`` to its function); a
separator such as ``;`` belongs to the innermost node around it (the enclosing block), and
closers after the last node start of the program to the root.

Tree distances come from ancestor sets: with :math:`\\operatorname{Anc}(u)` the ancestors
of ``u`` including itself, :math:`|\\operatorname{Anc}(u)\\cap\\operatorname{Anc}(v)| =
\\operatorname{depth}(\\operatorname{lca}(u, v)) + 1`, so

.. math:: \\delta(u, v) = \\operatorname{depth}(u) + \\operatorname{depth}(v) - 2\\operatorname{depth}(\\operatorname{lca}(u, v))

is one matrix product of the 0/1 ancestor matrix with its transpose.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from synthfuse.koda.lang import ast as A

__all__ = ["ast_parents", "token_owners", "tree_distances"]

_COL = 1 << 20  # positions are encoded as line * _COL + col


def ast_parents(program: A.Node) -> tuple[list[A.Node], np.ndarray]:
    """Nodes of the tree in pre-order and the parent index of each (-1 for the root)."""
    nodes: list[A.Node] = []
    parents: list[int] = []
    stack: list[tuple[A.Node, int]] = [(program, -1)]
    while stack:
        node, parent = stack.pop()
        index = len(nodes)
        nodes.append(node)
        parents.append(parent)
        stack.extend((child, index) for child in reversed(list(A.children(node))))
    return nodes, np.asarray(parents, dtype=np.int64)


def _ancestors(parents: np.ndarray) -> np.ndarray:
    """0/1 matrix ``anc[u, a] = 1`` iff ``a`` is ``u`` or an ancestor of ``u`` (parents precede children)."""
    n = len(parents)
    anc = np.zeros((n, n), dtype=np.float64)
    for u, p in enumerate(parents):
        if p >= u:
            raise ValueError("parents must list every node after its parent (pre-order)")
        if p >= 0:
            anc[u] = anc[p]
        anc[u, u] = 1.0
    return anc


def tree_distances(parents: np.ndarray) -> np.ndarray:
    """All-pairs tree distances (N, N) of a rooted tree given by pre-order ``parents``."""
    anc = _ancestors(np.asarray(parents))
    depth = anc.sum(axis=1) - 1.0
    common = anc @ anc.T  # depth(lca) + 1
    return np.rint(depth[:, None] + depth[None, :] - 2.0 * (common - 1.0)).astype(np.int64)


def _reference_tree_distances(parents: np.ndarray) -> np.ndarray:
    """Breadth-first search from every node of the undirected tree (testing only)."""
    n = len(parents)
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, p in enumerate(parents):
        if p >= 0:
            adj[u].append(int(p))
            adj[int(p)].append(u)
    out = np.zeros((n, n), dtype=np.int64)
    for s in range(n):
        dist = [-1] * n
        dist[s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        out[s] = dist
    return out


def token_owners(nodes: Sequence[A.Node], parents: np.ndarray, positions: Sequence[tuple[int, int]]) -> np.ndarray:
    """Index (into ``nodes``) of the AST node each token position belongs to; see the module docstring."""
    start = np.asarray([n.line * _COL + n.col for n in nodes], dtype=np.int64)
    lo, hi = start.copy(), start.copy()
    for u in range(len(nodes) - 1, 0, -1):  # children come after parents: fold upwards
        p = parents[u]
        lo[p] = min(lo[p], lo[u])
        hi[p] = max(hi[p], hi[u])
    depth = _ancestors(parents).sum(axis=1) - 1.0
    pos = np.asarray([line * _COL + col for line, col in positions], dtype=np.int64)[:, None]  # (T, 1)
    inside = (lo[None, :] <= pos) & (pos <= hi[None, :])  # (T, N)
    owner = np.where(inside, depth[None, :], -1.0).argmax(axis=1)
    return np.where(inside.any(axis=1), owner, 0)  # closers after the last node start: the root
