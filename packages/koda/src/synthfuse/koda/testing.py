"""Test and benchmark helpers for distributed KODA training (not used at run time).

The rank functions that :func:`~synthfuse.shared.distributed.spawn_local` starts must be
importable by name, so they live here: :func:`two_rank_scenarios` runs every 2-rank check of
``tests/test_koda_parallel.py`` in one process group (starting ranks costs seconds), and
:func:`memory_scenario` measures model-state bytes for ``benchmarks/koda_memory.py``.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from synthfuse.koda.model.transformer import KodaModelConfig, KodaTransformer
from synthfuse.koda.topology_model import fit_ring_allreduce, time_allreduce
from synthfuse.koda.train.config import ParallelConfig, load_config
from synthfuse.koda.train.parallel import parallelize
from synthfuse.koda.train.trainer import SHARDED, KodaTrainer
from synthfuse.shared.distributed import (
    DistributedEnv, barrier, count_parameters, latest_checkpoint, measure_memory, optimizer_states_per_param,
    seed_everything, zero_memory,
)
from synthfuse.shared.distributed.testing import full_state

__all__ = [
    "PARITY_RUNS", "STEPS", "TINY_MODEL", "memory_scenario", "memory_scenarios", "run_config", "train_run",
    "two_rank_scenarios",
]

#: Steps of every parity run.
STEPS = 20

#: The smallest model that still has every part of a block: attention with RoPE and the
#: hyperbolic structural bias, a dense feed-forward, the ball projection (one expert: the
#: Switch MoE's per-rank routing noise and capacity are not batch-split invariant).
TINY_MODEL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "n_experts": 1, "ball_dim": 4,
              "max_len": 160}

_BASE = {
    "model": TINY_MODEL,
    "data": {"n_programs": 48, "seed": 3, "val_fraction": 0.1},
    "loss": {"wgan": {"enabled": False}, "structure": {"enabled": True, "weight": 0.1}},
    "optim": {"lr": 1e-2, "warmup_steps": 3, "grad_clip": 1.0},
    "train": {"steps": STEPS, "batch_size": 4, "log_every": 1, "eval_every": STEPS, "checkpoint_every": 10,
              "progress": False},
}

#: name -> config overrides of the parity runs (2-rank FSDP2 against one process).
PARITY_RUNS: dict[str, dict] = {
    "fsdp-sgd": {"optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "fsdp-adamw": {"optim": {"name": "adamw"}},
    "fsdp-kfac": {"optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                            "kfac": {"enabled": True, "inv_update_period": 5, "damping": 1e-2, "kl_clip": 1e-2}}},
}

#: The resume check's run: DDP with the Switch MoE and the WGAN-GP critic on -- everything that
#: draws random numbers, so an exact resume shows the per-step reseeding works -- and DDP's
#: bucket size planned from all-reduces timed on the job's own process group.
RESUME_RUN = {"model": {"n_experts": 2}, "loss": {"wgan": {"enabled": True, "n_critic": 2, "critic_channels": 8}},
              "parallel": {"strategy": "ddp", "measure_comm": True}}


def run_config(overrides: dict | None = None, **sections: dict) -> dict:
    """The parity runs' base config merged section by section with ``overrides`` and ``sections``."""
    data = copy.deepcopy(_BASE)
    for extra in (overrides or {}, sections):
        for section, values in extra.items():
            _merge(data.setdefault(section, {}), values)
    return data


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _summary(trainer: KodaTrainer) -> dict[str, Any]:
    """History, final full parameters (model and critic), step and communication plan: what the tests compare."""
    out = {"history": trainer.history, "params": full_state(trainer.model), "step": trainer.step,
           "plan": trainer.plan.to_dict()}
    if trainer.critic is not None:
        out["critic"] = {k: v.detach().cpu().clone() for k, v in trainer.critic.state_dict().items()}
    return out


def train_run(env: DistributedEnv | None, config: dict, out_dir: str, steps: int = STEPS,
              resume: bool = False) -> dict[str, Any]:
    """Train ``config`` to ``steps`` in ``out_dir`` (one process, or this rank of a group); return :func:`_summary`."""
    trainer = KodaTrainer(load_config(config), out_dir=out_dir, resume=resume)
    trainer.fit(steps=steps)
    return _summary(trainer)


def memory_scenario(env: DistributedEnv, model: dict, *, optimizer: str = "adamw", strategy: str = "fsdp",
                    balanced: bool = True, vocab_size: int = 104) -> dict[str, Any]:
    """One training step of a KODA model sharded by :func:`~synthfuse.koda.train.parallel.parallelize`,
    then this rank's measured model-state bytes and ZeRO's prediction.

    ``model``: :class:`~synthfuse.koda.model.KodaModelConfig` fields. The prediction is stage 3
    for FSDP and 0 for DDP or one process (:func:`~synthfuse.shared.distributed.zero_memory`).
    """
    seed_everything(0)
    net_model = KodaTransformer(KodaModelConfig(vocab_size=vocab_size, **model))
    net = parallelize(net_model, ParallelConfig(strategy=strategy, balanced_shards=balanced), env)
    if optimizer == "adamw":
        opt = torch.optim.AdamW(net_model.parameters(), lr=1e-3)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(net_model.parameters(), lr=1e-2, momentum=0.9)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    tokens = torch.randint(0, vocab_size, (2, 12), generator=torch.Generator().manual_seed(env.rank),
                           device="cpu").to(env.device)
    out = net(tokens)
    loss = F.cross_entropy(out.logits[:, :-1].reshape(-1, vocab_size), tokens[:, 1:].reshape(-1)) + out.balance_loss
    loss.backward()
    opt.step()
    sharded = strategy == "fsdp" and env.is_distributed
    predicted = zero_memory(count_parameters(net_model), env.world_size if sharded else 1,
                            stage=3 if sharded else 0, optimizer_states=optimizer_states_per_param(opt))
    return {"measured": measure_memory(net_model, opt).as_dict(), "predicted": predicted.as_dict(),
            "num_params": count_parameters(net_model), "rank": env.rank, "world_size": env.world_size}


def memory_scenarios(env: DistributedEnv, model: dict, runs: list[dict]) -> list[dict[str, Any]]:
    """:func:`memory_scenario` for each ``runs`` entry (its keyword arguments), in order."""
    return [memory_scenario(env, model, **run) for run in runs]


def two_rank_scenarios(env: DistributedEnv, workdir: str) -> dict[str, Any]:
    """Every 2-rank check of the KODA tests, in one process group.

    - ``parity``: each of :data:`PARITY_RUNS` trained :data:`STEPS` steps (checkpoints at 10, 20);
    - ``memory``: :func:`memory_scenario` of a 4-expert model under FSDP2 with AdamW;
    - ``uninterrupted`` / ``resumed``: :data:`RESUME_RUN` (MoE + critic) trained 20 steps, then
      its step-20 checkpoint removed and a fresh trainer resumed from step 10 to 20;
    - ``save_crash``: a save whose shard writer fails on rank 1 (message, and ``latest`` after);
    - ``allreduce``: gloo all-reduce times of 1 KiB - 1 MiB on this group and their ring-model fit.
    """
    root = Path(workdir)
    sizes = [1 << e for e in (10, 14, 17, 20)]
    times = time_allreduce(sizes, repeats=3)
    fit = fit_ring_allreduce(sizes, times, env.world_size)
    out: dict[str, Any] = {"parity": {}, "allreduce": {"bytes": sizes, "seconds": times.tolist(),
                                                       "alpha": fit.alpha, "beta_byte": fit.beta_byte, "r2": fit.r2}}
    for name, overrides in PARITY_RUNS.items():
        out["parity"][name] = train_run(env, run_config(overrides), str(root / name))
    out["memory"] = memory_scenario(env, {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 4,
                                          "moe_every": 1, "ball_dim": 4, "max_len": 32})

    resume_dir = root / "resume"
    out["uninterrupted"] = train_run(env, run_config(RESUME_RUN), str(resume_dir))
    if env.is_main:  # forget step 20: the next trainer must resume from step 10
        shutil.rmtree(resume_dir / SHARDED / f"step_{STEPS:08d}")
        (resume_dir / SHARDED / "latest").unlink()
    barrier()
    trainer = KodaTrainer(load_config(run_config(RESUME_RUN)), out_dir=resume_dir, resume=True)
    out["resumed_from"] = trainer.step
    trainer.fit(steps=STEPS)
    out["resumed"] = _summary(trainer)

    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    original = FileSystemWriter.write_data

    def fail_on_rank1(self, plan, planner):
        if env.rank == 1:
            raise OSError("simulated crash while writing shards")
        return original(self, plan, planner)

    trainer.train_step()  # step 21, then a save that dies
    FileSystemWriter.write_data = fail_on_rank1
    try:
        trainer.save()
        out["save_crash"] = None
    except (OSError, RuntimeError) as err:
        out["save_crash"] = f"{type(err).__name__}: {err}"
    finally:
        FileSystemWriter.write_data = original
    out["latest_after_crash"] = str(latest_checkpoint(resume_dir / SHARDED))
    return out
