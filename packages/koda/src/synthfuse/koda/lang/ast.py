"""The typed abstract syntax tree of KL (frozen dataclasses).

Every node records the 1-based ``line``/``col`` where it starts; positions are excluded
from equality, so ``parse(pretty(tree)) == tree`` compares structure only. Children are
tuples, so trees are hashable and immutable.

Types are the strings ``"int"`` and ``"bool"``; a function without a return type
returns nothing (its return type is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, Literal, Union

__all__ = [
    "Assign", "Binary", "Block", "BoolLit", "Call", "Expr", "ExprStmt", "For", "Function",
    "If", "IntLit", "Let", "Name", "Node", "Param", "Program", "Return", "Stmt", "TypeName",
    "Unary", "While", "Work", "children", "walk",
]

TypeName = Literal["int", "bool"]

#: Binary operators by precedence level (loosest first); comparisons do not chain.
BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
    ("or",),
    ("and",),
    ("==", "!=", "<", "<=", ">", ">="),
    ("+", "-"),
    ("*", "/", "%"),
    ("**",),
)
COMPARISONS = frozenset(BINARY_LEVELS[2])
ARITHMETIC = frozenset(("+", "-", "*", "/", "%", "**"))
#: Built-in integer functions: name -> arity.
BUILTINS: dict[str, int] = {"log2": 1, "sqrt": 1, "min": 2, "max": 2}


@dataclass(frozen=True)
class Node:
    """Base of all nodes: a source position that takes no part in equality."""

    line: int = field(default=0, compare=False, repr=False, kw_only=True)
    col: int = field(default=0, compare=False, repr=False, kw_only=True)


# ----------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class IntLit(Node):
    """A non-negative integer literal (``-3`` is ``Unary("-", IntLit(3))``)."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise ValueError(f"IntLit needs a non-negative int, got {self.value!r}")


@dataclass(frozen=True)
class BoolLit(Node):
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True)
class Name(Node):
    """A variable reference."""

    id: str


@dataclass(frozen=True)
class Unary(Node):
    """``-x`` or ``not x``."""

    op: Literal["-", "not"]
    operand: "Expr"


@dataclass(frozen=True)
class Binary(Node):
    """``left op right`` for the operators in :data:`BINARY_LEVELS`."""

    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Call(Node):
    """A call of a KL function or a built-in (``log2``, ``sqrt``, ``min``, ``max``)."""

    func: str
    args: tuple["Expr", ...]


Expr = Union[IntLit, BoolLit, Name, Unary, Binary, Call]


# ----------------------------------------------------------------------------- statements
@dataclass(frozen=True)
class Block(Node):
    """``{ stmt* }``."""

    stmts: tuple["Stmt", ...]


@dataclass(frozen=True)
class Let(Node):
    """``let name[: type] = value;`` declares a variable in the enclosing block."""

    name: str
    type: TypeName | None
    value: Expr


@dataclass(frozen=True)
class Assign(Node):
    """``name = value;``."""

    name: str
    value: Expr


@dataclass(frozen=True)
class If(Node):
    """``if cond { ... } [else { ... }]``; ``else if`` is an ``orelse`` block holding one ``If``."""

    cond: Expr
    then: Block
    orelse: Block | None


@dataclass(frozen=True)
class For(Node):
    """``for var in range(start, stop) { ... }``: bounds are evaluated once, so it is bounded."""

    var: str
    start: Expr
    stop: Expr
    body: Block


@dataclass(frozen=True)
class While(Node):
    """``while cond { ... }``."""

    cond: Expr
    body: Block


@dataclass(frozen=True)
class Work(Node):
    """``work(amount);``: spend ``amount`` units of counted work."""

    amount: Expr


@dataclass(frozen=True)
class Return(Node):
    """``return [value];``."""

    value: Expr | None


@dataclass(frozen=True)
class ExprStmt(Node):
    """A call used as a statement: ``f(n / 2);``."""

    call: Call


Stmt = Union[Let, Assign, If, For, While, Work, Return, ExprStmt]


# ----------------------------------------------------------------------------- top level
@dataclass(frozen=True)
class Param(Node):
    """``name: type``."""

    name: str
    type: TypeName


@dataclass(frozen=True)
class Function(Node):
    """``def name(params) [-> type] { ... }``."""

    name: str
    params: tuple[Param, ...]
    ret: TypeName | None
    body: Block


@dataclass(frozen=True)
class Program(Node):
    """A KL program: its functions, in order; the first one is the entry point."""

    functions: tuple[Function, ...]

    @property
    def entry(self) -> Function:
        """The entry function (the first one)."""
        return self.functions[0]

    def function(self, name: str) -> Function:
        """The function called ``name`` (``KeyError`` if there is none)."""
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)


def children(node: Node) -> Iterator[Node]:
    """The direct child nodes of ``node``, in source order."""
    for f in fields(node):
        if f.name in ("line", "col"):
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node):
            yield value
        elif isinstance(value, tuple):
            yield from (v for v in value if isinstance(v, Node))


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree rooted at ``node``, in pre-order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(children(current))))
