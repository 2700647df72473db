"""Training KODA models: config, data, WGAN-GP critic, communication plan and the trainer.

Public API (loaded on first use, so ``import synthfuse.koda.train`` does not import torch):

- :class:`RunConfig`, :func:`load_config` -- the YAML run config (:mod:`.config`);
- :class:`KodaTrainer`, :func:`lr_at` -- the training loop (:mod:`.trainer`);
- :class:`ProgramCorpus`, :class:`Batch` -- tokenized generated programs (:mod:`.data`);
- :class:`SequenceCritic`, :func:`gradient_penalty`, :func:`critic_loss` -- WGAN-GP (:mod:`.critic`);
- :class:`CommPlan`, :func:`plan_communication`, :class:`DelayedGradients` (:mod:`.comm`);
- :class:`VerifierRL`, :func:`group_advantages`, :func:`policy_kl` -- RL from the verifier (:mod:`.rl`);
- :class:`ParallelConfig`, :class:`Parallelism`, :func:`parallelize`, :func:`shard_rows` -- data-parallel
  training under ``torchrun`` (:mod:`.parallel`);
- :func:`plot_history` (:mod:`.curves`); :func:`training_demo` (:mod:`.demo`);
- :func:`main` -- ``python -m synthfuse.koda.train`` (:mod:`.command`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RunConfig": "config", "load_config": "config",
    "KodaTrainer": "trainer", "lr_at": "trainer",
    "ProgramCorpus": "data", "Batch": "data",
    "SequenceCritic": "critic", "gradient_penalty": "critic", "critic_loss": "critic",
    "CommPlan": "comm", "plan_communication": "comm", "DelayedGradients": "comm",
    "plot_history": "curves", "training_demo": "demo", "main": "command",
    "VerifierRL": "rl", "group_advantages": "rl", "policy_kl": "rl", "RLConfig": "config",
    "ParallelConfig": "config", "Parallelism": "parallel", "parallelize": "parallel", "shard_rows": "parallel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"synthfuse.koda.train.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synthfuse.koda.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
