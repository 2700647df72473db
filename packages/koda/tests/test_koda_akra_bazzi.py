"""Θ classes, recurrence parsing, the Akra–Bazzi solver and the Master theorem."""

from __future__ import annotations

import re

import mpmath
import pytest
import sympy

from synthfuse.koda.analysis import (N, OutOfScopeError, Recurrence, Theta, akra_bazzi, master_theorem,
                                     parse_recurrence, solve, solve_p, theta_of)
from synthfuse.koda.data.families import FAMILIES
from synthfuse.koda.errors import KodaAnalysisError, KodaSyntaxError

LOG = sympy.log


@pytest.mark.parametrize("text, triple", [
    ("n log n", (1, 1, 0)), ("Theta(n^2 + 3 n log n - 7)", (2, 0, 0)), ("Θ(n/log n)", (1, -1, 0)),
    ("sqrt(n) log n", (sympy.Rational(1, 2), 1, 0)), ("log log n", (0, 0, 1)), ("n log^2 n", (1, 2, 0)),
    ("(n + 1)^3 / n", (2, 0, 0)), ("lg(n^3)", (0, 1, 0)), ("7", (0, 0, 0)), ("n^0.25", (sympy.Rational(1, 4), 0, 0)),
])
def test_theta_of_text(text, triple):
    assert theta_of(text) == Theta(*triple)


def test_theta_comparisons_mix_exact_and_float_exponents():
    exact = Theta(LOG(3) / LOG(2))
    approx = Theta(sympy.Float("1.5849625007211561814537", 30))
    assert exact == approx and hash(exact) == hash(approx)
    assert Theta(1, 1) < Theta(1, 2) < Theta(sympy.Rational(11, 10)) and not Theta(1) < Theta(1)
    assert theta_of("n^log2(3)") == exact
    assert str(Theta(1, 2, 0)) == "n log^2 n" and str(Theta(0)) == "1"


@pytest.mark.parametrize("text, error", [
    ("n - n", "identically zero"), ("log(n/2)^2 - log(n)^2", "negative for large n"), ("2^n", "faster than any"),
    ("exp(n)", "faster than any"),
])
def test_theta_of_rejects(text, error):
    with pytest.raises(KodaAnalysisError, match=error):
        theta_of(text)


@pytest.mark.parametrize("text, column", [("n log", 6), ("2 ** * n", 6), ("foo(n)", 1), ("n + T(n)", 5), ("(n", 3)])
def test_math_syntax_errors_have_columns(text, column):
    with pytest.raises(KodaSyntaxError) as info:
        theta_of(text)
    assert info.value.col == column


# --------------------------------------------------------------------------- textbook recurrences
TEXTBOOK = [
    ("T(n) = 2*T(n/2) + n", "n log n", True),                               # merge sort
    ("T(n) = T(n/2) + 1", "log n", True),                                   # binary search
    ("T(n) = 3*T(n/2) + n", "n^log2(3)", True),                             # Karatsuba
    ("T(n) = 7*T(n/2) + n^2", "n^log2(7)", True),                           # Strassen
    ("T(n) = T(n/5) + T(7*n/10) + n", "n", False),                          # median of medians
    ("T(n) = T(n/2) + T(n/4) + 1", "n^log2((1 + sqrt(5))/2)", True),        # golden ratio
    ("T(n) = 2*T(n/2) + n log n", "n log^2 n", True),
    ("T(n) = 2*T(n/2) + n/log n", "n log log n", True),
    ("T(n) = 2*T(n/2) + n/log(n)^2", "n", True),
    ("T(n) = T(n/3) + T(2*n/3) + n", "n log n", True),
    ("T(n) = 2*T(n/4) + sqrt(n)", "sqrt(n) log n", True),
    ("T(n) = 4*T(n/2) + n^2 log n", "n^2 log^2 n", True),
    ("T(n) = 2*T(n/2) + n^2", "n^2", True),
    ("T(n) = 8*T(n/4) + n", "n^(3/2)", True),
    ("T(n) = 2*T((n + 1)/2) + n", "n log n", True),                         # floors/ceilings: perturbations
    ("T(n) = 2*T(n/2 + 17) + n", "n log n", True),
    ("T(n) = 2*T(n/2) + n log log n / log n", "n (log log n)^2", True),     # k = p, j = -1, m = 1
    ("T(n) = 2*T(n/2) + n/(log(n) log(log(n))^2)", "n", True),              # k = p, j = -1, m = -2
    ("T(n) = T(n/4) + T(3*n/4) + n", "n log n", False),
]


@pytest.mark.parametrize("text, theta, exact", TEXTBOOK)
def test_akra_bazzi_textbook(text, theta, exact):
    solution = solve(text)
    assert solution.theta == theta_of(theta), solution.case
    assert solution.p_exact == exact or solution.p.is_Rational
    assert theta_of(akra_bazzi(text)) == theta_of(theta)


def test_exponent_exact_forms():
    p, exact = solve_p([(1, sympy.Rational(1, 2)), (1, sympy.Rational(1, 4))])
    assert exact and sympy.simplify(p - LOG((1 + sympy.sqrt(5)) / 2) / LOG(2)) == 0
    p, exact = solve_p([(3, sympy.Rational(1, 2))])
    assert exact and sympy.simplify(p - LOG(3) / LOG(2)) == 0
    assert solve_p([(8, sympy.Rational(1, 4))]) == (sympy.Rational(3, 2), True)
    assert solve_p([(1, sympy.Rational(1, 3)), (1, sympy.Rational(2, 3))]) == (1, True)
    # T(n/4) + T(n/8): u = 2^-p solves u^2 + u^3 = 1 in radicals
    p, exact = solve_p([(1, sympy.Rational(1, 4)), (1, sympy.Rational(1, 8))])
    assert exact and abs(float(sympy.Rational(1, 4) ** p + sympy.Rational(1, 8) ** p) - 1) < 1e-14


def test_exponent_numeric_to_1e_10():
    # 2^-p + 3^-p = 1 has no closed form: checked against mpmath's own root finder
    p, exact = solve_p([(1, sympy.Rational(1, 2)), (1, sympy.Rational(1, 3))])
    assert not exact and isinstance(p, sympy.Float)
    reference = mpmath.findroot(lambda x: mpmath.mpf(2) ** -x + mpmath.mpf(3) ** -x - 1, 0.8)
    assert abs(float(p) - float(reference)) < 1e-10
    p, _ = solve_p([(1, sympy.Rational(1, 5)), (1, sympy.Rational(7, 10))])
    assert abs(float(sympy.Rational(1, 5) ** p + sympy.Rational(7, 10) ** p) - 1) < 1e-12
    assert p < 1  # so median of medians is linear


@pytest.mark.parametrize("a", [1, 2, 3, 4, 7, 8, 9])
@pytest.mark.parametrize("b", [2, 3, 4])
@pytest.mark.parametrize("g", ["1", "sqrt(n)", "n", "n log n", "n/log n", "n/log(n)^2", "n^2", "n^2 log^3 n",
                               "n^(3/2)", "log n"])
def test_master_theorem_agrees_with_akra_bazzi(a, b, g):
    text = f"T(n) = {a}*T(n/{b}) + {g}"
    assert theta_of(master_theorem(text)) == theta_of(akra_bazzi(text))


def test_master_theorem_refuses_what_it_does_not_cover():
    with pytest.raises(KodaAnalysisError, match="single recursive term"):
        master_theorem("T(n) = T(n/2) + T(n/4) + 1")
    with pytest.raises(KodaAnalysisError, match="log log"):
        master_theorem("T(n) = 2*T(n/2) + n log log n")


@pytest.mark.parametrize("text, reason", [
    ("T(n) = T(n-1) + n", "not a division"),
    ("T(n) = sqrt(n) T(sqrt(n)) + n", "coefficient sqrt(n) depends on n"),
    ("T(n) = 2*T(n/2) + 2^n", "not polynomially bounded"),
    ("T(n) = 2*T(n/2) + exp(n)", "not polynomially bounded"),
    ("T(n) = T(sqrt(n)) + 1", "not b*n + h(n)"),
    ("T(n) = T(2*n) + 1", "not a division"),
    ("T(n) = 2*T(n/2 + n/log(n)) + 1", "not O(n / log^2 n)"),
    ("T(n) = T(n/2) - n", "negative"),
    ("T(n) = n^2", "no recursive term"),
    ("T(n) = -T(n/2) + n", "must be a positive constant"),
    ("T(n) = T(n/2) * T(n/2)", "each recursive term"),
    ("T(n) = 2*T(n/2) + n/(log(n) log(log(n)))", "log log log"),
])
def test_out_of_scope_recurrences_say_why(text, reason):
    with pytest.raises(KodaAnalysisError, match=re.escape(reason)):
        solve(text)


def test_bad_recurrence_text():
    for text in ("T(n) == 2T(n/2)", "S(n) = 2*T(n/2)", "T(n) = 2*T(n/2) +"):
        with pytest.raises(KodaSyntaxError):
            parse_recurrence(text)


def test_structured_recurrence_and_merging():
    rec = Recurrence(((1, sympy.Rational(1, 2)), (1, sympy.Rational(1, 2))), N)
    assert rec.terms == ((2, sympy.Rational(1, 2)),)
    assert rec == parse_recurrence("T(n) = 2*T(n/2) + n")
    assert str(rec) == "T(n) = 2*T(n/2) + n"
    assert akra_bazzi(rec) == N * LOG(N)
    with pytest.raises(OutOfScopeError, match="ratio"):
        Recurrence(((1, 1),), N)


def test_every_family_label_matches_the_solver():
    assert len(FAMILIES) >= 25
    for family in FAMILIES:
        assert solve(family.recurrence).theta == theta_of(family.theta), family.name


@pytest.mark.parametrize("text", [
    "T(n) = 2*T(n/2) + n sqrt(log n)",            # k = p, j = 1/2
    "T(n) = 2*T(n/2) + n log log n / log n",      # k = p, j = -1, m = 1
    "T(n) = 2*T(n/2) + n / log(n)^2",             # k = p, j < -1
    "T(n) = T(n/2) + T(n/4) + n^(1/2)",           # k < p
    "T(n) = 3*T(n/2) + n^2 / log n",              # k > p
])
def test_closed_form_integral_matches_quadrature(text):
    """n^p (1 + int_1^n g(u) / u^(p+1) du) by quadrature, divided by the closed-form Θ, levels off."""
    solution = solve(text)
    p = mpmath.mpf(float(solution.p))
    g = sympy.lambdify(N, solution.recurrence.g, "mpmath")
    theta = sympy.lambdify(N, solution.theta.expr, "mpmath")

    def ratio(log_n: int) -> float:
        # u = e^t: int_e^n g(u) u^-(p+1) du = int_1^log n g(e^t) e^(-p t) dt
        integral = mpmath.quad(lambda t: g(mpmath.exp(t)) * mpmath.exp(-p * t), mpmath.linspace(1, log_n, 9))
        n = mpmath.exp(log_n)
        return float(n**p * (1 + integral) / theta(n))

    ratios = [ratio(log_n) for log_n in (50, 400, 3200)]
    # off by one factor of log log n the spread would be 1.9 to 2.3 (and far more for log n)
    assert max(ratios) / min(ratios) < 1.2, ratios
