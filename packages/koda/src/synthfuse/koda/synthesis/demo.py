"""The synthesis part of the ``koda`` demo section: programs written by the demo's model, each verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["synthesis_demo"]

#: Classes the demo asks for (a handful of textbook ones).
DEMO_CLASSES = ("log n", "n", "n log n", "n^2", "n^log2(3)", "n^log2(7)")


def synthesis_demo(ctx: Any, checkpoint: str | Path) -> dict:
    """Synthesize a program per class of :data:`DEMO_CLASSES` (all 17 classes twice with ``ctx.full``)
    by greedy decoding and by contrastive search, and verify each one.

    Writes the ``synthesis`` table (one row per program: the verdicts and the program's first
    lines) and ``synthesis_summary`` (rates per method); returns the Θ-match rate per method.
    """
    from synthfuse.koda.synthesis.prompts import make_prompts
    from synthfuse.koda.synthesis.run import load_model, summarize, synthesize

    model, tokenizer, _ = load_model(checkpoint)
    prompts = make_prompts(34, seed=ctx.seed) if ctx.full else make_prompts(len(DEMO_CLASSES), DEMO_CLASSES,
                                                                            seed=ctx.seed, signature_prob=0.0)
    rows, summary, headline = [], [], {}
    for method, options in (("greedy", {}), ("contrastive", {"alpha": 0.4, "top_k": 4})):
        checks = synthesize(model, tokenizer, prompts, method, max_new_tokens=160, step_budget=100_000,
                            progress=ctx.progress, **options)
        for check in checks:
            lines = check.source.splitlines()
            rows.append({"method": method, "requested Θ": check.theta_class, "parses": check.parsed,
                         "well typed": check.well_typed, "Θ verified": check.theta_match,
                         "static Θ": check.static_theta or "",
                         "program (first lines)": " ".join(lines[:4]) + (" ..." if len(lines) > 4 else "")})
        summary.append({"method": method, **summarize(checks)})
        headline[f"theta_match_{method}"] = summary[-1]["Θ-match %"]
    ctx.table("synthesis", rows, title="Programs written by the demo's model, parsed, type-checked and verified")
    ctx.table("synthesis_summary", summary, title="Verified synthesis with the demo's model")
    return headline
