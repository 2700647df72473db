"""Verified synthesis: prompts, decoding, and checking every program with the verifier.

- :class:`Prompt`, :func:`make_prompts`, :func:`resolve_class`, :func:`class_theta`, :func:`class_of` (:mod:`.prompts`);
- :class:`ProgramCheck`, :func:`check_program`, :func:`verifier_reward`, :func:`canonical_form` (:mod:`.check`);
- :func:`load_model`, :func:`decode`, :func:`synthesize`, :func:`summarize`, :func:`confusion` (:mod:`.run`);
- ``synthfuse koda synthesize`` (:mod:`.command`) and the demo part :func:`synthesis_demo` (:mod:`.demo`).

Loaded on first use, so ``import synthfuse.koda.synthesis`` does not import torch.
"""

from __future__ import annotations

from synthfuse.koda._lazy import lazy_attributes

_EXPORTS = {
    "Prompt": "prompts", "make_prompts": "prompts", "resolve_class": "prompts", "class_theta": "prompts",
    "class_of": "prompts",
    "ProgramCheck": "check", "check_program": "check", "verifier_reward": "check", "canonical_form": "check",
    "load_model": "run", "decode": "run", "synthesize": "run", "summarize": "run", "METHODS": "run",
    "confusion": "run", "NO_CLASS": "run",
    "synthesis_demo": "demo",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_attributes(globals(), _EXPORTS)
