"""Byte-level BPE tokenizer (GPT-2 style) trained locally with Hugging Face ``tokenizers``.

Byte-pair encoding (Sennrich et al. 2016) starts from the 256 byte values and repeatedly adds
the most frequent adjacent pair of symbols as a new symbol until the vocabulary holds
``vocab_size`` symbols:

.. math:: (a^*, b^*) = \\arg\\max_{(a, b)} \\operatorname{count}(a\\,b), \\qquad
          V \\leftarrow V \\cup \\{a^* b^*\\}.

Text is first cut into pre-tokens by the GPT-2 regular expression and mapped byte by byte onto
printable characters (Radford et al. 2019), so any UTF-8 text round-trips exactly and no token
is ever unknown. Training reads only the text it is given: nothing is downloaded.

References
----------
.. [1] R. Sennrich, B. Haddow, A. Birch. "Neural Machine Translation of Rare Words with Subword
   Units". ACL 2016.
.. [2] A. Radford et al. "Language Models are Unsupervised Multitask Learners". OpenAI 2019.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from synthfuse.shared.io import atomic_write_text

#: Byte-level BPE starts from the 256 byte symbols; a smaller vocabulary cannot encode all text.
MIN_BPE_VOCAB = 256


class BpeTokenizer:
    """A byte-level BPE tokenizer: ``encode(str) -> LongTensor``, ``decode(ids) -> str``.

    Build one with :meth:`train` (from an iterable of texts) or :meth:`load` (a ``tokenizer.json``
    written by :meth:`save`).
    """

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, length: int | None = None) -> "BpeTokenizer":
        """Learn merges from ``texts`` (streamed once) up to ``vocab_size`` symbols.

        The result may hold fewer symbols when the corpus has fewer distinct pairs to merge.
        ``length`` (the number of texts, optional) is a hint for the library's buffers.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if not isinstance(vocab_size, int) or vocab_size < MIN_BPE_VOCAB:
            raise ValueError(f"byte-level BPE needs vocab_size >= {MIN_BPE_VOCAB} (the byte alphabet); got {vocab_size}")
        if vocab_size > 2**32:
            raise ValueError(f"vocab_size {vocab_size} does not fit uint32 token ids")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=[], show_progress=False)
        tok.train_from_iterator(texts, trainer, length=length)
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BpeTokenizer":
        """Read a ``tokenizer.json`` written by :meth:`save`."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as ``tokenizer.json`` (atomically; loadable by ``tokenizers`` itself)."""
        atomic_write_text(path, self.to_json())

    def to_json(self) -> str:
        """The library's JSON serialisation (vocabulary, merges, pre-tokenizer and decoder)."""
        return self._tok.to_str()

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> Tensor:
        """Token ids of ``text`` as a 1-D int64 tensor."""
        return torch.tensor(self._tok.encode(text).ids, dtype=torch.long)

    def encode_arrays(self, texts: list[str], dtype: np.dtype) -> list[np.ndarray]:
        """Token ids of each text (encoded in parallel by the library) as ``dtype`` arrays."""
        return [np.asarray(e.ids, dtype=dtype) for e in self._tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        """Text of ``ids`` (bytes of an incomplete UTF-8 character decode to U+FFFD)."""
        return self._tok.decode([int(i) for i in ids])
