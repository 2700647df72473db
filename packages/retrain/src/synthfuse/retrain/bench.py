"""Benchmarks of the retraining methods (``synthfuse retrain bench``, ``benchmarks/retrain_*.py``).

- ``synthetic``: ``make_classification(24000, 40 features, 20 informative, 10 redundant,
  10 classes, 2 clusters per class, class_sep=1.0)``, standardized, 16k train / 8k held out (2k
  validation for the methods' choices, 6k test for every reported figure); MLP 40-128-10;
  θ* trained on 4k of the training samples, θ† on all 16k; KDT's teacher is an ensemble of θ†
  and four more superior models trained with other seeds.
- ``digits``: scikit-learn's digits, 5-fold cross-validation pooled over the folds (every sample
  is tested once: flip counts over 1797 samples); MLP 64-128-128-10; in each fold 20% of the
  training part is validation, θ† is trained on the rest and θ* on a quarter of it. The loss
  barrier of θ* → θ† is measured on the test fold, naive and after weight matching.

Every figure is a mean ± std over seeds (each seed redraws the initializations, the subsets and
the folds). Both need scikit-learn (``pip install scikit-learn``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from synthfuse.retrain.api import retrain
from synthfuse.retrain.architectures import MLP
from synthfuse.retrain.data import Dataset
from synthfuse.retrain.datasets import load_digits, standardize
from synthfuse.retrain.metrics import evaluate, logits_of
from synthfuse.retrain.path import loss_barrier
from synthfuse.retrain.alignment import align
from synthfuse.retrain.training import train_classifier
from synthfuse.retrain.verdict import dominates
from synthfuse.shared.io import atomic_write_text

__all__ = ["ABLATIONS", "DIFFUSE_OPTIONS", "METHOD_OPTIONS", "Setup", "add_arguments", "main", "run", "run_digits_seed", "run_synthetic_seed", "summarize"]

#: The options each method runs with in the benchmarks: the methods' defaults, and for KDT an
#: ensemble teacher (``"ensemble": True``: θ† and the other superior models).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "kdt": dict(ensemble=True, epochs=60),
    "wsft": dict(epochs=20),
    "otwi": dict(finetune_epochs=20),
    "frr": dict(epochs=10),
}

#: The stochastic methods (their defaults); run them with ``--methods til fdd dbsd sb``.
DIFFUSE_OPTIONS: dict[str, dict[str, Any]] = {"til": {}, "fdd": {}, "dbsd": {}, "sb": {}}

#: Variants run with ``--ablations``: name -> (method, options).
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "kdt (θ† alone)": ("kdt", {**METHOD_OPTIONS["kdt"], "ensemble": False}),
    "kdt (no focal)": ("kdt", {**METHOD_OPTIONS["kdt"], "focal_weight": 0.0}),
    "wsft (no focal)": ("wsft", {**METHOD_OPTIONS["wsft"], "focal_weight": 0.0}),
    "wsft (Fisher metric)": ("wsft", {**METHOD_OPTIONS["wsft"], "metric": "fisher"}),
    "otwi (no fine-tune)": ("otwi", {**METHOD_OPTIONS["otwi"], "finetune_epochs": 0}),
    "frr (no NTK term)": ("frr", {**METHOD_OPTIONS["frr"], "ntk_weight": 0.0}),
}


@dataclass(frozen=True)
class Setup:
    """Sizes and schedules of one benchmark."""

    n_samples: int
    hidden: tuple[int, ...]
    incumbent_fraction: float
    incumbent_epochs: int
    superior_epochs: int
    ensemble: int
    batch_size: int = 128


SYNTHETIC = Setup(n_samples=24000, hidden=(128,), incumbent_fraction=0.25, incumbent_epochs=200, superior_epochs=100, ensemble=5)
DIGITS = Setup(n_samples=1797, hidden=(128, 128), incumbent_fraction=0.25, incumbent_epochs=150, superior_epochs=60, ensemble=5, batch_size=64)


def _quick(setup: Setup) -> Setup:
    return replace(setup, n_samples=min(setup.n_samples, 6000), incumbent_epochs=setup.incumbent_epochs // 4,
                   superior_epochs=setup.superior_epochs // 4, ensemble=3)


def _options(name: str, quick: bool) -> tuple[str, dict[str, Any]]:
    named = {**METHOD_OPTIONS, **DIFFUSE_OPTIONS}
    method, o = (name, dict(named[name])) if name in named else (ABLATIONS[name][0], dict(ABLATIONS[name][1]))
    if quick:
        for key in ("epochs", "finetune_epochs"):
            if key in o:
                o[key] = max(1, o[key] // 4) if o[key] else 0
    return method, o


def _mlp(in_features: int, setup: Setup, n_classes: int, seed: int) -> MLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(in_features, setup.hidden, n_classes)


def _models(train: Dataset, setup: Setup, seed: int, n_classes: int) -> tuple[MLP, list[MLP]]:
    """θ* on a seeded subset, and the superior ensemble (θ† first) on all of ``train``."""
    g = torch.Generator().manual_seed(seed)
    subset = torch.randperm(len(train), generator=g)[: int(setup.incumbent_fraction * len(train))]
    d = train.X.shape[1]
    inc = train_classifier(_mlp(d, setup, n_classes, 1000 + seed), train.subset(subset), epochs=setup.incumbent_epochs,
                           batch_size=setup.batch_size, seed=1000 + seed)
    ens = [train_classifier(_mlp(d, setup, n_classes, 2000 + 10 * seed + k), train, epochs=setup.superior_epochs,
                            batch_size=setup.batch_size, seed=2000 + 10 * seed + k) for k in range(setup.ensemble)]
    return inc, ens


def _run_methods(inc, ens, train, val, methods, seed, quick):
    out = {}
    for name in methods:
        method, o = _options(name, quick)
        if o.pop("ensemble", False):
            o["teachers"] = ens
        t0 = time.perf_counter()
        result = retrain(inc, ens[0], train=train, val=val, method=method, seed=seed, **o)
        out[name] = (result, time.perf_counter() - t0)
    return out


def _row(seed: int, name: str, logits: torch.Tensor, y: torch.Tensor, inc_logits, sup_logits, seconds=None, **extra) -> dict:
    m = evaluate(logits, y, inc_logits.argmax(1))
    v = dominates(logits, sup_logits, inc_logits, (torch.zeros(len(y), 1), y), seed=seed)
    return {"seed": seed, "model": name, "accuracy": m.accuracy, "nfr": m.negative_flip_rate,
            "flips": m.n_negative_flips, "nll": m.nll, "dominates": bool(v), "verdict": v.summary(),
            "nfr_ci_hi": v.nfr_diff_ci[1], "mcnemar_p": v.mcnemar_p, "seconds": seconds, **extra}


def synthetic_data(seed_data: int = 0, n_samples: int = 24000) -> tuple[Dataset, Dataset, Dataset]:
    """(train 2/3, val 1/12, test 1/4) of the issue's ``make_classification`` problem, standardized on train."""
    try:
        from sklearn.datasets import make_classification
    except ImportError as err:
        raise ImportError("the synthetic benchmark uses scikit-learn's make_classification: pip install scikit-learn") from err
    X, y = make_classification(n_samples, n_features=40, n_informative=20, n_redundant=10, n_classes=10,
                               n_clusters_per_class=2, class_sep=1.0, random_state=seed_data)
    X, y = torch.from_numpy(X).float(), torch.from_numpy(y).long()
    n_train, n_val = 2 * n_samples // 3, n_samples // 12
    Xs = standardize(X, X[:n_train])
    return (Dataset(Xs[:n_train], y[:n_train]), Dataset(Xs[n_train : n_train + n_val], y[n_train : n_train + n_val]),
            Dataset(Xs[n_train + n_val :], y[n_train + n_val :]))


def run_synthetic_seed(seed: int, quick: bool = False, methods: Sequence[str] = tuple(METHOD_OPTIONS)) -> list[dict]:
    """All rows (θ*, θ†, ensemble, each method) of one seed of the synthetic benchmark, on the test split."""
    torch.set_num_threads(1)
    setup = _quick(SYNTHETIC) if quick else SYNTHETIC
    train, val, test = synthetic_data(0, setup.n_samples)
    inc, ens = _models(train, setup, seed, 10)
    zi, zs = logits_of(inc, test.X), logits_of(ens[0], test.X)
    rows = [_row(seed, "θ* (incumbent)", zi, test.y, zi, zs), _row(seed, "θ† (superior)", zs, test.y, zi, zs)]
    z_ens = torch.stack([torch.log_softmax(logits_of(e, test.X), 1) for e in ens]).exp().mean(0).log()
    rows.append(_row(seed, f"ensemble of {len(ens)} ({len(ens)}× inference cost)", z_ens, test.y, zi, zs))
    for name, (result, seconds) in _run_methods(inc, ens, train, val, methods, seed, quick).items():
        rows.append(_row(seed, name, logits_of(result.model, test.X), test.y, zi, zs, seconds,
                         **{k: v for k, v in result.details.items() if k.startswith("barrier") or k.endswith("midpoint_nll")}))
    return rows


def run_digits_seed(seed: int, quick: bool = False, methods: Sequence[str] = tuple(METHOD_OPTIONS)) -> tuple[list[dict], dict]:
    """Pooled 5-fold rows of one seed on digits, and the loss barriers (mean over folds)."""
    torch.set_num_threads(1)
    try:
        from sklearn.model_selection import StratifiedKFold
    except ImportError as err:
        raise ImportError("the digits benchmark needs scikit-learn: pip install scikit-learn") from err
    setup = _quick(DIGITS) if quick else DIGITS
    data = load_digits()
    folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(data.X.numpy(), data.y.numpy())
    pooled: dict[str, list[torch.Tensor]] = {}
    ys, barriers = [], {"naive": [], "aligned": [], "activations": [], "loss_naive": [], "loss_aligned": []}
    seconds: dict[str, float] = {}
    for k, (tr, te) in enumerate(folds):
        if quick and k >= 2:
            break
        tr = torch.from_numpy(tr)[torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed * 10 + k))]
        n_val = len(tr) // 5
        fit_part, val = data.subset(tr[n_val:]), data.subset(tr[:n_val])
        test = data.subset(torch.from_numpy(te))
        inc, ens = _models(fit_part, setup, seed * 10 + k, 10)
        results = _run_methods(inc, ens, fit_part, val, methods, seed, quick)
        for name, model in [("θ* (incumbent)", inc), ("θ† (superior)", ens[0])] + [(n, r.model) for n, (r, _) in results.items()]:
            pooled.setdefault(name, []).append(logits_of(model, test.X))
        for n, (_, s) in results.items():
            seconds[n] = seconds.get(n, 0.0) + s
        ys.append(test.y)
        naive = loss_barrier(inc, ens[0], test)
        aligned = loss_barrier(inc, align(inc, ens[0], data=fit_part).model, test)
        by_activations = loss_barrier(inc, align(inc, ens[0], data=fit_part, matching="activations").model, test)
        barriers["naive"].append(naive.barrier)
        barriers["aligned"].append(aligned.barrier)
        barriers["activations"].append(by_activations.barrier)
        barriers["loss_naive"].append(naive.losses)
        barriers["loss_aligned"].append(aligned.losses)
        barriers["ts"] = naive.ts
    y = torch.cat(ys)
    zi, zs = torch.cat(pooled["θ* (incumbent)"]), torch.cat(pooled["θ† (superior)"])
    rows = [_row(seed, name, torch.cat(z), y, zi, zs, seconds.get(name)) for name, z in pooled.items()]
    return rows, barriers


def _mean_std(values: list[float], fmt: str = ".4f") -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{fmt}} ± {std:{fmt}}"


def _target(name: str, rows: list[dict], sup: dict[int, dict]) -> str:
    """The issue's per-method target, counted over seeds."""
    hits = []
    for r in rows:
        s = sup[r["seed"]]
        gain, rel = r["accuracy"] - s["accuracy"], 1 - r["nfr"] / s["nfr"] if s["nfr"] > 0 else math.nan
        hits.append({
            "kdt": r["dominates"] and gain >= 0.008 and rel >= 0.2,
            "otwi": r["dominates"],
            "wsft": r["nfr"] <= 0.8 * s["nfr"] and gain >= -0.005,
            "frr": r["nfr"] < s["nfr"] and gain >= -0.003,
            "til": r["dominates"],
            "fdd": r["dominates"] and rel >= 0.2,
            "dbsd": _midpoint_le_line(r),
            "sb": _midpoint_le_line(r),
        }.get(name, None))
    if any(h is None for h in hits):
        return ""
    return f"{sum(hits)}/{len(hits)}"


def _midpoint_le_line(row: dict) -> bool | None:
    """Whether the path's mean validation loss at t = 1/2 is at most the aligned straight line's."""
    if "bridge_midpoint_nll" not in row:
        return None
    return row["bridge_midpoint_nll"] <= row["line_midpoint_nll"]


def _midpoints(rows: list[dict]) -> str:
    """``path / line (≤ in k/n)``: validation loss at t = 1/2 of the method's path and of the aligned line."""
    pairs = [(r["bridge_midpoint_nll"], r["line_midpoint_nll"]) for r in rows if "bridge_midpoint_nll" in r]
    if not pairs:
        return ""
    below = sum(p <= q for p, q in pairs)
    return (f"{statistics.fmean(p for p, _ in pairs):.4f} / {statistics.fmean(q for _, q in pairs):.4f} "
            f"(≤ in {below}/{len(pairs)})")


TARGETS = {
    "kdt": "dominates, ≥ +0.8 pt acc, ≥ 20% less NFR",
    "otwi": "dominates (after fine-tune)",
    "wsft": "NFR ≤ 0.8·NFR(θ†), acc ≥ acc(θ†) − 0.5 pt",
    "frr": "NFR < NFR(θ†), acc ≥ acc(θ†) − 0.3 pt",
    "til": "dominates in ≥ 2/3 seeds",
    "fdd": "dominates, ≥ 20% less NFR",
    "dbsd": "midpoint loss ≤ aligned line's",
    "sb": "midpoint loss ≤ aligned line's",
}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per model, with ratios against θ† (the anchor) and the targets met."""
    sup = {r["seed"]: r for r in rows if r["model"].startswith("θ†")}
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        out.append({
            "model": name,
            "accuracy": _mean_std([r["accuracy"] for r in rs]),
            "Δacc vs θ† (pt)": _mean_std([100 * (r["accuracy"] - sup[r["seed"]]["accuracy"]) for r in rs]),
            "NFR": _mean_std([r["nfr"] for r in rs]),
            "NFR / NFR(θ†)": _mean_std([r["nfr"] / sup[r["seed"]]["nfr"] for r in rs if sup[r["seed"]]["nfr"] > 0]),
            "flips": " ".join(str(r["flips"]) for r in rs),
            "NLL": _mean_std([r["nll"] for r in rs]),
            "dominates θ†": f"{sum(r['dominates'] for r in rs)}/{len(rs)}",
            "target": (f"{_target(name, rs, sup)} ({TARGETS[name]})" if name in TARGETS else ""),
        })
        if any(r.get("seconds") is not None for r in rows):
            out[-1]["time (s, under load)"] = _mean_std([r["seconds"] for r in rs if r.get("seconds") is not None], ".1f")
        if any("bridge_midpoint_nll" in r for r in rows):
            out[-1]["val loss at t = ½: path / line"] = _midpoints(rs)
    return out


def _plot(rows: list[dict], title: str, path: Path, barriers: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthfuse.shared.io import atomic_open

    ncols = 2 if barriers else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    names = [n for n in dict.fromkeys(r["model"] for r in rows) if not n.startswith("θ*")]
    colors = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        rs = [r for r in rows if r["model"] == name]
        anchor = name.startswith("θ†")
        ax.scatter([100 * r["nfr"] for r in rs], [100 * r["accuracy"] for r in rs], label=name,
                   s=150 if anchor else 40, marker="*" if anchor else "os^D"[i % 4],
                   color="black" if anchor else colors(i % 20), zorder=3 if anchor else 2)
    ax.set_xlabel("negative-flip rate vs θ* (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}: up and to the left dominates θ†")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if barriers:
        ax = axes[0, 1]
        ts = barriers[0]["ts"]
        for key, label in (("loss_naive", "naive θ* → θ†"), ("loss_aligned", "θ* → weight-matched θ†")):
            curves = torch.tensor([c for b in barriers for c in b[key]])
            ax.plot(ts, curves.mean(0).tolist(), label=label)
            ax.fill_between(ts, curves.min(0).values.tolist(), curves.max(0).values.tolist(), alpha=0.2)
        ax.set_xlabel("t along the interpolation path")
        ax.set_ylabel("test loss (mean, min-max over folds and seeds)")
        ax.set_title("loss barrier")
        ax.legend()
        ax.grid(alpha=0.3)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _table(rows: list[dict]) -> str:
    from synthfuse.shared.demo import format_table

    return format_table(rows)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's command-line arguments (shared by ``main`` and ``synthfuse retrain bench``)."""
    parser.add_argument("suite", choices=["synthetic", "digits"])
    parser.add_argument("--quick", action="store_true", help="small sizes and short schedules (smoke run)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 with --quick)")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_OPTIONS), choices=list(METHOD_OPTIONS) + list(DIFFUSE_OPTIONS))
    parser.add_argument("--ablations", action="store_true", help=f"also run {list(ABLATIONS)}")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/retrain_<suite>.py [--quick] [--seeds ...] [--jobs N] [--out DIR]``."""
    parser = add_arguments(argparse.ArgumentParser(prog="synthfuse retrain bench", description=__doc__.split("\n\n")[0]))
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; print and save the tables and the PNG."""
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    run = run_synthetic_seed if args.suite == "synthetic" else run_digits_seed
    methods = list(args.methods) + (list(ABLATIONS) if args.ablations else [])
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(seeds), desc=f"{args.suite} seeds", file=sys.stderr)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run, s, args.quick, methods) for s in seeds]
            for f in as_completed(futures):
                bar.update()
            results = [f.result() for f in futures]
    else:
        results = []
        for s in seeds:
            results.append(run(s, args.quick, methods))
            bar.update()
    bar.close()
    barriers = None
    if args.suite == "digits":
        barriers = [b for _, b in results]
        results = [r for r, _ in results]
    rows = [r for rs in results for r in rs]
    summary = summarize(rows)
    text = f"# retrain benchmark: {args.suite}{' (quick)' if args.quick else ''}, seeds {seeds}\n\n" + _table(summary)
    if barriers:
        red = [1 - a / n for b in barriers for a, n in zip(b["aligned"], b["naive"])]
        red_act = [1 - a / n for b in barriers for a, n in zip(b["activations"], b["naive"])]
        text += ("\nLoss barrier θ* → θ† on the test folds (mean ± std over folds × seeds): naive "
                 f"{_mean_std([x for b in barriers for x in b['naive']])}, weight matching "
                 f"{_mean_std([x for b in barriers for x in b['aligned']])} (reduction {_mean_std(red)}), "
                 f"activation matching {_mean_std([x for b in barriers for x in b['activations']])} "
                 f"(reduction {_mean_std(red_act)}).\n")
    text += "\nPer seed:\n\n" + _table([{k: v for k, v in r.items() if k not in ("nfr_ci_hi",)} for r in rows])
    text += f"\n(total {time.perf_counter() - t0:.0f} s wall clock)\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"retrain_{args.suite}.md", text)
    _plot(rows, args.suite, args.out / f"retrain_{args.suite}.png", barriers)
    print(f"wrote {args.out / f'retrain_{args.suite}.md'} and .png", file=sys.stderr)
    return 0
