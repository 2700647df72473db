"""An instrumented interpreter of KL that counts operations under a step budget.

Cost model (the "operations" the complexity analysis talks about)
-----------------------------------------------------------------
* every executed statement costs 1; ``work(k)`` costs ``k`` more (``k >= 0``);
* every function invocation costs 1;
* ``for`` costs 1 per iteration on top of the statement itself, ``while`` 1 per
  re-evaluation of its condition.

Integers are exact and bounded by ``2**INT_BITS``; ``/`` and ``%`` are floor division and
modulo; ``log2(x)`` is ``floor(log2 x)`` for ``x >= 1``, ``sqrt(x)`` is ``floor(sqrt x)``.

Every statement, loop iteration and call also takes one *step* of the interpreter; when
``step_budget`` steps are used up it raises :class:`StepBudgetExceeded`, so no input hangs
it. KL functions are pure (no globals, no mutation visible to callers), so a call's value
and operation count depend only on its arguments: with ``memoize=True`` each distinct call
is executed once and later calls add its recorded count in one step. The counts are
identical to plain execution (the tests check this against ``memoize=False``), which is
what makes operation counts at ``n = 2**40`` affordable.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

from synthfuse.koda.errors import KodaRuntimeError, StepBudgetExceeded
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang.lexer import INT_BITS

__all__ = ["Interpreter", "RunResult", "run"]

_LIMIT = 2**INT_BITS
_Env = dict  # variable name -> value


class _Return:
    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


@dataclass(frozen=True)
class RunResult:
    """The outcome of one call: its value, the operations it counted, the steps it took."""

    value: int | bool | None
    ops: int
    steps: int


def _check_int(v: int, node: A.Node) -> int:
    if -_LIMIT < v < _LIMIT:
        return v
    raise KodaRuntimeError(f"integer overflow: the result does not fit in {INT_BITS} bits", node.line, node.col)


def _pow(base: int, exp: int, node: A.Node) -> int:
    if exp < 0:
        raise KodaRuntimeError("negative exponent in '**' (KL has integers only)", node.line, node.col)
    if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > INT_BITS:
        raise KodaRuntimeError(f"integer overflow: the power does not fit in {INT_BITS} bits", node.line, node.col)
    return _check_int(base**exp, node)


class Interpreter:
    """Execute a (type-checked) KL program, counting operations.

    Parameters
    ----------
    program : Program
        A program accepted by :func:`synthfuse.koda.lang.types.check`.
    step_budget : int
        Interpreter steps allowed over the interpreter's lifetime (all calls together).
    memoize : bool
        Reuse the value and operation count of a repeated call (exact: KL is pure).
    max_depth : int
        Deepest allowed KL call stack.

    Attributes
    ----------
    ops : int
        Operations counted so far (sum over calls).
    steps : int
        Interpreter steps taken so far.
    memo : dict
        ``(function, args) -> (value, ops)`` of the calls executed so far (memoized mode).
    """

    def __init__(self, program: A.Program, *, step_budget: int = 1_000_000, memoize: bool = True,
                 max_depth: int = 1000) -> None:
        if step_budget <= 0 or max_depth <= 0:
            raise ValueError("step_budget and max_depth must be positive")
        self.program = program
        self.step_budget = int(step_budget)
        self.memoize = memoize
        self.max_depth = int(max_depth)
        self.ops = 0
        self.steps = 0
        self.depth = 0
        self.memo: dict[tuple, tuple] = {}
        self._functions: dict[str, Callable] = {}
        for fn in program.functions:
            self._functions[fn.name] = self._compile_function(fn)

    # -- public --------------------------------------------------------------------------
    def call(self, name: str, *args: int | bool) -> RunResult:
        """Call function ``name`` with ``args``; return its value and the ops/steps it took."""
        if name not in self._functions:
            raise KodaRuntimeError(f"no function named {name!r}")
        fn = self.program.function(name)
        if len(args) != len(fn.params):
            raise KodaRuntimeError(f"{name}() takes {len(fn.params)} argument(s), got {len(args)}")
        for p, a in zip(fn.params, args):
            if (p.type == "bool") != isinstance(a, bool) or not isinstance(a, int):
                raise KodaRuntimeError(f"argument {p.name!r} of {name}() must be a {p.type}, got {a!r}")
        ops0, steps0 = self.ops, self.steps
        self.depth = 0
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, 60 * self.max_depth + 5000))
        try:
            value = self._functions[name](tuple(args), fn)
        except RecursionError:
            raise KodaRuntimeError("the program nests too deeply for the interpreter") from None
        finally:
            sys.setrecursionlimit(old_limit)
        return RunResult(value, self.ops - ops0, self.steps - steps0)

    # -- bookkeeping ---------------------------------------------------------------------
    def _step(self, node: A.Node) -> None:
        self.steps += 1
        if self.steps > self.step_budget:
            raise StepBudgetExceeded(f"step budget of {self.step_budget} exhausted", node.line, node.col)

    # -- compilation to closures ---------------------------------------------------------
    def _compile_function(self, fn: A.Function) -> Callable:
        names = tuple(p.name for p in fn.params)
        body = self._block(fn.body)
        name = fn.name

        def invoke(args: tuple, node: A.Node):
            key = (name, args)
            if self.memoize and key in self.memo:
                value, ops = self.memo[key]
                self._step(node)
                self.ops += ops
                return value
            self.depth += 1
            if self.depth > self.max_depth:
                raise KodaRuntimeError(f"recursion deeper than {self.max_depth} calls", node.line, node.col)
            self._step(node)
            ops0 = self.ops
            self.ops += 1
            result = body(dict(zip(names, args)))
            value = result.value if result is not None else None
            self.depth -= 1
            if self.memoize:
                self.memo[key] = (value, self.ops - ops0)
            return value

        return invoke

    def _block(self, block: A.Block) -> Callable[[_Env], _Return | None]:
        stmts = tuple(self._stmt(s) for s in block.stmts)

        def run_block(env: _Env):
            for stmt in stmts:
                result = stmt(env)
                if result is not None:
                    return result
            return None

        return run_block

    def _stmt(self, s: A.Stmt) -> Callable[[_Env], _Return | None]:  # noqa: C901 - one case per statement
        step = self._step
        if isinstance(s, (A.Let, A.Assign)):
            value, name = self._expr(s.value), s.name

            def assign(env):
                step(s)
                self.ops += 1
                env[name] = value(env)

            return assign
        if isinstance(s, A.If):
            cond, then = self._expr(s.cond), self._block(s.then)
            orelse = self._block(s.orelse) if s.orelse is not None else None

            def if_(env):
                step(s)
                self.ops += 1
                if cond(env):
                    return then(env)
                return orelse(env) if orelse is not None else None

            return if_
        if isinstance(s, A.For):
            start, stop, body, var = self._expr(s.start), self._expr(s.stop), self._block(s.body), s.var

            def for_(env):
                step(s)
                self.ops += 1
                for i in range(start(env), stop(env)):
                    step(s)
                    self.ops += 1
                    env[var] = i
                    result = body(env)
                    if result is not None:
                        return result
                return None

            return for_
        if isinstance(s, A.While):
            cond, body = self._expr(s.cond), self._block(s.body)

            def while_(env):
                step(s)
                self.ops += 1
                while cond(env):
                    result = body(env)
                    if result is not None:
                        return result
                    step(s)
                    self.ops += 1
                return None

            return while_
        if isinstance(s, A.Work):
            amount = self._expr(s.amount)

            def work(env):
                step(s)
                k = amount(env)
                if k < 0:
                    raise KodaRuntimeError(f"work() needs a non-negative amount, got {k}", s.line, s.col)
                self.ops += 1 + k

            return work
        if isinstance(s, A.Return):
            value = self._expr(s.value) if s.value is not None else None

            def return_(env):
                step(s)
                self.ops += 1
                return _Return(value(env) if value is not None else None)

            return return_
        if isinstance(s, A.ExprStmt):
            call = self._expr(s.call)

            def call_stmt(env):
                step(s)
                self.ops += 1
                call(env)

            return call_stmt
        raise KodaRuntimeError(f"cannot execute {type(s).__name__}", s.line, s.col)  # pragma: no cover

    def _expr(self, e: A.Expr) -> Callable[[_Env], int | bool]:  # noqa: C901 - one case per node
        if isinstance(e, (A.IntLit, A.BoolLit)):
            const = e.value
            return lambda env: const
        if isinstance(e, A.Name):
            name = e.id
            return lambda env: env[name]
        if isinstance(e, A.Unary):
            operand = self._expr(e.operand)
            if e.op == "-":
                return lambda env: -operand(env)
            return lambda env: not operand(env)
        if isinstance(e, A.Binary):
            return self._binary(e)
        if isinstance(e, A.Call):
            args = tuple(self._expr(a) for a in e.args)
            if e.func in A.BUILTINS:
                return self._builtin(e, args)
            functions, func = self._functions, e.func

            def call(env):
                return functions[func](tuple(a(env) for a in args), e)

            return call
        raise KodaRuntimeError(f"cannot evaluate {type(e).__name__}", e.line, e.col)  # pragma: no cover

    def _binary(self, e: A.Binary) -> Callable[[_Env], int | bool]:
        left, right, op = self._expr(e.left), self._expr(e.right), e.op
        if op == "and":
            return lambda env: left(env) and right(env)
        if op == "or":
            return lambda env: left(env) or right(env)
        if op == "+":
            return lambda env: _check_int(left(env) + right(env), e)
        if op == "-":
            return lambda env: _check_int(left(env) - right(env), e)
        if op == "*":
            return lambda env: _check_int(left(env) * right(env), e)
        if op in ("/", "%"):
            def divide(env):
                a, b = left(env), right(env)
                if b == 0:
                    raise KodaRuntimeError(f"{'division' if op == '/' else 'modulo'} by zero", e.line, e.col)
                return a // b if op == "/" else a % b

            return divide
        if op == "**":
            return lambda env: _pow(left(env), right(env), e)
        compare = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                   "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
        return lambda env: compare(left(env), right(env))

    @staticmethod
    def _builtin(e: A.Call, args: tuple) -> Callable[[_Env], int]:
        if e.func in ("log2", "sqrt"):
            (x,) = args
            lowest, needs, apply = ((1, "a positive", lambda v: v.bit_length() - 1) if e.func == "log2"
                                    else (0, "a non-negative", math.isqrt))

            def unary(env):
                v = x(env)
                if v < lowest:
                    raise KodaRuntimeError(f"{e.func}() needs {needs} argument, got {v}", e.line, e.col)
                return apply(v)

            return unary
        a, b = args
        pick = min if e.func == "min" else max
        return lambda env: pick(a(env), b(env))


def run(program: A.Program, *args: int | bool, function: str | None = None, step_budget: int = 1_000_000,
        memoize: bool = True) -> RunResult:
    """Run ``function`` (default: the entry function) of ``program`` on ``args``."""
    interp = Interpreter(program, step_budget=step_budget, memoize=memoize)
    return interp.call(function or program.entry.name, *args)
