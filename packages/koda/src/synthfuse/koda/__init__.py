"""synthfuse.koda: program synthesis with complexity proofs.

Public API (imported lazily, so ``import synthfuse.koda`` loads neither torch nor sympy)
-----------------------------------------------------------------------------------------
Language KL (:mod:`synthfuse.koda.lang`)
    :func:`parse`, :func:`pretty`, :func:`check`, :func:`load` (parse + check),
    :class:`Interpreter`, :func:`run`, the AST module :mod:`~synthfuse.koda.lang.ast`.
Analysis (:mod:`synthfuse.koda.analysis`)
    :func:`akra_bazzi`, :func:`solve`, :func:`solve_p`, :func:`master_theorem`,
    :class:`Recurrence`, :func:`parse_recurrence`, :class:`Theta`, :func:`theta_of`,
    :func:`recurrence_of`, :func:`verify`, :func:`measure`, graphs
    (:func:`ast_graph`, :func:`control_flow_graph`, :func:`program_graph`,
    :func:`laplacian_spectrum`, :func:`graph_betti`), topology (:func:`betti_numbers`,
    :func:`hodge_laplacian`, :func:`boundary_matrix`, :func:`clique_complex`,
    :func:`hypergraph_complex`), and Poincaré embeddings (:func:`embed_tree`,
    :func:`euclidean_embedding`, :func:`sarkar_embedding`).
Data (:mod:`synthfuse.koda.data`)
    :data:`THETA_CLASSES`, :func:`generate`, :func:`write_shards`, :func:`read_shards`,
    :func:`topological_signature`, :func:`distill`.
Model, optimizer, training (issue 10: :mod:`synthfuse.koda.model`, :mod:`synthfuse.koda.optim`,
:mod:`synthfuse.koda.topology_model`, :mod:`synthfuse.koda.train`)
    :class:`KodaTransformer`, :class:`KodaModelConfig`, :class:`KLTokenizer`, :class:`KFAC`,
    :class:`Torus`, :class:`NetworkModel`, :func:`fit_ring_allreduce`, :class:`RunConfig`,
    :func:`load_config`, :class:`KodaTrainer`.
Decoding, verified synthesis, RL from the verifier (issue 11: :mod:`synthfuse.koda.decode`,
:mod:`synthfuse.koda.synthesis`, :mod:`synthfuse.koda.train.rl`)
    :func:`greedy`, :func:`sample`, :func:`contrastive_search`, :func:`make_prompts`,
    :func:`check_program`, :func:`synthesize`, :class:`VerifierRL`.
Errors (:mod:`synthfuse.koda.errors`)
    :class:`KodaError` and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthfuse.koda.__about__ import __version__
from synthfuse.koda.errors import (KodaAnalysisError, KodaError, KodaRuntimeError, KodaSyntaxError, KodaTypeError,
                                   OutOfScopeError, StepBudgetExceeded)

_LAZY = {
    "synthfuse.koda.lang": ("Interpreter", "check", "load", "parse", "pretty", "run"),
    "synthfuse.koda.analysis": (
        "Recurrence", "Theta", "akra_bazzi", "ast_graph", "betti_numbers", "boundary_matrix", "clique_complex",
        "control_flow_graph", "graph_betti", "hodge_laplacian", "hypergraph_complex", "laplacian_spectrum",
        "master_theorem", "measure", "parse_recurrence", "program_graph", "recurrence_of", "solve", "solve_p",
        "theta_of", "verify"),
    "synthfuse.koda.analysis.hyperbolic": ("embed_tree", "euclidean_embedding", "sarkar_embedding"),
    "synthfuse.koda.data": ("THETA_CLASSES", "distill", "generate", "read_shards", "topological_signature",
                            "write_shards"),
    "synthfuse.koda.model": ("KLTokenizer", "KodaModelConfig", "KodaTransformer"),
    "synthfuse.koda.optim": ("KFAC",),
    "synthfuse.koda.decode": ("contrastive_search", "greedy", "sample"),
    "synthfuse.koda.synthesis": ("check_program", "make_prompts", "synthesize"),
    "synthfuse.koda.train.rl": ("VerifierRL",),
    "synthfuse.koda.topology_model": ("NetworkModel", "Torus", "fit_ring_allreduce"),
    "synthfuse.koda.train": ("KodaTrainer", "RunConfig", "load_config"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = sorted([
    "__version__", "KodaAnalysisError", "KodaError", "KodaRuntimeError", "KodaSyntaxError", "KodaTypeError",
    "OutOfScopeError", "StepBudgetExceeded", *_WHERE,
])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synthfuse.koda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
