"""Lexer, parser, pretty-printer and type checker of KL."""

from __future__ import annotations

import pytest

from synthfuse.koda.errors import KodaSyntaxError, KodaTypeError
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import check, load, parse, parse_expr, pretty
from synthfuse.koda.lang.lexer import tokenize
from synthfuse.koda.lang.parser import MAX_DEPTH


def test_tokens_and_positions():
    toks = tokenize("def f(n: int) {\n  work(n ** 2); # comment\n}")
    kinds = [t.kind for t in toks]
    assert kinds == ["def", "ident", "(", "ident", ":", "int", ")", "{", "work", "(", "ident", "**", "int",
                     ")", ";", "}", "eof"]
    assert [t.is_literal for t in toks if t.kind == "int"] == [False, True]
    work = toks[8]
    assert (work.line, work.col) == (2, 3)
    assert toks[-2].line == 3 and toks[-2].col == 1


@pytest.mark.parametrize("source, where, expected", [
    ("def f(n: int) { work(n) }", (1, 25), "expected ';' after work(...)"),
    ("def f(n: int) {\n  let x = ;\n}", (2, 11), "expected an expression"),
    ("def f(n int) { }", (1, 9), "':' and a type"),
    ("def f(n: int) { if n < 1 < 2 { } }", (1, 26), "comparisons do not chain"),
    ("def f(n: int) { n + 1; }", (1, 17), "expected a statement"),
    ("def f(n: int) { return $; }", (1, 24), "unexpected character '$'"),
    ("def f(n: int) {", (1, 16), "'}' to close the block opened at 1:15"),
    ("let x = 1;", (1, 1), "'def'"),
    ("def f(n: int) { for i in 3 { } }", (1, 26), "'range'"),
    ("def f(n: int) { let 2x = 1; }", (1, 21), "malformed number"),
])
def test_syntax_errors_carry_position_and_expectation(source, where, expected):
    with pytest.raises(KodaSyntaxError) as info:
        parse(source)
    assert (info.value.line, info.value.col) == where
    assert expected in str(info.value)
    assert str(info.value).startswith(f"{where[0]}:{where[1]}:")


def test_precedence_and_associativity():
    e = parse_expr("1 + 2 * 3 ** 2 ** 2 - -x % 4 / y")
    # ((1 + (2 * (3 ** (2 ** 2)))) - (((-x) % 4) / y))
    assert e == A.Binary("-", A.Binary("+", A.IntLit(1), A.Binary("*", A.IntLit(2), A.Binary(
        "**", A.IntLit(3), A.Binary("**", A.IntLit(2), A.IntLit(2))))),
        A.Binary("/", A.Binary("%", A.Unary("-", A.Name("x")), A.IntLit(4)), A.Name("y")))
    e = parse_expr("not a and b or c == d")
    assert e == A.Binary("or", A.Binary("and", A.Unary("not", A.Name("a")), A.Name("b")),
                         A.Binary("==", A.Name("c"), A.Name("d")))
    assert parse_expr("-2 ** 2") == A.Unary("-", A.Binary("**", A.IntLit(2), A.IntLit(2)))


@pytest.mark.parametrize("text", ["a - (b - c)", "(a - b) - c", "a - b - c", "(a + b) * c", "a ** (b ** c)",
                                  "(a ** b) ** c", "-(a + b)", "(-a) ** 2", "not (a and b)", "(a < b) == c",
                                  "f(a, g(b), 3) / (2 * x)", "a * (b / c)", "a - -b"])
def test_pretty_expression_round_trip(text):
    e = parse_expr(text)
    assert parse_expr(pretty(e)) == e


def test_program_round_trip_and_else_if(textbook):
    _, source, _, _ = textbook
    program = parse(source)
    assert parse(pretty(program)) == program
    chain = parse("def f(n: int) -> int { if n < 1 { return 0; } else if n < 5 { return 1; } else { return 2; } }")
    text = pretty(chain)
    assert "} else if n < 5 {" in text
    assert parse(text) == chain


def test_positions_do_not_affect_equality():
    a = parse("def f(n: int) { work(n); }")
    b = parse("def   f(n:int){\n\n   work( n ) ;}")
    assert a == b and hash(a) == hash(b)
    assert a.functions[0].body.stmts[0].line == 1 and b.functions[0].body.stmts[0].line == 3


def test_range_with_one_argument_starts_at_zero():
    loop = parse("def f(n: int) { for i in range(n) { work(1); } }").entry.body.stmts[0]
    assert loop.start == A.IntLit(0) and loop.stop == A.Name("n")


def test_type_keywords_are_not_numbers():
    with pytest.raises(KodaSyntaxError, match="expected an expression"):
        parse("def f(n: int) { if int { } }")
    with pytest.raises(KodaSyntaxError, match="expected a type"):
        parse("def f(n: 3) { }")


def test_nesting_limit_is_a_syntax_error():
    with pytest.raises(KodaSyntaxError, match="nested too deeply"):
        parse_expr("(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5))
    with pytest.raises(KodaSyntaxError, match="nested too deeply"):
        parse("def f(n: int) { return " + " + ".join(["1"] * 5000) + "; }")
    with pytest.raises(KodaSyntaxError, match="too large"):
        parse("def f(n: int) { work(" + "9" * 200 + "); }")


@pytest.mark.parametrize("source, message", [
    ("def f(n: int) { work(m); }", "unknown variable 'm'"),
    ("def f(n: int) { let n = 1; }", "'n' is already defined"),
    ("def f(n: int) { for i in range(0, n) { i = 2; } }", "cannot assign to the loop variable 'i'"),
    ("def f(n: int) { if n { } }", "an 'if' condition must be a bool, not a int"),
    ("def f(n: int) { work(n < 1); }", "the amount of work(...) must be a int, not a bool"),
    ("def f(n: int) -> int { if n < 1 { return 1; } }", "must return a int on every path"),
    ("def f(n: int) { return 1; }", "this function returns nothing"),
    ("def f(n: int) { g(n); }", "unknown function 'g'"),
    ("def f(n: int) { f(n, n); }", "f() takes 1 argument(s), got 2"),
    ("def f(n: int) { let x = f(n); }", "f() returns nothing, so it cannot be used as a value"),
    ("def f(n: int) { let b: bool = n; }", "'b' is declared bool but initialised with a int"),
    ("def f(n: int) { }\ndef f(m: int) { }", "function 'f' is defined twice"),
    ("def log2(n: int) { }", "built-in function"),
    ("def f(n: int) { let b = true == 1; }", "the right operand of '==' (the left one is a bool) must be a bool"),
    ("def f(n: int, n: bool) { }", "'n' appears twice"),
])
def test_type_errors(source, message):
    program = parse(source)
    with pytest.raises(KodaTypeError) as info:
        check(program)
    assert message in str(info.value)
    assert info.value.line >= 1 and info.value.col >= 1


def test_type_check_accepts_the_textbook(textbook):
    _, source, _, _ = textbook
    signatures = check(parse(source))
    assert all(sig.params == ("int",) for sig in signatures.values())


def test_scopes_allow_sibling_declarations():
    load("def f(n: int) -> bool { if n < 1 { let x = 1; work(x); } else { let x = 2; work(x); } return n > 2; }")
