"""The single ``synthfuse`` console script.

Subcommands are discovered from installed distributions through the entry-point
group ``synthfuse.commands``: a package registers ``acr = "synthfuse.acr.cli:main"``
and ``synthfuse acr ...`` forwards the remaining arguments to that ``main(argv)``.
``synthfuse demo`` (the demo runner, :mod:`synthfuse.shared.demo`) is built in.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

from synthfuse.shared.__about__ import __version__

COMMAND_GROUP = "synthfuse.commands"

#: The libraries of the synthfuse family, by subcommand, with the wheel that provides each.
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    "acr": ("synthfuse-acr", "mixture of polynomial SVR experts (scikit-learn estimator, JAX)"),
    "retrain": ("synthfuse-retrain", "upgrade a deployed model without negative flips (PyTorch)"),
    "synthe": ("synthfuse-synthe", "online-learning sequence model (PyTorch)"),
    "koda": ("synthfuse-koda", "program synthesis with complexity proofs (PyTorch)"),
}


def installed_commands() -> dict[str, Callable[[Sequence[str] | None], int | None]]:
    """Return ``{name: loader}`` for every subcommand registered by an installed package."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def torchrun_exit(code: int) -> int:
    """Return the exit status ``code``; a worker of a multi-process ``torchrun`` job ends here instead.

    A torchrun worker (``TORCHELASTIC_RUN_ID`` set, ``WORLD_SIZE`` > 1) flushes stdout and
    stderr and leaves with ``os._exit(code)``, skipping interpreter finalization, as the workers
    of ``multiprocessing`` do. Without it, a finished FSDP job on gloo now and then aborted in
    interpreter shutdown (``terminate called without an active exception``, SIGABRT, no Python
    frame left), after every output was written: torchrun then reports the job as failed, or
    restarts it. Python objects such as a device mesh can keep a process group alive after
    ``destroy_process_group`` (pytorch/pytorch#111392), so its C++ side is torn down only during
    finalization. Outputs must be closed before this is called (ours are written atomically
    inside ``with`` blocks).
    """
    world_size = os.environ.get("WORLD_SIZE", "1")
    if "TORCHELASTIC_RUN_ID" in os.environ and world_size.isdigit() and int(world_size) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _usage(commands: dict) -> str:
    lines = [
        f"usage: synthfuse <command> [args...]    (synthfuse-shared {__version__})",
        "",
        "installed commands:",
        "  demo         run every installed package's demo section (see `synthfuse demo --help`)",
    ]
    for name in sorted(commands):
        what = KNOWN_PACKAGES.get(name, ("", "third-party command"))[1]
        lines.append(f"  {name:<12} {what}")
    missing = [n for n in KNOWN_PACKAGES if n not in commands]
    if missing:
        lines += ["", "not installed:"]
        for name in missing:
            wheel, what = KNOWN_PACKAGES[name]
            lines.append(f"  {name:<12} {what}  ->  pip install {wheel}")
    lines += ["", "Run `synthfuse <command> --help` for a command's own options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synthfuse`` script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = installed_commands()
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(commands))
        return 0
    if args[0] == "--version":
        print(f"synthfuse-shared {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name == "demo":
        from synthfuse.shared.demo import main as demo_main

        return demo_main(rest)
    if name not in commands:
        if name in KNOWN_PACKAGES:
            wheel = KNOWN_PACKAGES[name][0]
            print(
                f"synthfuse: '{name}' is provided by the {wheel} wheel, which is not installed.\n"
                f"Install it with:  pip install {wheel}",
                file=sys.stderr,
            )
        else:
            print(f"synthfuse: unknown command '{name}'.\n\n{_usage(commands)}", file=sys.stderr)
        return 2
    result = commands[name].load()(rest)
    return torchrun_exit(int(result or 0))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


def package_parser(prog: str, version: str, description: str):
    """Build the ``argparse`` parser every package CLI starts from.

    Returns ``(parser, subparsers)``; each subcommand sets ``func=`` (a callable taking the
    parsed namespace and returning an exit code) with ``set_defaults``. Run it with
    :func:`run_parser`.
    """
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog.replace(' ', '-')} {version}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    return parser, subparsers


def run_parser(parser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func``; print help if none was given."""
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if not (argv if argv is not None else sys.argv[1:]) else 2
    return int(func(args) or 0)
