"""Resolution of the verifier's dynamic route, against the static (Akra–Bazzi) route as anchor.

Generated programs (all Θ classes) are checked against their true Θ label and against wrong
claims off by one factor of log n, of log log n, or of n^0.1, in both directions. The static
route is the anchor: the table gives, per claim, how often each route accepts and how often
the dynamic verdict agrees with the static one; the PNG shows the dynamic log-power excess δ
(the fitted exponent of log n by which the counts outgrow the claim) for each kind of claim.

    python benchmarks/koda_verify.py            # 340 programs (20 per class)
    python benchmarks/koda_verify.py --quick    # 34 programs (smoke run)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sympy

from synthfuse.koda.analysis import Theta, dynamic_fit, measure, recurrence_of, sample_base, solve, theta_of
from synthfuse.koda.data import THETA_CLASSES, generate
from synthfuse.koda.lang import load
from synthfuse.shared.demo import DemoContext

CLAIMS = {
    "true label": Theta(0),
    "× log n": Theta(0, 1), "÷ log n": Theta(0, -1),
    "× log log n": Theta(0, 0, 1), "÷ log log n": Theta(0, 0, -1),
    "× n^0.1": Theta(sympy.Rational(1, 10)), "÷ n^0.1": Theta(-sympy.Rational(1, 10)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    count = len(THETA_CLASSES) * (2 if args.quick else 20)
    ctx = DemoContext(out_dir=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    stats = {name: {"static": 0, "dynamic": 0, "agree": 0, "deltas": []} for name in CLAIMS}
    for record in ctx.progress(generate(count, seed=args.seed), desc="programs", total=count):
        program = load(record.source)
        rec = recurrence_of(program)
        truth = solve(rec).theta
        points = measure(program, sample_base(rec))
        for name, factor in CLAIMS.items():
            claim = theta_of(record.theta) * factor
            static_ok = truth == claim
            fit = dynamic_fit(points, claim)
            s = stats[name]
            s["static"] += static_ok
            s["dynamic"] += bool(fit.consistent)
            s["agree"] += static_ok == bool(fit.consistent)
            s["deltas"].append(fit.delta)
    rows = [{"claim": name, "programs": count, "static accepts % (anchor)": 100 * s["static"] / count,
             "dynamic accepts %": 100 * s["dynamic"] / count, "agreement with static %": 100 * s["agree"] / count,
             "median δ": sorted(s["deltas"])[len(s["deltas"]) // 2]} for name, s in stats.items()]
    ctx.table("koda_verify", rows, f"Static vs dynamic route on {count} generated programs (seed {args.seed})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.boxplot([[d for d in stats[name]["deltas"] if abs(d) < 20] for name in CLAIMS], showfliers=True)
    ax.set_xticks(range(1, len(CLAIMS) + 1), list(CLAIMS), fontsize=8)
    for bound in (-0.5, 0.5):
        ax.axhline(bound, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_ylabel("log-power excess δ (|δ| <= 0.5 accepts)")
    ax.set_title("Dynamic route: fitted excess over the claim")
    ctx.savefig(fig, "koda_verify")


if __name__ == "__main__":
    main()
