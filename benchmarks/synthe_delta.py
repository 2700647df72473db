"""Gated delta rule: chunkwise-parallel (UT transform) vs the per-token recurrence, fwd + bwd.

Shapes B=8, T=1024, H=4, d_k = d_v = 64 (``--quick``: B=2, T=256). Two workloads:

- ``plain``: the delta rule of DeltaNet (alpha = 1, log-decay 0);
- ``gated``: Gated DeltaNet (log alpha_t in [-0.5, 0)).

The anchor ``recurrent`` is the decoding step (``gated_delta_rule_step``: rank-1 update,
O(d_k d_v) per token) in a Python loop over the T tokens - the fastest per-token form, not the
textbook matrix product. ``chunked`` is ``chunk_gated_delta_rule`` with chunk 64. Both run
forward + backward (gradients of q, k, v, beta, log alpha) in float32 on one thread; time is the
median of ``--repeats`` runs after a warm-up. ``rel_err`` compares the chunked outputs to the
anchor's.

    python benchmarks/synthe_delta.py [--quick] [--repeats 3] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open
from synthfuse.synthe.layers._common import l2_normalize
from synthfuse.synthe.layers.delta import chunk_gated_delta_rule, gated_delta_rule_step

from _timing import median_seconds
from _report import write_report

def recurrent(q, k, v, beta, log_alpha, s0):
    state, outs = s0, []
    for t in range(q.shape[2]):
        o, state = gated_delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], beta[..., t], log_alpha[..., t], state)
        outs.append(o)
    return torch.stack(outs, 2), state

def chunked(q, k, v, beta, log_alpha, s0):
    return chunk_gated_delta_rule(q, k, v, beta, log_alpha, s0, chunk_size=64)

def inputs(b, t, h, d, gated, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = l2_normalize(torch.randn(b, h, t, d, generator=g))
    k = l2_normalize(torch.randn(b, h, t, d, generator=g))
    v = torch.randn(b, h, t, d, generator=g)
    beta = torch.rand(b, h, t, generator=g)
    log_alpha = -0.5 * torch.rand(b, h, t, generator=g) if gated else torch.zeros(b, h, t)
    xs = [x.requires_grad_() for x in (q, k, v, beta, log_alpha)]
    return xs + [torch.zeros(b, h, d, d)]

def fwd_bwd(fn, xs):
    o, s = fn(*xs)
    (o.sum() + s.sum()).backward()
    return o.detach()

def seconds(fn, xs, repeats):
    return median_seconds(lambda: fwd_bwd(fn, xs), repeats)

def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [r["workload"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["recurrent_s"] for r in rows], width=0.4, label="recurrent (anchor)")
    ax.bar([i + 0.2 for i in x], [r["chunked_s"] for r in rows], width=0.4, label="chunked (UT)")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["chunked_s"], f"x{r['speedup']:.1f}", ha="center", va="bottom")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("seconds, forward + backward")
    ax.set_title("Delta rule, B={B} T={T} H={H} d={d}".format(**rows[0]))
    ax.legend()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)

def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: B=2, T=256, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    b, t, h, d = (2, 256, 4, 64) if args.quick else (8, 1024, 4, 64)
    repeats = 1 if args.quick else args.repeats
    rows = []
    for workload in ("plain", "gated"):
        xs = inputs(b, t, h, d, gated=workload == "gated")
        slow, fast = seconds(recurrent, xs, repeats), seconds(chunked, xs, repeats)
        err = ((fwd_bwd(chunked, xs) - fwd_bwd(recurrent, xs)).norm() / fwd_bwd(recurrent, xs).norm()).item()
        rows.append({"workload": workload, "B": b, "T": t, "H": h, "d": d, "recurrent_s": slow,
                     "chunked_s": fast, "speedup": slow / fast, "rel_err": err})
        print(f"  {workload}: recurrent {slow:.3f} s, chunked {fast:.3f} s, x{slow / fast:.1f}", flush=True)
    table = format_table(rows)
    write_report(args.out, "synthe_delta", table, plot, rows)
    return rows

if __name__ == "__main__":
    main()
