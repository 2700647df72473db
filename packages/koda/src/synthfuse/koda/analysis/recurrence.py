"""Divide-and-conquer recurrences ``T(n) = sum_i a_i T(b_i n + h_i(n)) + g(n)``.

:class:`Recurrence` holds the terms ``(a_i, b_i)`` (exact sympy numbers, ``a_i > 0``,
``0 < b_i < 1``) and the driving function ``g`` (a sympy expression in ``n``).
:func:`parse_recurrence` reads the usual notation, e.g. ``"T(n) = T(n/3) + T(2*n/3) + n"``,
checking the hypotheses of the Akra–Bazzi theorem (Leighton's form) on the way: the
perturbations ``h_i = arg_i - b_i n`` must be ``O(n / log^2 n)``, the coefficients constant
and positive, ``g`` non-negative and polynomially bounded. A recurrence outside those
hypotheses raises :class:`OutOfScopeError` saying which one fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from synthfuse.koda.analysis.mathparse import T, parse_math
from synthfuse.koda.analysis.theta import N, Theta, compare_numbers, leading_term
from synthfuse.koda.errors import KodaAnalysisError, KodaSyntaxError, OutOfScopeError

__all__ = ["Recurrence", "parse_recurrence", "split_argument"]

#: Largest allowed perturbation class: h_i(n) = O(n / log^2 n) (Leighton 1996).
_MAX_PERTURBATION = Theta(1, -2, 0)


@dataclass(frozen=True)
class Recurrence:
    """``T(n) = sum_i a_i T(b_i n) + g(n)`` (perturbations ``h_i`` do not change Θ).

    Parameters
    ----------
    terms : tuple of (a_i, b_i)
        Exact positive coefficients and ratios in (0, 1); equal ratios are merged.
    g : sympy.Expr
        The non-recursive cost, an expression in :data:`~synthfuse.koda.analysis.theta.N`.
    """

    terms: tuple[tuple[sympy.Expr, sympy.Expr], ...]
    g: sympy.Expr

    def __post_init__(self) -> None:
        if not self.terms:
            raise OutOfScopeError("a recurrence needs at least one recursive term a*T(b*n)")
        merged: dict[sympy.Expr, sympy.Expr] = {}
        for a, b in self.terms:
            a, b = sympy.nsimplify(sympy.sympify(a)), sympy.nsimplify(sympy.sympify(b))
            if a.free_symbols or not a.is_real or compare_numbers(a, 0) <= 0:
                raise OutOfScopeError(f"coefficient {a} must be a positive constant")
            if b.free_symbols or not b.is_real or not (compare_numbers(b, 0) > 0 and compare_numbers(b, 1) < 0):
                raise OutOfScopeError(f"ratio {b} must be a constant in (0, 1)")
            merged[b] = merged.get(b, sympy.Integer(0)) + a
        terms = tuple(sorted(((a, b) for b, a in merged.items()), key=lambda t: -float(t[1])))
        object.__setattr__(self, "terms", terms)
        g = sympy.sympify(self.g)
        if g.free_symbols - {N}:
            raise KodaAnalysisError(f"g(n) = {g} may only depend on n")
        object.__setattr__(self, "g", g)
        self.g_theta  # validates g: non-negative and polynomially bounded

    @property
    def g_theta(self) -> Theta | None:
        """Θ class of ``g`` (``None`` when ``g = 0``)."""
        try:
            lead = leading_term(self.g)
        except OutOfScopeError as exc:
            raise OutOfScopeError(
                f"g(n) = {self.g} is not polynomially bounded, so Leighton's polynomial-growth "
                f"condition fails ({exc})") from None
        if lead is None:
            return None
        if compare_numbers(lead[0], 0) < 0:
            raise OutOfScopeError(f"g(n) = {self.g} is negative for large n (Akra–Bazzi needs g >= 0)")
        return lead[1]

    def __str__(self) -> str:
        parts = []
        for a, b in self.terms:
            arg = "n" if b == 1 else (f"n/{1 / b}" if (1 / b).is_Integer else f"{b.p}*n/{b.q}" if b.is_Rational else f"{b}*n")
            parts.append(f"{'' if a == 1 else f'{a}*'}T({arg})")
        if self.g != 0:
            parts.append(str(self.g).replace("**", "^"))
        return "T(n) = " + " + ".join(parts)


def split_argument(arg: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """Write a recursive argument as ``b n + h(n)``; check ``0 < b < 1``, ``h = O(n/log^2 n)``.

    Raises
    ------
    OutOfScopeError
        ``T(n - 1)`` (``b = 1``: not a division), ``T(sqrt(n))`` (not linear in ``n``), ...
    """
    lead = leading_term(arg)
    shown = str(arg).replace("**", "^")
    if lead is None or compare_numbers(lead[0], 0) <= 0:
        raise OutOfScopeError(f"T({shown}): the argument does not grow with n")
    coef, theta = lead
    if theta != Theta(1):
        raise OutOfScopeError(
            f"T({shown}): the argument is not b*n + h(n) (it grows like {theta}); Akra–Bazzi needs "
            "arguments linear in n, such as n/2 or 2*n/3")
    b = sympy.nsimplify(coef)
    if compare_numbers(b, 1) >= 0:
        raise OutOfScopeError(
            f"T({shown}) is not a division: its ratio is b = {b}, and Akra–Bazzi needs 0 < b < 1 "
            "(subtract-and-conquer recurrences such as T(n-1) + n are outside the theorem)")
    h = sympy.expand(arg - b * N)
    h_lead = leading_term(h)
    if h_lead is not None and h_lead[1] > _MAX_PERTURBATION:
        raise OutOfScopeError(f"T({shown}): the perturbation h(n) = {h} is not O(n / log^2 n)")
    return b, h


def parse_recurrence(text: str) -> Recurrence:
    """Parse ``"T(n) = a1*T(b1*n + h1) + ... + g(n)"`` into a :class:`Recurrence`.

    Raises
    ------
    KodaSyntaxError
        Malformed text.
    OutOfScopeError
        A hypothesis of the Akra–Bazzi theorem fails (the message names it).
    """
    if not isinstance(text, str) or text.count("=") != 1:
        raise KodaSyntaxError("a recurrence looks like 'T(n) = 2*T(n/2) + n' (exactly one '=')")
    lhs_text, rhs_text = text.split("=")
    lhs = parse_math(lhs_text, allow_t=True)
    if lhs != T(N):
        raise KodaSyntaxError(f"the left-hand side must be T(n), got {lhs_text.strip()!r}")
    rhs = sympy.expand(parse_math(rhs_text, allow_t=True))
    terms, g = [], sympy.Integer(0)
    for term in sympy.Add.make_args(rhs):
        calls = term.atoms(T)
        if not calls:
            g += term
            continue
        if len(calls) > 1 or not term.is_Mul and not isinstance(term, T):
            raise OutOfScopeError(f"{term}: each recursive term must be a*T(b*n + h)")
        (call,) = calls
        coef = sympy.simplify(term / call)
        if coef.has(T) or call.args[0].has(T):
            raise OutOfScopeError(f"{term}: T may not be nested or multiplied by itself")
        if coef.has(N):
            raise OutOfScopeError(
                f"{term}: the coefficient {coef} depends on n; Akra–Bazzi needs constant coefficients a_i")
        b, _ = split_argument(call.args[0])
        terms.append((coef, b))
    if not terms:
        raise OutOfScopeError("the right-hand side has no recursive term T(...)")
    return Recurrence(tuple(terms), g)
