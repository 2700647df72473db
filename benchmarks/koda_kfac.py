"""K-FAC vs SGD-momentum vs Adam on a deep autoencoder of the sklearn digits.

The anchor is SGD with momentum, measured side by side in the same run: for each optimizer
(learning rate picked from a small grid, best of the grid reported) we count the optimizer
steps until the full-data reconstruction loss first falls below a threshold, and the wall
time. K-FAC (synthfuse.koda.optim.KFAC, true Fisher from sampled Gaussian targets) drives
the same SGD-momentum optimizer. Prints a table of step ratios against SGD and saves a PNG.

    python benchmarks/koda_kfac.py            # full grid, up to 5000 steps
    python benchmarks/koda_kfac.py --quick    # smoke run (one learning rate each, 300 steps)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthfuse.koda.optim import KFAC, sampled_nll_gaussian
from synthfuse.shared.demo import DemoContext

WIDTHS = (64, 128, 64, 16, 64, 128, 64)


def digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0  # (1797, 64) in [0, 1]
    return torch.from_numpy(x)


def autoencoder(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(WIDTHS) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def run(method: str, lr: float, data: torch.Tensor, *, threshold: float, max_steps: int, batch: int,
        seed: int) -> dict:
    net = autoencoder(seed)
    if method == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    kfac = KFAC(net, lr=lr, damping=1e-2, inv_update_period=20, kl_clip=1e-2) if method == "kfac" else None
    gen = torch.Generator().manual_seed(seed)
    curve, hit = [], None
    t0 = time.perf_counter()
    for step in range(1, max_steps + 1):
        x = data[torch.randint(0, len(data), (batch,), generator=gen)]
        if kfac is not None:
            with kfac.capture():
                out = net(x)
            # 0.5 ||y - out||^2 with y ~ N(out, I): the Fisher of the squared-error loss.
            kfac.update_factors(sampled_nll_gaussian(out, generator=gen))
        else:
            out = net(x)
        loss = 0.5 * ((out - x) ** 2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if kfac is not None:
            kfac.step()
        opt.step()
        if step % 10 == 0 or step == max_steps:
            with torch.no_grad():
                full = float(0.5 * ((net(data) - data) ** 2).sum(dim=1).mean())
            curve.append((step, full))
            if not np.isfinite(full):
                break
            if hit is None and full <= threshold:
                hit = step
                break
    return {"method": method, "lr": lr, "steps": hit, "seconds": time.perf_counter() - t0,
            "final_loss": curve[-1][1], "curve": curve}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one learning rate each, 300 steps")
    parser.add_argument("--threshold", type=float, default=None, help="loss threshold (default 0.3; 1.2 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = digits()
    threshold = args.threshold or (1.2 if args.quick else 0.3)
    max_steps = 300 if args.quick else 5000
    grids = ({"sgd": [0.01], "adam": [3e-3], "kfac": [0.1]} if args.quick else
             {"sgd": [0.01, 0.03, 0.1, 0.3], "adam": [1e-3, 3e-3, 1e-2, 3e-2], "kfac": [0.03, 0.1, 0.3, 1.0]})
    results = {}
    for method, lrs in grids.items():
        runs = [run(method, lr, data, threshold=threshold, max_steps=max_steps, batch=128, seed=args.seed)
                for lr in lrs]
        for r in runs:
            print(f"  {method:5s} lr={r['lr']:<7g} steps={r['steps']} final={r['final_loss']:.3f} "
                  f"({r['seconds']:.1f} s)", flush=True)
        results[method] = min(runs, key=lambda r: (r["steps"] is None, r["steps"] or 0, r["final_loss"]))
    anchor = results["sgd"]
    rows = []
    for method, r in results.items():
        ratio = (r["steps"] / anchor["steps"]) if r["steps"] and anchor["steps"] else None
        rows.append({"method": {"sgd": "SGD-momentum (anchor)", "adam": "Adam", "kfac": "K-FAC + SGD-momentum"}[method],
                     "lr": r["lr"], f"steps to loss <= {threshold:g}": r["steps"] or f"> {max_steps}",
                     "steps / SGD steps": None if ratio is None else round(ratio, 3),
                     "wall s": round(r["seconds"], 2),
                     "s / SGD s": round(r["seconds"] / anchor["seconds"], 2)})
    ctx = DemoContext(out_dir=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx.table("koda_kfac", rows, title="Deep autoencoder on sklearn digits (64-128-64-16-64-128-64, tanh), "
                                       "batch 128; anchor: SGD-momentum")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, r in results.items():
        steps, losses = zip(*r["curve"])
        ax.plot(steps, losses, label=f"{method} (lr {r['lr']:g})")
    ax.axhline(threshold, color="gray", ls="--", lw=1, label="threshold")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("full-data reconstruction loss")
    ax.set_title("K-FAC vs SGD-momentum vs Adam (digits autoencoder)")
    ax.legend()
    ctx.savefig(fig, "koda_kfac")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
