"""``synthfuse acr`` (also ``python -m synthfuse.acr``): the command-line interface."""

from __future__ import annotations

from typing import Sequence

from synthfuse.shared.cli import package_parser, run_parser
from synthfuse.acr.__about__ import __version__


def build_parser():
    """The ``synthfuse acr`` parser; each subcommand sets ``func``."""
    parser, _subcommands = package_parser("synthfuse acr", __version__, "Mixture of polynomial SVR experts with adaptive complexity regularization.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse acr`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
