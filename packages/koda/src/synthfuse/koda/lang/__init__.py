"""KL, the small typed language of KODA: lexer, parser, pretty-printer, type checker, interpreter."""

from synthfuse.koda.lang import ast
from synthfuse.koda.lang.interp import Interpreter, RunResult, run
from synthfuse.koda.lang.parser import parse, parse_expr
from synthfuse.koda.lang.pretty import pretty, pretty_expr
from synthfuse.koda.lang.types import Signature, check

__all__ = ["Interpreter", "RunResult", "Signature", "ast", "check", "load", "parse", "parse_expr",
           "pretty", "pretty_expr", "run"]


def load(source: str) -> "ast.Program":
    """Parse and type-check KL ``source``; return the program."""
    program = parse(source)
    check(program)
    return program
