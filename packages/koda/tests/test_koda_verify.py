"""recurrence_of (static cost analysis) and verify (static vs dynamic route)."""

from __future__ import annotations

import math
import re

import pytest
import sympy

from synthfuse.koda.analysis import (KodaAnalysisError, N, OutOfScopeError, Theta, dynamic_fit, measure,
                                     parse_recurrence, recurrence_of, sample_base, static_cost, theta_of, verify)
from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.data.generator import generate
from synthfuse.koda.examples import TEXTBOOK
from synthfuse.koda.lang import load


def _same_recurrence(found, expected_text):
    expected = parse_recurrence(expected_text)
    assert found.terms == expected.terms
    assert found.g_theta == expected.g_theta


def test_textbook_recurrences_and_verification(textbook):
    name, source, theta, rec = textbook
    program = load(source)
    _same_recurrence(recurrence_of(program), rec)
    result = verify(program, theta)
    assert result.static_ok and result.dynamic.consistent, (result.static_reason, result.dynamic.reason)
    assert result.agree and result.verified
    assert len(result.dynamic.ns) >= 8


@pytest.mark.parametrize("name, wrong", [("merge_sort", "n"), ("merge_sort", "n log^2 n"), ("binary_search", "1"),
                                         ("karatsuba", "n^2"), ("karatsuba", "n^1.5"), ("strassen", "n^3"),
                                         ("golden", "n^(1/2)"), ("n_log_n_merge", "n log n")])
def test_wrong_claims_are_rejected_by_both_routes(name, wrong):
    result = verify(load(TEXTBOOK[name][0]), wrong)
    assert result.static_ok is False and result.dynamic.consistent is False
    assert result.agree and not result.verified


def test_log_log_factors_are_below_the_dynamic_resolution():
    result = verify(load(TEXTBOOK["n_over_log_n"][0]), "n")
    assert result.static_ok is False  # the static route decides log log factors
    assert not result.verified


PATTERNS = [
    ("let j = 1; while j < n { work(1); j = j * 2; }", "log n"),
    ("let j = n; while j > 1 { work(1); j = j / 3; }", "log n"),
    ("let j = 0; while j < n { work(1); j = j + 2; }", "n"),
    ("let j = n; while j >= 0 { work(1); j = j - 1; }", "n"),
    ("let j = 1; while j * j < n { work(1); j = j + 1; }", "sqrt(n)"),
    ("let j = 2; while j < n { work(1); j = j * j; }", "log log n"),
    ("let j = 1; while n > j { work(j); j = 2 * j; }", "n"),
    ("let j = 1; while j < n { work(n); j = j * 2; }", "n log n"),
    ("for i in range(0, n) { for k in range(0, i) { work(1); } }", "n^2"),
    ("for i in range(1, n) { work(log2(i)); }", "n log n"),
    ("for i in range(0, n * n) { work(1); }", "n^2"),
    ("for i in range(0, 5) { work(n); }", "n"),
    ("if n % 2 == 0 { work(n); } else { work(2 * n + 1); }", "n"),
    ("if n > 8 { work(n * n); } else { work(1); }", "n^2"),
    ("work(min(n, 10) + max(n, 10) * sqrt(n));", "n^(3/2)"),
    ("helper(n * n);", "n^2"),
]


@pytest.mark.parametrize("kernel, g", PATTERNS)
def test_static_cost_of_loop_patterns(kernel, g):
    program = load(f"""
def f(n: int) {{
    if n <= 1 {{ return; }}
    f(n / 2);
    {kernel}
}}
def helper(m: int) {{ for i in range(0, m) {{ work(1); }} }}
""")
    rec = recurrence_of(program)
    assert rec.terms == ((1, sympy.Rational(1, 2)),)
    assert rec.g_theta == theta_of(g)
    # and the interpreter agrees on the kernel's growth: T(n) - T(n/2) is Θ(g)
    counts = dict(measure(program, 2, max_n=2**8))
    diffs = [counts[2**k] - counts[2**(k - 1)] for k in (5, 8)]
    predicted = [math.exp(theta_of(g).log_float(2.0**k)) for k in (5, 8)]
    assert 0.3 < (diffs[1] / diffs[0]) / (predicted[1] / predicted[0]) < 3


@pytest.mark.parametrize("body, error, message", [
    ("f(n - 1); work(n);", OutOfScopeError, "not a division"),
    ("for i in range(0, sqrt(n)) { f(sqrt(n)); }", OutOfScopeError, "not b*n + h(n)"),
    ("for i in range(0, n) { f(n / 2); }", OutOfScopeError, "the number of calls a_i is not a constant"),
    ("f(n / 2); work(2 ** n);", OutOfScopeError, "not polynomially bounded"),
    ("if n % 2 == 0 { f(n / 2); }", OutOfScopeError, "under a condition that cannot be decided"),
    ("f(n / 2); let j = n; while j > 1 { j = j - j / 2; }", KodaAnalysisError, "cannot bound this while loop"),
    ("f(n / 2); if n % 3 == 0 { work(n); }", KodaAnalysisError, "branches of this 'if' cost differently"),
    ("f(n / 2); let s = 0; for i in range(0, n) { s = s + i; } work(s);", KodaAnalysisError,
     "not a known function of n"),
    ("for i in range(0, n) { return; } f(n / 2);", KodaAnalysisError, "'return' inside a loop"),
    ("work(n);", KodaAnalysisError, "makes no recursive call"),
])
def test_static_analysis_rejects_with_reason(body, error, message):
    program = load(f"def f(n: int) {{ if n <= 1 {{ return; }} {body} }}")
    with pytest.raises(error, match=re.escape(message)) as info:
        recurrence_of(program)
    assert info.type is error


def test_non_recursive_and_multi_parameter_programs():
    program = load("def f(n: int) { for i in range(0, n) { work(n); } }\ndef g(a: int, b: int) { work(a); }")
    assert theta_of(static_cost(program).cost) == Theta(2)
    result = verify(program, "n^2")
    assert result.recurrence is None and result.verified
    with pytest.raises(KodaAnalysisError, match="exactly one int parameter"):
        static_cost(program, "g")


def test_out_of_scope_program_still_gets_a_dynamic_verdict():
    program = load("def f(n: int) { if n <= 1 { return; } f(n - 1); work(1); }")
    result = verify(program, "n")
    assert result.static_ok is None and "not a division" in result.static_reason
    assert result.dynamic.consistent is None or result.dynamic.consistent is True
    assert not result.agree and not result.verified


def test_dynamic_fit_on_exact_functions():
    points = [(2**k, int(3 * 2**k * k + 50 * 2**k + 7)) for k in range(1, 61)]   # 3 n lg n + 50 n + 7
    assert dynamic_fit(points, theta_of("n log n")).consistent
    up = dynamic_fit(points, theta_of("n"))
    down = dynamic_fit(points, theta_of("n log^2 n"))
    assert not up.consistent and 0.6 < up.delta < 1.4
    assert not down.consistent and -1.4 < down.delta < -0.6
    assert not dynamic_fit(points, theta_of("n^1.1")).consistent
    assert dynamic_fit(points[:4], theta_of("n log n")).consistent is None
    assert abs(dynamic_fit(points, theta_of("n log n")).exponent - 1.0) < 0.05


def test_measure_uses_exact_sizes_and_respects_the_budget():
    program = load("def f(n: int) { if n <= 1 { return; } f(n / 10); f(7 * n / 10); for i in range(0, n) { work(1); } }")
    assert sample_base(recurrence_of(program)) == 10
    points = measure(program, 10, step_budget=50_000)
    assert [n for n, _ in points] == [10**k for k in range(1, len(points) + 1)]
    assert 3 <= len(points) < 8
    with pytest.raises(ValueError):
        measure(program, 1)


def _corpus_agreement(count: int, seed: int) -> None:
    per_class: dict[str, int] = {}
    for record in generate(count, seed=seed):
        result = verify(load(record.source), record.theta)
        assert result.static_ok, (record.id, result.static_reason)
        assert result.dynamic.consistent, (record.id, result.dynamic.reason)
        assert result.agree
        _same_recurrence(result.recurrence, record.recurrence)
        per_class[record.theta_class] = per_class.get(record.theta_class, 0) + 1
    assert set(per_class) == set(THETA_CLASSES)


def test_static_and_dynamic_routes_agree_on_generated_labels():
    _corpus_agreement(12 * len(THETA_CLASSES), seed=2024)


@pytest.mark.slow
def test_static_and_dynamic_routes_agree_on_a_large_corpus():
    _corpus_agreement(3000, seed=99)


def test_symbol_of_theta_is_n():
    assert theta_of(N**2).expr == N**2
