"""``synthfuse koda`` (also ``python -m synthfuse.koda``): the command-line interface."""

from __future__ import annotations

from typing import Sequence

from synthfuse.shared.cli import package_parser, run_parser
from synthfuse.koda.__about__ import __version__


def build_parser():
    """The ``synthfuse koda`` parser; each subcommand sets ``func``."""
    parser, _subcommands = package_parser("synthfuse koda", __version__, "Program synthesis with complexity proofs.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse koda`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
