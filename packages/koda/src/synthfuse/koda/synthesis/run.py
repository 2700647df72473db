"""Synthesize programs from a trained model and measure them with the verifier.

``synthesize`` decodes one program per prompt (:mod:`synthfuse.koda.decode`) and checks each
(:func:`~synthfuse.koda.synthesis.check.check_program`); ``summarize`` reports

- **parse rate**, **well-typed rate**, **Θ-match rate**: fractions of all outputs passing each gate;
- **distinct**: the number of different well-typed programs up to renaming of identifiers
  (:func:`~synthfuse.koda.synthesis.check.canonical_form`), and **distinct verified**: those
  among the Θ-matching programs (a deterministic decoder writes one program per distinct
  prompt, so both are at most the number of distinct prompts);

and ``confusion`` counts requested class against the class the static route found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from synthfuse.koda.decode import Generation, contrastive_search, greedy, sample
from synthfuse.koda.model.tokenizer import KLTokenizer
from synthfuse.koda.model.transformer import KodaModelConfig, KodaTransformer
from synthfuse.koda.synthesis.check import ProgramCheck, check_program
from synthfuse.koda.synthesis.prompts import Prompt

__all__ = ["METHODS", "NO_CLASS", "confusion", "decode", "load_model", "summarize", "synthesize"]

#: The column of :func:`confusion` for programs without a corpus class (not well typed, no static
#: Θ, or a Θ no class has).
NO_CLASS = "none"

#: Decoding methods by name, with the options each accepts.
METHODS: dict[str, tuple[str, ...]] = {
    "greedy": (),
    "sample": ("temperature", "top_k", "top_p", "seed", "generator"),
    "contrastive": ("alpha", "top_k", "temperature", "top_p", "seed", "generator"),
}


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[KodaTransformer, KLTokenizer, dict]:
    """The model and tokenizer of a training (``checkpoint.pt``) or RL (``rl_checkpoint.pt``) checkpoint.

    Returns ``(model, tokenizer, state)``; the model is in eval mode on ``device``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (train one with `synthfuse koda train --config ...`)")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or not {"model", "tokenizer", "config"} <= set(state):
        raise ValueError(f"{path} is not a KODA checkpoint (needs model, tokenizer and config entries)")
    tokenizer = KLTokenizer.from_dict(state["tokenizer"])
    config = KodaModelConfig(vocab_size=len(tokenizer), **state["config"]["model"])
    model = KodaTransformer(config, device=device)
    model.load_state_dict(state["model"])
    return model.eval(), tokenizer, state


def decode(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Prompt], method: str = "contrastive",
           **options: Any) -> Generation:
    """Decode one program per prompt with ``method`` (``greedy``, ``sample`` or ``contrastive``).

    ``options`` go to the decoder (:data:`METHODS` lists each method's own; ``max_new_tokens``,
    ``constrained`` and ``batch_size`` are common to all).
    """
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {sorted(METHODS)}")
    allowed = set(METHODS[method]) | {"max_new_tokens", "constrained", "batch_size"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to {method} decoding; it takes {sorted(allowed)}")
    fn = {"greedy": greedy, "sample": sample, "contrastive": contrastive_search}[method]
    return fn(model, tokenizer, [p.ids(tokenizer) for p in prompts], **options)


def synthesize(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Prompt],
               method: str = "contrastive", *, step_budget: int = 400_000, batch_size: int = 64,
               progress: Callable[[Iterable, str, int], Iterable] | None = None,
               **options: Any) -> list[ProgramCheck]:
    """Decode and check one program per prompt; returns the checks in prompt order.

    ``progress(iterable, desc, total)`` wraps the decoding batches and the checks (e.g. a
    tqdm bar). Sampling and seeded contrastive search (``temperature > 0``) draw from one
    generator across batches, seeded with ``seed``, so the result does not depend on ``progress``.
    """
    prompts = list(prompts)
    if method in ("sample", "contrastive") and "generator" not in options:
        seed = int(options.pop("seed", 0))
        options["generator"] = torch.Generator(device=model.embed.weight.device).manual_seed(seed)
    wrap = progress or (lambda it, desc, total: it)
    starts = range(0, len(prompts), batch_size)
    sources: list[str] = []
    for start in wrap(starts, f"decoding ({method})", len(starts)):
        sources += decode(model, tokenizer, prompts[start:start + batch_size], method, batch_size=batch_size,
                          **options).sources
    pairs = list(zip(prompts, sources))
    return [check_program(src, p.theta_class, signature=p.signature, step_budget=step_budget)
            for p, src in wrap(pairs, "verifying", len(pairs))]


def summarize(checks: Sequence[ProgramCheck]) -> dict[str, float | int]:
    """Rates (in %) of the three gates, and the numbers of distinct well-typed and Θ-matching programs."""
    if not checks:
        raise ValueError("no checks to summarize")
    n = len(checks)
    headers = [c.header_match for c in checks if c.header_match is not None]
    return {
        "programs": n,
        "parse %": 100.0 * sum(c.parsed for c in checks) / n,
        "well-typed %": 100.0 * sum(c.well_typed for c in checks) / n,
        "Θ-match %": 100.0 * sum(c.theta_match for c in checks) / n,
        "distinct": len({c.canonical for c in checks if c.well_typed}),
        "distinct verified": len({c.canonical for c in checks if c.theta_match}),
        "header match %": 100.0 * sum(headers) / len(headers) if headers else float("nan"),
    }


def confusion(checks: Sequence[ProgramCheck]) -> dict[str, dict[str, int]]:
    """``table[requested][found]``: programs per requested class and per class the static route found.

    ``found`` is :attr:`ProgramCheck.static_class`, or :data:`NO_CLASS`; requested classes appear
    in the order first seen. The diagonal counts programs *of* the requested class by the static
    route (Θ-match further needs the dynamic route to agree).
    """
    table: dict[str, dict[str, int]] = {}
    for c in checks:
        row = table.setdefault(c.theta_class, {})
        found = c.static_class or NO_CLASS
        row[found] = row.get(found, 0) + 1
    return table
