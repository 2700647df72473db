"""Empirical NTK of a ~26k-parameter MLP: vectorised paths vs a per-sample Jacobian loop.

Model: 32 -> 256 -> 64 -> 10 tanh MLP (25,546 parameters, float32). For each n the full kernel
Θ(X, X) of shape (n, n, 10, 10) is computed by

- ``loop`` (the anchor): one ``torch.func.jacrev`` call per sample, Jacobians stacked and
  contracted with one matrix product J Jᵀ;
- ``jacobian``: ``empirical_ntk(method="jacobian")``, per-sample Jacobians by ``vmap(jacrev)``;
- ``structured``: ``empirical_ntk()`` (default), structured derivatives for the Linear layers;
- ``ntk_vp``: ``empirical_ntk(method="ntk_vp", chunk_size=64)``, NTK-vector products in 64x64
  tiles (unchunked it would hold n*K parameter-sized tangents at once).

Time: median of ``--repeats`` runs after one warm-up call per method. Peak memory: on CPU the
largest number of bytes held by torch's CPU allocator during one call, above the level at
entry (from the allocation/free events of ``torch.profiler`` with ``profile_memory=True``;
allocations outside torch's allocator, e.g. BLAS workspaces, are not seen); on CUDA
``torch.cuda.max_memory_allocated`` above the level at entry. ``err`` is the largest
difference to the anchor's kernel relative to its largest entry.

    python benchmarks/shared_ntk.py [--quick] [--device cpu|cuda] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.func import functional_call, jacrev

from synthfuse.shared.demo import DemoContext
from synthfuse.shared.ntk import empirical_ntk


def build_mlp(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 256), torch.nn.Tanh(), torch.nn.Linear(256, 64), torch.nn.Tanh(),
        torch.nn.Linear(64, 10),
    ).to(device)


def loop_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The anchor: a Python loop of per-sample Jacobians, then Θ = J Jᵀ."""
    params = {k: p.detach() for k, p in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    rows = []
    for xi in x:
        jac = jacrev(f)(params, xi)  # {name: (K, *shape)}
        rows.append(torch.cat([j.flatten(1) for j in jac.values()], 1))  # (K, P)
    J = torch.stack(rows)  # (n, K, P)
    n, k, _ = J.shape
    return (J.reshape(n * k, -1) @ J.reshape(n * k, -1).T).reshape(n, k, n, k).permute(0, 2, 1, 3)


def methods(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "loop": lambda x: loop_ntk(model, x),
        "jacobian": lambda x: empirical_ntk(model, x, method="jacobian"),
        "structured": lambda x: empirical_ntk(model, x),
        "ntk_vp": lambda x: empirical_ntk(model, x, method="ntk_vp", chunk_size=64),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds(fn: Callable[[], object], repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak bytes allocated by torch during ``fn()`` above the level at entry (see module doc)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def plot(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["method"] for r in rows):
        pts = [r for r in rows if r["method"] == name]
        ns = [r["n"] for r in pts]
        ax_t.plot(ns, [r["seconds"] for r in pts], "o-", label=name)
        ax_m.plot(ns, [r["peak_MiB"] for r in pts], "o-", label=name)
    for ax, label in ((ax_t, "seconds (median)"), (ax_m, "peak MiB (torch allocator)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n samples")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend()
    fig.suptitle("Empirical NTK (full, K=10) of a 25,546-parameter MLP")
    return fig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 16, 64; one repeat")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args(argv)
    ns = (16, 64) if args.quick else (64, 256, 512)
    repeats = 1 if args.quick else args.repeats

    model = build_mlp(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"MLP 32-256-64-10: {n_params:,} parameters; device {args.device}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    gen = torch.Generator().manual_seed(0)
    runs = methods(model)
    warm = torch.randn(8, 32, generator=gen).to(args.device)
    for fn in runs.values():
        fn(warm)  # exclude one-time initialisation from the timings

    rows = []
    for n in ns:
        x = torch.randn(n, 32, generator=gen).to(args.device)
        anchor = runs["loop"](x)
        scale = anchor.abs().max().item()
        base = None
        for name, fn in runs.items():
            t = seconds(lambda: fn(x), repeats, args.device)
            base = t if name == "loop" else base
            err = (fn(x) - anchor).abs().max().item() / scale
            rows.append({
                "n": n, "method": name, "seconds": t, "speedup_vs_loop": base / t,
                "peak_MiB": peak_bytes(lambda: fn(x), args.device) / 2**20, "err": err,
            })
            print(f"  n={n:4d} {name:10s} {t:8.3f} s  x{base / t:6.1f}", flush=True)

    ctx = DemoContext(out_dir=args.out)  # prints the table; writes .md, .csv and .png atomically
    ctx.table("shared_ntk", rows, title=__doc__.split("\n")[0])
    ctx.savefig(plot(rows), "shared_ntk")
    return rows


if __name__ == "__main__":
    main()
