"""Hypothesis fuzzing: no text makes the front end raise anything but KodaSyntaxError/KodaTypeError,
and parse(pretty(tree)) == tree for generated trees."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthfuse.koda.analysis.mathparse import parse_math, parse_theta
from synthfuse.koda.data.generator import generate
from synthfuse.koda.errors import KodaError, KodaRuntimeError, KodaSyntaxError, KodaTypeError
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import check, parse, pretty, run
from synthfuse.koda.lang.lexer import KEYWORDS

_TOKENS = sorted(KEYWORDS) + ["n", "m", "f", "g", "x", "0", "1", "2", "17", "(", ")", "{", "}", ",", ":", ";",
                              "->", "=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "**",
                              "log2", "sqrt", "\n", "#"]
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _front_end(text: str) -> None:
    try:
        check(parse(text))
    except (KodaSyntaxError, KodaTypeError):
        pass


@_FUZZ
@given(st.text(alphabet=string.printable + "Θé\x00", max_size=200))
def test_arbitrary_text_raises_only_koda_errors(text):
    _front_end(text)


@_FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=60).map(" ".join))
def test_token_soup_raises_only_koda_errors(text):
    _front_end(text)


@_FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map(" ".join))
def test_wrapped_token_soup_that_checks_also_runs_safely(body):
    text = f"def f(n: int) {{ {body} }}"
    try:
        program = parse(text)
        check(program)
    except (KodaSyntaxError, KodaTypeError):
        return
    try:
        run(program, 5, step_budget=5_000)
    except KodaRuntimeError:
        pass


@_FUZZ
@given(st.text(alphabet="nT()+-*/^ 0123456789.logsqrtexp=,Θ", max_size=60))
def test_math_notation_raises_only_syntax_errors(text):
    for parser in (parse_math, parse_theta):
        try:
            parser(text)
        except KodaSyntaxError:
            pass


# ------------------------------------------------------------------------------ generated trees
_names = st.sampled_from(["n", "m", "x", "acc", "j0", "total"])
_funcs = st.sampled_from(["f", "g", "log2", "sqrt", "min", "max"])


def _expressions():
    leaves = st.one_of(st.integers(0, 10**6).map(A.IntLit), st.booleans().map(A.BoolLit), _names.map(A.Name))

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(["-", "not"]), children).map(lambda t: A.Unary(*t)),
            st.tuples(st.sampled_from(sorted({op for level in A.BINARY_LEVELS for op in level})), children,
                      children).map(lambda t: A.Binary(*t)),
            st.tuples(_funcs, st.lists(children, max_size=3).map(tuple)).map(lambda t: A.Call(*t)),
        )

    return st.recursive(leaves, extend, max_leaves=12)


_exprs = _expressions()
_calls = st.tuples(_funcs, st.lists(_exprs, max_size=2).map(tuple)).map(lambda t: A.Call(*t))
_types = st.sampled_from(["int", "bool"])


def _statements():
    simple = st.one_of(
        st.tuples(_names, st.one_of(st.none(), _types), _exprs).map(lambda t: A.Let(*t)),
        st.tuples(_names, _exprs).map(lambda t: A.Assign(*t)),
        _exprs.map(A.Work),
        st.one_of(st.none(), _exprs).map(A.Return),
        _calls.map(A.ExprStmt),
    )

    def extend(children):
        blocks = st.lists(children, max_size=3).map(lambda s: A.Block(tuple(s)))
        return st.one_of(
            st.tuples(_exprs, blocks, st.one_of(st.none(), blocks)).map(lambda t: A.If(*t)),
            st.tuples(_names, _exprs, _exprs, blocks).map(lambda t: A.For(*t)),
            st.tuples(_exprs, blocks).map(lambda t: A.While(*t)),
        )

    return st.recursive(simple, extend, max_leaves=8)


_programs = st.lists(
    st.tuples(st.sampled_from(["f", "g", "solve"]),
              st.lists(st.tuples(_names, _types).map(lambda t: A.Param(*t)), max_size=2).map(tuple),
              st.one_of(st.none(), _types),
              st.lists(_statements(), max_size=4).map(lambda s: A.Block(tuple(s)))).map(lambda t: A.Function(*t)),
    min_size=1, max_size=2).map(lambda fns: A.Program(tuple(fns)))


@_FUZZ
@given(_exprs)
def test_pretty_parse_round_trip_on_generated_expressions(expr):
    program = A.Program((A.Function("f", (), None, A.Block((A.Work(expr),))),))
    assert parse(pretty(program)) == program


@_FUZZ
@given(_programs)
def test_pretty_parse_round_trip_on_generated_programs(program):
    reparsed = parse(pretty(program))
    assert reparsed == program
    try:
        check(reparsed)
    except KodaTypeError:
        pass


def test_round_trip_and_type_check_on_the_corpus():
    for record in generate(300, seed=5):
        program = parse(record.source)
        assert parse(pretty(program)) == program
        assert pretty(program) == record.source
        check(program)


def test_koda_errors_share_a_base_class():
    for cls in (KodaSyntaxError, KodaTypeError, KodaRuntimeError):
        assert issubclass(cls, KodaError)
