"""``synthfuse demo`` section: heteroscedastic regression, the mixture against forest anchors."""

from __future__ import annotations

import time

import numpy as np

from synthfuse.acr import MixtureOfSVRExperts
from synthfuse.acr.datasets import make_heteroscedastic_sine
from synthfuse.acr.plot import plot_slice


def run(ctx) -> dict:
    """Fit the mixture (with and without the complexity map), a random forest and gradient boosting
    on y = sin(3 x0) + x1^2 + noise (sd 0.1 + 0.5 |x0|); tabulate RMSE against the noise-free
    function, the 90 % interval coverage, and plot the regions and Ω on the (x0, x1) slice.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    n_train, n_test, n_trees = (20000, 20000, 300) if ctx.full else (2000, 10000, 100)
    X, y, _, _ = make_heteroscedastic_sine(n_train, random_state=ctx.seed)
    X_test, y_test, f_test, sigma = make_heteroscedastic_sine(n_test, random_state=ctx.seed + 1)
    candidates = {
        "MixtureOfSVRExperts": MixtureOfSVRExperts(random_state=ctx.seed),
        "MixtureOfSVRExperts, Ω = 1": MixtureOfSVRExperts(complexity="none", random_state=ctx.seed),
        f"RandomForest({n_trees})": RandomForestRegressor(n_estimators=n_trees, random_state=ctx.seed),
        "HistGradientBoosting": HistGradientBoostingRegressor(random_state=ctx.seed),
    }
    rows, fitted = [], {}
    for name, model in ctx.progress(candidates.items(), desc="acr: fitting", total=len(candidates)):
        t0 = time.perf_counter()
        fitted[name] = model.fit(X, y)
        seconds = time.perf_counter() - t0
        rmse = float(np.sqrt(np.mean((model.predict(X_test) - f_test) ** 2)))
        rows.append({"model": name, "RMSE vs f": rmse, "fit seconds": round(seconds, 2)})
    ctx.table("acr_accuracy", rows, title=f"RMSE against the noise-free function (N = {n_train})")

    model = fitted["MixtureOfSVRExperts"]
    lower, upper = model.predict_interval(X_test, alpha=0.1)
    inside = (y_test >= lower) & (y_test <= upper)
    quiet, noisy = sigma <= np.quantile(sigma, 0.25), sigma >= np.quantile(sigma, 0.75)
    ctx.table(
        "acr_intervals",
        [
            {"test points": name, "coverage": float(inside[m].mean()),
             "mean width": float((upper - lower)[m].mean())}
            for name, m in [("all", np.ones_like(inside)), ("quietest 25 %", quiet),
                            ("noisiest 25 %", noisy)]
        ],
        title="90 % conformal intervals (target coverage 0.90 overall)",
    )
    ctx.savefig(plot_slice(model, (0, 1), X=X[:2000]), "acr_slice")
    return {
        "rmse_acr": rows[0]["RMSE vs f"],
        f"rmse_rf{n_trees}": rows[2]["RMSE vs f"],
        "coverage90": float(inside.mean()),
    }
