"""``synthfuse synthe`` (also ``python -m synthfuse.synthe``): the command-line interface."""

from __future__ import annotations

from typing import Sequence

from synthfuse.shared.cli import package_parser, run_parser
from synthfuse.synthe.__about__ import __version__
from synthfuse.synthe.train.cli import add_subcommands


def build_parser():
    """The ``synthfuse synthe`` parser; each subcommand sets ``func``."""
    parser, subcommands = package_parser("synthfuse synthe", __version__, "Online-learning sequence models: layers, memory hub, depth router.")
    add_subcommands(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``synthfuse synthe`` with ``argv`` (defaults to ``sys.argv[1:]``)."""
    return run_parser(build_parser(), argv)
