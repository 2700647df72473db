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

from synthfuse.synthe.config import SyntheConfig, YamlConfig, _check_types

MODEL_TYPES = ("synthe", "transformer")


@dataclass
class DataConfig(YamlConfig):
    """What to train on.

    Attributes
    ----------
    name : str
        ``tinyshakespeare``, a path to a UTF-8 text file, or a synthetic task: ``mqar``,
        ``copy``, ``parity``, ``s5`` (``state`` is S5).
    seq_len : int
        Tokens per training window.
    tokenizer : {"char", "byte"}
        Text tokenizer.
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
        _check_types(self)
        if self.name == "state":
            self.name = "s5"
        if self.tokenizer not in ("char", "byte"):
            raise ValueError(f"DataConfig.tokenizer must be 'char' or 'byte'; got {self.tokenizer!r}")
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

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches", "log_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig needs lr > 0 and 0 <= min_lr <= lr; got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig.warmup_steps, grad_clip and weight_decay must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("TrainConfig.beta1 and beta2 must be in [0, 1)")


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
