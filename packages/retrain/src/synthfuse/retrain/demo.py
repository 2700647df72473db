"""The ``retrain`` section of ``synthfuse demo``: upgrade a digits classifier without regressions.

θ* (an MLP trained on a quarter of the training digits) is deployed; θ† (trained on all of them)
is more accurate but gets some of θ*'s correct answers wrong. Each method builds θ‡; the table
shows accuracy, negative flips and whether θ‡ dominates θ† on held-out digits, and the figure
shows the loss along the straight path θ* → θ†, naive and after aligning θ†'s units (OTWI).
Falls back to built-in synthetic data when scikit-learn (the digits) is not installed.
"""

from __future__ import annotations

from typing import Any

import torch

from synthfuse.retrain.alignment import align
from synthfuse.retrain.api import retrain
from synthfuse.retrain.bench import METHOD_OPTIONS
from synthfuse.retrain.datasets import load_digits, split, synthetic_classification
from synthfuse.retrain.metrics import evaluate, logits_of
from synthfuse.retrain.path import loss_barrier
from synthfuse.retrain.architectures import MLP
from synthfuse.retrain.training import train_classifier
from synthfuse.retrain.verdict import dominates


def _data(seed: int):
    try:
        return load_digits(), "digits"
    except ImportError:
        return synthetic_classification(3000, n_features=20, n_informative=10, n_classes=4, seed=seed), "synthetic"


def run(ctx: Any, *, hidden: tuple[int, ...] = (128,), ensemble: int = 3, epoch_scale: float = 1.0) -> dict[str, Any]:
    """Build θ*, θ† and each method's θ‡ on digits; write the table and the barrier plot."""
    torch.set_num_threads(1)
    data, name = _data(ctx.seed)
    train, val, test = split(data, (0.5, 0.1, 0.4), seed=ctx.seed)  # a large test part: flips are rare
    d, k = data.X.shape[1], data.n_classes
    epochs = lambda n: max(1, int(n * epoch_scale))  # noqa: E731

    def mlp(seed: int) -> MLP:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return MLP(d, hidden, k)

    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed))[: len(train) // 4]
    inc = train_classifier(mlp(1), train.subset(subset), epochs=epochs(150), batch_size=64, seed=1)
    ens = [train_classifier(mlp(2 + i), train, epochs=epochs(60), batch_size=64, seed=2 + i)
           for i in ctx.progress(range(ensemble), desc="θ† and ensemble")]
    sup = ens[0]
    zi, zs = logits_of(inc, test.X), logits_of(sup, test.X)
    rows, headline = [], {}
    models = [("θ* incumbent", inc), ("θ† superior", sup)]
    for method in ctx.progress(list(METHOD_OPTIONS), desc="methods"):
        options = dict(METHOD_OPTIONS[method])
        for key in ("epochs", "finetune_epochs"):
            if key in options:
                options[key] = epochs(options[key])
        if options.pop("ensemble", False):
            options["teachers"] = ens
        models.append((f"θ‡ {method}", retrain(inc, sup, train=train, val=val, method=method, seed=ctx.seed, **options).model))
    for label, model in models:
        z = logits_of(model, test.X)
        m = evaluate(z, test.y, zi.argmax(1))
        v = dominates(z, zs, zi, (test.X, test.y), seed=ctx.seed)
        rows.append({"model": label, "accuracy": round(m.accuracy, 4), "NFR vs θ*": round(m.negative_flip_rate, 4),
                     "negative flips": m.n_negative_flips, "NLL": round(m.nll, 4), "dominates θ†": v.summary()})
        if label.startswith("θ‡"):
            headline[f"{label.split()[1]}_dominates"] = bool(v)
    ctx.table("retrain_methods", rows, title=f"Upgrading θ* on {name} ({len(test)} held-out samples)")

    naive = loss_barrier(inc, sup, test, n_points=21)
    aligned = loss_barrier(inc, align(inc, sup, data=train).model, test, n_points=21)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax.plot(naive.ts, naive.losses, "o-", label=f"naive θ* → θ† (barrier {naive.barrier:.3f})")
    ax.plot(aligned.ts, aligned.losses, "o-", label=f"θ* → aligned θ† (barrier {aligned.barrier:.3f})")
    ax.set_xlabel("t (interpolation weight of θ†)")
    ax.set_ylabel("test cross-entropy")
    ax.set_title("Loss along the linear path, before and after weight matching")
    ax.legend()
    ax.grid(alpha=0.3)
    points: dict[tuple[float, float], list[str]] = {}
    for row in rows:  # models at the same point share one label
        points.setdefault((100 * row["NFR vs θ*"], 100 * row["accuracy"]), []).append(row["model"])
    for (x, y), labels in points.items():
        bx.scatter(x, y, s=60, marker="*" if any("θ†" in lab for lab in labels) else "o")
        bx.annotate(", ".join(labels), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    bx.set_xlabel("negative-flip rate vs θ* (%)")
    bx.set_ylabel("test accuracy (%)")
    bx.set_title("Up and to the left of θ† dominates")
    bx.grid(alpha=0.3)
    ctx.savefig(fig, "retrain_paths")
    headline.update(barrier_naive=naive.barrier, barrier_aligned=aligned.barrier)
    return headline
