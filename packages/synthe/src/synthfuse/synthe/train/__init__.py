"""synthfuse.synthe.train: training, Zoology synthetic tasks and language-modelling runs.

Public API
----------
- :class:`RunConfig`, :class:`DataConfig`, :class:`TrainConfig`: a run's YAML config.
- :class:`Trainer`: AdamW + warmup/cosine, clipping, evaluation, metrics JSONL, loss PNG,
  atomic resumable checkpoints; :func:`lr_factor`, :func:`build_model`; :func:`load_trained`
  (:func:`find_checkpoint`): a trained run in one process for inference, from ``checkpoint.pt``
  or a ``torchrun`` run's sharded checkpoints.
- Data: :class:`CharTokenizer`, :class:`ByteTokenizer`, :class:`TextData`, :func:`load_corpus`,
  :class:`SyntheticData` and the task generators :func:`mqar`, :func:`copy_task`,
  :func:`parity`, :func:`s5`.
- Prepared corpora: :func:`prepare_shards` (``synthfuse synthe prepare``: byte-level
  :class:`BpeTokenizer` / char / byte, memory-mapped uint16/uint32 shards, resumable) and
  :class:`ShardData` (random windows over the shards; ``batch_rows`` reads one rank's rows).
- Zoology: :class:`ZoologySpec`, :func:`run_zoology`; diagnostics: :func:`probe_report`.
- Throughput: :func:`model_flops` (a :class:`FlopCount`, heads at scored rows only),
  :func:`model_flops_per_token`, :func:`synthe_forward_flops`, :func:`mfu` (:mod:`.flops`);
  multi-process training helpers in :mod:`.parallel`.
"""

from synthfuse.synthe.train.bpe import BpeTokenizer
from synthfuse.synthe.train.config import DataConfig, RunConfig, TrainConfig
from synthfuse.synthe.train.data import batch_generator, build_data
from synthfuse.synthe.train.flops import FlopCount, mfu, model_flops, model_flops_per_token, synthe_forward_flops
from synthfuse.synthe.train.probe_report import plot_probe_report, probe_report
from synthfuse.synthe.train.restore import find_checkpoint, load_trained
from synthfuse.synthe.train.shards import ShardData, prepare_shards
from synthfuse.synthe.train.synthetic import SyntheticData, copy_task, mqar, parity, prefix_compose, s5
from synthfuse.synthe.train.text import ByteTokenizer, CharTokenizer, TextData, load_corpus
from synthfuse.synthe.train.trainer import Trainer, build_model, lr_factor, masked_accuracy
from synthfuse.synthe.train.zoology import ZoologySpec, plot_zoology, run_zoology, zoology_run_config

__all__ = [
    "BpeTokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "DataConfig",
    "FlopCount",
    "RunConfig",
    "ShardData",
    "SyntheticData",
    "TextData",
    "TrainConfig",
    "Trainer",
    "ZoologySpec",
    "batch_generator",
    "build_data",
    "build_model",
    "copy_task",
    "find_checkpoint",
    "load_corpus",
    "load_trained",
    "lr_factor",
    "masked_accuracy",
    "mfu",
    "model_flops",
    "model_flops_per_token",
    "mqar",
    "parity",
    "plot_probe_report",
    "plot_zoology",
    "prepare_shards",
    "prefix_compose",
    "probe_report",
    "run_zoology",
    "s5",
    "synthe_forward_flops",
    "zoology_run_config",
]
