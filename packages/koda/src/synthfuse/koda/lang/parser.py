"""Recursive-descent parser of KL (no parser generator): text -> :class:`~.ast.Program`.

The grammar (EBNF; it is also in the package README)::

    program    = function { function } EOF ;
    function   = "def" IDENT "(" [ param { "," param } ] ")" [ "->" type ] block ;
    param      = IDENT ":" type ;
    type       = "int" | "bool" ;
    block      = "{" { stmt } "}" ;
    stmt       = "let" IDENT [ ":" type ] "=" expr ";"
               | IDENT "=" expr ";"
               | "if" expr block [ "else" ( if_stmt | block ) ]
               | "for" IDENT "in" "range" "(" expr [ "," expr ] ")" block
               | "while" expr block
               | "work" "(" expr ")" ";"
               | "return" [ expr ] ";"
               | call ";" ;
    expr       = and_expr { "or" and_expr } ;
    and_expr   = not_expr { "and" not_expr } ;
    not_expr   = "not" not_expr | comparison ;
    comparison = sum [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) sum ] ;
    sum        = term { ( "+" | "-" ) term } ;
    term       = unary { ( "*" | "/" | "%" ) unary } ;
    unary      = "-" unary | power ;
    power      = primary [ "**" unary ] ;
    primary    = INT | "true" | "false" | call | IDENT | "(" expr ")" ;
    call       = IDENT "(" [ expr { "," expr } ] ")" ;

``range(stop)`` is ``range(0, stop)``. Trees deeper than :data:`MAX_DEPTH` are rejected,
so no input can exhaust the Python stack in this or any later pass.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from synthfuse.koda.errors import KodaSyntaxError
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang.lexer import Token, tokenize

__all__ = ["MAX_DEPTH", "parse", "parse_expr"]

#: Deepest allowed syntax tree (nesting of blocks and expressions).
MAX_DEPTH = 100

_STMT_STARTS = "'let', 'if', 'for', 'while', 'work', 'return', an assignment or a call"


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of input"
    if tok.kind == "ident" or tok.is_literal:
        return f"{'name' if tok.kind == 'ident' else 'number'} {tok.text!r}"
    return repr(tok.text)


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.pos = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def error(self, expected: str, tok: Token | None = None) -> KodaSyntaxError:
        tok = tok or self.tok
        return KodaSyntaxError(f"expected {expected}, found {_describe(tok)}", tok.line, tok.col)

    def expect(self, kind: str, what: str | None = None) -> Token:
        if self.tok.kind != kind:
            raise self.error(what or repr(kind))
        return self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise KodaSyntaxError(f"nested too deeply (more than {MAX_DEPTH} levels)", self.tok.line, self.tok.col)

    def leave(self) -> None:
        self.depth -= 1

    # -- top level -----------------------------------------------------------------------
    def program(self) -> A.Program:
        first = self.tok
        functions = [self.function()]
        while self.tok.kind != "eof":
            functions.append(self.function())
        return A.Program(tuple(functions), line=first.line, col=first.col)

    def function(self) -> A.Function:
        start = self.expect("def", "'def' (a program is a list of functions)")
        name = self.expect("ident", "a function name").text
        self.expect("(")
        params: list[A.Param] = []
        if self.tok.kind != ")":
            params.append(self.param())
            while self.tok.kind == ",":
                self.advance()
                params.append(self.param())
        self.expect(")", "',' or ')'")
        ret = None
        if self.tok.kind == "->":
            self.advance()
            ret = self.type_name()
        body = self.block()
        return A.Function(name, tuple(params), ret, body, line=start.line, col=start.col)

    def param(self) -> A.Param:
        tok = self.expect("ident", "a parameter name")
        self.expect(":", "':' and a type after the parameter name")
        return A.Param(tok.text, self.type_name(), line=tok.line, col=tok.col)

    def type_name(self) -> A.TypeName:
        if self.tok.kind not in ("int", "bool") or self.tok.is_literal:
            raise self.error("a type ('int' or 'bool')")
        return self.advance().kind  # type: ignore[return-value]

    # -- statements ----------------------------------------------------------------------
    def block(self) -> A.Block:
        start = self.expect("{")
        self.enter()
        stmts = []
        while self.tok.kind != "}":
            if self.tok.kind == "eof":
                raise self.error("'}' to close the block opened at "
                                 f"{start.line}:{start.col}")
            stmts.append(self.statement())
        self.advance()
        self.leave()
        return A.Block(tuple(stmts), line=start.line, col=start.col)

    def statement(self) -> A.Stmt:
        tok = self.tok
        pos = {"line": tok.line, "col": tok.col}
        kind = tok.kind
        if kind == "let":
            self.advance()
            name = self.expect("ident", "a variable name after 'let'").text
            typ = None
            if self.tok.kind == ":":
                self.advance()
                typ = self.type_name()
            self.expect("=", "'=' in the 'let' statement")
            value = self.expr()
            self.expect(";", "';' after the 'let' statement")
            return A.Let(name, typ, value, **pos)
        if kind == "if":
            return self.if_stmt()
        if kind == "for":
            self.advance()
            var = self.expect("ident", "a loop variable after 'for'").text
            self.expect("in", "'in' after the loop variable")
            self.expect("range", "'range' (KL loops are 'for i in range(a, b)')")
            self.expect("(")
            first = self.expr()
            if self.tok.kind == ",":
                self.advance()
                start, stop = first, self.expr()
            else:
                start, stop = A.IntLit(0, line=first.line, col=first.col), first
            self.expect(")", "',' or ')' in range(...)")
            return A.For(var, start, stop, self.block(), **pos)
        if kind == "while":
            self.advance()
            cond = self.expr()
            return A.While(cond, self.block(), **pos)
        if kind == "work":
            self.advance()
            self.expect("(", "'(' after 'work'")
            amount = self.expr()
            self.expect(")", "')' to close work(...)")
            self.expect(";", "';' after work(...)")
            return A.Work(amount, **pos)
        if kind == "return":
            self.advance()
            value = None if self.tok.kind == ";" else self.expr()
            self.expect(";", "';' after the return statement")
            return A.Return(value, **pos)
        if kind == "ident" and self.peek().kind == "=":
            self.advance()
            self.advance()
            value = self.expr()
            self.expect(";", "';' after the assignment")
            return A.Assign(tok.text, value, **pos)
        if kind == "ident" and self.peek().kind == "(":
            call = self.call()
            self.expect(";", "';' after the call")
            return A.ExprStmt(call, **pos)
        raise self.error(f"a statement ({_STMT_STARTS})")

    def if_stmt(self) -> A.If:
        start = self.expect("if")
        cond = self.expr()
        then = self.block()
        orelse = None
        if self.tok.kind == "else":
            self.advance()
            if self.tok.kind == "if":
                self.enter()
                nested = self.if_stmt()
                self.leave()
                orelse = A.Block((nested,), line=nested.line, col=nested.col)
            else:
                orelse = self.block()
        return A.If(cond, then, orelse, line=start.line, col=start.col)

    # -- expressions ---------------------------------------------------------------------
    def left_assoc(self, operators: tuple[str, ...], operand) -> A.Expr:
        """``operand { op operand }`` for ``op`` in ``operators``, folded to the left."""
        left = operand()
        while self.tok.kind in operators:
            op = self.advance()
            left = A.Binary(op.kind, left, operand(), line=op.line, col=op.col)
        return left

    def expr(self) -> A.Expr:
        self.enter()
        value = self.left_assoc(("or",), self.and_expr)
        self.leave()
        return value

    def and_expr(self) -> A.Expr:
        return self.left_assoc(("and",), self.not_expr)

    def not_expr(self) -> A.Expr:
        if self.tok.kind == "not":
            op = self.advance()
            self.enter()
            operand = self.not_expr()
            self.leave()
            return A.Unary("not", operand, line=op.line, col=op.col)
        return self.comparison()

    def comparison(self) -> A.Expr:
        left = self.sum()
        if self.tok.kind in A.COMPARISONS:
            op = self.advance()
            left = A.Binary(op.kind, left, self.sum(), line=op.line, col=op.col)
            if self.tok.kind in A.COMPARISONS:
                raise KodaSyntaxError("comparisons do not chain; combine them with 'and'",
                                      self.tok.line, self.tok.col)
        return left

    def sum(self) -> A.Expr:
        return self.left_assoc(("+", "-"), self.term)

    def term(self) -> A.Expr:
        return self.left_assoc(("*", "/", "%"), self.unary)

    def unary(self) -> A.Expr:
        if self.tok.kind == "-":
            op = self.advance()
            self.enter()
            operand = self.unary()
            self.leave()
            return A.Unary("-", operand, line=op.line, col=op.col)
        return self.power()

    def power(self) -> A.Expr:
        base = self.primary()
        if self.tok.kind == "**":
            op = self.advance()
            self.enter()
            exponent = self.unary()
            self.leave()
            return A.Binary("**", base, exponent, line=op.line, col=op.col)
        return base

    def primary(self) -> A.Expr:
        tok = self.tok
        if tok.is_literal:
            self.advance()
            return A.IntLit(tok.value, line=tok.line, col=tok.col)
        if tok.kind in ("true", "false"):
            self.advance()
            return A.BoolLit(tok.kind == "true", line=tok.line, col=tok.col)
        if tok.kind == "ident":
            if self.peek().kind == "(":
                return self.call()
            self.advance()
            return A.Name(tok.text, line=tok.line, col=tok.col)
        if tok.kind == "(":
            self.advance()
            inner = self.expr()
            self.expect(")", "')' to close the parenthesis")
            return inner
        raise self.error("an expression (a number, a name, a call or '(')")

    def call(self) -> A.Call:
        name = self.expect("ident", "a function name")
        self.expect("(")
        args: list[A.Expr] = []
        if self.tok.kind != ")":
            args.append(self.expr())
            while self.tok.kind == ",":
                self.advance()
                args.append(self.expr())
        self.expect(")", "',' or ')' in the argument list")
        return A.Call(name.text, tuple(args), line=name.line, col=name.col)


def _check_depth(root: A.Node) -> None:
    """Reject trees deeper than :data:`MAX_DEPTH` (iteratively: flat chains like 1+1+...+1)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > 2 * MAX_DEPTH:
            raise KodaSyntaxError(f"expression nested too deeply (more than {2 * MAX_DEPTH} levels)",
                                  node.line, node.col)
        stack.extend((child, depth + 1) for child in A.children(node))


@contextlib.contextmanager
def _stack_room() -> Iterator[None]:
    """Room for ``MAX_DEPTH`` nested levels (about 15 Python frames each) whatever the caller's depth."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20 * MAX_DEPTH + 2000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def parse(source: str) -> A.Program:
    """Parse a KL program.

    Raises
    ------
    KodaSyntaxError
        With ``line:col`` and what was expected there.
    """
    with _stack_room():
        parser = _Parser(source)
        program = parser.program()
    _check_depth(program)
    return program


def parse_expr(source: str) -> A.Expr:
    """Parse a single KL expression (used by tests and the CLI)."""
    with _stack_room():
        parser = _Parser(source)
        expr = parser.expr()
        if parser.tok.kind != "eof":
            raise parser.error("end of input after the expression")
    _check_depth(expr)
    return expr
