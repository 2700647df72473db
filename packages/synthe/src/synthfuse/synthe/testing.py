"""Helpers for tests and demonstrations of SYNTHE models (not used by the model itself)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from synthfuse.synthe.model import Synthe


@contextlib.contextmanager
def recording_scores(model: Synthe) -> Iterator[dict[str, list[Tensor]]]:
    """Record, while the context is open, every router exit probability and Kalman confidence.

    Yields ``{"exit_probability": [...], "confidence": [...]}``: one flat tensor per exit point
    (``sigmoid`` of the router score) and per block (confidence of each token it ran) and call.
    """
    sinks: dict[str, list[Tensor]] = {"exit_probability": [], "confidence": []}

    def recording(method, sink, transform):
        def wrapper(*args, **kwargs):
            out = method(*args, **kwargs)
            sink.append(transform(out).detach().flatten())
            return out

        return wrapper

    model.router.score = recording(model.router.score, sinks["exit_probability"], torch.sigmoid)
    for block in model.blocks:
        block.kalman.filter = recording(block.kalman.filter, sinks["confidence"], lambda out: out.confidence)
    try:
        yield sinks
    finally:  # drop the instance attributes: the class methods are back
        del model.router.score
        for block in model.blocks:
            del block.kalman.filter


def calibrate_thresholds(model: Synthe, input_ids: Tensor, quantile: float = 0.5) -> None:
    """Set the router and probe thresholds at a quantile of their scores on ``input_ids``.

    With the default median, about half of the tokens leave at each exit point and the probes
    fire on about half of the tokens, so an untrained model exercises both paths (a fresh
    router never reaches the default 0.9 threshold).
    """
    with recording_scores(model) as sinks, torch.no_grad():
        model(input_ids, early_exit=False)
    model.router.threshold = torch.cat(sinks["exit_probability"]).double().quantile(quantile).item()
    probe_threshold = torch.cat(sinks["confidence"]).double().quantile(quantile).item()
    for block in model.blocks:
        if block.probe is not None:
            block.probe.threshold = probe_threshold


# -- training: data with ragged targets and the 2-rank scenarios of test_synthe_parallel --------
@dataclass
class RaggedTargets:
    """A synthetic task whose targets are masked (-100) at random, a different count per row.

    Every row scores a different number of tokens (and of ``stride``-th tokens), so a loss
    averaged per rank or per micro-batch differs from the mean over the whole batch: the case
    the trainer's global normalisation exists for. Deterministic in the batch's generator.
    """

    task: str = "copy"
    seq_len: int = 16
    vocab: int = 12

    def __post_init__(self) -> None:
        from synthfuse.synthe.train.synthetic import SyntheticData

        self.source = SyntheticData(self.task, self.seq_len, self.vocab)

    @property
    def vocab_size(self) -> int:
        return self.source.vocab_size

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = self.source.batch(split, batch_size, generator)
        keep = torch.rand(y.shape, generator=generator) < torch.rand(batch_size, 1, generator=generator)
        return x, y.masked_fill(~keep, -100)


def parallel_run_config(parallel: str = "none", steps: int = 20, model_type: str = "synthe", **train) -> dict:
    """A small run (4 blocks, every SYNTHE feature on, batch 8 of 16 tokens, AdamW at 1e-3) as a dict."""
    from synthfuse.synthe.config import SyntheConfig
    from synthfuse.synthe.train.config import DataConfig, RunConfig, TrainConfig

    model = SyntheConfig(d_model=16, n_layers=4, n_heads=2, chunk_size=16, probe_window=8, sentence_len=4,
                         discourse_len=16, probe_layers=[1, 3], exit_layers=[1, 2], vocab_size=12,
                         probe_threshold=2.0)  # every token fires: no threshold switch amplifies rounding
    values = dict(batch_size=8, lr=1e-3, min_lr=1e-4, warmup_steps=2, max_steps=steps, eval_interval=10,
                  eval_batches=2, log_interval=5, checkpoint_interval=10, seed=3, device="cpu", parallel=parallel)
    values.update(train)
    return RunConfig(model_type, model, DataConfig(name="copy", seq_len=16, vocab_size=12),
                     TrainConfig(**values)).to_dict()


def train_run(env, run: dict, out_dir: str | None = None, stop_after: int | None = None,
              resume: bool = False) -> dict:
    """Train ``run`` on :class:`RaggedTargets`; return ``{"history", "params", "step"}`` (full parameters).

    ``env`` is unused (the trainer joins the current process group itself); it is there so
    :func:`~synthfuse.shared.distributed.spawn_local` can start it on every rank.
    """
    from synthfuse.shared.distributed.testing import full_state
    from synthfuse.synthe.train.config import RunConfig
    from synthfuse.synthe.train.trainer import Trainer

    config = RunConfig.from_dict(run)
    if out_dir is not None:
        config = config.replace(train={"out_dir": out_dir})
    trainer = Trainer(config, resume=resume, progress=False, data=RaggedTargets())
    trainer.fit(stop_after=stop_after)
    history = [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")} for r in trainer.history]
    return {"history": history, "params": full_state(trainer.model), "step": trainer.step}


#: The 2-rank runs compared with one process: name -> (model type, steps, TrainConfig overrides).
#: SYNTHE at this toy size is chaotic -- a 1e-7 change of the weights grows ~10x per AdamW step
#: (the same in one process) -- so float32 rounding differences between the reduction orders of
#: one and two processes outgrow 1e-5 after a few steps; its 20-step parity runs use float64, where
#: the same growth stays far below 1e-5. The float32 SYNTHE runs are short; the Transformer's
#: run 20 steps in float32.
PARALLEL_RUNS = {
    "transformer-fsdp": ("transformer", 20, {"parallel": "fsdp"}),
    "transformer-ddp-accum": ("transformer", 20, {"parallel": "ddp", "grad_accum": 2}),
    "synthe-fsdp-ac-accum": ("synthe", 4, {"parallel": "fsdp", "grad_accum": 2, "activation_checkpointing": True}),
    "synthe-ddp": ("synthe", 4, {"parallel": "ddp"}),
    "synthe-fsdp-f64-accum": ("synthe", 20, {"parallel": "fsdp", "dtype": "float64", "grad_accum": 2}),
    "synthe-ddp-f64": ("synthe", 20, {"parallel": "ddp", "dtype": "float64"}),
    "synthe-fsdp": ("synthe", 20, {"parallel": "fsdp"}),
}
#: The runs that write sharded checkpoints (steps 10 and 20) under ``root/<name>``.
CHECKPOINTED = ("transformer-fsdp", "synthe-fsdp")
#: The runs whose rank-1 loss turns NaN at step 3 (:func:`nonfinite_run`), checkpointed at step 2.
NONFINITE_RUNS = {"fsdp-accum": {"parallel": "fsdp", "grad_accum": 2}, "ddp": {"parallel": "ddp"}}


def nonfinite_run_config(name: str) -> dict:
    """The 5-step run :data:`NONFINITE_RUNS` names, checkpointed every 2 steps."""
    return parallel_run_config(steps=5, checkpoint_interval=2, **NONFINITE_RUNS[name])


def two_rank_scenarios(env, root: str) -> dict:
    """Every 2-rank check of ``test_synthe_parallel`` in one process group (spawning costs seconds).

    The :data:`PARALLEL_RUNS`, then ``resumed``: a fresh trainer resuming ``synthe-fsdp`` from
    its step-10 sharded checkpoint (copied alone to ``root/resume``) and training to step 20;
    then ``nonfinite``: the :data:`NONFINITE_RUNS` with rank 1's loss NaN at step 3
    (:func:`nonfinite_run`, in ``root/nonfinite/<name>``).
    """
    import shutil

    from synthfuse.shared.distributed import barrier

    out = {}
    for name, (model_type, steps, overrides) in PARALLEL_RUNS.items():
        out_dir = f"{root}/{name}" if name in CHECKPOINTED else None
        out[name] = train_run(env, parallel_run_config(steps=steps, model_type=model_type, **overrides), out_dir)
    if env.rank == 0:
        shutil.copytree(f"{root}/synthe-fsdp/checkpoints/step_00000010", f"{root}/resume/checkpoints/step_00000010")
    barrier()
    out["resumed"] = train_run(env, parallel_run_config("fsdp"), f"{root}/resume", resume=True)
    out["nonfinite"] = {name: nonfinite_run(env, nonfinite_run_config(name), f"{root}/nonfinite/{name}", 3, 1)
                        for name in NONFINITE_RUNS}
    return out


def nonfinite_run(env, run: dict, out_dir: str, bad_step: int, bad_rank: int) -> dict:
    """Train ``run`` with the LM loss of rank ``bad_rank`` made NaN at training step ``bad_step``.

    The poison is a NaN factor on that rank's forward-pass loss (every micro-batch of the step),
    so its backward pass still runs. Returns ``{"error": {"message", "step", "ranks"} or None,
    "step": the trainer's step afterwards, "latest": the latest sharded checkpoint's name,
    "params": the full parameters afterwards}``.
    """
    from synthfuse.shared.distributed import NonFiniteError, latest_checkpoint
    from synthfuse.shared.distributed.testing import full_state
    from synthfuse.synthe.train.config import RunConfig
    from synthfuse.synthe.train.trainer import SHARDED, Trainer

    trainer = Trainer(RunConfig.from_dict(run).replace(train={"out_dir": out_dir}), progress=False,
                      data=RaggedTargets())
    forward = trainer._forward

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        if trainer.model.training and trainer.step + 1 == bad_step and env.rank == bad_rank:
            out["losses"]["lm"] = out["losses"]["lm"] * float("nan")
        return out

    trainer._forward = poisoned
    error = None
    try:
        trainer.fit()
    except NonFiniteError as err:
        error = {"message": str(err), "step": err.step, "ranks": err.ranks}
    latest = latest_checkpoint(f"{out_dir}/{SHARDED}")
    return {"error": error, "step": trainer.step, "latest": latest.name if latest else None,
            "params": full_state(trainer.model)}


def throughput_run(env, run: dict, steps: int, warmup: int = 1) -> dict:
    """Train ``run`` for ``warmup + steps`` steps (no files); per-step seconds after the warm-up.

    For ``benchmarks/synthe_scale.py`` (started on each rank by
    :func:`~synthfuse.shared.distributed.spawn_local`). Returns ``{"seconds": [...], "losses":
    [...], "flops_per_token": F, "world_size": W}``, ``F`` the timed steps' mean training FLOPs per token.
    """
    import time

    from synthfuse.shared.distributed import barrier
    from synthfuse.synthe.train.config import RunConfig
    from synthfuse.synthe.train.trainer import Trainer

    trainer = Trainer(RunConfig.from_dict(run), progress=False)
    seconds, losses, flops = [], [], []
    for i in range(warmup + steps):
        barrier()
        start = time.perf_counter()
        record = trainer.train_step()
        if trainer.device.type == "cuda":  # the step's kernels are done before the clock stops
            torch.cuda.synchronize(trainer.device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
            losses.append(record["loss"])
            flops.append(record["flops_per_token"])
    return {"seconds": seconds, "losses": losses, "flops_per_token": sum(flops) / len(flops),
            "world_size": trainer.env.world_size}
