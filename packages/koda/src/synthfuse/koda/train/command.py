"""``synthfuse koda train`` / ``python -m synthfuse.koda.train``: train from a YAML config.

Under ``torchrun --nproc_per_node N -m synthfuse.koda.train --config ...`` the same command
trains data-parallel on N processes (the config's ``parallel:`` section; rank 0 prints).

Importing this module is cheap (torch loads only when the command runs), so the ``synthfuse
koda`` parser can register the subcommand without slowing down its other commands.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

__all__ = ["configure_parser", "main", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``parser`` and set ``func=run``."""
    parser.add_argument("--config", required=True, help="YAML run config, e.g. configs/koda_tiny.yaml")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--rl-steps", type=int,
                        help="after training, run this many RL-from-the-verifier steps (sets rl.steps, enables rl)")
    parser.add_argument("--out-dir", help="override train.out_dir (checkpoints, curves, history)")
    parser.add_argument("--device", help="override train.device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if out_dir has a checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the trainer from ``args``, train, print a summary; return the exit code."""
    from synthfuse.koda.train.config import load_config
    from synthfuse.koda.train.trainer import KodaTrainer

    cfg = load_config(args.config)
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit(f"--steps must be >= 1, got {args.steps}")
        cfg.train.steps = args.steps
    if args.rl_steps is not None:
        if args.rl_steps < 1:
            raise SystemExit(f"--rl-steps must be >= 1, got {args.rl_steps}")
        cfg.rl.steps = args.rl_steps
        cfg.rl.enabled = True
    if args.device is not None:
        cfg.train.device = args.device
    from synthfuse.shared.distributed import destroy_distributed

    trainer = KodaTrainer(cfg, out_dir=args.out_dir, resume=not args.no_resume)  # joins torchrun's process group
    par = trainer.parallel
    say = print if par.is_main else (lambda *_: None)  # rank 0 speaks for the job
    n_params = trainer.model.num_parameters()
    say(f"koda train: {n_params:,} parameters, vocabulary {len(trainer.tokenizer)}, "
        f"{len(trainer.corpus.train)} training programs, resuming at step {trainer.step}"
        + (f", {par.world_size} processes ({cfg.parallel.strategy}, {par.env.backend})" if par.is_distributed else ""))
    say("communication plan: " + json.dumps(trainer.plan.to_dict()))
    history = trainer.fit(progress=not args.no_progress)
    destroy_distributed()
    last = history[-1] if history else {}
    val = [h["val_ce"] for h in history if "val_ce" in h]
    say(f"done: step {trainer.step}, train CE {last.get('ce', float('nan')):.4f}"
        + (f", validation CE {val[-1]:.4f}" if val else ""))
    say(f"outputs in {trainer.out_dir} (checkpoint.pt, history.json, loss_curves.png, comm_plan.json"
        + (", checkpoints/ (sharded)" if par.is_distributed else "") + ")")
    if cfg.rl.enabled and par.is_main:  # the RL phase runs in one process
        from synthfuse.koda.train.rl import VerifierRL

        phase = VerifierRL(cfg, out_dir=trainer.out_dir, resume=not args.no_resume)
        print(f"RL from the verifier: resuming at RL step {phase.step} of {cfg.rl.steps}")
        rl_history = phase.fit(progress=not args.no_progress)
        if rl_history:
            last = rl_history[-1]
            print(f"RL done: step {phase.step}, reward {last['reward']:.3f}, Θ-match {last['theta']:.3f}, "
                  f"KL {last['kl']:.3f} (rl_checkpoint.pt, rl_history.json, rl_curves.png)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m synthfuse.koda.train``."""
    from synthfuse.koda.__about__ import __version__

    parser = argparse.ArgumentParser(prog="python -m synthfuse.koda.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"synthfuse-koda {__version__}")
    args = configure_parser(parser).parse_args(argv)
    return args.func(args)
