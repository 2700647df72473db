"""The ``retrain`` section of ``synthfuse demo``: upgrade a digits classifier without regressions.

θ* (an MLP trained on a quarter of the training digits) is deployed; θ† (trained on all of them)
is more accurate but gets some of θ*'s correct answers wrong. Each method — the deterministic
paths (KDT, WSFT, OTWI, FRR) and the stochastic ones (TIL, FDD, DBSD, SB) — builds θ‡; the table
shows accuracy, negative flips, whether θ‡ dominates θ† on held-out digits and each method's run
time, and the figure shows the loss along the straight path θ* → θ†, naive and after aligning
θ†'s units (OTWI), the methods in the accuracy / NFR plane, and the validation loss along TIL's
Langevin chain and DBSD's bridge against the aligned straight line. With ``ctx.full`` one seed of the synthetic benchmark
(KDT and the four stochastic methods, :func:`synthfuse.retrain.bench.run_synthetic_seed`) follows.
Falls back to built-in synthetic data when scikit-learn (the digits) is not installed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from synthfuse.retrain.alignment import align
from synthfuse.retrain.api import retrain
from synthfuse.retrain.bench import DIFFUSE_OPTIONS, METHOD_OPTIONS, run_synthetic_seed
from synthfuse.retrain.datasets import load_digits, split, synthetic_classification
from synthfuse.retrain.methods import get_method
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
    models = [("θ* incumbent", inc, None), ("θ† superior", sup, None)]
    results = {}
    for method, defaults in ctx.progress(list({**METHOD_OPTIONS, **DIFFUSE_OPTIONS}.items()), desc="methods"):
        options = dict(defaults)
        declared = {f.name: f.default for f in dataclasses.fields(get_method(method).Options)}
        for key in ("epochs", "finetune_epochs", "n_steps"):  # the schedule, scaled by epoch_scale
            if key in declared:
                options[key] = max(2 if key == "n_steps" else 1, epochs(options.get(key, declared[key])))
        if options.pop("ensemble", False):
            options["teachers"] = ens
        t0 = time.perf_counter()
        results[method] = retrain(inc, sup, train=train, val=val, method=method, seed=ctx.seed, **options)
        models.append((f"θ‡ {method}", results[method].model, time.perf_counter() - t0))
    for label, model, seconds in models:
        z = logits_of(model, test.X)
        m = evaluate(z, test.y, zi.argmax(1))
        v = dominates(z, zs, zi, (test.X, test.y), seed=ctx.seed)
        rows.append({"model": label, "accuracy": round(m.accuracy, 4), "NFR vs θ*": round(m.negative_flip_rate, 4),
                     "negative flips": m.n_negative_flips, "NLL": round(m.nll, 4), "dominates θ†": v.summary(),
                     "time (s)": None if seconds is None else round(seconds, 1)})
        if label.startswith("θ‡"):
            headline[f"{label.split()[1]}_dominates"] = bool(v)
    ctx.table("retrain_methods", rows, title=f"Upgrading θ* on {name} ({len(test)} held-out samples)")

    naive = loss_barrier(inc, sup, test, n_points=21)
    aligned_model = align(inc, sup, data=train).model
    aligned = loss_barrier(inc, aligned_model, test, n_points=21)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(18, 4.5))
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
    line = loss_barrier(inc, aligned_model, val, n_points=21)
    cx.plot(line.ts, line.losses, "o-", color="gray", label="straight line θ* → aligned θ†")
    for method, key in (("til", "step"), ("dbsd", "t")):
        path = [r for r in results[method].trace if key in r and "nll" in r and isinstance(r[key], (int, float))]
        end = max(r[key] for r in path)
        cx.plot([r[key] / end for r in path], [r["nll"] for r in path], ".-",
                label=f"{method.upper()} ({'Langevin chain, per epoch' if method == 'til' else 'bridge with drift'})")
    cx.axhline(results["til"].baselines["superior"].nll, color="black", ls=":", label="θ†")
    cx.set_xlabel("fraction of the path (TIL: steps; DBSD: bridge time t)")
    cx.set_ylabel("validation cross-entropy")
    cx.set_title("Loss along the stochastic paths")
    cx.legend(fontsize=8)
    cx.grid(alpha=0.3)
    ctx.savefig(fig, "retrain_paths")
    headline.update(barrier_naive=naive.barrier, barrier_aligned=aligned.barrier)
    for method in ("dbsd", "sb"):
        d = results[method].details
        if "bridge_midpoint_nll" in d:  # DBSD: when t = 1/2 is one of its evaluation times
            headline[f"{method}_midpoint_loss_le_line"] = d["bridge_midpoint_nll"] <= d["line_midpoint_nll"]
    if ctx.full:
        rows = run_synthetic_seed(ctx.seed, methods=["kdt", *DIFFUSE_OPTIONS])
        keep = ("model", "accuracy", "nfr", "flips", "nll", "dominates", "seconds", "bridge_midpoint_nll", "line_midpoint_nll")
        ctx.table("retrain_synthetic", [{k: r.get(k) for k in keep} for r in rows],
                  title=f"Synthetic benchmark, seed {ctx.seed} (test split of 6000)")
    return headline
