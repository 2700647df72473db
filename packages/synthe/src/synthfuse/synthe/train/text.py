"""Text data: char- and byte-level tokenizers, corpus loading and nanoGPT's train / val split.

The corpus is split contiguously (Karpathy's nanoGPT ``shakespeare_char``): the first 90% of the
tokens is the training set, the last 10% the validation set. A training window of ``T + 1`` tokens
starts at a uniformly random offset in ``[0, n_train - T - 1]`` and a validation window inside the
validation part, so no window crosses the split.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

from synthfuse.shared.io import atomic_write_bytes

#: Canonical public copy of tinyshakespeare (Karpathy's char-rnn).
TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


class CharTokenizer:
    """One id per distinct character of a corpus, ids in sorted character order."""

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("CharTokenizer needs a non-empty text to build its vocabulary")
        self.chars = sorted(set(text))
        self._index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        unknown = sorted(set(text) - set(self._index))
        if unknown:
            raise ValueError(f"characters {unknown[:10]} are not in the tokenizer's vocabulary")
        return torch.tensor([self._index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class ByteTokenizer:
    """The UTF-8 bytes of the text, vocabulary 256 (any text, no fitting)."""

    vocab_size = 256

    def encode(self, text: str) -> Tensor:
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def default_cache_dir() -> Path:
    """``$SYNTHFUSE_DATA`` or ``~/.cache/synthfuse/data``."""
    return Path(os.environ.get("SYNTHFUSE_DATA", Path.home() / ".cache" / "synthfuse" / "data"))


def load_corpus(source: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Return the text of ``source``: ``"tinyshakespeare"`` or a path to a UTF-8 file.

    tinyshakespeare is read from ``cache_dir/tinyshakespeare.txt`` (default
    :func:`default_cache_dir`); when missing it is downloaded once from
    :data:`TINYSHAKESPEARE_URL` and written there atomically.
    """
    if source == "tinyshakespeare":
        path = Path(cache_dir or default_cache_dir()) / "tinyshakespeare.txt"
        if not path.exists():
            try:
                with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
                    data = response.read()
            except OSError as err:
                raise FileNotFoundError(
                    f"tinyshakespeare is not cached at {path} and could not be downloaded ({err}); "
                    f"put the file there or pass its path as --data PATH.txt"
                ) from err
            atomic_write_bytes(path, data)
        return path.read_text(encoding="utf-8")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"text corpus {source!r} not found (use 'tinyshakespeare' or a path to a UTF-8 file)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{source} is not valid UTF-8: {err}") from err


class TextData:
    """Random windows of a tokenised corpus, split 90/10 contiguously (nanoGPT).

    Parameters
    ----------
    text : str
    seq_len : int
        Window length ``T``: inputs ``ids[s : s + T]``, targets ``ids[s + 1 : s + T + 1]``.
    tokenizer : {"char", "byte"}
    val_fraction : float
    """

    def __init__(self, text: str, seq_len: int, tokenizer: str = "char", val_fraction: float = 0.1) -> None:
        if tokenizer not in ("char", "byte"):
            raise ValueError(f"tokenizer must be 'char' or 'byte'; got {tokenizer!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
        self.tokenizer = CharTokenizer(text) if tokenizer == "char" else ByteTokenizer()
        ids = self.tokenizer.encode(text)
        n_train = int(len(ids) * (1 - val_fraction))
        self.splits = {"train": ids[:n_train], "val": ids[n_train:]}
        self.seq_len = seq_len
        short = [k for k, v in self.splits.items() if len(v) < seq_len + 1]
        if seq_len < 1 or short:
            raise ValueError(f"seq_len {seq_len} does not fit the {short} split(s) of a {len(ids)}-token corpus")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``batch_size`` windows of ``split`` at random offsets drawn from ``generator``."""
        ids = self.splits[split]
        starts = torch.randint(0, len(ids) - self.seq_len, (batch_size,), generator=generator)
        index = starts[:, None] + torch.arange(self.seq_len + 1)
        windows = ids[index]
        return windows[:, :-1], windows[:, 1:]
