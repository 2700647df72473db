"""Pretty-printer of KL: :class:`~.ast.Program` -> canonical source text.

Parentheses are inserted only where precedence or associativity needs them, so that
``parse(pretty(tree)) == tree`` for every tree the parser can produce.
"""

from __future__ import annotations

from synthfuse.koda.lang import ast as A

__all__ = ["pretty", "pretty_expr"]

_PRIMARY = 9
_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "neg": 7, "**": 8}


def _expr(e: A.Expr) -> tuple[str, int]:
    """Source of ``e`` and the precedence level of its outermost operator."""
    if isinstance(e, A.IntLit):
        return str(e.value), _PRIMARY
    if isinstance(e, A.BoolLit):
        return ("true" if e.value else "false"), _PRIMARY
    if isinstance(e, A.Name):
        return e.id, _PRIMARY
    if isinstance(e, A.Call):
        return f"{e.func}({', '.join(pretty_expr(a) for a in e.args)})", _PRIMARY
    if isinstance(e, A.Unary):
        level = _PREC["neg"] if e.op == "-" else _PREC["not"]
        text, prec = _expr(e.operand)
        if prec < level:
            text = f"({text})"
        return (f"-{text}" if e.op == "-" else f"not {text}"), level
    if isinstance(e, A.Binary):
        level = _PREC[e.op]
        left, lp = _expr(e.left)
        right, rp = _expr(e.right)
        if e.op == "**":  # power = primary [ "**" unary ]
            need_left, need_right = lp < _PRIMARY, rp < _PREC["neg"]
        elif level == _PREC["=="]:  # comparisons do not chain
            need_left, need_right = lp <= level, rp <= level
        else:  # left-associative
            need_left, need_right = lp < level, rp <= level
        left = f"({left})" if need_left else left
        right = f"({right})" if need_right else right
        return f"{left} {e.op} {right}", level
    raise TypeError(f"not a KL expression node: {type(e).__name__}")


def pretty_expr(e: A.Expr) -> str:
    """The source text of one expression."""
    return _expr(e)[0]


def _block(block: A.Block, indent: int, out: list[str]) -> None:
    for stmt in block.stmts:
        _stmt(stmt, indent, out)


def _if(stmt: A.If, indent: int, out: list[str], prefix: str) -> None:
    pad = "    " * indent
    out.append(f"{prefix}if {pretty_expr(stmt.cond)} {{")
    _block(stmt.then, indent + 1, out)
    orelse = stmt.orelse
    if orelse is None:
        out.append(pad + "}")
    elif len(orelse.stmts) == 1 and isinstance(orelse.stmts[0], A.If):
        _if(orelse.stmts[0], indent, out, pad + "} else ")
    else:
        out.append(pad + "} else {")
        _block(orelse, indent + 1, out)
        out.append(pad + "}")


def _stmt(stmt: A.Stmt, indent: int, out: list[str]) -> None:
    pad = "    " * indent
    if isinstance(stmt, A.Let):
        typ = f": {stmt.type}" if stmt.type else ""
        out.append(f"{pad}let {stmt.name}{typ} = {pretty_expr(stmt.value)};")
    elif isinstance(stmt, A.Assign):
        out.append(f"{pad}{stmt.name} = {pretty_expr(stmt.value)};")
    elif isinstance(stmt, A.If):
        _if(stmt, indent, out, pad)
    elif isinstance(stmt, A.For):
        out.append(f"{pad}for {stmt.var} in range({pretty_expr(stmt.start)}, {pretty_expr(stmt.stop)}) {{")
        _block(stmt.body, indent + 1, out)
        out.append(pad + "}")
    elif isinstance(stmt, A.While):
        out.append(f"{pad}while {pretty_expr(stmt.cond)} {{")
        _block(stmt.body, indent + 1, out)
        out.append(pad + "}")
    elif isinstance(stmt, A.Work):
        out.append(f"{pad}work({pretty_expr(stmt.amount)});")
    elif isinstance(stmt, A.Return):
        out.append(f"{pad}return;" if stmt.value is None else f"{pad}return {pretty_expr(stmt.value)};")
    elif isinstance(stmt, A.ExprStmt):
        out.append(f"{pad}{pretty_expr(stmt.call)};")
    else:
        raise TypeError(f"not a KL statement node: {type(stmt).__name__}")


def pretty(node: A.Program | A.Function | A.Block | A.Stmt | A.Expr) -> str:
    """Canonical KL source of a program (or of a function, block, statement, expression)."""
    if isinstance(node, A.Program):
        return "\n\n".join(pretty(fn) for fn in node.functions) + "\n"
    if isinstance(node, A.Function):
        params = ", ".join(f"{p.name}: {p.type}" for p in node.params)
        ret = f" -> {node.ret}" if node.ret else ""
        out = [f"def {node.name}({params}){ret} {{"]
        _block(node.body, 1, out)
        out.append("}")
        return "\n".join(out)
    if isinstance(node, A.Block):
        out = ["{"]
        _block(node, 1, out)
        out.append("}")
        return "\n".join(out)
    if isinstance(node, (A.Let, A.Assign, A.If, A.For, A.While, A.Work, A.Return, A.ExprStmt)):
        out = []
        _stmt(node, 0, out)
        return "\n".join(out)
    return pretty_expr(node)
