"""Tokenizer of KL programs for the model, on top of the KL lexer (:mod:`synthfuse.koda.lang.lexer`).

The vocabulary is fixed by the language plus what is fitted on a corpus:

- specials ``<pad> <bos> <eos> <sep> <sig> <unk>``;
- one prompt token ``<theta:NAME>`` per Θ class;
- every KL keyword and operator (one token each, as the lexer emits them);
- the ten digits: an integer literal is spelled digit by digit (KL never puts two integer
  literals next to each other, so a run of digits is always one literal);
- identifiers seen in the training corpus (the rest map to ``<unk>``).

A training sequence is ``<bos> <theta:C> [<sig> header...] <sep> program... <eos>``: the
prompt states the target Θ class and, optionally, the function header to implement.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from synthfuse.koda.lang import lexer

__all__ = ["KLTokenizer", "SPECIALS"]

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<sep>", "<sig>", "<unk>")
_DIGITS = tuple(str(d) for d in range(10))
# The lexer's operator and punctuation set (one token each).
_OPERATORS = tuple(lexer._OPERATORS)


def _theta_token(name: str) -> str:
    return f"<theta:{name}>"


class KLTokenizer:
    """Map KL source to token ids and back.

    Parameters
    ----------
    classes : sequence of str
        Names of the Θ classes the prompt can request.
    identifiers : sequence of str
        Identifier vocabulary (usually from :meth:`fit`).

    Examples
    --------
    >>> tok = KLTokenizer(["n log n"], ["f", "n"])
    >>> ids = tok.encode_program("def f(n: int) { work(n); }")
    >>> tok.decode(ids).split()[:4]
    ['def', 'f', '(', 'n']
    """

    def __init__(self, classes: Sequence[str], identifiers: Sequence[str]) -> None:
        classes, identifiers = list(classes), list(identifiers)
        if not classes:
            raise ValueError("the tokenizer needs at least one Θ class name")
        if len(set(classes)) != len(classes) or len(set(identifiers)) != len(identifiers):
            raise ValueError("class names and identifiers must be unique")
        reserved = set(lexer.KEYWORDS)
        bad = [i for i in identifiers if i in reserved or not i.isidentifier()]
        if bad:
            raise ValueError(f"not KL identifiers (or keywords): {bad[:5]}")
        self.classes, self.identifiers = classes, identifiers
        self.vocab: list[str] = [*SPECIALS, *(_theta_token(c) for c in classes), *sorted(lexer.KEYWORDS),
                                 *_OPERATORS, *_DIGITS, *identifiers]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        for name in SPECIALS:
            setattr(self, name.strip("<>") + "_id", self.index[name])

    def __len__(self) -> int:
        return len(self.vocab)

    @classmethod
    def fit(cls, sources: Iterable[str], classes: Sequence[str], max_identifiers: int = 256) -> "KLTokenizer":
        """Build the vocabulary from a corpus: the ``max_identifiers`` most frequent identifiers."""
        counts: Counter[str] = Counter()
        for src in sources:
            counts.update(t.text for t in lexer.tokenize(src) if t.kind == "ident")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_identifiers]
        return cls(classes, [name for name, _ in ranked])

    # --- encoding ----------------------------------------------------------------------------
    def encode_with_positions(self, source: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of the KL tokens of ``source`` and, per id, the ``(line, col)`` of its lexer token."""
        ids: list[int] = []
        pos: list[tuple[int, int]] = []
        for t in lexer.tokenize(source):
            if t.kind == "eof":
                break
            if t.kind == "int" and t.text.isdigit():  # a literal (the keyword `int` shares the kind)
                pieces = [self.index[d] for d in t.text]
            elif t.kind == "ident":
                pieces = [self.index.get(t.text, self.unk_id)]
            else:
                pieces = [self.index[t.kind]]
            ids.extend(pieces)
            pos.extend([(t.line, t.col)] * len(pieces))
        return ids, pos

    def encode_program(self, source: str) -> list[int]:
        """Ids of the KL tokens of ``source`` (no specials)."""
        return self.encode_with_positions(source)[0]

    def prompt(self, theta_class: str, signature: str | None = None) -> list[int]:
        """``<bos> <theta:C> [<sig> signature] <sep>``."""
        key = _theta_token(theta_class)
        if key not in self.index:
            raise ValueError(f"unknown Θ class {theta_class!r}; the tokenizer knows {self.classes}")
        ids = [self.bos_id, self.index[key]]
        if signature is not None:
            ids += [self.sig_id, *self.encode_program(signature)]
        return ids + [self.sep_id]

    def encode(self, source: str, theta_class: str, signature: str | None = None) -> tuple[list[int], int]:
        """The full training sequence and the length of its prompt (the loss starts after it)."""
        prompt = self.prompt(theta_class, signature)
        return prompt + self.encode_program(source) + [self.eos_id], len(prompt)

    # --- decoding ----------------------------------------------------------------------------
    def decode(self, ids: Iterable[int]) -> str:
        """KL source text of the program tokens in ``ids``.

        Everything up to the last ``<sep>`` (the prompt) and from ``<eos>`` on is dropped; other
        specials are skipped. Runs of digit tokens are joined into one literal; line breaks follow
        ``;``, ``{`` and ``}`` (the lexer ignores whitespace, so the text re-lexes identically).
        """
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"token ids out of range [0, {len(self.vocab)}): {bad[:5]}")
        if self.sep_id in ids:
            ids = ids[len(ids) - ids[::-1].index(self.sep_id):]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        out: list[str] = []
        prev_digit = False
        for i in ids:
            text = self.vocab[i]
            if text in SPECIALS or text.startswith("<theta:"):
                prev_digit = False
                continue
            digit = text in _DIGITS
            if digit and prev_digit:
                out[-1] += text
            else:
                out.append(text)
            prev_digit = digit
        lines, line = [], []
        for t in out:
            line.append(t)
            if t in (";", "{", "}"):
                lines.append(" ".join(line))
                line = []
        if line:
            lines.append(" ".join(line))
        return "\n".join(lines)

    # --- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON/checkpoint-friendly form."""
        return {"classes": list(self.classes), "identifiers": list(self.identifiers)}

    @classmethod
    def from_dict(cls, data: dict) -> "KLTokenizer":
        return cls(data["classes"], data["identifiers"])
