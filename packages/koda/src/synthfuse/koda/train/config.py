"""The training configuration: YAML validated into dataclasses (unknown keys are errors).

Layout of the YAML file (every section and key is optional; defaults below)::

    model:  {d_model, n_layers, n_heads, d_ff, n_experts, moe_every, router_temperature,
             capacity_factor, ball_dim, curvature, ball_layer, structural_bias, max_len,
             rope_base, init}                      # KodaModelConfig minus vocab_size
    data:   {n_programs, seed, val_fraction, signature_prob, max_identifiers}
    loss:   {ce: {enabled, weight}, balance: {enabled, weight},
             structure: {enabled, weight, scale},
             wgan: {enabled, weight, lambda_gp, n_critic, critic_lr, critic_channels,
                    gumbel_temperature}}
    optim:  {name, lr, weight_decay, momentum, betas, warmup_steps, min_lr_ratio, grad_clip,
             kfac: {enabled, damping, ema_decay, inv_update_period, kl_clip}}
    comm:   {world_size, torus_k, torus_n, alpha, beta, gamma, beta_byte, step_seconds, delayed}
    train:  {steps, batch_size, log_every, eval_every, checkpoint_every, out_dir, seed, device,
             progress}
    rl:     {enabled, steps, prompts_per_step, group_size, kl_coef, lr, weight_decay, grad_clip,
             max_new_tokens, signature_prob, step_budget, seed, log_every, checkpoint_every,
             reward: {parse, typecheck, theta}}     # the verifier-reward phase after training
    parallel: {strategy, backend, reshard_after_forward, balanced_shards, keep_checkpoints,
               measure_comm}                # several processes (torchrun); train.batch_size is global
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from synthfuse.koda.model.transformer import KodaModelConfig
from synthfuse.shared.config import YamlConfig, validate_mapping

__all__ = [
    "CommConfig", "DataConfig", "KFACConfig", "LossConfig", "OptimConfig", "ParallelConfig", "RLConfig",
    "RewardConfig", "RunConfig", "TermConfig", "TrainConfig", "WGANConfig", "StructureConfig", "load_config",
]


def _model_defaults() -> dict:
    return {f.name: f.default for f in dataclasses.fields(KodaModelConfig) if f.name != "vocab_size"}


@dataclass
class DataConfig(YamlConfig):
    """Training corpus from :func:`synthfuse.koda.data.generate`.

    ``signature_prob``: fraction of prompts that also state the entry function's header.
    ``max_identifiers``: identifier vocabulary of the tokenizer (most frequent first).
    """

    n_programs: int = 4000
    seed: int = 0
    val_fraction: float = 0.05
    signature_prob: float = 0.5
    max_identifiers: int = 128


@dataclass
class TermConfig(YamlConfig):
    """A loss term that can be switched off."""

    enabled: bool = True
    weight: float = 1.0


@dataclass
class StructureConfig(TermConfig):
    """Hyperbolic structure loss; ``scale``: ball distance per AST edge."""

    weight: float = 0.1
    scale: float = 0.3


@dataclass
class WGANConfig(TermConfig):
    """WGAN-GP critic on hidden-state sequences (Gulrajani et al. 2017: λ = 10, n_critic = 5)."""

    weight: float = 0.05
    lambda_gp: float = 10.0
    n_critic: int = 5
    critic_lr: float = 1e-4
    critic_channels: int = 64
    gumbel_temperature: float = 1.0


@dataclass
class LossConfig(YamlConfig):
    ce: TermConfig = field(default_factory=TermConfig)
    balance: TermConfig = field(default_factory=lambda: TermConfig(True, 0.01))
    structure: StructureConfig = field(default_factory=StructureConfig)
    wgan: WGANConfig = field(default_factory=WGANConfig)


@dataclass
class KFACConfig(YamlConfig):
    """:class:`synthfuse.koda.optim.KFAC` settings (``enabled: false`` for the plain optimizer)."""

    enabled: bool = False
    damping: float = 1e-3
    ema_decay: float = 0.95
    inv_update_period: int = 10
    kl_clip: float = 1e-3


@dataclass
class OptimConfig(YamlConfig):
    """``name``: ``adamw`` or ``sgd`` (momentum); linear warm-up then cosine decay to ``min_lr_ratio * lr``."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9
    betas: tuple[float, ...] = (0.9, 0.98)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    kfac: KFACConfig = field(default_factory=KFACConfig)


@dataclass
class CommConfig(YamlConfig):
    """Deployment the communication plan is made for (:mod:`synthfuse.koda.topology_model`).

    ``world_size`` ranks (or a ``torus_k``-ary ``torus_n``-cube when both are set); link costs
    ``alpha, beta, gamma, beta_byte`` (s, s/hop, s/queued message, s/byte); ``step_seconds``:
    compute time of one step. With ``delayed: true`` gradients are applied ``tau`` steps late
    with the learning rate scaled for stability, as when the all-reduce overlaps later steps.
    """

    world_size: int = 1
    torus_k: int = 0
    torus_n: int = 0
    alpha: float = 5e-5
    beta: float = 1e-6
    gamma: float = 0.0
    beta_byte: float = 1e-9
    step_seconds: float = 1.0
    delayed: bool = False


@dataclass
class TrainConfig(YamlConfig):
    steps: int = 600
    batch_size: int = 16
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 100
    out_dir: str = "runs/koda_tiny"
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


@dataclass
class RewardConfig(YamlConfig):
    """Weights of the verifier's gates in the RL reward (:func:`synthfuse.koda.synthesis.verifier_reward`)."""

    parse: float = 0.1
    typecheck: float = 0.2
    theta: float = 1.0


@dataclass
class RLConfig(YamlConfig):
    """Reinforcement learning from the verifier after cross-entropy training (:mod:`.rl`).

    Each step samples ``group_size`` programs for each of ``prompts_per_step`` prompts,
    rewards them with the verifier, and takes a REINFORCE step with the leave-one-out group
    baseline and a ``kl_coef``-weighted KL penalty to the trained (frozen) CE model.
    ``step_budget``: the verifier's interpreter steps per program.
    """

    enabled: bool = False
    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 8
    kl_coef: float = 0.05
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_new_tokens: int = 160
    signature_prob: float = 0.5
    step_budget: int = 100_000
    seed: int = 0
    log_every: int = 5
    checkpoint_every: int = 10
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class ParallelConfig(YamlConfig):
    """Data parallelism when the job runs on several processes (``torchrun``; :mod:`.parallel`).

    ``strategy``: ``fsdp`` (FSDP2 ``fully_shard`` on every transformer block and on the root:
    parameters, gradients and optimizer state split over the ranks, ZeRO-3), ``ddp`` (full
    replicas, gradients all-reduced in buckets of the communication plan's size) or ``none``
    (one process only). ``backend``: ``auto`` (gloo on CPU, NCCL on CUDA), ``gloo`` or
    ``nccl``. ``reshard_after_forward``: FSDP2 frees a block's gathered parameters after its
    forward (least memory) instead of keeping them for the backward (less communication).
    ``balanced_shards``: shard each parameter on a dimension the world size divides, so every
    rank holds the same bytes (e.g. 4 experts on 8 ranks). ``keep_checkpoints``: sharded
    checkpoints kept in ``out_dir/checkpoints``. ``measure_comm``: time all-reduces on the live
    process group at start-up and fit the topology model's latency and bandwidth to them for
    the communication plan. One process ignores this section (it never shards).
    """

    strategy: str = "fsdp"
    backend: str = "auto"
    reshard_after_forward: bool = True
    balanced_shards: bool = True
    keep_checkpoints: int = 2
    measure_comm: bool = False


@dataclass
class RunConfig(YamlConfig):
    """The whole training run."""

    model: dict = field(default_factory=_model_defaults)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (YamlConfig)
        self.model = _model_section(self.model)
        _validate(self)

    def model_config(self, vocab_size: int) -> KodaModelConfig:
        """The model's hyper-parameters for a tokenizer of ``vocab_size``."""
        return KodaModelConfig(vocab_size=vocab_size, **self.model)


def _model_section(section: dict) -> dict:
    """The ``model`` section: :class:`KodaModelConfig` fields but ``vocab_size``, over the defaults."""
    if "vocab_size" in section:
        raise ValueError("model.vocab_size is set by the tokenizer; remove it from the config")
    merged = {**_model_defaults(), **validate_mapping(KodaModelConfig, section, where="model",
                                                      exclude=("vocab_size",))}
    KodaModelConfig(vocab_size=1, **merged)  # validates ranges now, not at model build
    return merged


def _positive(value: float, where: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _validate(cfg: RunConfig) -> None:
    d, lo, o, c, t = cfg.data, cfg.loss, cfg.optim, cfg.comm, cfg.train
    _positive(d.n_programs, "data.n_programs")
    _positive(d.max_identifiers, "data.max_identifiers")
    if not 0 < d.val_fraction < 1:
        raise ValueError(f"data.val_fraction must lie in (0, 1), got {d.val_fraction}")
    if not 0 <= d.signature_prob <= 1:
        raise ValueError(f"data.signature_prob must lie in [0, 1], got {d.signature_prob}")
    terms = {"ce": lo.ce, "balance": lo.balance, "structure": lo.structure, "wgan": lo.wgan}
    for name, term in terms.items():
        _positive(term.weight, f"loss.{name}.weight", allow_zero=True)
    if not (lo.ce.enabled or lo.structure.enabled or lo.wgan.enabled):
        raise ValueError("enable at least one of loss.ce, loss.structure, loss.wgan")
    _positive(lo.structure.scale, "loss.structure.scale")
    _positive(lo.wgan.lambda_gp, "loss.wgan.lambda_gp", allow_zero=True)
    _positive(lo.wgan.n_critic, "loss.wgan.n_critic")
    _positive(lo.wgan.critic_lr, "loss.wgan.critic_lr")
    _positive(lo.wgan.critic_channels, "loss.wgan.critic_channels")
    _positive(lo.wgan.gumbel_temperature, "loss.wgan.gumbel_temperature")
    if o.name not in ("adamw", "sgd"):
        raise ValueError(f"optim.name must be 'adamw' or 'sgd', got {o.name!r}")
    _positive(o.lr, "optim.lr")
    _positive(o.weight_decay, "optim.weight_decay", allow_zero=True)
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ValueError(f"optim.betas must be two numbers in [0, 1), got {o.betas}")
    if not 0 <= o.momentum < 1:
        raise ValueError(f"optim.momentum must lie in [0, 1), got {o.momentum}")
    _positive(o.warmup_steps, "optim.warmup_steps", allow_zero=True)
    if not 0 <= o.min_lr_ratio <= 1:
        raise ValueError(f"optim.min_lr_ratio must lie in [0, 1], got {o.min_lr_ratio}")
    _positive(o.grad_clip, "optim.grad_clip", allow_zero=True)
    _positive(o.kfac.damping, "optim.kfac.damping")
    if not 0 <= o.kfac.ema_decay < 1:
        raise ValueError(f"optim.kfac.ema_decay must lie in [0, 1), got {o.kfac.ema_decay}")
    _positive(o.kfac.inv_update_period, "optim.kfac.inv_update_period")
    _positive(o.kfac.kl_clip, "optim.kfac.kl_clip")
    _positive(c.world_size, "comm.world_size")
    if (c.torus_k == 0) != (c.torus_n == 0):
        raise ValueError("set both comm.torus_k and comm.torus_n (or neither)")
    for name in ("alpha", "beta", "gamma", "beta_byte"):
        _positive(getattr(c, name), f"comm.{name}", allow_zero=True)
    _positive(c.step_seconds, "comm.step_seconds")
    for name in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        _positive(getattr(t, name), f"train.{name}")
    _validate_rl(cfg.rl)
    _validate_parallel(cfg.parallel)


def _validate_parallel(p: ParallelConfig) -> None:
    if p.strategy not in ("fsdp", "ddp", "none"):
        raise ValueError(f"parallel.strategy must be 'fsdp', 'ddp' or 'none', got {p.strategy!r}")
    if p.backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"parallel.backend must be 'auto', 'gloo' or 'nccl', got {p.backend!r}")
    _positive(p.keep_checkpoints, "parallel.keep_checkpoints")


def _validate_rl(r: RLConfig) -> None:
    for name in ("steps", "prompts_per_step", "max_new_tokens", "step_budget", "log_every", "checkpoint_every"):
        _positive(getattr(r, name), f"rl.{name}")
    if r.group_size < 2:
        raise ValueError(f"rl.group_size must be >= 2 (the baseline of a sample is the mean of the others), "
                         f"got {r.group_size}")
    _positive(r.lr, "rl.lr")
    for name in ("kl_coef", "weight_decay", "grad_clip"):
        _positive(getattr(r, name), f"rl.{name}", allow_zero=True)
    if not 0 <= r.signature_prob <= 1:
        raise ValueError(f"rl.signature_prob must lie in [0, 1], got {r.signature_prob}")
    weights = {name: getattr(r.reward, name) for name in ("parse", "typecheck", "theta")}
    for name, w in weights.items():
        _positive(w, f"rl.reward.{name}", allow_zero=True)
    if not any(weights.values()):
        raise ValueError("rl.reward: at least one of parse, typecheck, theta must be > 0")


def load_config(source: str | Path | dict) -> RunConfig:
    """Read a YAML file (or take a dict) and validate it into a :class:`RunConfig`.

    Raises
    ------
    ValueError
        On unknown keys (named with their dotted path), wrong types or out-of-range values.
    FileNotFoundError
        When the file does not exist.
    """
    return RunConfig.from_dict(source) if isinstance(source, dict) else RunConfig.from_yaml(source)
