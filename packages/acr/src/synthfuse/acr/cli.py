"""``synthfuse acr`` (also ``python -m synthfuse.acr``): the command-line interface.

::

    synthfuse acr fit data.csv --target y --out model.pkl [--n-experts 16 ...]
    synthfuse acr predict model.pkl data.csv [--alpha 0.1] [--out predictions.csv]
    synthfuse acr plot model.pkl --out slice.png [--dims 0 1] [--data data.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from synthfuse.acr.__about__ import __version__
from synthfuse.shared.cli import package_parser, run_parser

#: Estimator options exposed as flags: (flag, type, help).
_FIT_OPTIONS = [
    ("n_experts", int, "largest number of regions per partition (default 16)"),
    ("degree", int, "degree of each expert's polynomial (default 3)"),
    ("epsilon", float, "half-width of the insensitive tube, in std of y (default 0.1)"),
    ("C", float, "weight of the data term (default 1.0)"),
    ("lam_tree", float, "L2 penalty λ on the experts (default 30)"),
    ("complexity", str, "'forest' (adaptive Ω) or 'none' (Ω = 1)"),
    ("n_partitions", int, "number of bagged partitions (default 1)"),
    ("epochs", int, "largest number of solver iterations (default 500)"),
    ("tol", float, "solver tolerance (default 1e-4)"),
    ("min_samples_leaf", int, "fewest samples per region (default 20)"),
    ("smoothing", float, "rounding width δ of the loss, in std of y (default 2.0)"),
    ("cv", int, "cross-fitting folds for Ω and the intervals (default 10)"),
    ("random_state", int, "seed (default 0)"),
]


def _fit(args: argparse.Namespace) -> int:
    from synthfuse.acr import MixtureOfSVRExperts
    from synthfuse.acr._table import read_table, save_model

    X, y, features = read_table(args.data, target=args.target)
    params = {name: getattr(args, name) for name, _, _ in _FIT_OPTIONS if getattr(args, name) is not None}
    params.setdefault("random_state", 0)
    model = MixtureOfSVRExperts(**params)
    t0 = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - t0
    save_model(args.out, model, features, args.target)
    rmse = float(((model.predict(X) - y) ** 2).mean() ** 0.5)
    print(
        f"fitted {X.shape[0]} samples x {X.shape[1]} features in {seconds:.2f} s: "
        f"{int(model.n_leaves_.sum())} experts, training RMSE {rmse:.4g}; saved {args.out}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from synthfuse.acr._table import load_model, read_table, write_table

    saved = load_model(args.model)
    model, features = saved["model"], saved["features"]
    X, _, columns = read_table(args.data)
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(f"{args.data} lacks the model's feature columns {missing}.")
    X = X[:, [columns.index(f) for f in features]]
    out = {f"{saved['target']}_pred": model.predict(X)}
    if args.alpha is not None:
        lower, upper = model.predict_interval(X, alpha=args.alpha)
        out["lower"], out["upper"] = lower, upper
    text = write_table(args.out, out)
    if args.out is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {X.shape[0]} predictions to {args.out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from synthfuse.acr._table import load_model, read_table
    from synthfuse.acr.plot import plot_slice
    from synthfuse.shared.io import atomic_open

    saved = load_model(args.model)
    features = saved["features"]
    points = None
    if args.data is not None:
        X, _, columns = read_table(args.data)
        points = X[:, [columns.index(f) for f in features if f in columns]]
        if points.shape[1] != len(features):
            raise ValueError(f"{args.data} lacks some of the features {features}.")
    fig = plot_slice(saved["model"], tuple(args.dims), feature_names=features, X=points)
    with atomic_open(args.out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    print(f"wrote {args.out}")
    return 0


def build_parser():
    """The ``synthfuse acr`` parser; each subcommand sets ``func``."""
    parser, sub = package_parser(
        "synthfuse acr", __version__, "Mixture of polynomial SVR experts with adaptive complexity regularization."
    )
    fit = sub.add_parser("fit", help="fit a model to a CSV table and save it")
    fit.add_argument("data", help="CSV file with a header row")
    fit.add_argument("--target", required=True, help="name of the target column")
    fit.add_argument("--out", required=True, help="where to write the model (pickle)")
    for name, kind, text in _FIT_OPTIONS:
        fit.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text)
    fit.set_defaults(func=_fit)

    pred = sub.add_parser("predict", help="predict a CSV table with a saved model")
    pred.add_argument("model", help="model file from `synthfuse acr fit`")
    pred.add_argument("data", help="CSV file with the model's feature columns")
    pred.add_argument("--alpha", type=float, default=None, help="also write a 1-alpha conformal interval")
    pred.add_argument("--out", default=None, help="output CSV (default: standard output)")
    pred.set_defaults(func=_predict)

    plot = sub.add_parser("plot", help="PNG of the regions and the complexity map on a 2-D slice")
    plot.add_argument("model", help="model file from `synthfuse acr fit`")
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.add_argument("--dims", type=int, nargs=2, default=[0, 1], metavar=("I", "J"),
                      help="indices of the two features spanning the slice (default 0 1)")
    plot.add_argument("--data", default=None, help="CSV whose points are drawn on top")
    plot.set_defaults(func=_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse acr`` with ``argv`` (defaults to ``sys.argv[1:]``).

    Bad input (a missing file or column, a non-numeric cell, an invalid option value) is reported
    on standard error as one line, with exit code 2.
    """
    try:
        return run_parser(build_parser(), argv)
    except (ValueError, OSError) as exc:
        print(f"synthfuse acr: error: {exc}", file=sys.stderr)
        return 2
