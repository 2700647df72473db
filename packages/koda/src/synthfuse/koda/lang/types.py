"""The KL type checker.

Rules
-----
* Types are ``int`` and ``bool``; functions return ``int``, ``bool`` or nothing.
* Names are declared before use (parameters, ``let``, ``for`` variables), are block scoped,
  and may not shadow a visible name; ``for`` variables are read-only.
* ``+ - * / % **`` and unary ``-`` take ints; ``< <= > >=`` compare ints; ``== !=`` compare
  two values of the same type; ``and or not`` take bools; conditions are bools.
* Calls match the callee's arity and parameter types; a function that returns nothing
  cannot be used as a value; ``work`` takes an int. Built-ins: ``log2(int)``, ``sqrt(int)``,
  ``min(int, int)``, ``max(int, int)``, all returning int.
* A function with a return type returns a value of that type on every path.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthfuse.koda.errors import KodaTypeError
from synthfuse.koda.lang import ast as A

__all__ = ["Signature", "check"]


@dataclass(frozen=True)
class Signature:
    """A function's parameter types and return type (``None``: returns nothing)."""

    params: tuple[A.TypeName, ...]
    ret: A.TypeName | None


def _err(node: A.Node, message: str) -> KodaTypeError:
    return KodaTypeError(message, node.line, node.col)


class _Checker:
    def __init__(self, signatures: dict[str, Signature]) -> None:
        self.signatures = signatures
        self.scopes: list[dict[str, tuple[A.TypeName, bool]]] = []
        self.ret: A.TypeName | None = None

    # -- scopes --------------------------------------------------------------------------
    def lookup(self, node: A.Node, name: str) -> tuple[A.TypeName, bool]:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise _err(node, f"unknown variable {name!r} (declare it with 'let')")

    def declare(self, node: A.Node, name: str, typ: A.TypeName, mutable: bool = True) -> None:
        if any(name in scope for scope in self.scopes):
            raise _err(node, f"{name!r} is already defined; KL does not allow shadowing")
        self.scopes[-1][name] = (typ, mutable)

    # -- functions and statements --------------------------------------------------------
    def function(self, fn: A.Function) -> None:
        self.ret = fn.ret
        self.scopes = [{}]
        for p in fn.params:
            self.declare(p, p.name, p.type)
        self.block(fn.body)
        if fn.ret is not None and not _always_returns(fn.body):
            raise _err(fn, f"function {fn.name!r} must return a {fn.ret} on every path")

    def block(self, block: A.Block, extra: tuple[str, A.TypeName] | None = None) -> None:
        self.scopes.append({})
        if extra is not None:
            self.declare(block, extra[0], extra[1], mutable=False)
        for stmt in block.stmts:
            self.stmt(stmt)
        self.scopes.pop()

    def stmt(self, s: A.Stmt) -> None:
        if isinstance(s, A.Let):
            typ = self.expr(s.value)
            if s.type is not None and s.type != typ:
                raise _err(s, f"{s.name!r} is declared {s.type} but initialised with a {typ}")
            self.declare(s, s.name, typ)
        elif isinstance(s, A.Assign):
            typ, mutable = self.lookup(s, s.name)
            if not mutable:
                raise _err(s, f"cannot assign to the loop variable {s.name!r}")
            self.require(s.value, typ, f"the value assigned to {s.name!r}")
        elif isinstance(s, A.If):
            self.require(s.cond, "bool", "an 'if' condition")
            self.block(s.then)
            if s.orelse is not None:
                self.block(s.orelse)
        elif isinstance(s, A.For):
            self.require(s.start, "int", "a range start")
            self.require(s.stop, "int", "a range stop")
            self.block(s.body, extra=(s.var, "int"))
        elif isinstance(s, A.While):
            self.require(s.cond, "bool", "a 'while' condition")
            self.block(s.body)
        elif isinstance(s, A.Work):
            self.require(s.amount, "int", "the amount of work(...)")
        elif isinstance(s, A.Return):
            if self.ret is None and s.value is not None:
                raise _err(s, "this function returns nothing; use 'return;'")
            if self.ret is not None:
                if s.value is None:
                    raise _err(s, f"this function must return a {self.ret}")
                self.require(s.value, self.ret, "the returned value")
        elif isinstance(s, A.ExprStmt):
            self.call(s.call, as_value=False)
        else:  # pragma: no cover - the parser builds no other statement
            raise _err(s, f"unknown statement {type(s).__name__}")

    # -- expressions ---------------------------------------------------------------------
    def require(self, e: A.Expr, typ: A.TypeName, what: str) -> None:
        got = self.expr(e)
        if got != typ:
            raise _err(e, f"{what} must be a {typ}, not a {got}")

    def expr(self, e: A.Expr) -> A.TypeName:
        if isinstance(e, A.IntLit):
            return "int"
        if isinstance(e, A.BoolLit):
            return "bool"
        if isinstance(e, A.Name):
            return self.lookup(e, e.id)[0]
        if isinstance(e, A.Unary):
            if e.op == "-":
                self.require(e.operand, "int", "the operand of unary '-'")
                return "int"
            self.require(e.operand, "bool", "the operand of 'not'")
            return "bool"
        if isinstance(e, A.Binary):
            if e.op in A.ARITHMETIC:
                self.require(e.left, "int", f"the left operand of {e.op!r}")
                self.require(e.right, "int", f"the right operand of {e.op!r}")
                return "int"
            if e.op in ("and", "or"):
                self.require(e.left, "bool", f"the left operand of {e.op!r}")
                self.require(e.right, "bool", f"the right operand of {e.op!r}")
                return "bool"
            if e.op in ("==", "!="):
                left = self.expr(e.left)
                self.require(e.right, left, f"the right operand of {e.op!r} (the left one is a {left})")
                return "bool"
            self.require(e.left, "int", f"the left operand of {e.op!r}")
            self.require(e.right, "int", f"the right operand of {e.op!r}")
            return "bool"
        if isinstance(e, A.Call):
            return self.call(e, as_value=True)  # type: ignore[return-value]
        raise _err(e, f"unknown expression {type(e).__name__}")  # pragma: no cover

    def call(self, c: A.Call, as_value: bool) -> A.TypeName | None:
        if c.func in A.BUILTINS:
            sig = Signature(("int",) * A.BUILTINS[c.func], "int")
        elif c.func in self.signatures:
            sig = self.signatures[c.func]
        else:
            raise _err(c, f"unknown function {c.func!r}")
        if len(c.args) != len(sig.params):
            raise _err(c, f"{c.func}() takes {len(sig.params)} argument(s), got {len(c.args)}")
        for i, (arg, typ) in enumerate(zip(c.args, sig.params), 1):
            self.require(arg, typ, f"argument {i} of {c.func}()")
        if as_value and sig.ret is None:
            raise _err(c, f"{c.func}() returns nothing, so it cannot be used as a value")
        return sig.ret


def _always_returns(block: A.Block) -> bool:
    for s in block.stmts:
        if isinstance(s, A.Return):
            return True
        if isinstance(s, A.If) and s.orelse is not None and _always_returns(s.then) and _always_returns(s.orelse):
            return True
    return False


def check(program: A.Program) -> dict[str, Signature]:
    """Type-check ``program``; return each function's :class:`Signature`.

    Raises
    ------
    KodaTypeError
        At the first offending node, with ``line:col`` and what is wrong.
    """
    signatures: dict[str, Signature] = {}
    for fn in program.functions:
        if fn.name in signatures:
            raise _err(fn, f"function {fn.name!r} is defined twice")
        if fn.name in A.BUILTINS:
            raise _err(fn, f"{fn.name!r} is a built-in function and cannot be redefined")
        names = [p.name for p in fn.params]
        for p in fn.params:
            if names.count(p.name) > 1:
                raise _err(p, f"parameter {p.name!r} appears twice")
        signatures[fn.name] = Signature(tuple(p.type for p in fn.params), fn.ret)
    checker = _Checker(signatures)
    for fn in program.functions:
        checker.function(fn)
    return signatures
