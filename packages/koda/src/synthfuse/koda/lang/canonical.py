"""Programs up to renaming: the canonical form of a KL program.

Two programs are the same *up to renaming* when a bijection of their identifiers (functions,
parameters, variables) maps one onto the other. The canonical form renames every identifier
``v0, v1, ...`` in order of first appearance in the pretty-printed program (built-ins such as
``log2`` keep their names), so it is equal for exactly such pairs. The synthesis measure of
*distinct* programs counts canonical forms, and the verifier's cache
(:class:`synthfuse.koda.analysis.verify.VerifyCache`) is keyed by them.
"""

from __future__ import annotations

from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang.lexer import tokenize
from synthfuse.koda.lang.pretty import pretty

__all__ = ["canonical_form", "canonical_names"]


def canonical_names(program: A.Program) -> tuple[str, dict[str, str]]:
    """The canonical form of ``program`` and the renaming that produced it (original -> ``v<i>``).

    The form is the pretty-printed program's tokens joined by single spaces, with each
    identifier that is not a built-in replaced by ``v<i>``, ``i`` counting distinct
    identifiers by first appearance. Renaming is global (one name, one canonical name,
    across functions), hence a bijection, hence meaning-preserving.
    """
    names: dict[str, str] = {}
    out = []
    for tok in tokenize(pretty(program)):
        if tok.kind == "eof":
            break
        if tok.kind == "ident" and tok.text not in A.BUILTINS:
            out.append(names.setdefault(tok.text, f"v{len(names)}"))
        else:
            out.append(tok.text)
    return " ".join(out), names


def canonical_form(program: A.Program) -> str:
    """The pretty-printed program with identifiers renamed ``v0, v1, ...`` by first appearance.

    Two programs with the same canonical form differ only in their names (:func:`canonical_names`).
    """
    return canonical_names(program)[0]
