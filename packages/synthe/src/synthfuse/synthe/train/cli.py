"""The ``train``, ``prepare``, ``zoology`` and ``probe-report`` subcommands of ``synthfuse synthe``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synthfuse.shared.demo import format_table
from synthfuse.shared.io import atomic_write_text
from synthfuse.synthe.train.config import RunConfig
from synthfuse.synthe.train.shards import DEFAULT_BLOCK_CHARS, DEFAULT_SHARD_TOKENS, TOKENIZER_KINDS
from synthfuse.synthe.train.trainer import CHECKPOINT, SHARDED, Trainer

_TRAIN_OVERRIDES = ("batch_size", "lr", "min_lr", "warmup_steps", "max_steps", "weight_decay", "grad_clip",
                    "eval_interval", "eval_batches", "log_interval", "checkpoint_interval", "time_budget_s", "seed",
                    "device", "out_dir", "parallel", "grad_accum", "autocast", "activation_checkpointing", "compile",
                    "peak_flops", "dtype", "schedule")
_DATA_OVERRIDES = ("seq_len", "tokenizer", "vocab_size", "num_kv_pairs", "cache_dir")


def add_run_arguments(p) -> None:
    """Options shared by ``train`` and ``probe-report`` (each overrides the config file)."""
    p.add_argument("--config", help="a run YAML (model/data/train sections) or a bare configs/synthe_*.yaml")
    p.add_argument("--data", help="tinyshakespeare | mqar | copy | state | parity | s5 | PATH.txt | DIR "
                                  "(shards from `synthfuse synthe prepare`)")
    p.add_argument("--model", choices=("synthe", "transformer"), help="model type (default: the config's, else synthe)")
    for name, kind in (("batch_size", int), ("lr", float), ("min_lr", float), ("warmup_steps", int), ("max_steps", int),
                       ("weight_decay", float), ("grad_clip", float), ("eval_interval", int), ("eval_batches", int),
                       ("log_interval", int), ("checkpoint_interval", int), ("time_budget_s", float), ("seed", int),
                       ("seq_len", int), ("vocab_size", int), ("num_kv_pairs", int)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--tokenizer", choices=("char", "byte"))
    p.add_argument("--cache_dir", help="where tinyshakespeare is cached / downloaded to")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... or auto")
    p.add_argument("--out_dir", help="run folder: checkpoint.pt, metrics.jsonl, loss.png (default runs/<model>_<data>)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.add_argument("--parallel", choices=("none", "ddp", "fsdp"),
                   help="data parallelism over torchrun's processes (batch_size is the global batch)")
    p.add_argument("--grad_accum", type=int, help="micro-batches per step (gradient accumulation)")
    p.add_argument("--autocast", choices=("auto", "bf16", "off"), help="bf16 autocast on CUDA (CPU: fp32)")
    p.add_argument("--activation_checkpointing", action="store_true", default=None,
                   help="recompute each block in the backward pass (less memory)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile every block")
    p.add_argument("--peak_flops", type=float, help="peak FLOP/s of one device, for the MFU column")
    p.add_argument("--dtype", choices=("float32", "float64"), help="parameter and compute dtype (default float32)")
    p.add_argument("--schedule", choices=("steps", "time"),
                   help="cosine over max_steps (default) or over time_budget_s ('time')")


def run_config_from_args(args) -> RunConfig:
    """Config file (or defaults) with the command-line overrides applied."""
    run = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    data = {k: getattr(args, k) for k in _DATA_OVERRIDES}
    data["name"] = args.data
    run = run.replace(model_type=args.model, data=data, train={k: getattr(args, k) for k in _TRAIN_OVERRIDES})
    if run.train.out_dir is None:
        run = run.replace(train={"out_dir": str(Path("runs") / f"{run.model_type}_{Path(run.data.name).stem}")})
    return run


def cmd_train(args) -> int:
    """Train (on every rank of a ``torchrun`` job); a NaN/inf loss on any rank stops every rank
    with the same message (exit status 1) and the process group is torn down."""
    import sys

    from synthfuse.shared.distributed import NonFiniteError, destroy_distributed

    try:
        return _train(args)
    except NonFiniteError as err:
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        destroy_distributed()


def _train(args) -> int:
    run = run_config_from_args(args)
    trainer = Trainer(run, resume=args.resume, progress=not args.no_progress)  # joins torchrun's process group
    say = print if trainer.is_main else (lambda *_: None)  # rank 0 speaks for the job
    if trainer.env.is_distributed:
        t = run.train
        say(f"{trainer.env.world_size} processes ({t.parallel}, {trainer.env.backend}): global batch {t.batch_size} "
            f"= {trainer.env.world_size} ranks x {t.grad_accum} micro-batches x "
            f"{t.batch_size // (trainer.env.world_size * t.grad_accum)} rows")
    if trainer.is_main:
        run.to_yaml(Path(run.train.out_dir) / "run.yaml")
    final = trainer.fit()
    say(f"step {trainer.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    if hasattr(trainer.data, "tokenizer") and args.sample_tokens > 0:
        from synthfuse.synthe.train.data import batch_generator

        first_val = trainer.data.batch("val", 1, batch_generator(run.train.seed, "val", 0))[0][0, :1]
        prompt = trainer.data.tokenizer.decode(first_val.tolist())
        greedy = trainer.sample(prompt, args.sample_tokens, temperature=0.0)
        sampled = trainer.sample(prompt, args.sample_tokens, temperature=0.8, top_k=50)
        text = f"--- greedy ---\n{prompt}{greedy}\n--- sampled (T=0.8, top-k 50) ---\n{prompt}{sampled}\n"
        if trainer.is_main:  # every rank decodes (sharded forward passes are collective), rank 0 writes
            atomic_write_text(Path(run.train.out_dir) / "samples.txt", text)
        say(text)
    ckpt = f"{SHARDED}/step_<n>" if trainer.env.is_distributed else CHECKPOINT
    say(f"wrote {run.train.out_dir}/{{{ckpt}, metrics.jsonl, loss.png, run.yaml}}")
    return 0


def cmd_prepare(args) -> int:
    from synthfuse.synthe.train.shards import prepare_shards

    meta = prepare_shards(args.input, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab,
                          shard_tokens=args.shard_tokens, val_fraction=args.val_fraction,
                          block_chars=args.block_chars, progress=not args.no_progress)
    rows = [{"split": s, "tokens": meta["splits"][s]["tokens"], "shards": len(meta["splits"][s]["shards"])}
            for s in ("train", "val")]
    print(format_table(rows))
    print(f"{meta['tokenizer']['kind']} tokenizer, vocabulary {meta['vocab_size']}, {meta['dtype']} shards, "
          f"{meta['blocks']} blocks; wrote {Path(args.out) / 'meta.json'}")
    print(f"train on it: synthfuse synthe train --data {args.out} ...")
    return 0


def cmd_zoology(args) -> int:
    from synthfuse.synthe.train.zoology import ZoologySpec, plot_zoology, run_zoology

    rows = []
    for task in args.tasks:
        spec = ZoologySpec(task="s5" if task == "state" else task, seq_len=args.seq_len, num_kv_pairs=args.num_kv_pairs,
                           vocab_size=args.vocab_size, d_model=args.d_model, n_layers=args.n_layers,
                           n_heads=args.n_heads, delta_dt_range=tuple(args.delta_dt_range), steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, eval_interval=args.eval_interval, seed=args.seed,
                           device=args.device)
        rows += run_zoology(spec, args.variants, progress=not args.no_progress)
    out = Path(args.out_dir)
    atomic_write_text(out / "zoology.json", json.dumps(rows, indent=1))
    plot_zoology(rows, out / "zoology.png")
    print(format_table([{k: v for k, v in r.items() if k != "curve"} for r in rows]))
    print(f"wrote {out}/zoology.json, {out}/zoology.png")
    return 0


def cmd_probe_report(args) -> int:
    from synthfuse.synthe.train.data import batch_generator
    from synthfuse.synthe.train.probe_report import plot_probe_report, probe_report

    if args.checkpoint:  # checkpoint.pt, or the sharded checkpoints of a torchrun (FSDP/DDP) run
        from synthfuse.synthe.train.restore import load_trained

        trainer = load_trained(args.checkpoint, device=args.device)
        run = trainer.run
    else:
        run = run_config_from_args(args)
        trainer = Trainer(run, progress=not args.no_progress)
        trainer.fit()
    x, y = trainer.data.batch("val", run.train.batch_size, batch_generator(run.train.seed, "val", 0))
    report = probe_report(trainer.model, x.to(trainer.device), y.to(trainer.device))
    out = Path(args.report_dir or run.train.out_dir)
    paths = plot_probe_report(report, out)
    c = report["confidence"].double()
    print(f"confidence: mean {c.mean():.3f}, quantiles 10/50/90% "
          + ", ".join(f"{q:.3f}" for q in c.quantile(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()))
    for key in ("probe_sweep", "exit_sweep"):
        if report[key]:
            print(f"\n{key}:\n{format_table(report[key])}")
    atomic_write_text(out / "probe_report.json",
                      json.dumps({k: report[k] for k in ("probe_sweep", "exit_sweep")}, indent=1))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def add_subcommands(sub) -> None:
    """Register ``train``, ``prepare``, ``zoology`` and ``probe-report`` on a subparsers object."""
    p = sub.add_parser("train", help="train SYNTHE or the Transformer baseline (text or Zoology tasks)")
    add_run_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoint.pt")
    p.add_argument("--sample_tokens", type=int, default=300, help="text sample length after training (0: none)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prepare", help="tokenize a corpus (file or folder of .txt) into memory-mapped shards")
    p.add_argument("--input", required=True, help="a UTF-8 text file or a folder of .txt files")
    p.add_argument("--out", required=True, help="the shard folder (resumable: rerun the same command)")
    p.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="bpe",
                   help="bpe: byte-level BPE trained here; char: one id per character; byte: UTF-8 bytes")
    p.add_argument("--vocab", type=int, default=32000, help="BPE vocabulary size (>= 256)")
    p.add_argument("--shard_tokens", type=int, default=DEFAULT_SHARD_TOKENS, help="tokens per shard")
    p.add_argument("--val_fraction", type=float, default=0.1, help="fraction of blocks held out for validation")
    p.add_argument("--block_chars", type=int, default=DEFAULT_BLOCK_CHARS,
                   help="characters per block (the unit of the train / val split)")
    p.add_argument("--no_progress", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("zoology", help="Zoology suite: accuracy per task for SYNTHE, SYNTHE without delta, Transformer")
    p.add_argument("--tasks", nargs="+", default=["mqar"], choices=("mqar", "copy", "parity", "s5", "state"))
    p.add_argument("--variants", nargs="+", default=["synthe", "synthe-no-delta", "transformer"],
                   choices=("synthe", "synthe-no-delta", "transformer"))
    from synthfuse.synthe.train.zoology import ZoologySpec

    for name in ("seq_len", "num_kv_pairs", "vocab_size", "d_model", "n_layers", "n_heads", "steps", "batch_size",
                 "lr", "eval_interval", "seed"):  # defaults: ZoologySpec's (the MQAR target run)
        default = getattr(ZoologySpec, name)
        p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--delta_dt_range", nargs=2, type=float, default=ZoologySpec.delta_dt_range, metavar=("LOW", "HIGH"),
                   help="initial DeltaLayer step sizes (forgetting rate exp(A) dt per token, A in [1, 16])")
    p.add_argument("--device", default="auto")
    p.add_argument("--out_dir", default="runs/zoology")
    p.add_argument("--no_progress", action="store_true")
    p.set_defaults(func=cmd_zoology)

    p = sub.add_parser("probe-report", help="confidence histogram, probe and early-exit threshold sweeps (PNG)")
    add_run_arguments(p)
    p.add_argument("--checkpoint", help="a trained run: its folder, its checkpoint.pt, or its sharded checkpoints "
                                        "(checkpoints/ or checkpoints/step_<n> of a --parallel fsdp|ddp run); "
                                        "otherwise train first with the options")
    p.add_argument("--report_dir", help="where the PNGs go (default: the run folder)")
    p.set_defaults(func=cmd_probe_report)
