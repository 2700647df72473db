"""The exceptions raised by :mod:`synthfuse.koda`.

Every error a user can provoke with bad input is one of these, so callers (and the
hypothesis fuzz tests) can rely on ``except KodaError``. Source-level errors carry the
1-based ``line`` and ``col`` of the offending token and print as ``line:col: message``.
"""

from __future__ import annotations

__all__ = [
    "KodaAnalysisError",
    "KodaError",
    "KodaRuntimeError",
    "KodaSyntaxError",
    "KodaTypeError",
    "OutOfScopeError",
    "StepBudgetExceeded",
]


class KodaError(Exception):
    """Base class of every error raised on purpose by ``synthfuse.koda``."""


class _PositionedError(KodaError):
    """An error tied to a place in a source text (1-based line and column)."""

    def __init__(self, message: str, line: int = 0, col: int = 0) -> None:
        self.message = message
        self.line = line
        self.col = col
        super().__init__(f"{line}:{col}: {message}" if line else message)


class KodaSyntaxError(_PositionedError):
    """The text is not a well-formed KL program (or recurrence / Θ expression)."""


class KodaTypeError(_PositionedError):
    """The program parses but breaks a typing or scoping rule of KL."""


class KodaRuntimeError(_PositionedError):
    """The interpreter stopped: division by zero, integer overflow, too deep recursion, ..."""


class StepBudgetExceeded(KodaRuntimeError):
    """The interpreter used up its step budget (so no input can hang it)."""


class KodaAnalysisError(KodaError):
    """The static analysis cannot derive what was asked (it says why)."""


class OutOfScopeError(KodaAnalysisError):
    """The recurrence is outside the Akra–Bazzi theorem's hypotheses (the message says which)."""
