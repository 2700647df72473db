"""A training run's configuration: model, data and optimisation, validated YAML <-> dataclasses.

A run YAML has up to four top-level keys, each checked (unknown keys raise ``ValueError``)::

    model_type: synthe          # or transformer (a same-size TransformerBaseline)
    model: {d_model: 128, ...}  # SyntheConfig fields (vocab_size is set from the data)
    data: {name: tinyshakespeare, seq_len: 256, ...}
    train: {batch_size: 32, lr: 1.0e-3, ...}

A YAML without those keys is read as a bare :class:`~synthfuse.synthe.SyntheConfig` (the shipped
``configs/synthe_<preset>.yaml``) with default data and training settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from synthfuse.synthe.config import SyntheConfig, YamlConfig

MODEL_TYPES = ("synthe", "transformer")
PARALLEL_MODES = ("none", "ddp", "fsdp")
AUTOCAST_MODES = ("auto", "bf16", "off")
DTYPES = ("float32", "float64")
SCHEDULES = ("steps", "time")


@dataclass
class DataConfig(YamlConfig):
    """What to train on.

    Attributes
    ----------
    name : str
        ``tinyshakespeare``, a path to a UTF-8 text file, a folder prepared by
        ``synthfuse synthe prepare`` (holding ``meta.json``: token shards, whose own tokenizer
        is used), or a synthetic task: ``mqar``, ``copy``, ``parity``, ``s5`` (``state`` is S5).
    seq_len : int
        Tokens per training window.
    tokenizer : {"char", "byte", "bpe"}
        Text tokenizer of a text file (``bpe`` only through a prepared folder).
    vocab_size, num_kv_pairs : int
        Vocabulary of MQAR / copy and MQAR's key-value pairs.
    cache_dir : str, optional
        Where tinyshakespeare is cached (default ``$SYNTHFUSE_DATA`` or ``~/.cache/synthfuse/data``).
    """

    name: str = "tinyshakespeare"
    seq_len: int = 256
    tokenizer: str = "char"
    vocab_size: int = 8192
    num_kv_pairs: int = 4
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (YamlConfig)
        if self.name == "state":
            self.name = "s5"
        if self.tokenizer not in ("char", "byte", "bpe"):
            raise ValueError(f"DataConfig.tokenizer must be 'char', 'byte' or 'bpe'; got {self.tokenizer!r}")
        if min(self.seq_len, self.vocab_size, self.num_kv_pairs) < 1:
            raise ValueError("DataConfig.seq_len, vocab_size and num_kv_pairs must be >= 1")


@dataclass
class TrainConfig(YamlConfig):
    """Optimisation, evaluation and bookkeeping of a run.

    The learning rate warms up linearly over ``warmup_steps`` then follows a cosine from ``lr``
    to ``min_lr`` at ``max_steps`` (Loshchilov & Hutter 2017); AdamW with decoupled weight
    decay on matrices only; gradients clipped to global norm ``grad_clip`` (0 = off).
    ``time_budget_s`` stops training (with a final evaluation and checkpoint) once that many
    seconds of training steps have run; ``out_dir`` = None writes no files.
    ``schedule: time`` (needs ``time_budget_s``) runs the cosine over the fraction of the time
    budget spent instead of over ``max_steps``, so a run trained "for 10 minutes" anneals to
    ``min_lr`` when its time is up whatever its speed (see :func:`~synthfuse.synthe.train.trainer.lr_factor`;
    the learning rate then depends on the measured step times, so such runs are not bitwise
    repeatable).

    Throughput and multi-process options (see :mod:`synthfuse.synthe.train.parallel`):

    - ``parallel``: ``none`` (one process), ``ddp`` or ``fsdp`` (FSDP2, one unit per block);
      under ``torchrun`` every rank trains on its rows of the *global* batch ``batch_size``.
    - ``grad_accum``: micro-batches per step; the step's gradient is the full batch's.
      ``batch_size`` must be a multiple of ``world_size * grad_accum``.
    - ``autocast``: ``auto`` (bf16 autocast on a CUDA device that supports it, fp32 otherwise),
      ``bf16`` (required; CUDA only) or ``off`` (fp32). CPU training always runs in fp32.
    - ``activation_checkpointing``: recompute each block in the backward pass
      (``torch.utils.checkpoint``, non-reentrant): less activation memory, ~1/3 more compute.
    - ``compile``: ``torch.compile`` each block (optional, off by default).
    - ``peak_flops``: the device's peak FLOP/s for the MFU column (``None``: looked up for
      known GPUs, not reported on CPU).
    - ``keep_checkpoints``: sharded checkpoints kept in ``out_dir/checkpoints`` (parallel runs).
    - ``dtype``: parameter and compute dtype, ``float32`` (default) or ``float64`` (reference
      runs: parity checks over many steps, where float32 rounding differences between
      reduction orders would grow with training's sensitivity to the weights).
    """

    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 250
    time_budget_s: float | None = None
    seed: int = 1337
    device: str = "auto"
    out_dir: str | None = None
    parallel: str = "none"
    grad_accum: int = 1
    autocast: str = "auto"
    activation_checkpointing: bool = False
    compile: bool = False
    peak_flops: float | None = None
    keep_checkpoints: int = 2
    dtype: str = "float32"
    schedule: str = "steps"

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (YamlConfig)
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"TrainConfig.parallel must be one of {PARALLEL_MODES}; got {self.parallel!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"TrainConfig.time_budget_s must be > 0 seconds (or null); got {self.time_budget_s}")
        if self.schedule == "time" and self.time_budget_s is None:
            raise ValueError("TrainConfig.schedule 'time' runs the cosine over time_budget_s: set time_budget_s "
                             "(seconds), or use schedule 'steps'")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype must be one of {DTYPES}; got {self.dtype!r}")
        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(f"TrainConfig.autocast must be one of {AUTOCAST_MODES}; got {self.autocast!r}")
        if self.dtype == "float64" and self.autocast == "bf16":
            raise ValueError("TrainConfig.autocast 'bf16' needs dtype float32 (float64 runs never autocast)")
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ValueError(f"TrainConfig.peak_flops must be > 0 FLOP/s (or null); got {self.peak_flops}")
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches", "log_interval", "checkpoint_interval",
                     "grad_accum", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig needs lr > 0 and 0 <= min_lr <= lr; got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig.warmup_steps, grad_clip and weight_decay must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("TrainConfig.beta1 and beta2 must be in [0, 1)")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainConfig.batch_size ({self.batch_size}) must be a multiple of grad_accum "
                             f"({self.grad_accum}): every micro-batch has batch_size / grad_accum rows")


@dataclass
class RunConfig(YamlConfig):
    """A whole run: ``model_type``, ``model`` (a :class:`SyntheConfig`), ``data``, ``train``."""

    model_type: str = "synthe"
    model: SyntheConfig = field(default_factory=SyntheConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"RunConfig.model_type must be one of {MODEL_TYPES}; got {self.model_type!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        if not isinstance(values, dict):
            raise ValueError(f"a run config must be a mapping; got {type(values).__name__}")
        sections = {"model_type", "model", "data", "train"}
        if not set(values) & sections:  # a bare SyntheConfig file
            return cls(model=SyntheConfig.from_dict(values))
        unknown = sorted(set(values) - sections)
        if unknown:
            raise ValueError(f"unknown top-level key(s) {unknown} in run config; valid keys: {sorted(sections)}")
        return cls(
            model_type=values.get("model_type", "synthe"),
            model=SyntheConfig.from_dict(values.get("model") or {}),
            data=DataConfig.from_dict(values.get("data") or {}),
            train=TrainConfig.from_dict(values.get("train") or {}),
        )

    def replace(self, model: dict | None = None, data: dict | None = None, train: dict | None = None,
                model_type: str | None = None) -> "RunConfig":
        """A copy with some fields overridden (``None`` values are ignored)."""
        def merged(obj, over):
            return dataclasses.replace(obj, **{k: v for k, v in (over or {}).items() if v is not None})

        return RunConfig(model_type or self.model_type, merged(self.model, model), merged(self.data, data),
                         merged(self.train, train))
