"""Build a run's batch source and the deterministic per-step generators."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from synthfuse.synthe.train.config import DataConfig
from synthfuse.synthe.train.shards import ShardData
from synthfuse.synthe.train.synthetic import TASKS, SyntheticData
from synthfuse.synthe.train.text import TextData, load_corpus


def build_data(config: DataConfig) -> TextData | ShardData | SyntheticData:
    """The batch source named by ``config.name``.

    A synthetic task, a folder prepared by ``synthfuse synthe prepare`` (holding ``meta.json``;
    its own tokenizer is used and ``config.tokenizer`` is ignored), tinyshakespeare or a text file.
    """
    if config.name in TASKS:
        return SyntheticData(config.name, config.seq_len, config.vocab_size, config.num_kv_pairs)
    if Path(config.name).is_dir():
        return ShardData(config.name, config.seq_len)
    if config.tokenizer == "bpe":
        raise ValueError(f"tokenizer 'bpe' needs a prepared shard folder, not {config.name!r}: run "
                         f"`synthfuse synthe prepare --input {config.name} --tokenizer bpe --out DIR`, then --data DIR")
    return TextData(load_corpus(config.name, config.cache_dir), config.seq_len, config.tokenizer)


def batch_generator(seed: int, split: str, index: int) -> torch.Generator:
    """A generator determined by ``(seed, split, index)`` alone.

    Training batch ``k`` uses index ``k``, so a resumed run draws exactly the batches the
    uninterrupted run would have (the data position is the step); validation uses a fixed set.
    """
    digest = hashlib.blake2b(f"{seed}:{split}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
