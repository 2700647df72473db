"""Fit the ring all-reduce cost model to measured gloo all-reduce times (1 KB - 16 MB).

Two (or ``--world-size``) local processes all-reduce float32 buffers of each size over gloo;
the best-of-repeats times are fitted by least squares with
``T(m) = 2 (p - 1) (alpha + beta_byte m / p)`` (synthfuse.koda.topology_model), and the
table compares each measurement with the fitted model (ratio measured / model). Local
processes share one host's memory, so alpha and beta_byte describe loopback TCP, not a
network; the point is the method. Saves a log-log PNG of both.

    python benchmarks/koda_allreduce.py           # 15 sizes, 10 repeats each
    python benchmarks/koda_allreduce.py --quick   # 5 sizes, 3 repeats
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from synthfuse.koda.topology_model import fit_ring_allreduce, measure_gloo_allreduce
from synthfuse.shared.demo import DemoContext


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    exps = [10, 14, 18, 22, 24] if args.quick else list(range(10, 25))  # 1 KB .. 16 MB
    sizes = np.array([2**e for e in exps])
    repeats = 3 if args.quick else 10
    times = measure_gloo_allreduce(sizes, world_size=args.world_size, repeats=repeats)
    fit = fit_ring_allreduce(sizes, times, args.world_size)
    model = fit.predict(sizes)
    rows = [{"bytes": int(s), "measured ms": round(1e3 * t, 4), "model ms": round(1e3 * m, 4),
             "measured / model": round(t / m, 3)} for s, t, m in zip(sizes, times, model)]
    summary = (f"p = {args.world_size}: alpha = {fit.alpha * 1e6:.2f} us per ring step, "
               f"beta_byte = {fit.beta_byte * 1e9:.4f} ns/byte ({1 / fit.beta_byte / 1e9:.2f} GB/s), "
               f"R^2 = {fit.r2:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out_dir=args.out)
    ctx.table("koda_allreduce", rows, title=f"gloo all-reduce vs the fitted ring model; {summary}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(sizes, times * 1e3, "o", label="measured (best of repeats)")
    ax.loglog(sizes, model * 1e3, "-", label=f"ring model, R² = {fit.r2:.3f}")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("all-reduce time (ms)")
    ax.set_title(f"gloo all-reduce, {args.world_size} local processes")
    ax.legend()
    ctx.savefig(fig, "koda_allreduce")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
