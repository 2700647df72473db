"""Data parallelism for plain torch models: process group, FSDP2/DDP, seeding, sampler, checkpoints.

The small functions both KODA and SYNTHE trainers call (torch only; ``pip install
'synthfuse-shared[torch]'``). A training script::

    env = init_distributed()                       # torchrun's RANK/WORLD_SIZE, or one process
    seed_everything(cfg.seed)                      # same weights on every rank
    model = build_model(cfg)                       # knows nothing about sharding
    if env.is_distributed:
        model = apply_fsdp(model, TransformerBlock)   # or apply_ddp(model, env.device)
    seed_everything(cfg.seed, env.rank)            # per-rank randomness from here on
    opt = torch.optim.AdamW(model.parameters())
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    if (ckpt := latest_checkpoint(cfg.out)) is not None:
        info = load_checkpoint(ckpt, model, opt)
        sampler.load_state_dict(info.extra["sampler"])
    ...
    save_checkpoint(cfg.out, step, model, opt, extra={"sampler": sampler.state_dict()})

Modules: ``_runtime`` (:func:`init_distributed`, :func:`choose_backend`, :class:`DistributedEnv`,
collectives), ``_finite`` (:func:`check_finite`: a NaN/inf loss on any rank raises
:class:`NonFiniteError` on every rank), ``_seed``, ``_logging``, ``_parallel`` (:func:`apply_fsdp`,
:func:`apply_ddp`), ``_sampler`` (:class:`ResumableSampler`), ``_checkpoint`` (DCP, atomic), ``_memory`` (measured
vs ZeRO model-state bytes), ``_launch`` (:func:`spawn_local`); :mod:`.testing` holds the test
model and rank functions.
"""

from synthfuse.shared.distributed._checkpoint import (
    CheckpointInfo, checkpoint_info, latest_checkpoint, load_checkpoint, resume_point, save_checkpoint,
)
from synthfuse.shared.distributed._finite import NonFiniteError, check_finite, nonfinite_flags, raise_if_nonfinite
from synthfuse.shared.distributed._launch import spawn_local
from synthfuse.shared.distributed._logging import rank_logger
from synthfuse.shared.distributed._memory import (
    MemoryBreakdown, count_parameters, measure_memory, optimizer_states_per_param, zero_memory,
)
from synthfuse.shared.distributed._parallel import apply_ddp, apply_fsdp
from synthfuse.shared.distributed._runtime import (
    DistributedEnv, all_reduce_mean, all_reduce_sum, barrier, choose_backend, destroy_distributed,
    init_distributed,
)
from synthfuse.shared.distributed._sampler import ResumableSampler
from synthfuse.shared.distributed._seed import rank_seed, seed_everything

__all__ = [
    "CheckpointInfo", "DistributedEnv", "MemoryBreakdown", "NonFiniteError", "ResumableSampler", "checkpoint_info",
    "all_reduce_mean", "all_reduce_sum", "apply_ddp", "apply_fsdp", "barrier", "check_finite", "choose_backend",
    "count_parameters", "destroy_distributed", "init_distributed", "latest_checkpoint", "load_checkpoint",
    "measure_memory", "nonfinite_flags", "optimizer_states_per_param", "raise_if_nonfinite", "rank_logger",
    "rank_seed", "resume_point", "save_checkpoint",
    "seed_everything", "spawn_local", "zero_memory",
]
