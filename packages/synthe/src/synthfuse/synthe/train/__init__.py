"""synthfuse.synthe.train: training, Zoology synthetic tasks and language-modelling runs.

Public API
----------
- :class:`RunConfig`, :class:`DataConfig`, :class:`TrainConfig`: a run's YAML config.
- :class:`Trainer`: AdamW + warmup/cosine, clipping, evaluation, metrics JSONL, loss PNG,
  atomic resumable checkpoints; :func:`lr_factor`, :func:`build_model`.
- Data: :class:`CharTokenizer`, :class:`ByteTokenizer`, :class:`TextData`, :func:`load_corpus`,
  :class:`SyntheticData` and the task generators :func:`mqar`, :func:`copy_task`,
  :func:`parity`, :func:`s5`.
- Zoology: :class:`ZoologySpec`, :func:`run_zoology`; diagnostics: :func:`probe_report`.
"""

from synthfuse.synthe.train.config import DataConfig, RunConfig, TrainConfig
from synthfuse.synthe.train.data import batch_generator, build_data
from synthfuse.synthe.train.probe_report import plot_probe_report, probe_report
from synthfuse.synthe.train.synthetic import SyntheticData, copy_task, mqar, parity, prefix_compose, s5
from synthfuse.synthe.train.text import ByteTokenizer, CharTokenizer, TextData, load_corpus
from synthfuse.synthe.train.trainer import Trainer, build_model, lr_factor, masked_accuracy
from synthfuse.synthe.train.zoology import ZoologySpec, plot_zoology, run_zoology, zoology_run_config

__all__ = [
    "ByteTokenizer",
    "CharTokenizer",
    "DataConfig",
    "RunConfig",
    "SyntheticData",
    "TextData",
    "TrainConfig",
    "Trainer",
    "ZoologySpec",
    "batch_generator",
    "build_data",
    "build_model",
    "copy_task",
    "load_corpus",
    "lr_factor",
    "masked_accuracy",
    "mqar",
    "parity",
    "plot_probe_report",
    "plot_zoology",
    "prefix_compose",
    "probe_report",
    "run_zoology",
    "s5",
    "zoology_run_config",
]
