"""``synthfuse koda synthesize``: write programs of a requested Θ class and verify every one.

Importing this module is cheap (torch loads only when the command runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``synthesize`` options to ``parser`` and set ``func=run``."""
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint.pt (after train) or rl_checkpoint.pt (after the RL phase)")
    parser.add_argument("--theta", action="append",
                        help="requested Θ class, e.g. 'n log n' (repeatable; default: every class in turn)")
    parser.add_argument("-n", "--num", type=int, default=500, help="number of programs (prompts)")
    parser.add_argument("--method", choices=("greedy", "sample", "contrastive"), default="contrastive")
    parser.add_argument("--alpha", type=float, default=0.4, help="contrastive search: degeneration penalty α")
    parser.add_argument("--top-k", type=int, help="candidates (contrastive, default 4) or top-k filter (sample, "
                                                  "default 0 = off)")
    parser.add_argument("--temperature", type=float,
                        help="sampling temperature (sample, default 0.8); contrastive: 0 (default) is the "
                             "deterministic search, > 0 draws the candidates (seeded contrastive search)")
    parser.add_argument("--top-p", type=float, help="nucleus mass (sample, default 0.95; contrastive with "
                                                    "--temperature > 0, default 1 = off)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the prompts' headers and of sampling / seeded contrastive search")
    parser.add_argument("--signature-prob", type=float, default=0.5,
                        help="fraction of prompts that also give the function header")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128, help="prompts decoded together")
    parser.add_argument("--budget", type=int, default=400_000, help="verifier interpreter step budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write one JSON line per program (source and verdicts) here")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)
    return parser


def _options(args: argparse.Namespace) -> dict:
    if args.method == "contrastive":
        return {"alpha": args.alpha, "top_k": 4 if args.top_k is None else args.top_k,
                "temperature": args.temperature or 0.0, "top_p": 1.0 if args.top_p is None else args.top_p,
                "seed": args.seed}
    if args.method == "sample":
        return {"temperature": 0.8 if args.temperature is None else args.temperature, "top_k": args.top_k or 0,
                "top_p": 0.95 if args.top_p is None else args.top_p, "seed": args.seed}
    return {}


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, synthesize ``-n`` programs, verify them, print the summary; exit 0."""
    from dataclasses import asdict

    from synthfuse.koda.synthesis.prompts import make_prompts
    from synthfuse.koda.synthesis.run import load_model, summarize, synthesize
    from synthfuse.shared.demo import DemoContext, format_table
    from synthfuse.shared.io import atomic_write_text

    def fail(message: str) -> int:
        print(f"synthfuse koda synthesize: {message}", file=sys.stderr)
        return 2

    try:
        model, tokenizer, _ = load_model(args.checkpoint, args.device)
        prompts = make_prompts(args.num, args.theta, seed=args.seed, signature_prob=args.signature_prob)
        unknown = [p for p in prompts if p.theta_class not in tokenizer.classes]
        if unknown:
            return fail(f"the model was not trained on Θ class {unknown[0].theta_class!r}")
        distinct = len(set(prompts))
        options = _options(args)
        if not options.get("temperature") and distinct < len(prompts):
            print(f"note: {distinct} distinct prompts among {len(prompts)}; {args.method} decoding is "
                  "deterministic, so a repeated prompt repeats its program (--method sample, --method "
                  "contrastive --temperature T, or --signature-prob 1 for more distinct prompts)", file=sys.stderr)
        progress = None if args.no_progress else DemoContext(out_dir=Path(".")).progress
        checks = synthesize(model, tokenizer, prompts, args.method, step_budget=args.budget,
                            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=progress,
                            **options)
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    summary = {"method": args.method, **summarize(checks)}
    print(format_table([summary]))
    for check in checks[:3]:
        verdict = "Θ verified" if check.theta_match else (check.reason.split(";")[0] or "failed")
        print(f"--- Θ({check.theta_class}): {verdict}\n{check.source}\n")
    if args.out:
        lines = [json.dumps(asdict(c), sort_keys=True) for c in checks]
        atomic_write_text(args.out, "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} programs to {args.out}")
    return 0
