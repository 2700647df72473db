"""Expert-solve time of MixtureOfSVRExperts' batched JAX solver vs a serial scikit-learn SVR loop.

For N in {1,000, 20,000} and K in {8, 64, 128, 512}, one regression tree (``max_leaf_nodes=K``,
``min_samples_leaf=5``) partitions standardized heteroscedastic-sine data; both sides then fit one
degree-3 polynomial epsilon-SVR per leaf of that same partition:

* anchor: ``SVR(kernel="poly", degree=3, coef0=1)`` fitted leaf after leaf (libsvm, dual);
* ours: the degree-3 polynomial features, packed into tiles, every expert solved in one jitted call
  (the estimator's defaults: C = 1, epsilon = 0.1, smoothing 2, lam_tree = 30).

"ours" is the steady-state time (pack + solve, median of 5 runs, after compiling); the first call's
extra time is reported apart as "compile". Two columns time the parts of "ours" that grow with
K on their own: the per-expert Gram sums and the batched Cholesky + triangular inverse of the
K majorizers (P x P each). The table also gives "first fit": a full
``MixtureOfSVRExperts().fit`` at N = 1,000 in a fresh process (compile included; the import and
JAX's backend start, reported apart, excluded), and the warm refit. A last table times the
largest-K solve with the small leaves (at most S samples) left out: what a special path for small
leaves could save at best. Targets from the issue: >= 5x faster at N = 20,000, K = 8; >= 1.5x at K = 512;
solve time flat across K within 1.5x; first fit at N = 1,000 under 1 s.

    python benchmarks/acr_scaling.py            # full run
    python benchmarks/acr_scaling.py --quick    # smoke run (N = 1,000 and 4,000; K = 8, 64)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.svm import SVR
from sklearn.tree import DecisionTreeRegressor

from synthfuse.acr._experts import pack_problem, solve_experts, trace_count
from synthfuse.acr._features import PolynomialMap
from synthfuse.acr.datasets import make_heteroscedastic_sine
from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open
from _report import write_report

DEFAULTS = dict(C=1.0, epsilon=0.1, delta=2.0, tol=1e-4, max_iter=500)
LAM = 30.0

_FIRST_FIT = """
import time, json
import jax.numpy as jnp
from synthfuse.acr import MixtureOfSVRExperts
from synthfuse.acr._experts import trace_count
from synthfuse.acr.datasets import make_heteroscedastic_sine
X, y, _, _ = make_heteroscedastic_sine(1000, random_state=0)
t0 = time.perf_counter(); jnp.zeros(1).block_until_ready(); backend = time.perf_counter() - t0
t0 = time.perf_counter(); MixtureOfSVRExperts(random_state=0).fit(X, y); first = time.perf_counter() - t0
t0 = time.perf_counter(); MixtureOfSVRExperts(random_state=0).fit(X, y); warm = time.perf_counter() - t0
print(json.dumps({"backend": backend, "first": first, "warm": warm, "compiles": trace_count()}))
"""


def partition(n: int, k: int, seed: int):
    X, y, _, _ = make_heteroscedastic_sine(n, random_state=seed)
    pmap = PolynomialMap.fit(X, 3)
    Z, yz = pmap.standardize(X), (y - y.mean()) / y.std()
    tree = DecisionTreeRegressor(max_leaf_nodes=k, min_samples_leaf=5, random_state=seed).fit(Z, yz)
    _, leaf = np.unique(tree.apply(Z), return_inverse=True)
    return Z, yz, pmap.transform(X), leaf


def serial_svr(Z, yz, leaf) -> float:
    t0 = time.perf_counter()
    for k in range(leaf.max() + 1):
        m = leaf == k
        SVR(kernel="poly", degree=3, coef0=1, C=1.0, epsilon=0.1).fit(Z[m], yz[m])
    return time.perf_counter() - t0


def batched(phi, yz, leaf, device) -> tuple[float, float, int]:
    """(steady seconds, compile seconds, iterations) of pack + solve for every leaf at once."""
    n_leaves = int(leaf.max()) + 1

    def run():
        t0 = time.perf_counter()
        problem = pack_problem(phi, yz, leaf, n_leaves)
        W, it = solve_experts(problem, np.full(n_leaves, LAM), device=device, as_numpy=False, **DEFAULTS)
        W.block_until_ready()
        return time.perf_counter() - t0, it

    before = trace_count()
    first, _ = run()
    times, iters = zip(*(run() for _ in range(5)))
    steady = float(np.median(times))
    compile_s = max(first - steady, 0.0) if trace_count() > before else 0.0
    return steady, compile_s, iters[0]


def pieces(phi, yz, leaf, device) -> tuple[float, float]:
    """(Gram s, factorization s): the solver's per-expert Gram sums and the batched Cholesky +
    triangular inverse of the K x P x P majorizers, timed alone on the same packed problem
    (median of 5 after a compile): the parts of "ours" that grow with K."""
    from synthfuse.acr._experts import _gram, _inverse_cholesky_factor

    problem = pack_problem(phi, yz, leaf, int(leaf.max()) + 1)
    n_experts, P = problem.bucket.n_experts, problem.bucket.n_features
    gram = jax.jit(lambda p, w, t: _gram(p, w, t, n_experts, device.platform != "cpu"))

    @jax.jit
    def factor(M):
        return _inverse_cholesky_factor(M + jnp.eye(P, dtype=M.dtype))  # as the solver: SPD after its jitter

    args = jax.device_put((problem.phi, problem.weight, problem.tile_expert), device)
    M = gram(*args)

    def timed(fn, *a):
        fn(*a).block_until_ready()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn(*a).block_until_ready()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    return timed(gram, *args), timed(factor, M)


def large_leaves_only(phi, yz, leaf, min_rows: int, device) -> dict:
    """Time of the batched solve restricted to the leaves with more than ``min_rows`` samples.

    A bound on what any special treatment of small leaves (e.g. a dual form for leaves with fewer
    samples than features) could buy: even if those leaves cost nothing, the solve still takes this long.
    """
    counts = np.bincount(leaf)
    keep = counts > min_rows
    rows = np.flatnonzero(keep[leaf])
    new_id = np.cumsum(keep) - 1
    ours, _, iters = batched(phi[rows], yz[rows], new_id[leaf[rows]], device)
    return {"leaves kept": int(keep.sum()), "rows kept": len(rows), "ours s": ours, "iterations": iters}


def first_fit() -> dict:
    proc = subprocess.run([sys.executable, "-c", _FIRST_FIT], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for n in sorted({r["N"] for r in rows}):
        sel = [r for r in rows if r["N"] == n]
        ks = [r["K"] for r in sel]
        axes[0].plot(ks, [r["serial SVR s"] for r in sel], "o--", label=f"serial SVR, N={n}")
        axes[0].plot(ks, [r["ours s"] for r in sel], "s-", label=f"batched JAX, N={n}")
        axes[1].plot(ks, [r["speed-up"] for r in sel], "s-", label=f"N={n}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (leaves)")
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("expert-solve seconds")
    axes[1].set_ylabel("serial SVR time / batched time")
    axes[1].axhline(1.0, color="k", lw=0.8)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None, help="JAX device (default: JAX's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-leaf", type=int, nargs="+", default=[16, 32, 55], metavar="S",
                        help="also time the largest-K solve without the leaves of at most S samples")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    sizes, ks = ([1000, 4000], [8, 64]) if args.quick else ([1000, 20000], [8, 64, 128, 512])
    device = jax.devices(args.device)[0] if args.device else jax.devices()[0]
    rows = []
    for n in sizes:
        for k in ks:
            Z, yz, phi, leaf = partition(n, k, args.seed)
            serial = serial_svr(Z, yz, leaf)
            ours, compile_s, iters = batched(phi, yz, leaf, device)
            gram_s, factor_s = pieces(phi, yz, leaf, device)
            rows.append({"N": n, "K": k, "leaves": int(leaf.max()) + 1, "serial SVR s": serial, "ours s": ours,
                         "speed-up": serial / ours, "compile s": compile_s, "iterations": iters,
                         "of which Gram s": gram_s, "of which factorization s": factor_s})
            print(f"  N={n} K={k}: serial {serial:.3f} s, ours {ours:.4f} s (+{compile_s:.2f} s compile)", flush=True)
    flat = [{"N": n, "max/min ours s over K": max(r["ours s"] for r in rows if r["N"] == n)
             / min(r["ours s"] for r in rows if r["N"] == n)} for n in sizes]
    n, k = sizes[-1], ks[-1]  # the loop's last partition (yz, phi, leaf) is this one
    fastest = min(r["ours s"] for r in rows if r["N"] == n)
    bound = []
    for min_rows in [s for s in args.small_leaf if (np.bincount(leaf) > s).any()]:
        row = {"N": n, "K": k, "leaves with more than": min_rows, **large_leaves_only(phi, yz, leaf, min_rows, device)}
        bound.append({**row, "/ min ours s over K": row["ours s"] / fastest})
    fits = first_fit()
    report = (
        f"### Expert solve, batched JAX ({device.platform}) vs serial SVR(kernel='poly') loop\n\n"
        + format_table(rows)
        + "\n### Flatness across K (target <= 1.5)\n\n"
        + format_table(flat)
        + f"\n### Only the leaves with more than S samples (N = {n}, K = {k}): small leaves left out\n\n"
        + format_table(bound)
        + "\n### Full fit at N = 1,000 (fresh process; compile included in the first)\n\n"
        + format_table([{"JAX backend start s": fits["backend"], "first fit s": fits["first"],
                         "warm refit s": fits["warm"], "compiles": fits["compiles"]}])
    )
    write_report(args.out, "acr_scaling", report, plot, rows)


if __name__ == "__main__":
    main()
