"""``synthfuse retrain`` (also ``python -m synthfuse.retrain``): the command-line interface."""

from __future__ import annotations

from typing import Sequence

from synthfuse.shared.cli import package_parser, run_parser
from synthfuse.retrain.__about__ import __version__


def build_parser():
    """The ``synthfuse retrain`` parser; each subcommand sets ``func``."""
    parser, _subcommands = package_parser("synthfuse retrain", __version__, "Upgrade a deployed model without breaking what it got right.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse retrain`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
