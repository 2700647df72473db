"""2-D hyperbolic embeddings of trees vs the 2-D Euclidean anchor (MAP and distortion).

For each tree -- ASTs of modules made of generated KL programs (about 100, 250 and 500
nodes), a complete binary tree of 511 nodes and random recursive trees of 500 nodes (seeds
0, 1, 2) -- the hyperbolic embedding (Sarkar's construction + Riemannian refinement in the
Lorentz model, synthfuse.koda.analysis.hyperbolic.embed_tree) and the Euclidean anchor
(classical MDS + the same refinement) are measured side by side. Prints MAP, average
distortion and the ratios to the anchor; saves a PNG.

    python benchmarks/koda_hyperbolic.py            # 150 refinement steps
    python benchmarks/koda_hyperbolic.py --quick    # small trees, 20 steps (smoke run)
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from synthfuse.koda.analysis.graphs import Graph, ast_graph
from synthfuse.koda.analysis.hyperbolic import embed_tree, euclidean_embedding
from synthfuse.koda.data import generate
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import load
from synthfuse.shared.demo import DemoContext


def module_ast(num_programs: int, seed: int = 0) -> Graph:
    programs = [load(r.source) for r in generate(num_programs, seed=seed)]
    return ast_graph(A.Program(tuple(fn for p in programs for fn in p.functions)))


def random_tree(n: int, seed: int, binary: bool) -> Graph:
    rng = random.Random(seed)
    arcs = [((v - 1) // 2 if binary else rng.randrange(v), v) for v in range(1, n)]
    return Graph.from_arcs(n, arcs, ["v"] * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.steps if args.steps is not None else (20 if args.quick else 150)
    if args.quick:
        trees = [("AST (3 programs)", module_ast(3)), ("binary tree", random_tree(63, 0, True)),
                 ("random recursive tree, seed 0", random_tree(150, 0, False))]
    else:
        trees = [("AST (3 programs)", module_ast(3)), ("AST (7 programs)", module_ast(7)),
                 ("AST (14 programs)", module_ast(14)), ("binary tree", random_tree(511, 0, True)),
                 *((f"random recursive tree, seed {seed}", random_tree(500, seed, False)) for seed in range(3))]
    ctx = DemoContext(out_dir=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, graph in ctx.progress(trees, desc="trees"):
        hyp = embed_tree(graph, steps=steps)
        euc = euclidean_embedding(graph, steps=steps)
        rows.append({"tree": name, "nodes": graph.num_nodes, "hyperbolic MAP": hyp.map, "Euclidean MAP (anchor)": euc.map,
                     "MAP ratio": hyp.map / euc.map, "hyperbolic distortion": hyp.distortion,
                     "Euclidean distortion": euc.distortion, "distortion ratio": hyp.distortion / euc.distortion})
    ctx.table("koda_hyperbolic", rows, f"2-D embeddings, {steps} refinement steps (anchor: Euclidean plane)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["hyperbolic MAP"] for r in rows], width=0.4, label="hyperbolic plane")
    ax.bar([i + 0.2 for i in x], [r["Euclidean MAP (anchor)"] for r in rows], width=0.4, label="Euclidean plane")
    ax.axhline(0.95, color="0.5", linestyle="--", linewidth=0.8)
    names = [r["tree"].replace(" (", "\n(").replace(", ", "\n") for r in rows]
    ax.set_xticks(list(x), [f"{name}\n{r['nodes']} nodes" for name, r in zip(names, rows)], fontsize=7)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("MAP (graph reconstruction)")
    ax.set_title("Trees in two dimensions: hyperbolic vs flat")
    ax.legend(loc="upper center", ncol=2)
    ctx.savefig(fig, "koda_hyperbolic")


if __name__ == "__main__":
    main()
