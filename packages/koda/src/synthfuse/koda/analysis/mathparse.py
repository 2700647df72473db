"""Parser of the little math notation used for recurrences and Θ classes.

Accepted: numbers (``3``, ``0.5`` -- decimals are exact rationals), the variable ``n``,
``T(...)`` (in recurrences), ``+ - * /``, powers ``^`` or ``**``, parentheses, implicit
multiplication (``2T(n/2)``, ``n log n``), and the functions ``log``/``ln`` (natural),
``lg``/``log2`` (base 2), ``sqrt`` and ``exp``. A function may take its argument without
parentheses and a power after its name: ``log^2 n`` is ``log(n)**2``, ``log log n`` is
``log(log(n))``, ``n/log n`` is ``n/log(n)``. ``Theta(...)``, ``Θ(...)`` and ``O(...)``
around a whole Θ expression are accepted by :func:`parse_theta`.

Written by hand (no ``eval``/``sympify`` of user text) so that errors carry a column.
"""

from __future__ import annotations

import re

import sympy

from synthfuse.koda.analysis.theta import N
from synthfuse.koda.errors import KodaSyntaxError

__all__ = ["T", "parse_math", "parse_theta"]

#: The unknown function of a recurrence.
T = sympy.Function("T")

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_Θ][A-Za-z_0-9]*)|(\*\*|[-+*/^(),=]))")
_FUNCTIONS = {
    "log": sympy.log, "ln": sympy.log, "lg": lambda x: sympy.log(x) / sympy.log(2),
    "log2": lambda x: sympy.log(x) / sympy.log(2), "sqrt": sympy.sqrt, "exp": sympy.exp,
}
_MAX_DEPTH = 60


class _MathParser:
    def __init__(self, text: str, allow_t: bool) -> None:
        if not isinstance(text, str):
            raise KodaSyntaxError(f"expected a str, got {type(text).__name__}")
        self.text = text
        self.allow_t = allow_t
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                raise KodaSyntaxError(f"unexpected character {text[col - 1]!r}", 1, col)
            number, name, op = match.groups()
            col = match.start(match.lastindex) + 1
            kind = "num" if number else ("name" if name else op)
            self.tokens.append((kind, number or name or op, col))
            pos = match.end()
        self.tokens.append(("eof", "", len(text) + 1))
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def error(self, expected: str) -> KodaSyntaxError:
        kind, text, col = self.tok
        found = "end of input" if kind == "eof" else repr(text)
        return KodaSyntaxError(f"expected {expected}, found {found}", 1, col)

    def expect(self, kind: str) -> None:
        if self.tok[0] != kind:
            raise self.error(repr(kind))
        self.i += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise KodaSyntaxError("expression nested too deeply", 1, self.tok[2])

    def starts_factor(self) -> bool:
        return self.tok[0] in ("num", "name", "(")

    # expr := term { (+|-) term }
    def expr(self) -> sympy.Expr:
        self.enter()
        value = self.term()
        while self.tok[0] in ("+", "-"):
            op = self.tok[0]
            self.i += 1
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        self.depth -= 1
        return value

    # term := unary { (*|/) unary | unary }   (juxtaposition multiplies)
    def term(self) -> sympy.Expr:
        value = self.unary()
        while True:
            if self.tok[0] in ("*", "/"):
                op = self.tok[0]
                self.i += 1
                rhs = self.unary()
                value = value * rhs if op == "*" else value / rhs
            elif self.starts_factor():
                value = value * self.unary()
            else:
                return value

    def unary(self) -> sympy.Expr:
        if self.tok[0] == "-":
            self.i += 1
            self.enter()
            value = -self.unary()
            self.depth -= 1
            return value
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.tok[0] in ("^", "**"):
            self.i += 1
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return base**exponent
        return base

    def atom(self) -> sympy.Expr:
        kind, text, col = self.tok
        if kind == "num":
            self.i += 1
            return sympy.Rational(text)
        if kind == "(":
            self.i += 1
            value = self.expr()
            self.expect(")")
            return value
        if kind != "name":
            raise self.error("a number, 'n', a function or '('")
        self.i += 1
        if text == "n":
            return N
        if text == "T":
            if not self.allow_t:
                raise KodaSyntaxError("T(...) may only appear in a recurrence", 1, col)
            self.expect("(")
            arg = self.expr()
            self.expect(")")
            return T(arg)
        if text in _FUNCTIONS:
            power = None
            if self.tok[0] in ("^", "**"):
                self.i += 1
                power = self.unary()
            self.enter()
            if self.tok[0] == "(":
                self.i += 1
                arg = self.expr()
                self.expect(")")
            else:
                arg = self.power()
            self.depth -= 1
            value = _FUNCTIONS[text](arg)
            return value if power is None else value**power
        raise KodaSyntaxError(f"unknown name {text!r} (use n, T, log, ln, lg, log2, sqrt, exp)", 1, col)

    def finish(self, value: sympy.Expr) -> sympy.Expr:
        if self.tok[0] != "eof":
            raise self.error("an operator or the end of input")
        return value


def parse_math(text: str, allow_t: bool = False) -> sympy.Expr:
    """Parse ``text`` into a sympy expression in :data:`N` (and ``T`` when ``allow_t``)."""
    parser = _MathParser(text, allow_t)
    if parser.tok[0] == "eof":
        raise KodaSyntaxError("empty expression", 1, 1)
    try:
        return parser.finish(parser.expr())
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, KodaSyntaxError):
            raise
        raise KodaSyntaxError(f"cannot build {text!r}: {exc}", 1, 1) from None


def parse_theta(text: str) -> sympy.Expr:
    """Parse a Θ class such as ``"Theta(n log n)"``, ``"Θ(n^2)"`` or ``"n^log2(3)"``."""
    stripped = text.strip() if isinstance(text, str) else text
    match = re.fullmatch(r"(?:Theta|Θ|O)\s*\((.*)\)", stripped, flags=re.S) if isinstance(stripped, str) else None
    return parse_math(match.group(1) if match else text)
