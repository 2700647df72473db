"""Synthesis prompts: a requested Θ class and, optionally, the header of the function to write.

The headers come from programs of the corpus generator drawn with a seed the training corpus
never uses (``PROMPT_SEED + seed``), so a prompt states what to write, never how.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Sequence

from synthfuse.koda.analysis.theta import Theta, theta_of
from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.data.generator import generate_one
from synthfuse.koda.errors import KodaError
from synthfuse.koda.lang.parser import parse
from synthfuse.koda.model.tokenizer import KLTokenizer

__all__ = ["PROMPT_SEED", "Prompt", "class_of", "class_theta", "make_prompts", "resolve_class"]

#: Generator seeds of prompt headers start here (training corpora use small seeds).
PROMPT_SEED = 1_000_003


@functools.lru_cache(maxsize=None)
def class_theta(theta_class: str) -> Theta:
    """The Θ of a corpus class name, e.g. ``"n^log2(3)"`` -> ``Θ(n^(log 3/log 2))``."""
    if theta_class not in THETA_CLASSES:
        raise ValueError(f"unknown Θ class {theta_class!r}; known classes: {list(THETA_CLASSES)}")
    return theta_of(THETA_CLASSES[theta_class][0].theta)


def class_of(theta: Theta) -> str | None:
    """The corpus class whose Θ equals ``theta`` (``None`` when no class has it)."""
    for name in THETA_CLASSES:
        if class_theta(name) == theta:
            return name
    return None


def resolve_class(text: str) -> str:
    """The corpus class named by ``text``: a class name, or a Θ expression equal to a class's Θ.

    ``"n log n"``, ``"Theta(n*log(n))"`` and ``"n^1.5"`` all resolve; anything else raises
    ``ValueError`` listing the classes.
    """
    text = text.strip()
    if text in THETA_CLASSES:
        return text
    try:
        wanted = theta_of(text)
    except (KodaError, ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is neither a Θ class name nor a Θ expression ({exc}); "
                         f"classes: {list(THETA_CLASSES)}") from None
    name = class_of(wanted)
    if name is not None:
        return name
    raise ValueError(f"Θ({wanted}) is not one of the classes the model knows: {list(THETA_CLASSES)}")


@dataclass(frozen=True)
class Prompt:
    """What to synthesize: a Θ class and an optional header ``def name(p: int) [-> int]``."""

    theta_class: str
    signature: str | None = None

    def ids(self, tokenizer: KLTokenizer) -> list[int]:
        """``<bos> <theta:C> [<sig> header] <sep>`` (:meth:`KLTokenizer.prompt`)."""
        return tokenizer.prompt(self.theta_class, self.signature)


def _header(seed: int, index: int, theta_class: str, rng: random.Random) -> str:
    from synthfuse.koda.train.data import signature_of

    family = rng.choice(THETA_CLASSES[theta_class])
    return signature_of(parse(generate_one(PROMPT_SEED + seed, index, family).source).entry)


def make_prompts(n: int, classes: Sequence[str] | None = None, *, seed: int = 0,
                 signature_prob: float = 0.5) -> list[Prompt]:
    """``n`` prompts cycling through ``classes`` (default: every corpus class).

    Prompt ``i`` asks for class ``classes[i % len(classes)]``; with probability
    ``signature_prob`` it also gives a header drawn from the generator (seeded by ``seed``
    and ``i``, so the list is deterministic).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 0 <= signature_prob <= 1:
        raise ValueError(f"signature_prob must lie in [0, 1], got {signature_prob}")
    classes = list(THETA_CLASSES) if classes is None else [resolve_class(c) for c in classes]
    if not classes:
        raise ValueError("give at least one Θ class")
    prompts = []
    for i in range(n):
        rng = random.Random(f"prompt/{seed}/{i}")
        cls = classes[i % len(classes)]
        prompts.append(Prompt(cls, _header(seed, i, cls, rng) if rng.random() < signature_prob else None))
    return prompts
