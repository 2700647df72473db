"""The instrumented interpreter: semantics, exact operation counts, budget, memoization."""

from __future__ import annotations

import re

import pytest

from synthfuse.koda.data.generator import generate
from synthfuse.koda.errors import KodaRuntimeError, StepBudgetExceeded
from synthfuse.koda.lang import Interpreter, load, run


@pytest.mark.parametrize("source, n, ops", [
    ("def f(n: int) { work(n); }", 10, 12),  # call 1 + statement 1 + work 10
    ("def f(n: int) { for i in range(0, n) { work(1); } }", 7, 2 + 3 * 7),
    ("def f(n: int) { let j = 1; while j < n { j = j * 2; } }", 8, 1 + 1 + 1 + 3 * 2),
    # T(1) = 3, T(n) = 4 + 2 T(n/2)  =>  T(2^k) = 7 * 2^k - 4
    ("def f(n: int) { if n <= 1 { return; } f(n / 2); f(n / 2); }", 8, 52),
    ("def f(n: int) { if n <= 1 { return; } f(n / 2); f(n / 2); }", 1024, 7 * 1024 - 4),
])
def test_operation_counts_by_hand(source, n, ops):
    program = load(source)
    for memoize in (False, True):
        assert run(program, n, memoize=memoize).ops == ops


def test_semantics_of_arithmetic_and_builtins():
    program = load("""
def f(n: int) -> int {
    let a = -7 / 2;          # floor division: -4
    let b = -7 % 2;          # floor modulo: 1
    let c = 2 ** 10 + log2(n) + sqrt(n) + min(3, n) + max(3, n);
    if a == -4 and b == 1 and not (c < 0) { return c; }
    return -1;
}
""")
    assert run(program, 17).value == 1024 + 4 + 4 + 3 + 17


def test_fibonacci_values_and_memoized_counts_match_naive():
    program = load("def fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }")
    naive = run(program, 18, memoize=False)
    fast = run(program, 18, memoize=True)
    assert naive.value == fast.value == 2584
    assert naive.ops == fast.ops
    assert fast.steps < naive.steps / 100


def test_memoized_counts_equal_naive_counts_on_generated_programs():
    checked = 0
    for record in generate(60, seed=3):
        program = load(record.source)
        for n in (5, 16, 37, 64):
            try:
                naive = run(program, n, memoize=False, step_budget=200_000)
            except StepBudgetExceeded:
                continue
            fast = run(program, n, memoize=True)
            assert (naive.value, naive.ops) == (fast.value, fast.ops), record.id
            checked += 1
    assert checked > 150


@pytest.mark.parametrize("body, message", [
    ("work(n / (n - n));", "division by zero"),
    ("work(n % 0);", "modulo by zero"),
    ("work(log2(n - n));", "log2() needs a positive argument"),
    ("work(sqrt(-n));", "sqrt() needs a non-negative argument"),
    ("work(-n);", "work() needs a non-negative amount"),
    ("work(2 ** (n * 100));", "integer overflow"),
    ("work(2 ** -n);", "negative exponent"),
    ("let x = n; while true { x = x * x; }", "integer overflow"),
])
def test_runtime_errors(body, message):
    program = load(f"def f(n: int) {{ {body} }}")
    with pytest.raises(KodaRuntimeError, match=re.escape(message)) as info:
        run(program, 9)
    assert info.value.line == 1


def test_step_budget_stops_infinite_loops_and_recursion():
    with pytest.raises(StepBudgetExceeded):
        run(load("def f(n: int) { while n > 0 { work(1); } }"), 1, step_budget=10_000)
    with pytest.raises(StepBudgetExceeded):
        run(load("def f(n: int) { if n <= 0 { return; } f(n - 1); f(n - 1); }"), 30, step_budget=10_000,
            memoize=False)
    with pytest.raises(KodaRuntimeError, match="recursion deeper than"):
        Interpreter(load("def f(n: int) { f(n + 1); }"), max_depth=200).call("f", 0)
    # the interpreter stays usable after an error
    interp = Interpreter(load("def f(n: int) -> int { if n == 0 { return 1 / n; } return f(n - 1); }"))
    with pytest.raises(KodaRuntimeError, match="division by zero"):
        interp.call("f", 5)
    with pytest.raises(KodaRuntimeError, match="division by zero"):
        interp.call("f", 3)


def test_call_argument_checks():
    interp = Interpreter(load("def f(n: int, b: bool) { work(n); }"))
    with pytest.raises(KodaRuntimeError, match="takes 2"):
        interp.call("f", 1)
    with pytest.raises(KodaRuntimeError, match="must be a bool"):
        interp.call("f", 1, 2)
    with pytest.raises(KodaRuntimeError, match="no function"):
        interp.call("g", 1)
    assert interp.call("f", 3, True).ops == 5
