"""SYNTHE training at 1 and 2 ranks on CPU: tokens/s, MFU and loss parity, with and without torch.compile.

Runs the real trainer (``synthfuse.synthe.train.Trainer``) on ``spawn_local`` ranks (gloo,
``--threads`` threads per rank): ``tiny`` and ``small_60m`` at vocabulary 32,000 on the copy
task, T = 256, a global batch of ``--batch`` sequences, FSDP2 at 2 ranks, AdamW. After
``--warmup`` untimed steps (compilation happens there), ``--steps`` steps are timed; tokens/s is
``batch * T`` over the median step time of rank 0.

Ratios are against the 1-rank eager run of the same preset measured in this run. ``loss diff``
is the largest difference of the timed steps' losses from that run (parity is the CPU goal:
the 2-rank run must train the same model). MFU needs a peak: ``--peak_tflops`` per rank
(CPU: none by default). ``--quick``: a 2-block d=64 model at T=64, 2 timed steps.

``--device cuda``: one GPU, one rank, in this process, bf16 autocast (the trainer's ``auto``),
T = 1024 and a batch of 32 sequences by default; MFU against the trainer's table of GPU peaks
(``synthfuse.synthe.train.flops.PEAK_FLOPS``, dense bf16) unless ``--peak_tflops`` is given.

    python benchmarks/synthe_scale.py [--quick] [--compile] [--peak_tflops X] [--device cuda] [--out runs/benchmarks]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from synthfuse.shared.demo import format_table  # noqa: E402
from synthfuse.shared.distributed import spawn_local  # noqa: E402
from synthfuse.synthe import SyntheConfig  # noqa: E402
from synthfuse.synthe.testing import throughput_run  # noqa: E402
from synthfuse.synthe.train import DataConfig, RunConfig, TrainConfig  # noqa: E402
from synthfuse.synthe.train.flops import mfu, peak_flops  # noqa: E402


def run_config(preset: str, seq_len: int, batch: int, ranks: int, compile_: bool, quick: bool,
               device: str = "cpu") -> dict:
    if quick:
        model = SyntheConfig(d_model=64, n_layers=2, n_heads=2, vocab_size=32000, exit_layers=[], probe_layers=[1])
    else:
        model = getattr(SyntheConfig, preset)(vocab_size=32000)
    train = TrainConfig(batch_size=batch, lr=1e-4, warmup_steps=1, max_steps=1000, device=device,
                        parallel="fsdp" if ranks > 1 else "none", compile=compile_)
    return RunConfig("synthe", model, DataConfig(name="copy", seq_len=seq_len, vocab_size=32000), train).to_dict()


def measure(preset: str, ranks: int, compile_: bool, args) -> dict:
    run = run_config(preset, args.seq_len, args.batch, ranks, compile_, args.quick, args.device)
    start = time.perf_counter()
    try:
        if args.device == "cpu":
            result = spawn_local(throughput_run, ranks, run, args.steps, args.warmup, threads_per_rank=args.threads)[0]
        else:  # one GPU: this process is the only rank
            result = throughput_run(None, run, args.steps, args.warmup)
    except Exception as err:  # torch.compile without a working C++ toolchain, out of memory, ...
        return {"preset": preset, "ranks": ranks, "compile": compile_, "error": f"{type(err).__name__}: {err}"[:200]}
    seconds = statistics.median(result["seconds"])
    tokens_per_s = args.batch * args.seq_len / seconds
    configured = None if args.peak_tflops is None else args.peak_tflops * 1e12
    peak = peak_flops(torch.device(args.device), configured)
    return {"preset": preset, "ranks": ranks, "compile": compile_, "device": args.device, "step_s": seconds,
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(result["flops_per_token"], tokens_per_s, peak, ranks), "losses": result["losses"],
            "gflop_per_token": result["flops_per_token"] / 1e9, "wall_s": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        anchor = next(a for a in rows if a["preset"] == r["preset"] and a["ranks"] == 1 and not a["compile"])
        if "error" in r:
            lines.append({"preset": r["preset"], "ranks": r["ranks"], "compile": r["compile"], "tokens/s": r["error"]})
            continue
        diff = max(abs(a - b) for a, b in zip(r["losses"], anchor.get("losses", r["losses"])))
        lines.append({"preset": r["preset"], "ranks": r["ranks"], "compile": r["compile"],
                      "GFLOP/token": f"{r['gflop_per_token']:.3f}", "step s": f"{r['step_s']:.3f}",
                      "tokens/s": f"{r['tokens_per_s']:.0f}",
                      "ratio": f"{r['tokens_per_s'] / anchor['tokens_per_s']:.2f}" if "tokens_per_s" in anchor else "-",
                      "MFU": "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%", "loss diff": f"{diff:.1e}"})
    return format_table(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthfuse.shared.io import atomic_open

    ok = [r for r in rows if "tokens_per_s" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['preset']}\n{r['ranks']} rank{'s' if r['ranks'] > 1 else ''}{' +compile' if r['compile'] else ''}"
              for r in ok]
    ax.bar(range(len(ok)), [r["tokens_per_s"] for r in ok], color=["C1" if r["compile"] else "C0" for r in ok])
    ax.set_xticks(range(len(ok)), labels, fontsize=7)
    ax.set(ylabel=f"training tokens/s ({ok[0]['device'] if ok else 'cpu'})", title="SYNTHE training throughput")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time torch.compile runs")
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int)
    p.add_argument("--seq_len", type=int)
    p.add_argument("--threads", type=int, default=1, help="threads per rank")
    p.add_argument("--peak_tflops", type=float, help="peak TFLOP/s of one rank, for the MFU column")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu: 1 and 2 ranks (gloo); cuda: one GPU, one rank, bf16 autocast")
    p.add_argument("--out", default="runs/benchmarks")
    args = p.parse_args()
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    args.steps = args.steps or (2 if args.quick else (10 if gpu else 4))
    args.batch = args.batch or (4 if args.quick else (32 if gpu else 8))
    args.seq_len = args.seq_len or (64 if args.quick else (1024 if gpu else 256))
    presets = ("quick",) if args.quick else ("tiny", "small_60m")
    rows = []
    for preset in presets:
        for compile_ in (False, True) if args.compile else (False,):
            for ranks in (1,) if gpu else (1, 2):
                rows.append(measure(preset, ranks, compile_, args))
                print(f"{preset} ranks={ranks} compile={compile_}: "
                      + (rows[-1].get("error") or f"{rows[-1]['tokens_per_s']:.0f} tokens/s"), flush=True)
    where = (f"one GPU ({torch.cuda.get_device_name()}), bf16 autocast" if gpu
             else f"CPU, {args.threads} thread(s) per rank; 2 ranks: FSDP2 over gloo")
    header = (f"SYNTHE training ({'quick: d=64, 2 blocks' if args.quick else 'presets at vocabulary 32,000'}), "
              f"T={args.seq_len}, global batch {args.batch}, median of {args.steps} steps after {args.warmup} "
              f"warm-up; {where}\n\n")
    write_report(Path(args.out), "synthe_scale", header + table(rows), plot, rows)


if __name__ == "__main__":
    main()
