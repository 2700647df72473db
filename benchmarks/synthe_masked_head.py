"""MQAR training step with the LM head at every position (anchor) vs at the scored positions only.

MQAR scores only its query positions (4 of 64 at the issue's first target), yet a full head
computes vocabulary-8192 logits, their softmax and its gradient at all 64. ``scored_logits=True``
(:mod:`synthfuse.synthe.head`) gathers the scored rows first. The workload is one training step
(forward, backward, AdamW) of the Zoology MQAR model (vocab 8192, 2 blocks, width 128, probe off,
batch 64, seq 64, 4 pairs) for SYNTHE and the same-size Transformer, in float32 on one thread;
time is the median of ``--repeats`` steps, the two paths alternating so that both see the same
machine load. ``loss_diff`` is the largest difference between the two paths' losses.

    python benchmarks/synthe_masked_head.py [--quick] [--repeats 5] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open
from synthfuse.synthe.train import ZoologySpec, build_model, mqar, zoology_run_config

from _report import write_report


def step_seconds(model, optimizer, ids, targets, scored: bool, kwargs: dict) -> tuple[float, float]:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = model(ids, targets=targets, scored_logits=scored, **kwargs)["loss"]
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start, float(loss.detach())


def measure(variant: str, spec: ZoologySpec, repeats: int) -> dict:
    run = zoology_run_config(spec, variant)
    torch.manual_seed(0)
    model = build_model(run, spec.vocab_size).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step's cost, weights unchanged
    kwargs = {"early_exit": False} if variant != "transformer" else {}
    ids, targets = mqar(spec.batch_size, spec.seq_len, spec.vocab_size, spec.num_kv_pairs,
                        torch.Generator().manual_seed(0))
    times = {False: [], True: []}
    losses = {False: [], True: []}
    for i in range(repeats + 1):  # the first round warms up
        for scored in (False, True):
            seconds, loss = step_seconds(model, optimizer, ids, targets, scored, kwargs)
            if i:
                times[scored].append(seconds)
                losses[scored].append(loss)
    full, gathered = statistics.median(times[False]), statistics.median(times[True])
    return {"model": variant, "full_head_s": full, "scored_head_s": gathered, "speedup": full / gathered,
            "loss_diff": max(abs(a - b) for a, b in zip(losses[False], losses[True]))}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["full_head_s"] for r in rows], width=0.4, label="head at every position (anchor)")
    ax.bar([i + 0.2 for i in x], [r["scored_head_s"] for r in rows], width=0.4, label="head at scored positions")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["scored_head_s"], f"x{r['speedup']:.2f}", ha="center", va="bottom")
    ax.set_xticks(list(x), [r["model"] for r in rows])
    ax.set_ylabel("seconds per training step")
    ax.set_title("MQAR training step, masked LM head")
    ax.legend(fontsize=8)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="vocab 1024, batch 8 (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = ZoologySpec(batch_size=64, device="cpu")  # the size the README's table was measured at
    if args.quick:
        spec = ZoologySpec(vocab_size=1024, batch_size=8, device="cpu")
    repeats = 1 if args.quick else args.repeats
    rows = [measure(variant, spec, repeats) for variant in ("synthe", "transformer")]
    header = (f"MQAR step (vocab {spec.vocab_size}, seq {spec.seq_len}, {spec.num_kv_pairs} pairs, batch "
              f"{spec.batch_size}), median of {repeats}; anchor: the head at every position\n\n")
    write_report(args.out, "synthe_masked_head", header + format_table(rows), plot, rows)
    return rows


if __name__ == "__main__":
    main()
