"""Verified synthesis: greedy vs sampling vs contrastive search, deterministic and seeded (CE vs CE + RL).

Each method writes one program per prompt (``-n`` prompts cycling through the 17 Θ classes,
each with a function header by default, so that nearly all prompts differ); every program is
parsed, type-checked and verified (both routes of synthfuse.koda.analysis.verify, through its
cache). The anchor is greedy decoding of the CE model, measured in the same run: the table
gives each row's rates, the distinct well-typed programs (up to renaming) and their ratio to
greedy's, and the Θ-match difference to greedy. Contrastive search runs twice: deterministic
(temperature 0: one program per distinct prompt) and seeded (``--seeded-temperature`` > 0:
its ``--seeded-top-k`` candidates drawn by Gumbel-top-k, seed ``--seed``).
With ``--rl-checkpoint`` the RL-tuned model is measured on the same prompts. Also prints, per
model, the Θ-match rate per requested class and the confusion table of greedy decoding
(requested class against the class the verifier's static route finds). Saves PNGs of the rates
and of each confusion table.

    python benchmarks/koda_synthesis.py --checkpoint runs/koda_tiny/checkpoint.pt \\
        --rl-checkpoint runs/koda_tiny/rl_checkpoint.pt            # 500 prompts
    python benchmarks/koda_synthesis.py --quick                   # trains a small model for a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from synthfuse.koda.synthesis.prompts import make_prompts
from synthfuse.koda.analysis.verify import VERIFY_CACHE
from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.synthesis.run import NO_CLASS, confusion, load_model, summarize, synthesize
from synthfuse.shared.demo import DemoContext


def quick_checkpoint(folder: Path) -> Path:
    """A small model trained for a few steps (only for the --quick smoke run)."""
    from synthfuse.koda.train.config import load_config
    from synthfuse.koda.train.trainer import KodaTrainer

    cfg = load_config({"model": {"d_model": 48, "n_layers": 2, "n_heads": 2, "d_ff": 96, "n_experts": 2,
                                 "ball_dim": 4},
                       "data": {"n_programs": 300}, "loss": {"wgan": {"enabled": False}},
                       "optim": {"lr": 3e-3, "warmup_steps": 5},
                       "train": {"steps": 30, "batch_size": 8, "eval_every": 30, "checkpoint_every": 30,
                                 "progress": False}})
    KodaTrainer(cfg, out_dir=folder, resume=False).fit()
    return folder / "checkpoint.pt"


def _confusion_table(ctx: DemoContext, label: str, table: dict, classes: list[str]) -> None:
    """Print ``table`` (requested x found class, greedy decoding of model ``label``) and save its heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    found = [c for c in THETA_CLASSES if any(c in row for row in table.values())]
    found += [NO_CLASS] if any(NO_CLASS in row for row in table.values()) else []
    slug = label.lower().replace(" ", "").replace("+", "_")
    ctx.table(f"koda_synthesis_confusion_{slug}",
              [{"requested Θ": c, **{f: table.get(c, {}).get(f, 0) for f in found}} for c in classes],
              title=f"{label} greedy: requested Θ class (rows) against the static route's class (columns)")
    counts = np.array([[table.get(c, {}).get(f, 0) for f in found] for c in classes], dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(found), 1 + 0.4 * len(classes)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(found)), found, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=6,
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("class found by the static route")
    ax.set_ylabel("requested class")
    ax.set_title(f"{label} greedy: requested vs found Θ class", fontsize=9)
    fig.tight_layout()
    ctx.savefig(fig, f"koda_synthesis_confusion_{slug}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="CE model (checkpoint.pt); --quick trains one if omitted")
    parser.add_argument("--rl-checkpoint", type=Path, help="RL-tuned model (rl_checkpoint.pt), optional")
    parser.add_argument("-n", type=int, default=None, help="prompts (default 500; 34 with --quick)")
    parser.add_argument("--alpha", type=float, default=0.4, help="contrastive search α")
    parser.add_argument("--top-k", type=int, default=4, help="contrastive search candidates")
    parser.add_argument("--seeded-top-k", type=int, default=2, help="seeded contrastive search: candidates")
    parser.add_argument("--seeded-temperature", type=float, default=1.0,
                        help="seeded contrastive search: temperature of the candidate draw (> 0)")
    parser.add_argument("--seeded-top-p", type=float, default=0.95,
                        help="seeded contrastive search: nucleus of the candidate draw (1: off)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--top-p", type=float, default=0.95, help="sampling nucleus mass")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=256, help="prompts decoded together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signature-prob", type=float, default=1.0,
                        help="fraction of prompts that also give a function header (1: the most distinct prompts)")
    parser.add_argument("--quick", action="store_true", help="34 prompts, 80 tokens; trains a tiny model if needed")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    n = args.n or (34 if args.quick else 500)
    max_new = 80 if args.quick else args.max_new_tokens
    ctx = DemoContext(out_dir=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or (quick_checkpoint(Path(tmp)) if args.quick else None)
        if checkpoint is None:
            parser.error("--checkpoint is required without --quick")
        models = [("CE", checkpoint)] + ([("CE + RL", args.rl_checkpoint)] if args.rl_checkpoint else [])
        prompts = make_prompts(n, seed=args.seed, signature_prob=args.signature_prob)
        methods = [("greedy", "greedy", {}),
                   ("sample", "sample", {"temperature": args.temperature, "top_p": args.top_p, "seed": args.seed}),
                   ("contrastive", "contrastive", {"alpha": args.alpha, "top_k": args.top_k}),
                   ("contrastive (seeded)", "contrastive",
                    {"alpha": args.alpha, "top_k": args.seeded_top_k, "temperature": args.seeded_temperature,
                     "top_p": args.seeded_top_p, "seed": args.seed})]
        rows, per_class, confusions = [], {}, {}
        for label, path in models:
            model, tokenizer, _ = load_model(path)
            for name, method, options in methods:
                checks = synthesize(model, tokenizer, prompts, method, max_new_tokens=max_new,
                                    batch_size=args.batch_size, progress=ctx.progress, **options)
                row = {"model": label, "method": name, **summarize(checks)}
                rows.append(row)
                per_class[f"{label} {name}"] = {c: summarize([k for k in checks if k.theta_class == c])["Θ-match %"]
                                                for c in THETA_CLASSES if any(k.theta_class == c for k in checks)}
                if method == "greedy":
                    confusions[label] = confusion(checks)
    print(f"verifier cache: {VERIFY_CACHE.hits} hits, {VERIFY_CACHE.misses} misses "
          f"({VERIFY_CACHE.misses} verify calls for {VERIFY_CACHE.hits + VERIFY_CACHE.misses} well-typed programs)")
    anchor = rows[0]
    for row in rows:
        row["distinct / greedy"] = row["distinct"] / max(1, anchor["distinct"])
        row["Θ-match − greedy (pts)"] = row["Θ-match %"] - anchor["Θ-match %"]
    detail = (f"{n} prompts over the Θ classes ({len(set(prompts))} distinct, the most a deterministic decoder "
              f"can write; seed {args.seed}, signature prob. {args.signature_prob}); sample: T = {args.temperature}, "
              f"top-p = {args.top_p}; contrastive: α = {args.alpha}, k = {args.top_k}; contrastive (seeded): "
              f"α = {args.alpha}, k = {args.seeded_top_k}, T = {args.seeded_temperature}, "
              f"top-p = {args.seeded_top_p}, seed {args.seed}; anchor: CE greedy")
    ctx.table("koda_synthesis", [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
                                 for r in rows], title=f"Verified synthesis: {detail}")
    classes = list(next(iter(per_class.values())))
    ctx.table("koda_synthesis_per_class", [{"requested Θ": c, **{run: round(v[c], 1) for run, v in per_class.items()}}
                                           for c in classes], title="Θ-match % per requested class")
    for label, table in confusions.items():
        _confusion_table(ctx, label, table, classes)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("parse %", "well-typed %", "Θ-match %")
    fig, (ax, target) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(xs, [row[m] for m in metrics], width,
               label=f"{row['model']} {row['method']} ({row['distinct']} distinct)")
        target.scatter(row["distinct / greedy"], row["Θ-match − greedy (pts)"], color=f"C{i}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of programs")
    ax.set_title(f"Verified synthesis on {n} prompts")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    # The diversity target: >= 2x greedy's distinct programs, losing <= 5 pts of Θ-match.
    right = max(3.0, *(r["distinct / greedy"] + 0.2 for r in rows))
    top = max(5.0, *(r["Θ-match − greedy (pts)"] + 2 for r in rows))
    target.fill_between([2, right], -5, top, color="0.9", zorder=0, label="target: ≥ 2×, ≥ −5 pts")
    target.set_xlim(0, right)
    target.set_xlabel("distinct programs / CE greedy's")
    target.set_ylabel("Θ-match − CE greedy (pts)")
    target.set_title("issue #11 diversity target (each row: its bar colour)", fontsize=9)
    target.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    ctx.savefig(fig, "koda_synthesis")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    raise SystemExit(main())
