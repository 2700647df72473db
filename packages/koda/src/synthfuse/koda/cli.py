"""``synthfuse koda`` (also ``python -m synthfuse.koda``): the command-line interface.

Subcommands: ``verify`` (check a KL program's complexity by both routes), ``solve`` (a
recurrence by Akra–Bazzi and the Master theorem), ``gen-data`` (labelled corpus as JSONL
shards), ``distill`` (a coreset of a corpus, with its report table), ``train`` (a KODA
model from a YAML config, :mod:`synthfuse.koda.train`) and ``synthesize`` (programs of a
requested Θ class from a trained model, each verified, :mod:`synthfuse.koda.synthesis`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from synthfuse.koda.__about__ import __version__
from synthfuse.shared.cli import package_parser, run_parser


def _fail(message: str) -> int:
    print(f"synthfuse koda: {message}", file=sys.stderr)
    return 2


def _cmd_verify(args) -> int:
    from synthfuse.koda.analysis import (betti_numbers, clique_complex, control_flow_graph, graph_betti,
                                         laplacian_spectrum, program_graph, verify)
    from synthfuse.koda.errors import KodaError
    from synthfuse.koda.lang import load

    try:
        source = Path(args.program).read_text(encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot read {args.program}: {exc.strerror}")
    try:
        program = load(source)
        fn = program.function(args.function) if args.function else program.entry
    except KeyError:
        return _fail(f"{args.program} has no function {args.function!r}")
    except KodaError as exc:
        return _fail(f"{args.program}:{exc}")
    claim = args.claim
    if claim is None:
        from synthfuse.koda.analysis.verify import static_theta

        try:
            claim = static_theta(program, fn.name)[2]
        except KodaError as exc:
            return _fail(f"no --claim given and the static route cannot derive one: {exc}")
    try:
        result = verify(program, claim, function=fn.name, step_budget=args.budget)
    except KodaError as exc:
        return _fail(str(exc))
    print(f"program:      {args.program} (function {fn.name})")
    if result.recurrence is not None:
        print(f"recurrence:   {result.recurrence}")
        sol = result.solution
        value = "" if sol.p.is_Rational else f" = {float(sol.p):.10g}"
        print(f"Akra–Bazzi:   p = {sol.p}{value} ({'exact' if sol.p_exact else 'numeric'}); {sol.case}")
    print(f"claim:        Θ({result.claimed})")
    static = {True: "agrees", False: "DISAGREES", None: "n/a"}[result.static_ok]
    print(f"static route: {static} -- {result.static_reason}")
    dyn = result.dynamic
    verdict = {True: "consistent", False: "INCONSISTENT", None: "inconclusive"}[dyn.consistent]
    sizes = f"{len(dyn.ns)} sizes up to n = {dyn.ns[-1]}" if dyn.ns else "no sizes"
    print(f"dynamic route: {verdict} -- {dyn.reason} ({sizes}, log-log slope {dyn.exponent:.3f})")
    print(f"verdict:      {'VERIFIED' if result.verified else 'NOT VERIFIED'} "
          f"({'routes agree' if result.agree else 'routes disagree'})")
    cfg = control_flow_graph(fn)
    spectrum = laplacian_spectrum(cfg)
    beta0, beta1 = graph_betti(cfg, spectrum)
    shown = ", ".join(f"{max(x, 0.0):.3f}" for x in spectrum.tolist()[:8]) + (", ..." if len(spectrum) > 8 else "")
    print(f"CFG:          {cfg.num_nodes} nodes, {len(cfg.edges)} edges, β0 = {beta0}, β1 = {beta1}")
    print(f"CFG spectrum: [{shown}]")
    graph = program_graph(program)
    betti = betti_numbers(clique_complex(graph.num_nodes, graph.simple().edges, max_dim=2))
    print(f"program graph: {graph.num_nodes} nodes; Betti numbers of its clique complex: {betti}")
    return 0 if result.verified else 1


def _cmd_solve(args) -> int:
    from synthfuse.koda.analysis import master_theorem, solve, theta_of
    from synthfuse.koda.errors import KodaError, OutOfScopeError

    try:
        sol = solve(args.recurrence)
    except OutOfScopeError as exc:
        return _fail(f"out of scope for Akra–Bazzi: {exc}")
    except KodaError as exc:
        return _fail(str(exc))
    print(f"recurrence:  {sol.recurrence}")
    print(f"p:           {sol.p}  (= {float(sol.p):.12g}, {'exact' if sol.p_exact else 'numeric, error < 1e-10'})")
    print(f"g(n):        Θ({sol.g_theta if sol.g_theta is not None else 0})")
    print(f"case:        {sol.case}")
    print(f"Akra–Bazzi:  T(n) = Θ({sol.theta})")
    try:
        print(f"Master:      T(n) = Θ({theta_of(master_theorem(sol.recurrence))})")
    except KodaError as exc:
        print(f"Master:      not applicable ({exc})")
    return 0


def _cmd_gen_data(args) -> int:
    from synthfuse.koda.data import generate, write_shards
    from synthfuse.shared.demo import DemoContext

    if args.n <= 0:
        return _fail(f"--n must be positive, got {args.n}")
    progress = DemoContext(out_dir=Path(args.out)).progress
    paths = write_shards(generate(args.n, seed=args.seed), args.out, shard_size=args.shard_size,
                         progress=lambda it: progress(it, desc="generating programs", total=args.n))
    manifest = json.loads((Path(args.out) / "manifest.json").read_text(encoding="utf-8"))
    print(f"wrote {manifest['records']} programs in {len(paths)} shard(s) to {args.out}")
    for label, count in manifest["theta_classes"].items():
        print(f"  {label:28s} {count}")
    return 0


def _cmd_distill(args) -> int:
    from synthfuse.koda.data import distill, read_shards, signatures_of
    from synthfuse.koda.lang import load
    from synthfuse.shared.demo import DemoContext, format_table
    from synthfuse.shared.io import atomic_write_text

    try:
        records = list(read_shards(args.data))
    except (OSError, ValueError, KeyError) as exc:
        return _fail(f"cannot read the corpus in {args.data}: {exc}")
    if not 0 < args.size <= len(records):
        return _fail(f"--size must be in [1, {len(records)}], got {args.size}")
    ctx = DemoContext(out_dir=Path(args.out))
    signatures = signatures_of((load(r.source) for r in records),
                               progress=lambda it: ctx.progress(it, desc="signatures", total=len(records)))
    coreset = distill([r.theta_class for r in records], signatures, args.size, seed=args.seed)
    summary = [{"selection": "coreset", "TV(class, topology)": coreset.tv_coreset, "MMD(spectrum)": coreset.mmd_coreset},
               {"selection": "uniform random", "TV(class, topology)": coreset.tv_random,
                "MMD(spectrum)": coreset.mmd_random}]
    report = format_table(list(coreset.table)) + "\n" + format_table(summary)
    print(report)
    out = Path(args.out)
    atomic_write_text(out / "coreset.json", json.dumps([records[i].id for i in coreset.indices]) + "\n")
    atomic_write_text(out / "coreset.md", report)
    print(f"wrote {out / 'coreset.json'} and {out / 'coreset.md'}")
    return 0


def build_parser():
    """The ``synthfuse koda`` parser; each subcommand sets ``func``."""
    parser, sub = package_parser("synthfuse koda", __version__, "Program synthesis with complexity proofs.")
    p = sub.add_parser("verify", help="check a KL program's Θ class by the static and the dynamic route")
    p.add_argument("program", help="a .kl source file")
    p.add_argument("--claim", help="claimed Θ class, e.g. 'n log n' (default: the static route's answer)")
    p.add_argument("--function", help="function to analyse (default: the first)")
    p.add_argument("--budget", type=int, default=400_000, help="interpreter step budget of the dynamic route")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("solve", help="solve T(n) = sum a_i T(b_i n) + g(n) by Akra–Bazzi (and the Master theorem)")
    p.add_argument("recurrence", help='e.g. "T(n) = 2*T(n/2) + n"')
    p.set_defaults(func=_cmd_solve)
    p = sub.add_parser("gen-data", help="generate labelled KL programs as JSONL shards")
    p.add_argument("--n", type=int, required=True, help="number of programs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=5000)
    p.set_defaults(func=_cmd_gen_data)
    p = sub.add_parser("distill", help="choose a coreset preserving Θ class x topology of a corpus")
    p.add_argument("--data", required=True, help="folder written by gen-data")
    p.add_argument("--size", type=int, required=True, help="coreset size")
    p.add_argument("--out", required=True, help="folder for coreset.json and coreset.md")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_distill)
    from synthfuse.koda.train.command import configure_parser

    configure_parser(sub.add_parser("train", help="train a KODA model from a YAML config (configs/koda_tiny.yaml)"))
    from synthfuse.koda.synthesis.command import configure_parser as configure_synthesize

    configure_synthesize(sub.add_parser("synthesize", help="write programs of a requested Θ class with a trained "
                                                           "model and verify every one"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse koda`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
