"""Accuracy of MixtureOfSVRExperts against RandomForest, HistGradientBoosting, SVR and LightGBM.

Data (the issue's benchmark):

* ``sine``: X ~ N(0, I5), y = sin(3 x0) + x1^2 + noise with sd 0.1 + 0.5 |x0|; RMSE against the
  noise-free function on 20,000 test points, at N = 1,000 and 20,000 training points;
* ``friedman1-het``: Friedman #1 with noise sd 0.5 + 2 x0 (RMSE against the noise-free function);
* ``diabetes``: scikit-learn's diabetes data (442 patients), RMSE on held-out targets by 5-fold CV.

Anchors, fitted in the same run: RandomForest(300), HistGradientBoosting, SVR (RBF, standardized
inputs and targets) and LightGBM with ``linear_tree=True`` when ``lightgbm`` is installed. The
ablation refits the mixture with ``complexity="none"`` (Ω = 1) at several ``lam_tree``; the last
table gives the held-out coverage of ``predict_interval``.

    python benchmarks/acr_accuracy.py            # full run (minutes)
    python benchmarks/acr_accuracy.py --quick    # smoke run (N = 1,000 only)

Prints Markdown tables (RMSE and the ratio to HistGradientBoosting) and writes
``acr_accuracy.png`` (and ``acr_accuracy.md``) to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from synthfuse.acr import MixtureOfSVRExperts
from synthfuse.acr.datasets import make_heteroscedastic_friedman1, make_heteroscedastic_sine
from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_open
from _report import write_report

TUNED = dict(n_experts=32, n_partitions=4, lam_tree=100.0, smoothing=3.0)


def models(seed: int, with_svr: bool = True, tuned: bool = True) -> dict:
    """Name -> unfitted estimator, for one comparison."""
    out = {
        "acr (defaults)": MixtureOfSVRExperts(random_state=seed),
        "acr (defaults, Ω=1)": MixtureOfSVRExperts(complexity="none", random_state=seed),
    }
    if tuned:
        out["acr (K=32, B=4, λ=100, δ=3)"] = MixtureOfSVRExperts(random_state=seed, **TUNED)
        out["acr (K=32, B=4, λ=100, δ=3, Ω=1)"] = MixtureOfSVRExperts(
            complexity="none", random_state=seed, **TUNED
        )
    out["RandomForest(300)"] = RandomForestRegressor(n_estimators=300, random_state=seed)
    out["HistGradientBoosting"] = HistGradientBoostingRegressor(random_state=seed)
    if with_svr:
        out["SVR (rbf)"] = TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), SVR()), transformer=StandardScaler()
        )
    if importlib.util.find_spec("lightgbm") is not None:
        import lightgbm

        out["LightGBM linear_tree"] = lightgbm.LGBMRegressor(linear_tree=True, random_state=seed, verbose=-1)
    return out


def fit_score(model, X, y, X_test, truth) -> tuple[float, float]:
    """(RMSE of the predictions against ``truth``, fit seconds)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    seconds = time.perf_counter() - t0
    return float(np.sqrt(np.mean((model.predict(X_test) - truth) ** 2))), seconds


def synthetic_rows(name, make, sizes, seed, with_svr, tuned=True) -> list[dict]:
    X_test, _, f_test, _ = make(20000, random_state=seed + 1000)
    rows = []
    for n in sizes:
        X, y, _, _ = make(n, random_state=seed)
        for label, model in models(seed, with_svr=with_svr or n <= 5000, tuned=tuned).items():
            rmse, seconds = fit_score(model, X, y, X_test, f_test)
            rows.append({"data": name, "N": n, "model": label, "RMSE(f)": rmse, "fit s": seconds})
            print(f"  {name} N={n} {label}: RMSE {rmse:.4f} ({seconds:.1f} s)", flush=True)
    return rows


def diabetes_rows(seed, tuned=True) -> list[dict]:
    X, y = load_diabetes(return_X_y=True)
    rows = []
    for label in models(seed, tuned=tuned):
        sq, seconds = 0.0, 0.0
        for train, test in KFold(5, shuffle=True, random_state=seed).split(X):
            model = models(seed, tuned=tuned)[label]
            rmse, sec = fit_score(model, X[train], y[train], X[test], y[test])
            sq += rmse**2 * len(test)
            seconds += sec
        rows.append({"data": "diabetes (5-fold CV)", "N": len(y), "model": label,
                     "RMSE(f)": float(np.sqrt(sq / len(y))), "fit s": seconds})
        print(f"  diabetes {label}: RMSE {rows[-1]['RMSE(f)']:.3f}", flush=True)
    return rows


def add_ratios(rows: list[dict]) -> list[dict]:
    """Add RMSE / RMSE(HistGradientBoosting) of the same data set and size."""
    ref = {(r["data"], r["N"]): r["RMSE(f)"] for r in rows if r["model"] == "HistGradientBoosting"}
    for r in rows:
        r["÷ HGB"] = r["RMSE(f)"] / ref[(r["data"], r["N"])]
    return rows


def ablation_rows(sizes, lams, seed) -> list[dict]:
    """RMSE(f) with Ω = 1 and with the ACR map, over ``lam_tree`` (sine data, defaults otherwise)."""
    X_test, _, f_test, _ = make_heteroscedastic_sine(20000, random_state=seed + 1000)
    rows = []
    for n in sizes:
        X, y, _, _ = make_heteroscedastic_sine(n, random_state=seed)
        for lam in lams:
            res = {}
            for complexity in ("none", "forest"):
                model = MixtureOfSVRExperts(lam_tree=lam, complexity=complexity, random_state=seed)
                res[complexity], _ = fit_score(model, X, y, X_test, f_test)
            gain = 1 - res["forest"] / res["none"]
            rows.append({"N": n, "lam_tree": lam, "RMSE Ω=1": res["none"], "RMSE ACR": res["forest"],
                         "ACR gain": f"{100 * gain:+.1f}%"})
            print(f"  ablation N={n} λ={lam}: Ω=1 {res['none']:.4f}, ACR {res['forest']:.4f}", flush=True)
    return rows


def interval_rows(sizes, seed) -> list[dict]:
    """Held-out coverage and width of ``predict_interval`` (defaults, sine data)."""
    X_test, y_test, _, sigma = make_heteroscedastic_sine(20000, random_state=seed + 1000)
    quiet, noisy = sigma <= np.quantile(sigma, 0.25), sigma >= np.quantile(sigma, 0.75)
    rows = []
    for n in sizes:
        X, y, _, _ = make_heteroscedastic_sine(n, random_state=seed)
        model = MixtureOfSVRExperts(random_state=seed).fit(X, y)
        for alpha in (0.1, 0.2):
            lower, upper = model.predict_interval(X_test, alpha=alpha)
            inside, width = (y_test >= lower) & (y_test <= upper), upper - lower
            rows.append({"N": n, "1 - alpha": 1 - alpha, "coverage": float(inside.mean()),
                         "coverage, quietest 25 %": float(inside[quiet].mean()),
                         "coverage, noisiest 25 %": float(inside[noisy].mean()),
                         "width quiet / noisy": float(width[quiet].mean() / width[noisy].mean())})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys((r["data"], r["N"]) for r in rows))
    labels = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(max(8, 2.2 * len(groups)), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        vals = [next((r["÷ HGB"] for r in rows if (r["data"], r["N"]) == g and r["model"] == label), np.nan)
                for g in groups]
        ax.bar(np.arange(len(groups)) + j * width, vals, width, label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, [f"{d}\nN={n}" for d, n in groups])
    ax.set_ylabel("RMSE / RMSE(HistGradientBoosting)")
    ax.legend(fontsize=7, ncol=2)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1,000 only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    sizes = [1000] if args.quick else [1000, 20000]
    rows = synthetic_rows("sine", make_heteroscedastic_sine, sizes, args.seed, with_svr=not args.quick)
    # --quick leaves out the tuned model (hundreds of experts of 286 cubic features) on 10-input data
    rows += synthetic_rows("friedman1-het", make_heteroscedastic_friedman1, [1000] if args.quick else [2000],
                           args.seed, with_svr=True, tuned=not args.quick)
    rows += diabetes_rows(args.seed, tuned=not args.quick)
    rows = add_ratios(rows)
    ablation = ablation_rows(sizes, [3.0, 30.0] if args.quick else [0.5, 3.0, 30.0, 300.0], args.seed)
    intervals = interval_rows(sizes if args.quick else [1000, 3000, 20000], args.seed)
    report = (
        "### RMSE against the noise-free function (diabetes: against held-out targets)\n\n"
        + format_table(rows)
        + "\n### Ablation on the sine data: Ω = 1 versus the ACR complexity map\n\n"
        + format_table(ablation)
        + "\n### Conformal intervals on 20,000 held-out sine points (defaults)\n\n"
        + format_table(intervals)
    )
    write_report(args.out, "acr_accuracy", report, plot, rows)


if __name__ == "__main__":
    main()
