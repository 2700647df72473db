r"""The Akra–Bazzi theorem (Leighton's formulation) and the Master theorem.

Theorem (Akra & Bazzi 1998; Leighton 1996)
------------------------------------------
Let ``T(n) = g(n) + sum_{i=1}^k a_i T(b_i n + h_i(n))`` for ``n >= n0``, with constants
``a_i > 0`` and ``0 < b_i < 1``, ``|h_i(n)| = O(n / log^2 n)``, and ``g`` non-negative
satisfying the *polynomial-growth condition* (there are ``c1, c2 > 0`` with
``c1 g(n) <= g(u) <= c2 g(n)`` whenever ``b_i n <= u <= n``; true for every
``n^k log^j n (log log n)^m``, false for ``2^n``). Let ``p`` be the unique real with

.. math::  \sum_i a_i b_i^p = 1 .

Then

.. math::  T(n) = \Theta\Big(n^p \big(1 + \int_1^n \frac{g(u)}{u^{p+1}}\,du\big)\Big).

For ``g = Θ(n^k log^j n (log log n)^m)`` the integral has a closed form:

* ``k < p``: ``Θ(n^p)``;  ``k > p``: ``Θ(g(n))``;
* ``k = p``: ``j > -1`` gives ``Θ(n^p log^{j+1} n (log log n)^m)``; ``j = -1`` gives
  ``Θ(n^p (log log n)^{m+1})`` for ``m > -1`` and ``Θ(n^p)`` for ``m < -1``; ``j < -1`` gives
  ``Θ(n^p)``.

``p`` is exact whenever the ratios are powers of one rational ``c`` (``b_i = c^{e_i}``):
equal ratios give ``p = log(sum a_i) / log(1/b)``, unequal ones a polynomial equation in
``u = c^p`` solved in radicals (``T(n/2) + T(n/4) + 1``: ``u + u^2 = 1``, ``p = log2 φ``);
a rational ``p`` is recognised and checked to 1e-45. Otherwise ``p`` is found by bisection
in 50-digit arithmetic and returned as a 30-digit float (error far below 1e-10).

References
----------
.. [1] M. Akra, L. Bazzi, "On the solution of linear recurrence equations",
   Computational Optimization and Applications 10(2), 1998.
.. [2] T. Leighton, "Notes on better master theorems for divide-and-conquer recurrences",
   MIT lecture notes, 1996.
.. [3] J. Bentley, D. Haken, J. Saxe, "A general method for solving divide-and-conquer
   recurrences", SIGACT News 12(3), 1980 (the Master theorem with log factors).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import sympy

from synthfuse.koda.analysis.recurrence import Recurrence, parse_recurrence
from synthfuse.koda.analysis.theta import Theta, compare_numbers
from synthfuse.koda.errors import KodaAnalysisError, OutOfScopeError

__all__ = ["AkraBazziSolution", "akra_bazzi", "master_theorem", "solve", "solve_p"]

_DPS = 50


@dataclass(frozen=True)
class AkraBazziSolution:
    """The worked solution: ``p`` (exact or float), ``Θ(g)``, which case applied, the answer."""

    recurrence: Recurrence
    p: sympy.Expr
    p_exact: bool
    g_theta: Theta | None
    case: str
    theta: Theta


def _as_recurrence(recurrence: Recurrence | str) -> Recurrence:
    if isinstance(recurrence, Recurrence):
        return recurrence
    if isinstance(recurrence, str):
        return parse_recurrence(recurrence)
    raise TypeError(f"expected a Recurrence or a recurrence string, got {type(recurrence).__name__}")


# ------------------------------------------------------------------------------ the exponent
def _exponent_vector(r: sympy.Rational) -> dict[int, int]:
    vec = dict(sympy.factorint(r.p))
    for prime, e in sympy.factorint(r.q).items():
        vec[prime] = vec.get(prime, 0) - e
    return vec


def _common_base(ratios: list[sympy.Expr]) -> tuple[sympy.Rational, list[int]] | None:
    """``(c, e)`` with ``b_i = c**e_i`` (``e_i`` positive integers), or ``None``."""
    if not all(b.is_Rational for b in ratios):
        return None
    vectors = [_exponent_vector(b) for b in ratios]
    g = math.gcd(*vectors[0].values())
    base = {prime: e // g for prime, e in vectors[0].items()}
    exps = []
    for vec in vectors:
        if set(vec) != set(base):
            return None
        multiples = {Fraction(vec[q], base[q]) for q in base}
        if len(multiples) != 1:
            return None
        (e,) = multiples
        if e.denominator != 1 or e <= 0:
            return None
        exps.append(int(e))
    c = sympy.Integer(1)
    for prime, e in base.items():
        c *= sympy.Integer(prime) ** e
    return c, exps


def _residual(terms, p) -> mpmath.mpf:
    with mpmath.workdps(_DPS + 20):
        return sum(mpmath.mpf(sympy.N(a, _DPS + 20)) * mpmath.mpf(sympy.N(b, _DPS + 20)) ** p
                   for a, b in terms) - 1


def _as_rational(terms, value: mpmath.mpf) -> sympy.Rational | None:
    """A small-denominator rational ``r`` with ``sum a_i b_i^r = 1`` to 1e-45, if there is one."""
    frac = Fraction(str(mpmath.nstr(value, _DPS))).limit_denominator(1000)
    r = sympy.Rational(frac.numerator, frac.denominator)
    with mpmath.workdps(_DPS + 20):
        return r if abs(_residual(terms, mpmath.mpf(frac.numerator) / frac.denominator)) < mpmath.mpf(10) ** -45 else None


def _bisect(terms) -> mpmath.mpf:
    """The root of the decreasing ``f(p) = sum a_i b_i^p - 1`` by bisection at 50 digits."""
    with mpmath.workdps(_DPS):
        lo, hi = mpmath.mpf(-1), mpmath.mpf(1)
        while _residual(terms, lo) < 0:
            lo *= 2
        while _residual(terms, hi) > 0:
            hi *= 2
        for _ in range(_DPS * 4):
            mid = (lo + hi) / 2
            if _residual(terms, mid) > 0:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


@functools.lru_cache(maxsize=1024)
def _solve_p_cached(terms: tuple[tuple[sympy.Expr, sympy.Expr], ...]) -> tuple[sympy.Expr, bool]:
    numeric = _bisect(terms)
    rational = _as_rational(terms, numeric)
    if rational is not None:
        return rational, True
    base = _common_base([b for _, b in terms])
    if base is not None:
        c, exps = base
        if len(set(exps)) == 1:
            total = sum((a for a, _ in terms), sympy.Integer(0))
            return sympy.log(total) / sympy.log(1 / terms[0][1]), True
        u = sympy.Symbol("u", positive=True)
        poly = sympy.Poly(sum(a * u**e for (a, _), e in zip(terms, exps)) - 1, u)
        target = mpmath.mpf(sympy.N(c, _DPS)) ** numeric
        for root in sympy.roots(poly, u, filter=None):
            value = complex(sympy.N(root, 30))
            if abs(value.imag) < 1e-20 and abs(value.real - float(target)) < 1e-12 * max(1, abs(float(target))):
                inverse = sympy.radsimp(1 / root)
                return sympy.log(inverse) / sympy.log(1 / c), True
    return sympy.Float(mpmath.nstr(numeric, 30), 30), False


def solve_p(terms) -> tuple[sympy.Expr, bool]:
    """The Akra–Bazzi exponent ``p`` with ``sum a_i b_i^p = 1``, and whether it is exact.

    Parameters
    ----------
    terms : sequence of (a_i, b_i) or Recurrence
        Positive coefficients and ratios in (0, 1).
    """
    if isinstance(terms, Recurrence):
        terms = terms.terms
    terms = tuple((sympy.nsimplify(a), sympy.nsimplify(b)) for a, b in terms)
    return _solve_p_cached(terms)


# ------------------------------------------------------------------------------ the theorem
def _integral_case(p: sympy.Expr, g: Theta | None) -> tuple[str, Theta]:
    """Θ of ``n^p (1 + int_1^n g(u) / u^(p+1) du)`` for ``g = Θ(n^k log^j n loglog^m n)``."""
    if g is None:
        return "g = 0: T = Θ(n^p)", Theta(p)
    order = compare_numbers(g.k, p)
    if order < 0:
        return "k < p: the recursion dominates, Θ(n^p)", Theta(p)
    if order > 0:
        return "k > p: g dominates, Θ(g)", g
    if compare_numbers(g.j, -1) > 0:
        return "k = p, j > -1: Θ(n^p log^(j+1) n)", Theta(p, g.j + 1, g.m)
    if compare_numbers(g.j, -1) < 0:
        return "k = p, j < -1: the integral converges, Θ(n^p)", Theta(p)
    if compare_numbers(g.m, -1) > 0:
        return "k = p, j = -1: Θ(n^p (log log n)^(m+1))", Theta(p, 0, g.m + 1)
    if compare_numbers(g.m, -1) < 0:
        return "k = p, j = -1, m < -1: the integral converges, Θ(n^p)", Theta(p)
    raise OutOfScopeError("g = n^p / (log n log log n) gives n^p log log log n, beyond the supported classes")


@functools.lru_cache(maxsize=1024)
def _solve_cached(rec: Recurrence) -> AkraBazziSolution:
    p, exact = solve_p(rec.terms)
    case, theta = _integral_case(p, rec.g_theta)
    return AkraBazziSolution(rec, p, exact, rec.g_theta, case, theta)


def solve(recurrence: Recurrence | str) -> AkraBazziSolution:
    """Solve a recurrence with the Akra–Bazzi theorem; return the worked solution.

    Raises
    ------
    OutOfScopeError
        When a hypothesis of the theorem fails (the message says which).
    """
    return _solve_cached(_as_recurrence(recurrence))


def akra_bazzi(recurrence: Recurrence | str) -> sympy.Expr:
    """The Θ class of ``T`` as a sympy expression in ``n`` (``n**p * log(n)**j * ...``).

    Examples
    --------
    >>> akra_bazzi("T(n) = T(n/3) + T(2*n/3) + n")
    n*log(n)
    >>> akra_bazzi("T(n) = 3*T(n/2) + n")
    n**(log(3)/log(2))
    """
    return solve(recurrence).theta.expr


def master_theorem(recurrence: Recurrence | str) -> sympy.Expr:
    """Θ of ``T(n) = a T(n/b) + f(n)`` by the Master theorem (with log factors, [3]).

    ``f = Θ(n^k log^j n)``, ``c = log_b a``: ``k < c`` gives ``n^c``; ``k = c`` gives
    ``n^c log^{j+1} n`` (``j > -1``), ``n^c log log n`` (``j = -1``), ``n^c`` (``j < -1``);
    ``k > c`` gives ``f`` (the regularity condition ``a f(n/b) <= δ f(n)``, ``δ < 1``, holds
    for these ``f`` because ``a b^{-k} < 1``).

    Raises
    ------
    KodaAnalysisError
        If the recurrence has several distinct ratios or ``f`` has a ``log log`` factor.
    """
    rec = _as_recurrence(recurrence)
    if len(rec.terms) != 1:
        raise KodaAnalysisError("the Master theorem needs a single recursive term a*T(n/b)")
    (a, ratio), f = rec.terms[0], rec.g_theta
    b = 1 / ratio
    critical = sympy.log(a) / sympy.log(b)
    rational = sympy.nsimplify(float(critical), rational=True, tolerance=1e-12)
    if rational.q <= 1000 and compare_numbers(b**rational, a) == 0:
        critical = rational
    if f is None:
        return Theta(critical).expr
    if f.m != 0:
        raise KodaAnalysisError("the Master theorem does not cover log log factors in f(n)")
    order = compare_numbers(f.k, critical)
    if order < 0:
        return Theta(critical).expr
    if order > 0:
        return f.expr
    if compare_numbers(f.j, -1) > 0:
        return Theta(critical, f.j + 1).expr
    if compare_numbers(f.j, -1) == 0:
        return Theta(critical, 0, 1).expr
    return Theta(critical).expr
