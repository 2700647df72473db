"""Training examples from the KODA program generator, tokenized with their syntax-tree distances.

Example ``i`` is program ``i`` of :func:`synthfuse.koda.data.generate` (seeded), encoded as
``<bos> <theta:C> [<sig> header] <sep> program <eos>``; the header is included with
probability ``signature_prob`` (decided per example from the seed). Batches are a pure
function of the step number, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from synthfuse.koda.data import THETA_CLASSES, generate
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import parse
from synthfuse.koda.model.structure import ast_parents, token_owners, tree_distances
from synthfuse.koda.model.tokenizer import KLTokenizer

__all__ = ["Batch", "Example", "ProgramCorpus", "signature_of"]


def signature_of(function: A.Function) -> str:
    """The KL header ``def name(p: type, ...) [-> type]`` of ``function``."""
    params = ", ".join(f"{p.name}: {p.type}" for p in function.params)
    return f"def {function.name}({params})" + (f" -> {function.ret}" if function.ret else "")


@dataclass
class Example:
    """One encoded program: ``ids`` (L,), ``prompt_len`` and the (L_prog, L_prog) tree distances."""

    ids: np.ndarray
    prompt_len: int
    tree: np.ndarray
    theta_class: str


@dataclass
class Batch:
    """A right-padded batch. ``inputs[:, t]`` predicts ``targets[:, t]``.

    Attributes
    ----------
    inputs, targets : LongTensor (B, T)
    valid : BoolTensor (B, T)
        Real (non-padding) input positions.
    loss_mask : BoolTensor (B, T)
        Positions whose target is a program token or ``<eos>`` (the prompt is not predicted).
    program : BoolTensor (B, T)
        Input positions holding program tokens (where the structure loss and critic look).
    tree : Tensor (B, T, T)
        Tree distances between program input positions (0 elsewhere).
    """

    inputs: Tensor
    targets: Tensor
    valid: Tensor
    loss_mask: Tensor
    program: Tensor
    tree: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on ``device``."""
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _encode(tok: KLTokenizer, source: str, theta_class: str, with_signature: bool) -> Example:
    program = parse(source)
    signature = signature_of(program.entry) if with_signature else None
    prompt = tok.prompt(theta_class, signature)
    ids, positions = tok.encode_with_positions(source)
    nodes, parents = ast_parents(program)
    owners = token_owners(nodes, parents, positions)
    node_dist = tree_distances(parents)
    tree = node_dist[owners[:, None], owners[None, :]].astype(np.uint8 if node_dist.max() < 256 else np.int32)
    full = np.asarray(prompt + ids + [tok.eos_id], dtype=np.int64)
    return Example(full, len(prompt), tree, theta_class)


class ProgramCorpus:
    """Tokenized generated programs split into train and validation sets.

    Parameters
    ----------
    n_programs : int
    seed : int
        Generator seed (also decides which prompts carry a signature).
    val_fraction : float
    signature_prob : float
    max_identifiers : int
    max_len : int
        Programs whose sequence exceeds ``max_len + 1`` tokens are left out.
    tokenizer : KLTokenizer, optional
        Reuse a tokenizer (e.g. from a checkpoint) instead of fitting one.
    """

    def __init__(self, n_programs: int, *, seed: int = 0, val_fraction: float = 0.05, signature_prob: float = 0.5,
                 max_identifiers: int = 128, max_len: int = 256, tokenizer: KLTokenizer | None = None) -> None:
        if n_programs < 2:
            raise ValueError(f"n_programs must be >= 2, got {n_programs}")
        records = list(generate(n_programs, seed=seed))
        n_val = max(1, int(round(val_fraction * n_programs)))
        train_records = records[:-n_val]
        self.tokenizer = tokenizer or KLTokenizer.fit((r.source for r in train_records), list(THETA_CLASSES),
                                                      max_identifiers=max_identifiers)
        rng = random.Random(f"signature/{seed}")
        examples = [_encode(self.tokenizer, r.source, r.theta_class, rng.random() < signature_prob)
                    for r in records]
        keep = [len(e.ids) <= max_len + 1 for e in examples]
        self.dropped = len(examples) - sum(keep)
        self.train = [e for e, k in zip(examples[:-n_val], keep[:-n_val]) if k]
        self.val = [e for e, k in zip(examples[-n_val:], keep[-n_val:]) if k]
        if not self.train or not self.val:
            raise ValueError("no training or validation program fits max_len; raise model.max_len")
        self.seed = seed

    def batch_indices(self, step: int, batch_size: int) -> np.ndarray:
        """Training indices of batch ``step``: epoch-wise permutations seeded by ``(seed, epoch)``."""
        n = len(self.train)
        per_epoch = max(1, n // batch_size)
        epoch, offset = divmod(step, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        return perm[offset * batch_size:(offset + 1) * batch_size] if n >= batch_size else perm

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """The training batch of optimization step ``step`` (a pure function of ``step``)."""
        return collate([self.train[i] for i in self.batch_indices(step, batch_size)], self.tokenizer.pad_id)

    def val_batches(self, batch_size: int) -> list[Batch]:
        """The validation programs, in order, as batches of ``batch_size``."""
        return [collate(self.val[i:i + batch_size], self.tokenizer.pad_id)
                for i in range(0, len(self.val), batch_size)]


def collate(examples: list[Example], pad_id: int) -> Batch:
    """Right-pad ``examples`` into a :class:`Batch`."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    b, t = len(examples), max(len(e.ids) for e in examples) - 1
    inputs = np.full((b, t), pad_id, dtype=np.int64)
    targets = np.full((b, t), pad_id, dtype=np.int64)
    valid = np.zeros((b, t), dtype=bool)
    loss_mask = np.zeros((b, t), dtype=bool)
    program = np.zeros((b, t), dtype=bool)
    tree = np.zeros((b, t, t), dtype=np.float32)
    for row, e in enumerate(examples):
        n, p = len(e.ids) - 1, e.prompt_len
        inputs[row, :n], targets[row, :n] = e.ids[:-1], e.ids[1:]
        valid[row, :n] = True
        loss_mask[row, p - 1:n] = True  # targets p .. n: program tokens and <eos>
        program[row, p:n] = True
        tree[row, p:n, p:n] = e.tree
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(valid),
                 torch.from_numpy(loss_mask), torch.from_numpy(program), torch.from_numpy(tree))
