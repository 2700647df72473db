"""Per-rank model-state memory of the KODA model under FSDP2 and DDP, measured vs ZeRO's model.

The ``configs/koda_tiny.yaml`` model (d = 128, 4 blocks, 4 experts in blocks 2 and 4, ~0.95 M
parameters) takes one AdamW step; each rank then counts the bytes of its parameters, gradients
and optimizer state (``synthfuse.shared.distributed.measure_memory``: the local shards of
FSDP2's DTensors, the full replicas under DDP). The anchor is ZeRO's prediction
(``zero_memory``; Rajbhandari et al. 2020) for the same parameter count: stage 3 (FSDP) holds
everything / W, stage 0 (DDP) nothing divided, AdamW keeps 2 values per parameter; ``ratio`` =
measured / predicted total. W = 1 is one plain process, W = 2 real gloo processes on this
machine, W = 8 one process posing as each rank in turn with torch's fake process group (the
shapes and memory of a real run, no communication). For W = 8 the table also shows plain
dim-0 sharding (``parallel.balanced_shards: false``): 4 experts cannot be split 8 ways on their
first dimension, so ranks 0-3 hold a whole expert each and ranks 4-7 none.

    python benchmarks/koda_memory.py [--quick] [--optimizer adamw|sgd] [--fake-world 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthfuse.koda import testing as kt
from synthfuse.koda.train.config import load_config
from synthfuse.shared.demo import DemoContext
from synthfuse.shared.distributed import DistributedEnv, spawn_local
from synthfuse.shared.distributed.testing import fake_process_group

MIB = 2**20
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "koda_tiny.yaml"


def table_row(world: int, launch: str, strategy: str, shards: str, report: dict) -> dict:
    m, p = report["measured"], report["predicted"]
    return {"W": world, "ranks": launch, "strategy": strategy, "shards": shards, "rank": report["rank"],
            "params MiB": round(m["params"] / MIB, 4), "grads MiB": round(m["grads"] / MIB, 4),
            "optimizer MiB": round(m["optimizer"] / MIB, 4), "total MiB": round(m["total"] / MIB, 4),
            "ZeRO MiB": round(p["total"] / MIB, 4), "ratio": round(m["total"] / p["total"], 5)}


def plot_ranks(rows: list[dict], world: int):
    """Total model state of each of the ``world`` fake ranks, balanced vs dim-0 shards, against ZeRO-3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for shards, offset in (("balanced", -0.2), ("dim 0", 0.2)):
        part = [r for r in rows if r["W"] == world and r["shards"] == shards]
        ax.bar([r["rank"] + offset for r in part], [r["total MiB"] for r in part], 0.4, label=f"measured, {shards}")
    zero = next(r["ZeRO MiB"] for r in rows if r["W"] == world)
    ax.axhline(zero, color="k", linestyle="--", label="ZeRO-3: everything / W")
    ax.set_xlabel("rank")
    ax.set_ylabel("params + grads + AdamW state (MiB)")
    ax.set_title(f"KODA tiny, FSDP2 over {world} ranks: model state per rank")
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: d = 32, fake ranks 0 and W-1 only")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--real-world", type=int, default=2, help="local gloo processes")
    parser.add_argument("--fake-world", type=int, default=8, help="world size of the fake process group")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    model = dict(load_config(CONFIG).model)
    if args.quick:
        model.update(d_model=32, d_ff=64, n_heads=2)
    opt = {"optimizer": args.optimizer}

    rows = [table_row(1, "1 process", "none", "-", kt.memory_scenario(DistributedEnv(), model, strategy="none", **opt))]
    runs = [{"strategy": "fsdp", **opt}, {"strategy": "ddp", **opt}]
    for reports in spawn_local(kt.memory_scenarios, args.real_world, model, runs):
        rows += [table_row(args.real_world, "real", run["strategy"], "balanced" if run["strategy"] == "fsdp" else "-",
                           report) for run, report in zip(runs, reports)]
    fake_ranks = [0, args.fake_world - 1] if args.quick else range(args.fake_world)
    for balanced in (True, False):
        for rank in fake_ranks:
            with fake_process_group(args.fake_world, rank=rank) as env:
                report = kt.memory_scenario(env, model, balanced=balanced, **opt)
            rows.append(table_row(args.fake_world, "fake", "fsdp", "balanced" if balanced else "dim 0", report))

    rows.sort(key=lambda r: (r["W"], r["strategy"], r["shards"], r["rank"]))
    ctx = DemoContext(out_dir=args.out)  # prints the table; writes .md, .csv and .png atomically
    n = kt.memory_scenario(DistributedEnv(), model, strategy="none", **opt)["num_params"]
    ctx.table("koda_memory", rows, title=f"KODA model state per rank ({n:,} float32 parameters, {args.optimizer}): "
                                         "measured vs the ZeRO model")
    ctx.savefig(plot_ranks(rows, args.fake_world), "koda_memory")
    bad = [r for r in rows if r["shards"] != "dim 0" and abs(r["ratio"] - 1) > 0.01]
    if bad:
        raise SystemExit(f"measured memory is more than 1% off the ZeRO model in {len(bad)} rows")
    return rows


if __name__ == "__main__":
    main()
