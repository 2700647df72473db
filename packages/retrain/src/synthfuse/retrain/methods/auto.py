r"""AUTO: run a budgeted set of registered methods and keep the best one that dominates θ†.

Each method runs on the same data with the same seed; its θ‡ is judged by
:func:`synthfuse.retrain.verdict.dominates` (θ‡ vs θ†, negative flips vs θ*) on the validation
data. Among the dominating candidates the one with the best score
:math:`\mathrm{acc} - \gamma\,\mathrm{NFR}` (ties: lower NLL) is returned. If none dominates,
the best-scoring candidate is returned, ``details["dominating"]`` is empty,
``details["message"]`` says so plainly and a ``UserWarning`` is issued. A method that would
start after ``budget_s`` seconds of the selector's run is skipped (listed in
``details["skipped"]``); with no budget every method runs and the choice is deterministic.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from synthfuse.retrain.methods._base import Context, MethodOutput, RetrainMethod, _check
from synthfuse.retrain.methods._registry import available_methods, get_method, register
from synthfuse.retrain.verdict import dominates

__all__ = ["Auto", "AutoOptions"]


@dataclass
class AutoOptions:
    """Options of :class:`Auto`.

    methods : list of str
        Registered methods to try, in order.
    method_options : dict of str to dict
        Options per method (e.g. ``{"til": {"epochs": 10}}``); unknown keys raise as usual.
    budget_s : float, optional
        Do not start another method after this many seconds (``None``: run them all).
    nfr_penalty : float
        :math:`\\gamma` in the score.
    """

    methods: list[str] = field(default_factory=lambda: ["til", "fdd", "dbsd", "sb"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget_s: float | None = None
    nfr_penalty: float = 1.0

    def __post_init__(self) -> None:
        _check(len(self.methods) > 0, "methods must name at least one method")
        for name in self.methods:
            _check(name != "auto", "auto cannot select itself")
            _check(name in available_methods(), f"unknown method {name!r} in methods; available: {available_methods()}")
        extra = sorted(set(self.method_options) - set(self.methods))
        _check(not extra, f"method_options given for methods not in methods: {extra}")
        _check(self.budget_s is None or self.budget_s > 0, f"budget_s must be > 0 or None, got {self.budget_s}")
        _check(self.nfr_penalty >= 0, f"nfr_penalty must be >= 0, got {self.nfr_penalty}")


@register
class Auto(RetrainMethod):
    """The selector (module docstring)."""

    name = "auto"
    Options = AutoOptions

    def run(self, ctx: Context) -> MethodOutput:
        o = self.options
        runners = [get_method(n)(**o.method_options.get(n, {})) for n in o.methods]  # validate all first
        began = time.monotonic()
        results, skipped = [], []
        for name, runner in zip(o.methods, runners):
            if o.budget_s is not None and time.monotonic() - began > o.budget_s:
                skipped.append(name)
                continue
            sub = dataclasses.replace(ctx, trace=[])
            out = runner.run(sub).model.eval()
            ctx.trace.extend({"method": name, **row} for row in sub.trace)
            m = ctx.metrics(out)
            verdict = dominates(out, ctx.superior, ctx.incumbent, ctx.val, seed=ctx.seed)
            results.append((bool(verdict), m.accuracy - o.nfr_penalty * m.negative_flip_rate, -m.nll, name, out, m))
        ranked = sorted(results, key=lambda r: r[:3], reverse=True)  # stable: earlier method wins ties
        dominating = [r[3] for r in results if r[0]]
        chosen = ranked[0]
        details: dict[str, Any] = {
            "chosen": chosen[3], "dominating": dominating, "skipped": skipped,
            "scores": {r[3]: {"dominates": r[0], **r[5].as_dict()} for r in results},
        }
        if not dominating:
            details["message"] = (f"no candidate dominates θ† (tried {[r[3] for r in results]}); "
                                  f"returning the best-scoring one, {chosen[3]!r}")
            warnings.warn(details["message"], UserWarning, stacklevel=2)
        return MethodOutput(chosen[4], details)
