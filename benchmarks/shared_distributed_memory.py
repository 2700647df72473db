"""Per-rank model-state memory of FSDP2 and DDP, measured from the local tensors vs ZeRO's model.

A residual MLP of ``--depth`` blocks of width ``--width`` (synthfuse.shared.distributed.testing
.BlockMLP) takes one training step; each rank then counts the bytes of its parameters,
gradients and optimizer state (``measure_memory``: the local shards of FSDP2's DTensors, the
full replicas under DDP). The anchor is the ZeRO prediction ``zero_memory`` for the same
parameter count (stage 3 = FSDP: everything / W; stage 0 = DDP: nothing divided; Adam state
= 2 x params), and ``ratio`` = measured / predicted total. W = 1 is one plain process; the
real world (default 2) runs gloo processes on this machine; the fake world (default 8) runs
one process posing as rank 0 of W with torch's fake process group (shapes and memory of a real
run, no communication). The prediction leaves out Adam's scalar step counters, so the ratio is
a little above 1.

    python benchmarks/shared_distributed_memory.py [--quick] [--width 512 --depth 8 --optimizer adam]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthfuse.shared.demo import DemoContext
from synthfuse.shared.distributed import DistributedEnv, spawn_local
from synthfuse.shared.distributed import testing as dt

MIB = 2**20


def row(world: int, launch: str, parallel: str, report: dict) -> dict:
    m, p = report["measured"], report["predicted"]
    return {
        "W": world, "ranks": launch, "parallel": parallel, "rank": report["rank"],
        "params MiB": m["params"] / MIB, "grads MiB": m["grads"] / MIB,
        "optimizer MiB": m["optimizer"] / MIB, "total MiB": m["total"] / MIB,
        "ZeRO MiB": p["total"] / MIB, "ratio": f"{m['total'] / p['total']:.5f}",
        "num_params": report["num_params"],
    }


def plot(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rank0 = [r for r in rows if r["rank"] == 0]
    labels = [f"W={r['W']}\n{r['parallel']}" for r in rank0]
    x = range(len(rank0))
    fig, ax = plt.subplots(figsize=(1.2 * len(rank0) + 2, 4))
    ax.bar([i - 0.2 for i in x], [r["total MiB"] for r in rank0], 0.4, label="measured (rank 0)")
    ax.bar([i + 0.2 for i in x], [r["ZeRO MiB"] for r in rank0], 0.4, label="ZeRO model")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("params + grads + optimizer state (MiB)")
    ax.set_title("Model state per rank: measured vs ZeRO")
    ax.legend()
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: width 64, depth 2")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--real-world", type=int, default=2, help="local gloo processes")
    parser.add_argument("--fake-world", type=int, default=8, help="world size of the fake process group")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    width, depth = (64, 2) if args.quick else (args.width, args.depth)
    runs = [("fsdp", args.optimizer), ("ddp", args.optimizer)]

    rows = [row(1, "1 process", "none", dt.memory_scenario(DistributedEnv(), "none", args.optimizer, width, depth))]
    for rank, reports in enumerate(spawn_local(dt.memory_scenarios, args.real_world, runs, width, depth)):
        rows += [row(args.real_world, "real", run.split("-")[0], r) for run, r in reports.items()]
    with dt.fake_process_group(args.fake_world) as env:  # DDP's bucket hooks need real collectives
        reports = dt.memory_scenarios(env, runs[:1], width, depth)
    rows += [row(args.fake_world, "fake", run.split("-")[0], r) for run, r in reports.items()]
    rows.sort(key=lambda r: (r["W"], r["parallel"], r["rank"]))

    ctx = DemoContext(out_dir=args.out)  # prints the table; writes .md, .csv and .png atomically
    n = rows[0].pop("num_params")
    for r in rows[1:]:
        r.pop("num_params")
    title = f"Model state per rank, BlockMLP width {width} depth {depth} ({n} float32 parameters), {args.optimizer}"
    ctx.table("shared_distributed_memory", rows, title=title)
    ctx.savefig(plot(rows), "shared_distributed_memory")
    bad = [r for r in rows if abs(float(r["ratio"]) - 1) > 0.01]
    if bad:
        raise SystemExit(f"measured memory is more than 1% off the ZeRO model in {len(bad)} rows")
    return rows


if __name__ == "__main__":
    main()
