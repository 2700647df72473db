"""``match_units`` (exact OT, network simplex) vs ``scipy.optimize.linear_sum_assignment``.

Both solve the same linear assignment problem between the rows of two weight matrices
(n units, 64 weights each) with the squared Euclidean cost; each timing includes building the
n x n cost matrix. Two cases per size: ``hidden`` (W_b is a row permutation of W_a plus 1%
noise, as for two copies of a layer) and ``random`` (independent W_a, W_b: a hard, unstructured
assignment). ``same_perm`` checks that the two permutations are identical (the optimum is
unique for continuous random data); ``ratio`` is time(match_units) / time(scipy), median of
``--repeats`` runs, so < 1 means match_units is faster.

    python benchmarks/shared_ot.py [--quick] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import ot
from scipy.optimize import linear_sum_assignment

from synthfuse.shared.demo import DemoContext

from _timing import median_seconds
from synthfuse.shared.ot import match_units


def scipy_match(W_a: np.ndarray, W_b: np.ndarray) -> np.ndarray:
    """The anchor: Hungarian-type assignment (LAPJV) on the same cost matrix."""
    rows, cols = linear_sum_assignment(ot.dist(W_a, W_b))
    return cols[np.argsort(rows)]


def plot(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for case, marker in (("hidden", "o"), ("random", "s")):
        pts = [r for r in rows if r["case"] == case]
        ns = [r["n"] for r in pts]
        ax.plot(ns, [r["match_units_s"] for r in pts], marker + "-", label=f"match_units ({case})")
        ax.plot(ns, [r["scipy_s"] for r in pts], marker + "--", label=f"scipy LSA ({case})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n units")
    ax.set_ylabel("seconds (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Unit matching: exact OT vs linear_sum_assignment")
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 32, 128; one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    sizes = (32, 128) if args.quick else (64, 256, 1024, 2048)
    repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)

    rows = []
    for n in sizes:
        W_a = rng.normal(size=(n, 64))
        hidden = rng.permutation(n)
        cases = {"hidden": W_a[hidden] + 0.01 * rng.normal(size=W_a.shape), "random": rng.normal(size=(n, 64))}
        for case, W_b in cases.items():
            perm, ref = match_units(W_a, W_b), scipy_match(W_a, W_b)
            t_ot = median_seconds(lambda: match_units(W_a, W_b), repeats)
            t_lsa = median_seconds(lambda: scipy_match(W_a, W_b), repeats)
            row = {
                "n": n, "case": case, "same_perm": bool(np.array_equal(perm, ref)),
                "match_units_s": t_ot, "scipy_s": t_lsa, "ratio": t_ot / t_lsa,
            }
            if case == "hidden":
                row["recovered"] = bool(np.array_equal(perm, np.argsort(hidden)))
            rows.append(row)
            print(f"  n={n:5d} {case:6s} same={row['same_perm']}  ratio {t_ot / t_lsa:6.2f}", flush=True)

    ctx = DemoContext(out_dir=args.out)  # prints the table; writes .md, .csv and .png atomically
    ctx.table("shared_ot", rows, title=__doc__.split("\n")[0])
    ctx.savefig(plot(rows), "shared_ot")
    if not all(r["same_perm"] for r in rows):
        raise SystemExit("match_units and linear_sum_assignment disagree")
    return rows


if __name__ == "__main__":
    main()
