"""Character-level tinyshakespeare: SYNTHE vs the same-size Transformer for the same training time.

Both models are trained by ``Trainer`` from ``configs/synthe_cpu.yaml`` (4 blocks, width 128,
nanoGPT's CPU size) with the same wall-clock budget (``--minutes``, default 10; the issue's
target is a validation loss <= 1.88, stretch 1.75). The anchor is the Transformer: the table
gives each model's steps, validation loss, its ratio to the anchor's, and greedy / sampled text.
Without tinyshakespeare on disk (``--data``, the cache or a download) nothing can run.

    python benchmarks/synthe_lm.py [--quick] [--minutes 10] [--data PATH] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_write_text
from synthfuse.synthe.train import RunConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 seconds per model on a 100k-character slice")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "synthe_cpu.yaml")
    parser.add_argument("--data", default=str(LOCAL) if LOCAL.exists() else "tinyshakespeare")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data
    if args.quick:  # a slice keeps the char vocabulary small and the run short
        from synthfuse.synthe.train import load_corpus

        data = str(args.out / "lm_quick.txt")
        atomic_write_text(data, load_corpus(args.data)[:100_000])
    budget = 20.0 if args.quick else 60.0 * args.minutes
    base = RunConfig.from_yaml(args.config)
    rows, samples = [], []
    for model_type in ("synthe", "transformer"):
        run = base.replace(model_type=model_type, data={"name": data}, train={
            "time_budget_s": budget, "max_steps": 40 if args.quick else base.train.max_steps, "device": args.device,
            "eval_interval": 20 if args.quick else base.train.eval_interval, "eval_batches": 4 if args.quick else None,
            "out_dir": str(args.out / f"lm_{model_type}")})
        trainer = Trainer(run)
        final = trainer.fit()
        prompt = trainer.data.tokenizer.decode(trainer.data.splits["val"][:1].tolist())
        n = 100 if args.quick else 300
        samples.append(f"## {model_type}\n--- greedy ---\n{prompt}{trainer.sample(prompt, n, temperature=0.0)}\n"
                       f"--- sampled (T=0.8, top-k 50) ---\n{prompt}{trainer.sample(prompt, n, 0.8, 50)}\n")
        rows.append({"model": model_type, "params": sum(p.numel() for p in trainer.model.parameters()),
                     "steps": trainer.step, "train_s": trainer.elapsed, "val_loss": final["val_loss"]})
    anchor = rows[-1]["val_loss"]
    for r in rows:
        r["val_loss_vs_transformer"] = r["val_loss"] / anchor
    table = format_table(rows)
    print(table + "\n\n" + "\n".join(samples))
    atomic_write_text(args.out / "synthe_lm.md", table + "\n\n" + "\n".join(samples))
    atomic_write_text(args.out / "synthe_lm.json", json.dumps(rows, indent=1))
    _plot(args.out)
    return rows


def _plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthfuse.shared.io import atomic_open

    fig, ax = plt.subplots(figsize=(6, 4))
    for model_type in ("synthe", "transformer"):
        history = [json.loads(x) for x in (out / f"lm_{model_type}" / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in history if "val_loss" in r]
        ax.plot([r["elapsed_s"] for r in evals], [r["val_loss"] for r in evals], "o-", label=model_type)
    ax.axhline(1.88, color="gray", ls="--", lw=0.8, label="target 1.88")
    ax.set(xlabel="training seconds", ylabel="val loss (nats/char)", title="tinyshakespeare, char-level")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_open(out / "synthe_lm.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
