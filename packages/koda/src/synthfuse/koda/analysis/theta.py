"""Canonical Θ classes: ``n^k (log n)^j (log log n)^m`` and the leading term of an expression.

A Θ class is stored as the triple ``(k, j, m)`` (:class:`Theta`); its representative is the
sympy expression ``n**k * log(n)**j * log(log(n))**m`` in the positive symbol :data:`N`.
Two classes are equal when their triples are; exponents ``k`` are compared numerically
to :data:`EXPONENT_TOL` because the Akra–Bazzi exponent may be exact (``log(3)/log(2)``) on
one side and a 30-digit float on the other. Classes are ordered by growth, i.e.
lexicographically on ``(k, j, m)``.

:func:`theta_of` finds the leading term ``c n^k log^j n log log^m n`` of an expression
built from ``n``, numbers, ``+ - * /``, constant powers, ``log``, ``floor``/``ceiling``,
``Max``/``Min``; anything growing faster than every polynomial (``2**n``, ``exp(n)``)
raises :class:`OutOfScopeError`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy

from synthfuse.koda.errors import KodaAnalysisError, OutOfScopeError

__all__ = ["EXPONENT_TOL", "N", "Theta", "compare_numbers", "leading_term", "theta_of"]

#: The size variable of every recurrence and Θ class.
N = sympy.Symbol("n", positive=True)
#: Two exponents closer than this are the same exponent.
EXPONENT_TOL = 1e-9


def compare_numbers(a: sympy.Expr, b: sympy.Expr) -> int:
    """Sign of ``a - b`` (-1, 0, 1), with ``|a - b| < EXPONENT_TOL`` counted as equal."""
    a, b = sympy.sympify(a), sympy.sympify(b)
    if a.is_Rational and b.is_Rational:
        return int(bool(a > b)) - int(bool(a < b))
    diff = sympy.N(a - b, 40)
    if not diff.is_real:
        raise KodaAnalysisError(f"cannot compare {a} and {b}: not real numbers")
    d = float(diff)
    return 0 if abs(d) < EXPONENT_TOL else (1 if d > 0 else -1)


@dataclass(frozen=True, eq=False)
class Theta:
    """The Θ class ``n^k (log n)^j (log log n)^m``.

    Parameters
    ----------
    k : sympy number
        Polynomial exponent (exact where possible, e.g. ``log(3)/log(2)``).
    j, m : sympy number
        Powers of ``log n`` and ``log log n`` (rationals).
    """

    k: sympy.Expr
    j: sympy.Expr = sympy.Integer(0)
    m: sympy.Expr = sympy.Integer(0)

    def __post_init__(self) -> None:
        for name in ("k", "j", "m"):
            value = sympy.sympify(getattr(self, name))
            if value.free_symbols or not value.is_real:
                raise ValueError(f"Theta.{name} must be a real number, got {value}")
            object.__setattr__(self, name, value)

    @property
    def expr(self) -> sympy.Expr:
        """The representative ``n**k * log(n)**j * log(log(n))**m``."""
        return N**self.k * sympy.log(N) ** self.j * sympy.log(sympy.log(N)) ** self.m

    def compare(self, other: "Theta") -> int:
        """-1, 0 or 1 as ``self`` grows slower than, like, or faster than ``other``."""
        for a, b in ((self.k, other.k), (self.j, other.j), (self.m, other.m)):
            c = compare_numbers(a, b)
            if c:
                return c
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Theta) and self.compare(other) == 0

    def __lt__(self, other: "Theta") -> bool:
        return self.compare(other) < 0

    def __le__(self, other: "Theta") -> bool:
        return self.compare(other) <= 0

    def __hash__(self) -> int:
        return hash((round(float(self.k), 8), float(self.j), float(self.m)))

    def __mul__(self, other: "Theta") -> "Theta":
        return Theta(self.k + other.k, self.j + other.j, self.m + other.m)

    def log_float(self, n: float) -> float:
        """``log`` of the representative at ``n`` (needs ``log log n > 0`` when ``m != 0``)."""
        import math

        ln = math.log(n)
        value = float(self.k) * ln
        if self.j:
            value += float(self.j) * math.log(ln)
        if self.m:
            value += float(self.m) * math.log(math.log(ln))
        return value

    def __str__(self) -> str:
        parts = []
        k = sympy.Float(self.k, 12) if isinstance(self.k, sympy.Float) else self.k
        if k != 0:
            parts.append("n" if k == 1 else f"n^{_paren(k)}")
        for power, name in ((self.j, "log n"), (self.m, "log log n")):
            if power == 1:
                parts.append(name)
            elif power != 0:
                parts.append(f"{name.rsplit(' ', 1)[0]}^{_paren(power)} n")
        return " ".join(parts) if parts else "1"

    def __repr__(self) -> str:
        return f"Theta({self})"


def _paren(x: sympy.Expr) -> str:
    text = str(x).replace("**", "^")
    return text if (x.is_Integer and x >= 0) or text.isalnum() else f"({text})"


# ------------------------------------------------------------------------- leading terms
_Lead = tuple  # (coef, k, j, m), all sympy numbers; coef != 0


def _key(lead: _Lead) -> Theta:
    return Theta(lead[1], lead[2], lead[3])


def _lead(expr: sympy.Expr, var: sympy.Symbol) -> _Lead | None:  # noqa: C901 - one case per node type
    """Leading term of ``expr`` as ``var -> oo``; ``None`` if ``expr`` is identically zero."""
    if not expr.has(var):
        value = sympy.sympify(expr)
        if value.free_symbols:
            raise KodaAnalysisError(f"{expr} depends on {sorted(map(str, value.free_symbols))}, not only on {var}")
        if value == 0:
            return None
        if not value.is_real:
            raise KodaAnalysisError(f"{expr} is not a real number")
        return (value, sympy.Integer(0), sympy.Integer(0), sympy.Integer(0))
    if expr == var:
        return (sympy.Integer(1), sympy.Integer(1), sympy.Integer(0), sympy.Integer(0))
    if expr.is_Add:
        leads = [t for t in (_lead(a, var) for a in expr.args) if t is not None]
        if not leads:
            return None
        top = max((_key(t) for t in leads), key=functools.cmp_to_key(Theta.compare))
        coef = sum((t[0] for t in leads if _key(t) == top), sympy.Integer(0))
        if compare_numbers(coef, 0) == 0:
            raise KodaAnalysisError(f"the leading terms of {expr} cancel; simplify the expression")
        return (coef, top.k, top.j, top.m)
    if expr.is_Mul:
        coef, k, j, m = sympy.Integer(1), sympy.Integer(0), sympy.Integer(0), sympy.Integer(0)
        for factor in expr.args:
            lead = _lead(factor, var)
            if lead is None:
                return None
            coef, k, j, m = coef * lead[0], k + lead[1], j + lead[2], m + lead[3]
        return (coef, k, j, m)
    if expr.is_Pow:
        base, exp = expr.args
        if exp.has(var):
            raise OutOfScopeError(f"{expr} grows faster than any polynomial (the exponent depends on {var})")
        lead = _lead(base, var)
        if lead is None:
            return None
        if compare_numbers(lead[0], 0) < 0 and not exp.is_integer:
            raise KodaAnalysisError(f"{expr}: a negative base to a fractional power")
        return (lead[0] ** exp, lead[1] * exp, lead[2] * exp, lead[3] * exp)
    if isinstance(expr, sympy.exp):
        raise OutOfScopeError(f"{expr} grows faster than any polynomial")
    if isinstance(expr, sympy.log):
        inner = _lead(expr.args[0], var)
        if inner is None or compare_numbers(inner[0], 0) <= 0:
            raise KodaAnalysisError(f"{expr}: the logarithm of a non-positive quantity")
        _, k, j, m = inner
        zero = sympy.Integer(0)
        if compare_numbers(k, 0) > 0:
            return (k, zero, sympy.Integer(1), zero)
        if compare_numbers(k, 0) < 0:
            raise KodaAnalysisError(f"{expr} tends to -oo")
        if compare_numbers(j, 0) > 0:
            return (j, zero, zero, sympy.Integer(1))
        if compare_numbers(j, 0) == 0 and compare_numbers(m, 0) == 0:
            value = sympy.log(inner[0])
            if compare_numbers(value, 0) == 0:
                raise KodaAnalysisError(f"cannot find the leading term of {expr}")
            return (value, zero, zero, zero)
        raise KodaAnalysisError(f"{expr} is beyond n^k log^j n log log^m n")
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        inner = _lead(expr.args[0], var)
        if inner is None or compare_numbers(inner[1], 0) <= 0:
            raise KodaAnalysisError(f"{expr}: the rounding of a bounded quantity has no Θ class")
        return inner
    if isinstance(expr, (sympy.Max, sympy.Min)):
        leads = [t for t in (_lead(a, var) for a in expr.args) if t is not None]
        if not leads:
            return None
        pick = max if isinstance(expr, sympy.Max) else min
        return pick(leads, key=lambda t: (_key(t).k, _key(t).j, _key(t).m, t[0]))
    raise KodaAnalysisError(f"{expr}: unsupported function {type(expr).__name__} in a cost expression")


def leading_term(expr: sympy.Expr | str, var: sympy.Symbol = N) -> tuple[sympy.Expr, Theta] | None:
    """``(c, Θ)`` with ``expr ~ c * Θ.expr`` as ``var -> oo`` (``None`` for identically zero)."""
    if isinstance(expr, str):
        from synthfuse.koda.analysis.mathparse import parse_math

        expr = parse_math(expr)
    expr = sympy.expand(sympy.expand_log(sympy.sympify(expr), force=True))
    if var != N:
        expr = expr.subs(var, N)
    lead = _lead(expr, N)
    if lead is None:
        return None
    return lead[0], _key(lead)


def theta_of(expr: sympy.Expr | str, var: sympy.Symbol = N) -> Theta:
    """The Θ class of a positive expression (or Θ text such as ``"Theta(n log n)"``).

    Raises
    ------
    KodaAnalysisError
        If the expression is identically zero, eventually negative, or not of a supported form.
    OutOfScopeError
        If it grows faster than every polynomial.
    """
    if isinstance(expr, str):
        from synthfuse.koda.analysis.mathparse import parse_theta

        expr = parse_theta(expr)
    result = leading_term(expr, var)
    if result is None:
        raise KodaAnalysisError(f"{expr} is identically zero; it has no Θ class")
    coef, theta = result
    if compare_numbers(coef, 0) < 0:
        raise KodaAnalysisError(f"{expr} is negative for large {var}")
    return theta
