"""Hand-written lexer of KL: source text -> list of :class:`Token`.

Tokens are integer literals, identifiers, keywords, operators and punctuation; ``#``
starts a comment that runs to the end of the line. Positions are 1-based. Any character
that cannot start a token raises :class:`KodaSyntaxError` at its position.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthfuse.koda.errors import KodaSyntaxError

__all__ = ["INT_BITS", "KEYWORDS", "Token", "tokenize"]

KEYWORDS = frozenset(
    ("def", "let", "if", "else", "for", "in", "range", "while", "return", "work",
     "and", "or", "not", "true", "false", "int", "bool")
)
#: Operators, longest first so that ``**`` wins over ``*`` and ``->`` over ``-``.
_OPERATORS = ("**", "==", "!=", "<=", ">=", "->", "+", "-", "*", "/", "%", "<", ">", "=",
              "(", ")", "{", "}", ",", ":", ";")
#: KL integers are signed and bounded: |value| < 2**INT_BITS (literals and run-time values).
INT_BITS = 512
_MAX_LITERAL_DIGITS = len(str(2**INT_BITS))


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is ``"int"`` (a literal, or the keyword ``int``: see :attr:`is_literal`),
    ``"ident"``, ``"eof"``, or the keyword/operator itself."""

    kind: str
    text: str
    line: int
    col: int

    @property
    def value(self) -> int:
        """The integer value of a literal."""
        return int(self.text)

    @property
    def is_literal(self) -> bool:
        """True for an integer literal (the keyword ``int`` has the same kind)."""
        return self.kind == "int" and self.text.isdigit()


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_ident_char(ch: str) -> bool:
    return _is_ident_start(ch) or ("0" <= ch <= "9")


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with one ``eof`` token.

    Raises
    ------
    KodaSyntaxError
        On a character that starts no token, or an integer literal of 2**512 or more.
    """
    if not isinstance(source, str):
        raise KodaSyntaxError(f"KL source must be a str, got {type(source).__name__}")
    tokens: list[Token] = []
    i, line, col, n = 0, 1, 1, len(source)
    while i < n:
        ch = source[i]
        if ch == "\n":
            i, line, col = i + 1, line + 1, 1
            continue
        if ch in " \t\r":
            i, col = i + 1, col + 1
            continue
        if ch == "#":
            while i < n and source[i] != "\n":
                i += 1
            continue
        start_col = col
        if "0" <= ch <= "9":
            j = i
            while j < n and "0" <= source[j] <= "9":
                j += 1
            if j < n and _is_ident_char(source[j]):
                raise KodaSyntaxError(
                    f"malformed number {source[i:j + 1]!r}: a name cannot start with a digit", line, col)
            text = source[i:j]
            if j - i > _MAX_LITERAL_DIGITS or int(text) >= 2**INT_BITS:
                raise KodaSyntaxError(f"integer literal too large (KL integers are below 2**{INT_BITS})",
                                      line, col)
            tokens.append(Token("int", text, line, start_col))
            col += j - i
            i = j
            continue
        if _is_ident_start(ch):
            j = i
            while j < n and _is_ident_char(source[j]):
                j += 1
            text = source[i:j]
            tokens.append(Token(text if text in KEYWORDS else "ident", text, line, start_col))
            col += j - i
            i = j
            continue
        for op in _OPERATORS:
            if source.startswith(op, i):
                tokens.append(Token(op, op, line, start_col))
                i, col = i + len(op), col + len(op)
                break
        else:
            raise KodaSyntaxError(f"unexpected character {ch!r}", line, col)
    tokens.append(Token("eof", "", line, col))
    return tokens
