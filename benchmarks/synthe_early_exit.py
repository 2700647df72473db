"""Depth Router: block FLOPs saved vs loss increase, and wall-clock per generated token.

A byte-level SYNTHE model (vocabulary 256, d_model 128, 8 blocks, exits after blocks 4 and 6)
is trained for ``--steps`` steps on tinyshakespeare (or, when the file is absent, on a
generated corpus mixing predictable and random spans) with the router's auxiliary objective;
every second step runs with the exits active, so that later blocks learn to read a stream in
which some tokens are absent. Then, on held-out text:

- for each exit threshold, the cross-entropy with exits, its increase relative to the full
  depth (the anchor, ``early_exit=False``), the blocks executed per token and the block
  FLOPs (matrix products inside the blocks, counted by ``torch.utils.flop_counter``) relative
  to the full depth;
- at the highest-saving threshold whose loss increase is <= 1%, greedy generation of
  ``--gen`` tokens with and without exits: milliseconds per token (median of ``--repeats``).

One thread, float32.

    python benchmarks/synthe_early_exit.py [--quick] [--steps 400] [--batch 16] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open
from synthfuse.synthe import Synthe, SyntheConfig
from _report import write_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
THRESHOLDS = [0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]


def corpus(n_bytes: int = 1_000_000) -> torch.Tensor:
    """tinyshakespeare as bytes, or a generated stand-in: runs of a repeated word (predictable)
    between random bytes (unpredictable)."""
    if DATA.exists():
        return torch.tensor(list(DATA.read_bytes()[:n_bytes]), dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    words = [torch.randint(97, 123, (int(n),), generator=g) for n in torch.randint(3, 9, (50,), generator=g)]
    pieces, total = [], 0
    while total < n_bytes:
        w = words[int(torch.randint(0, 50, (1,), generator=g))]
        pieces += [w.repeat(int(torch.randint(2, 6, (1,), generator=g))), torch.randint(32, 127, (8,), generator=g)]
        total += len(pieces[-2]) + 8
    return torch.cat(pieces)[:n_bytes]


def batches(data: torch.Tensor, b: int, t: int, g: torch.Generator):
    while True:
        starts = torch.randint(0, len(data) - t - 1, (b,), generator=g)
        chunk = torch.stack([data[s : s + t + 1] for s in starts])
        yield chunk[:, :-1], chunk[:, 1:]


def train(model, data, steps, b, t, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(1)
    model.train()
    for step, (x, y) in zip(range(steps), batches(data, b, t, g)):
        out = model(x, targets=y, early_exit=step % 2 == 1)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step:4d}  lm loss {out['info']['lm_loss']:.3f}  aux {out['info']['router_aux_loss']:.3f}", flush=True)


@torch.no_grad()
def evaluate(model, x, y, early_exit: bool) -> dict:
    with FlopCounterMode(display=False) as counter:
        out = model(x, targets=y, early_exit=early_exit)
    counts = counter.get_flop_counts()
    block_flops = sum(sum(v.values()) for k, v in counts.items() if k.count(".") == 2 and k.startswith("Synthe.blocks."))
    return {"loss": out["info"]["lm_loss"], "blocks_per_token": out["info"]["routing"]["blocks_per_token"],
            "block_flops": block_flops}


@torch.no_grad()
def ms_per_token(model, prompt, n, early_exit, repeats) -> float:
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        model.generate(prompt, n, temperature=0.0, early_exit=early_exit)
        times.append((time.perf_counter() - t0) / n)
    return 1e3 * statistics.median(times[1:])


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([100 * (1 - r["block_flops_ratio"]) for r in rows], [100 * r["loss_increase"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['threshold']}", (100 * (1 - r["block_flops_ratio"]), 100 * r["loss_increase"]), fontsize=8)
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set(xlabel="block FLOPs saved (%)", ylabel="loss increase vs full depth (%)", title="Early exit (labels: threshold)")
    ax.grid(True, alpha=0.3)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 training steps, short evaluation")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16, help="sequences of 256 bytes per training step")
    parser.add_argument("--gen", type=int, default=128, help="tokens generated per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    steps, gen, repeats, (b, t) = (4, 8, 1, (4, 64)) if args.quick else (args.steps, args.gen, args.repeats, (args.batch, 256))
    config = SyntheConfig(vocab_size=256, d_model=128, n_layers=8, n_heads=4, router_aux_weight=0.5)
    model = Synthe(config)
    data = corpus()
    split = int(0.9 * len(data))
    print(f"model: {model.num_parameters():,} parameters; data: {'tinyshakespeare' if DATA.exists() else 'generated'}, "
          f"{len(data):,} bytes; exits after blocks {[i + 1 for i in config.exit_layers]}", flush=True)
    train(model, data[:split], steps, b, t, lr=2e-3)

    model.eval()
    x, y = next(batches(data[split:], 8, 4 * t, torch.Generator().manual_seed(2)))
    full = evaluate(model, x, y, early_exit=False)
    rows = []
    for threshold in THRESHOLDS:
        model.router.threshold = threshold
        r = evaluate(model, x, y, early_exit=True)
        rows.append({"threshold": threshold, "loss": r["loss"], "loss_increase": r["loss"] / full["loss"] - 1,
                     "blocks_per_token": r["blocks_per_token"], "block_flops_ratio": r["block_flops"] / full["block_flops"]})
    ok = [r for r in rows if r["loss_increase"] <= 0.01]
    best = min(ok, key=lambda r: r["block_flops_ratio"]) if ok else rows[0]
    model.router.threshold = best["threshold"]
    prompt = x[:1, :64]
    slow = ms_per_token(model, prompt, gen, False, repeats)
    fast = ms_per_token(model, prompt, gen, True, repeats)
    summary = [{"full_depth_loss": full["loss"], "chosen_threshold": best["threshold"],
                "block_flops_saved": 1 - best["block_flops_ratio"], "loss_increase": best["loss_increase"],
                "ms_per_token_full": slow, "ms_per_token_exit": fast, "generation_speedup": slow / fast}]
    text = "## Threshold sweep (anchor: full depth)\n\n" + format_table(rows) + "\n## Chosen threshold\n\n" + format_table(summary)
    write_report(args.out, "synthe_early_exit", text, plot, rows)
    return rows


if __name__ == "__main__":
    main()
