"""``synthfuse retrain`` (also ``python -m synthfuse.retrain``): the command-line interface.

Checkpoints are ``state_dict``\\ s (read with ``torch.load(weights_only=True)``); the module they
belong to is rebuilt from ``--arch`` (``mlp`` with ``--hidden W [W ...]``, or ``convnet`` with
``--width W``, see :mod:`synthfuse.retrain.architectures`). ``--data`` is ``digits`` (needs
scikit-learn), ``synthetic`` or a ``.npz``/``.pt`` file with ``X`` and ``y``; it is split into
train and validation parts with ``--val-fraction`` and ``--split-seed`` (the same split in
``train`` and ``run``). ``convnet`` reshapes flat square inputs (digits: 64 → 1×8×8).

Examples
--------
::

    synthfuse retrain train --data digits --hidden 128 --fraction 0.25 --seed 1 --out a.pt
    synthfuse retrain train --data digits --hidden 128 --seed 2 --out b.pt
    synthfuse retrain run --incumbent a.pt --superior b.pt --data digits --hidden 128 \\
        --method otwi --option finetune_epochs=10 --out c.pt
    synthfuse retrain bench digits --quick
"""

from __future__ import annotations

import argparse
import ast
import json
import math
from pathlib import Path
from typing import Any, Sequence

from synthfuse.retrain.__about__ import __version__
from synthfuse.shared.cli import package_parser, run_parser


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="'digits', 'synthetic' or a .npz/.pt file holding X and y")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out part for validation (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--arch", choices=["mlp", "convnet"], default="mlp", help="architecture of the checkpoints")
    p.add_argument("--hidden", type=int, nargs="+", default=[128], help="mlp hidden widths (default 128)")
    p.add_argument("--width", type=int, default=16, help="convnet width (default 16)")
    p.add_argument("--device", default="cpu")


def _load_split(args):
    import torch

    from synthfuse.retrain.data import Dataset
    from synthfuse.retrain.datasets import load_data, split

    ds = load_data(args.data, seed=args.split_seed)
    if args.arch == "convnet" and ds.X.ndim == 2:
        side = math.isqrt(ds.X.shape[1])
        if side * side != ds.X.shape[1]:
            raise SystemExit(f"--arch convnet needs image inputs; {ds.X.shape[1]} features are not a square image")
        ds = Dataset(ds.X.reshape(-1, 1, side, side), ds.y)
    if not 0.0 < args.val_fraction < 1.0:
        raise SystemExit(f"--val-fraction must lie in (0, 1), got {args.val_fraction}")
    train, val = split(ds, (1.0 - args.val_fraction, args.val_fraction), seed=args.split_seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return train, val, max(ds.n_classes, 2)


def _build(args, train, n_classes):
    from synthfuse.retrain.architectures import build_architecture

    opts = {"hidden": tuple(args.hidden)} if args.arch == "mlp" else {"width": args.width}
    return build_architecture(args.arch, tuple(train.X.shape[1:]), n_classes, **opts)


def _save(model, path: Path) -> None:
    import torch

    from synthfuse.shared.io import atomic_open

    with atomic_open(path, "wb") as fh:
        torch.save(model.state_dict(), fh)
    print(f"wrote {path}")


def _load(args, path: str, train, n_classes):
    import torch

    model = _build(args, train, n_classes)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise SystemExit(f"checkpoint {path} not found") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise SystemExit(f"{path} does not fit --arch {args.arch} (--hidden/--width): {err}") from None
    return model


def _cmd_train(args) -> int:
    import torch

    from synthfuse.retrain.training import train_classifier

    train, val, n_classes = _load_split(args)
    if not 0.0 < args.fraction <= 1.0:
        raise SystemExit(f"--fraction must lie in (0, 1], got {args.fraction}")
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: max(1, int(args.fraction * len(train)))]
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = _build(args, train, n_classes)
    train_classifier(model, train.subset(subset), epochs=args.epochs, lr=args.lr, seed=args.seed,
                     device=args.device, progress="train")
    from synthfuse.retrain.metrics import logits_of

    acc = float((logits_of(model, val.X.to(args.device)).argmax(1).cpu() == val.y).double().mean())
    print(f"trained on {len(subset)} samples; validation accuracy {acc:.4f}")
    _save(model.cpu(), args.out)
    return 0


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word: a string option (e.g. metric=fisher)


def _cmd_run(args) -> int:
    from synthfuse.retrain.api import retrain
    from synthfuse.shared.demo import format_table
    from synthfuse.shared.io import atomic_write_text

    train, val, n_classes = _load_split(args)
    incumbent = _load(args, args.incumbent, train, n_classes)
    superior = _load(args, args.superior, train, n_classes)
    result = retrain(incumbent, superior, train=train, val=val, method=args.method, seed=args.seed,
                     device=args.device, progress=True, **dict(args.option))
    rows = [{"model": name, **m.as_dict()} for name, m in
            (("θ* incumbent", result.baselines["incumbent"]), ("θ† superior", result.baselines["superior"]),
             (f"θ‡ {args.method}", result.metrics))]
    print(format_table(rows))
    print(result.verdict)
    _save(result.model.cpu(), args.out)
    if args.report:
        report = {"metrics": {r.pop("model"): r for r in rows}, "verdict": str(result.verdict),
                  "dominates": bool(result.verdict), "options": {k: v for k, v in result.options.items()},
                  "details": {k: v for k, v in result.details.items() if isinstance(v, (int, float, str))}}
        atomic_write_text(args.report, json.dumps(report, indent=2, default=str))
        print(f"wrote {args.report}")
    return 0


def build_parser():
    """The ``synthfuse retrain`` parser; each subcommand sets ``func``."""
    parser, sub = package_parser("synthfuse retrain", __version__, "Upgrade a deployed model without breaking what it got right.")

    p = sub.add_parser("train", help="train a classifier checkpoint (to make θ* and θ†)")
    _data_args(p)
    p.add_argument("--fraction", type=float, default=1.0, help="train on this fraction of the training split")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="build θ‡ from θ* (--incumbent) and θ† (--superior)")
    _data_args(p)
    p.add_argument("--incumbent", required=True, help="θ* state_dict (.pt)")
    p.add_argument("--superior", required=True, help="θ† state_dict (.pt)")
    p.add_argument("--method", default="otwi", choices=["wsft", "kdt", "otwi", "frr"])
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, repeatable (e.g. --option focal_weight=1.0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="where θ‡'s state_dict goes")
    p.add_argument("--report", type=Path, help="also write the metrics and verdict as JSON")
    p.set_defaults(func=_cmd_run)

    from synthfuse.retrain import bench

    p = bench.add_arguments(sub.add_parser("bench", help="run a benchmark: synthetic or digits (needs scikit-learn)"))
    p.set_defaults(func=bench.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse retrain`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
