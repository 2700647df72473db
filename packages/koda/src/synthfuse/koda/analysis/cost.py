"""Static cost analysis of KL: extract ``T(n) = sum a_i T(b_i n) + g(n)`` from a program.

The entry function (one ``int`` parameter, the input size ``n``) is evaluated
*symbolically*: variables hold sympy expressions in ``n`` (or are unknown), ``/`` is
exact division (floors are ``O(1)`` perturbations, which Akra–Bazzi allows), and
conditions are decided for large ``n`` by the sign of the leading term of
``lhs - rhs`` -- so ``if n <= 1 { ...; return; }`` is the base case and is skipped.

Cost of a path (the interpreter's cost model, up to Θ): 1 per statement, ``k`` more for
``work(k)``; a helper call costs its body's cost at the argument values.

* ``for i in range(a, b)``: a constant trip count is unrolled exactly (so
  ``for i in range(0, 3) { f(n / 2); }`` is ``3 T(n/2)``); otherwise the body (no recursive
  calls) costs ``Θ((b - a) c(b))`` for a body cost ``c(i)`` non-decreasing in ``i``.
* ``while``: the loop variable ``v`` must be updated once at the top level of the body by
  ``v = v * c``, ``v + c``, ``v / c``, ``v - c`` or ``v * v`` and compared with a loop-invariant
  bound (``v < B``, ``v * v < B``, ``v > B``, ...): the trip count is
  ``log_c(B / v0)``, ``(B - v0) / c``, ``log_c(v0 / B)``, ``(v0 - B) / c`` or ``log2(log B / log v0)``,
  and a body cost growing polynomially in ``v`` sums geometrically.
* Branches whose condition cannot be decided must cost the same Θ and make no recursive call.

Anything else raises :class:`KodaAnalysisError` naming the construct and its position;
hypotheses of Akra–Bazzi that fail (``f(n - 1)``, a recursive call inside an ``n``-dependent
loop) raise :class:`OutOfScopeError`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy

from synthfuse.koda.analysis.recurrence import Recurrence, split_argument
from synthfuse.koda.analysis.theta import N, Theta, compare_numbers, leading_term, theta_of
from synthfuse.koda.errors import KodaAnalysisError, OutOfScopeError
from synthfuse.koda.lang import ast as A

__all__ = ["StaticCost", "recurrence_of", "static_cost"]

_UNROLL_LIMIT = 64
_counter = itertools.count()


@dataclass
class StaticCost:
    """What a function costs for large ``n``: recursive calls ``(count, argument)`` and the rest."""

    calls: list[tuple[int, sympy.Expr]] = field(default_factory=list)
    cost: sympy.Expr = sympy.Integer(0)


def _err(node: A.Node, message: str, cls: type = KodaAnalysisError) -> KodaAnalysisError:
    return cls(f"{node.line}:{node.col}: {message}")


def _fresh(name: str) -> sympy.Symbol:
    return sympy.Symbol(f"{name}_{next(_counter)}", positive=True)


def _assigned(block: A.Block) -> set[str]:
    return {s.name for s in A.walk(block) if isinstance(s, A.Assign)}


def _decide(lhs: sympy.Expr, rhs: sympy.Expr, op: str) -> bool | None:
    """Truth of ``lhs op rhs`` for large ``n`` (``None`` if it depends on other symbols)."""
    diff = sympy.expand(lhs - rhs)
    if diff.free_symbols - {N}:
        return None
    lead = leading_term(diff)
    sign = 0 if lead is None else compare_numbers(lead[0], 0)
    return {"<": sign < 0, "<=": sign <= 0, ">": sign > 0, ">=": sign >= 0, "==": sign == 0, "!=": sign != 0}[op]


class _Analyzer:
    def __init__(self, program: A.Program, entry: A.Function) -> None:
        self.program, self.entry = program, entry
        self.active: list[str] = []

    # -- expressions ---------------------------------------------------------------------
    def value(self, e: A.Expr, env: dict, out: StaticCost) -> sympy.Expr | bool | None:  # noqa: C901
        """Symbolic value of ``e`` (``None``: unknown); calls inside add to ``out``."""
        if isinstance(e, (A.IntLit, A.BoolLit)):
            return e.value if isinstance(e, A.BoolLit) else sympy.Integer(e.value)
        if isinstance(e, A.Name):
            return env.get(e.id)
        if isinstance(e, A.Unary):
            v = self.value(e.operand, env, out)
            if v is None:
                return None
            return (not v) if e.op == "not" else -v
        if isinstance(e, A.Call):
            args = [self.value(a, env, out) for a in e.args]
            return self.call(e, args, out)
        left, right = self.value(e.left, env, out), self.value(e.right, env, out)
        if e.op in ("and", "or"):
            if e.op == "and":
                return False if False in (left, right) else (None if None in (left, right) else True)
            return True if True in (left, right) else (None if None in (left, right) else False)
        if left is None or right is None:
            return None
        if e.op in A.COMPARISONS:
            if isinstance(left, bool) or isinstance(right, bool):
                return (left == right) if e.op == "==" else (left != right)
            return _decide(left, right, e.op)
        if e.op == "+":
            return left + right
        if e.op == "-":
            return left - right
        if e.op == "*":
            return left * right
        if e.op == "/":
            return None if right == 0 else left / right
        if e.op == "**":
            return left**right
        return None  # '%': bounded but unknown

    def call(self, e: A.Call, args: list, out: StaticCost) -> sympy.Expr | None:
        if e.func in A.BUILTINS:
            if any(a is None for a in args):
                return None
            if e.func == "log2":
                return sympy.log(args[0]) / sympy.log(2)
            if e.func == "sqrt":
                return sympy.sqrt(args[0])
            return (sympy.Min if e.func == "min" else sympy.Max)(*args)
        if e.func == self.entry.name:
            (arg,) = args
            if arg is None or arg.free_symbols - {N}:
                raise _err(e, f"the argument of the recursive call {e.func}(...) is not a function of n alone",
                           OutOfScopeError)
            split_argument(arg)  # rejects f(n - 1), f(sqrt(n)) with the reason
            out.calls.append((1, arg))
            return None
        if e.func in self.active:
            raise _err(e, f"mutual recursion through {e.func}() is not supported")
        fn = self.program.function(e.func)
        env = {p.name: (a if p.type == "int" else None) for p, a in zip(fn.params, args)}
        self.active.append(fn.name)
        self.function_body(fn.body, env, out)
        self.active.pop()
        out.cost += 1
        return None

    # -- statements ----------------------------------------------------------------------
    def function_body(self, body: A.Block, env: dict, out: StaticCost) -> None:
        self.block(body, dict(env), out)

    def block(self, block: A.Block, env: dict, out: StaticCost) -> bool:
        """Analyse ``block`` into ``out``; return True if every path through it returned."""
        for stmt in block.stmts:
            if self.stmt(stmt, env, out):
                return True
        return False

    def stmt(self, s: A.Stmt, env: dict, out: StaticCost) -> bool:  # noqa: C901 - one case per statement
        out.cost += 1
        if isinstance(s, (A.Let, A.Assign)):
            env[s.name] = self.value(s.value, env, out)
            return False
        if isinstance(s, A.Work):
            amount = self.value(s.amount, env, out)
            if amount is None:
                raise _err(s, "the amount of work(...) is not a known function of n")
            out.cost += amount
            return False
        if isinstance(s, A.Return):
            if s.value is not None:
                self.value(s.value, env, out)
            return True
        if isinstance(s, A.ExprStmt):
            self.value(s.call, env, out)
            return False
        if isinstance(s, A.If):
            return self.if_stmt(s, env, out)
        if isinstance(s, A.For):
            self.for_stmt(s, env, out)
            return False
        if isinstance(s, A.While):
            self.while_stmt(s, env, out)
            return False
        raise _err(s, f"cannot analyse {type(s).__name__}")  # pragma: no cover

    def if_stmt(self, s: A.If, env: dict, out: StaticCost) -> bool:
        cond = self.value(s.cond, env, out)
        if cond is True or cond is False:
            branch = s.then if cond else s.orelse
            return self.block(branch, env, out) if branch is not None else False
        results = []
        for branch in (s.then, s.orelse or A.Block(())):
            sub, sub_env = StaticCost(), dict(env)
            returned = self.block(branch, sub_env, sub)
            results.append((sub, sub_env, returned))
        (a, env_a, ret_a), (b, env_b, ret_b) = results
        if a.calls or b.calls:
            raise _err(s, "a recursive call under a condition that cannot be decided for large n", OutOfScopeError)
        if ret_a != ret_b:
            raise _err(s, "only one branch of this 'if' returns, and its condition cannot be decided for large n")
        out.cost += self.same_cost(s, a.cost, b.cost)
        for name in set(env_a) | set(env_b):
            env[name] = env_a.get(name) if env_a.get(name) == env_b.get(name) else None
        return ret_a

    @staticmethod
    def same_cost(node: A.Node, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
        if sympy.expand(a - b) == 0:
            return a
        if (a.free_symbols | b.free_symbols) - {N} or theta_of(a + 1) != theta_of(b + 1):
            raise _err(node, f"the branches of this 'if' cost differently ({a} vs {b}) and its condition "
                             "cannot be decided for large n")
        return sympy.Max(a, b)

    def for_stmt(self, s: A.For, env: dict, out: StaticCost) -> None:
        start, stop = self.value(s.start, env, out), self.value(s.stop, env, out)
        if start is None or stop is None:
            raise _err(s, "the range bounds are not known functions of n")
        trips = sympy.expand(stop - start)
        if not trips.free_symbols:
            for i in range(int(start), int(start) + min(max(int(sympy.floor(trips)), 0), _UNROLL_LIMIT)):
                out.cost += 1
                self.block(s.body, {**env, s.var: sympy.Integer(i)}, out)
            if int(sympy.floor(trips)) > _UNROLL_LIMIT:
                raise _err(s, f"constant loops of more than {_UNROLL_LIMIT} iterations are not unrolled")
            return
        loop_symbols = (stop.free_symbols | start.free_symbols) - {N}
        runs = _decide(stop.subs({x: N for x in loop_symbols}), start.subs({x: N for x in loop_symbols}), ">")
        if runs is False:
            return
        if runs is None:  # pragma: no cover - both sides are functions of n here
            raise _err(s, "cannot tell whether this loop runs for large n")
        var = _fresh(s.var)
        body_env = {**env, s.var: var, **{name: None for name in _assigned(s.body)}}
        body = self.loop_body(s, body_env, f"a loop of {trips} iterations")
        out.cost += trips * (1 + self.at_top(s, body.cost, var, stop))
        env.update({name: None for name in _assigned(s.body)})

    def loop_body(self, s: A.For | A.While, env: dict, what: str) -> StaticCost:
        body = StaticCost()
        if self.block(s.body, env, body):
            raise _err(s, "a 'return' inside a loop is not supported by the static analysis")
        if body.calls:
            raise _err(s, f"recursive call inside {what}: the number of calls a_i is not a constant",
                       OutOfScopeError)
        return body

    @staticmethod
    def at_top(node: A.Node, cost: sympy.Expr, var: sympy.Symbol, top: sympy.Expr) -> sympy.Expr:
        """Body cost at the largest value of the loop variable (checking it is non-decreasing)."""
        if not cost.has(var):
            return cost
        probe = cost.subs({sym: 7 for sym in cost.free_symbols - {var}})
        lead = leading_term(probe, var)
        if lead is not None and (compare_numbers(lead[0], 0) < 0 or lead[1] < Theta(0)):
            raise _err(node, f"the loop body cost {cost} decreases with the loop variable")
        return cost.subs(var, top)

    def while_stmt(self, s: A.While, env: dict, out: StaticCost) -> None:  # noqa: C901
        pattern = _while_pattern(s)
        if pattern is None:
            raise _err(s, "cannot bound this while loop; supported: 'while v < B' (or v * v < B, v > B, ...) "
                          "with one top-level update v = v * c, v + c, v / c, v - c or v * v")
        var_name, op, bound_expr, squared, update, c = pattern
        v0, bound = env.get(var_name), self.value(bound_expr, env, out)
        if v0 is None or bound is None or bound.free_symbols - {N} or v0.free_symbols - {N}:
            raise _err(s, "the loop variable's start or the bound is not a known function of n")
        if squared:
            bound = sympy.sqrt(bound)
        increasing = op in ("<", "<=")
        runs = _decide(v0, bound, op)
        if runs is False:
            return
        if update in ("*", "square") and not (v0.is_number and v0 >= (2 if update == "square" else 1)):
            raise _err(s, "a multiplicative loop needs a constant positive start (>= 2 for v = v * v)")
        if increasing != (update in ("*", "+", "square")):
            raise _err(s, "the loop variable moves away from its bound: the loop never ends")
        if update == "*":
            trips = sympy.log(bound / v0) / sympy.log(c)
        elif update == "/":
            trips = sympy.log(v0 / sympy.Max(bound, 1)) / sympy.log(c)
        elif update == "square":
            trips = sympy.log(sympy.log(bound) / sympy.log(v0)) / sympy.log(2)
        else:
            trips = (bound - v0) / c if update == "+" else (v0 - bound) / c
        var = _fresh(var_name)
        body_env = {**env, **{name: None for name in _assigned(s.body)}, var_name: var}
        body = self.loop_body(s, body_env, "a while loop")
        top = bound if increasing else v0
        per_trip = 1 + body.cost
        if body.cost.has(var):
            if update == "square":
                raise _err(s, "a body cost that depends on a squaring loop variable is not supported")
            growth = leading_term(body.cost.subs({sym: 7 for sym in body.cost.free_symbols - {var}}), var)
            if update in ("*", "/") and growth is not None and compare_numbers(growth[1].k, 0) > 0:
                out.cost += self.at_top(s, body.cost, var, top)  # geometric sum: the largest term
                out.cost += trips
                env.update({name: None for name in _assigned(s.body)})
                return
            per_trip = 1 + self.at_top(s, body.cost, var, top)
        out.cost += trips * per_trip
        env.update({name: None for name in _assigned(s.body)})


def _while_pattern(s: A.While):
    """``(v, op, bound, squared, update, c)`` for a recognised while loop, else ``None``."""
    cond = s.cond
    if not isinstance(cond, A.Binary) or cond.op not in ("<", "<=", ">", ">="):
        return None
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    left, op, right = cond.left, cond.op, cond.right

    def loop_var(e: A.Expr) -> str | None:
        nonlocal squared
        if isinstance(e, A.Name):
            return e.id
        if isinstance(e, A.Binary) and e.op == "*" and isinstance(e.left, A.Name) and e.left == e.right:
            squared = True
            return e.left.id
        return None

    for var_side, bound, relation in ((left, right, op), (right, left, flip[op])):
        squared = False
        name = loop_var(var_side)
        update = _update_of(s.body, name) if name is not None else None
        assigned = _assigned(s.body)
        if update is None or any(isinstance(x, A.Name) and x.id in assigned for x in A.walk(bound)):
            continue
        return (name, relation, bound, squared, *update)
    return None


def _update_of(body: A.Block, name: str) -> tuple[str, sympy.Integer] | None:
    """``(kind, c)`` of the single top-level update ``name = name * c`` (``+ - /``, or ``name * name``)."""
    updates = [st for st in body.stmts if isinstance(st, A.Assign) and st.name == name]
    nested = [st for st in A.walk(body) if isinstance(st, A.Assign) and st.name == name]
    if len(updates) != 1 or len(nested) != 1 or not isinstance(updates[0].value, A.Binary):
        return None
    rhs, v = updates[0].value, A.Name(name)
    if rhs.op == "*" and rhs.left == v and rhs.right == v:
        return ("square", sympy.Integer(2))
    operands = [(rhs.left, rhs.right)] + ([(rhs.right, rhs.left)] if rhs.op in ("*", "+") else [])
    for var_side, const_side in operands:
        if var_side == v and isinstance(const_side, A.IntLit):
            c = const_side.value
            if rhs.op in ("*", "/") and c >= 2 or rhs.op in ("+", "-") and c >= 1:
                return (rhs.op, sympy.Integer(c))
    return None


def static_cost(program: A.Program, function: str | None = None) -> StaticCost:
    """Recursive calls and non-recursive cost of ``function`` (default: the entry) for large ``n``."""
    entry = program.function(function) if function else program.entry
    if len(entry.params) != 1 or entry.params[0].type != "int":
        raise KodaAnalysisError(
            f"{entry.line}:{entry.col}: {entry.name}() must take exactly one int parameter (the input size n)")
    analyzer = _Analyzer(program, entry)
    out = StaticCost(cost=sympy.Integer(1))
    analyzer.active.append(entry.name)
    analyzer.function_body(entry.body, {entry.params[0].name: N}, out)
    return out


def recurrence_of(program: A.Program, function: str | None = None) -> Recurrence:
    """The recurrence ``T(n) = sum_i a_i T(b_i n + h_i) + g(n)`` of a recursive KL function.

    Raises
    ------
    KodaAnalysisError
        If the function is not recursive or uses a construct the analysis cannot bound.
    OutOfScopeError
        If the recurrence breaks an Akra–Bazzi hypothesis (e.g. ``f(n - 1)``).
    """
    result = static_cost(program, function)
    if not result.calls:
        name = function or program.entry.name
        raise KodaAnalysisError(f"{name}() makes no recursive call for large n; its cost is Θ({theta_of(result.cost)})")
    terms = []
    for count, arg in result.calls:
        b, _ = split_argument(arg)
        terms.append((sympy.Integer(count), b))
    if result.cost.free_symbols - {N}:
        raise KodaAnalysisError(f"the non-recursive cost {result.cost} depends on unknown quantities")
    return Recurrence(tuple(terms), result.cost)
