"""Judge a synthesized program with the real front end and verifier, and turn the verdict into a reward.

A program passes three gates in order: it **parses** (:func:`synthfuse.koda.lang.parse`), it
is **well typed** (:func:`synthfuse.koda.lang.check`) with an entry function of one ``int``
parameter (the input size), and its Θ **matches** the request: both routes of
:func:`synthfuse.koda.analysis.verify` -- Akra–Bazzi on the extracted recurrence and the
operation counts of the interpreter -- accept the requested class. The reinforcement
learning reward (:mod:`synthfuse.koda.train.rl`) is

.. math:: r = w_{\\text{parse}}\\,[\\text{parses}] + w_{\\text{type}}\\,[\\text{well typed}]
              + w_{\\Theta}\\,[\\Theta \\text{ matches}],

each gate implying the ones before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthfuse.koda.analysis.verify import VERIFY_CACHE, VerifyCache, verify
from synthfuse.koda.errors import KodaError, KodaSyntaxError, KodaTypeError
from synthfuse.koda.lang.canonical import canonical_form
from synthfuse.koda.lang.parser import parse
from synthfuse.koda.lang.types import check
from synthfuse.koda.synthesis.prompts import class_of, class_theta

__all__ = ["ProgramCheck", "canonical_form", "check_program", "verifier_reward"]


@dataclass(frozen=True)
class ProgramCheck:
    """The verdicts on one synthesized program.

    Attributes
    ----------
    source : str
    theta_class : str
        The requested class.
    parsed, well_typed, theta_match : bool
        The three gates (each implies the previous ones).
    static_theta : str or None
        Θ found by the static route (when it applies).
    static_class : str or None
        The corpus class of ``static_theta`` (None when it is no class's, or unknown): what the
        program is, against what was requested (:func:`synthfuse.koda.synthesis.confusion`).
    header_match : bool or None
        Whether the entry function has the requested header (None when none was requested).
    reason : str
        Why the first failed gate failed ("" when all passed).
    canonical : str or None
        :func:`canonical_form` of a parsed program.
    """

    source: str
    theta_class: str
    parsed: bool
    well_typed: bool
    theta_match: bool
    static_theta: str | None = None
    header_match: bool | None = None
    reason: str = ""
    canonical: str | None = None
    static_class: str | None = None


def check_program(source: str, theta_class: str, *, signature: str | None = None,
                  step_budget: int = 400_000, cache: VerifyCache | None = VERIFY_CACHE) -> ProgramCheck:
    """Parse, type-check and verify ``source`` against the requested ``theta_class``.

    Parameters
    ----------
    source : str
        KL source text.
    theta_class : str
        A corpus class name (:data:`synthfuse.koda.data.THETA_CLASSES`).
    signature : str, optional
        The requested header, e.g. ``"def sort(n: int)"`` (reported as ``header_match``).
    step_budget : int
        Interpreter steps for the verifier's dynamic route.
    cache : VerifyCache or None
        Where verifications of programs seen before (up to renaming) are looked up; the
        process-wide :data:`~synthfuse.koda.analysis.verify.VERIFY_CACHE` by default, ``None``
        to always run :func:`~synthfuse.koda.analysis.verify.verify`.
    """
    claimed = class_theta(theta_class)
    try:
        program = parse(source)
    except KodaSyntaxError as exc:
        return ProgramCheck(source, theta_class, False, False, False, reason=f"syntax: {exc}")
    canonical = canonical_form(program)
    header = None
    if signature is not None:
        from synthfuse.koda.train.data import signature_of

        header = signature_of(program.entry) == signature
    entry = program.entry
    try:
        check(program)
        if len(entry.params) != 1 or entry.params[0].type != "int":
            raise KodaTypeError(f"the entry function {entry.name!r} must take one int (the input size)",
                                entry.line, entry.col)
    except KodaTypeError as exc:
        return ProgramCheck(source, theta_class, True, False, False, None, header, f"type: {exc}", canonical)
    try:
        result = (verify if cache is None else cache.verify)(program, claimed, step_budget=step_budget)
    except KodaError as exc:
        return ProgramCheck(source, theta_class, True, True, False, None, header, f"verify: {exc}", canonical)
    reason = "" if result.verified else f"static: {result.static_reason}; dynamic: {result.dynamic.reason}"
    found = None if result.static_theta is None else str(result.static_theta)
    found_class = None if result.static_theta is None else class_of(result.static_theta)
    return ProgramCheck(source, theta_class, True, True, result.verified, found, header, reason, canonical,
                        found_class)


def verifier_reward(result: ProgramCheck, *, parse: float = 0.1, typecheck: float = 0.2, theta: float = 1.0) -> float:
    """:math:`r = w_{parse}[\\text{parses}] + w_{type}[\\text{well typed}] + w_\\Theta[\\Theta\\text{ matches}]`."""
    for name, w in (("parse", parse), ("typecheck", typecheck), ("theta", theta)):
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"reward weight {name} must be a finite number >= 0, got {w!r}")
    return parse * result.parsed + typecheck * result.well_typed + theta * result.theta_match
