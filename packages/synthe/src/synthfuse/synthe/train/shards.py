"""``prepare_shards``: a text corpus -> a tokenizer and memory-mappable token shards on disk.

Layout of a prepared folder::

    meta.json             written last: tokenizer, vocab size, dtype, shard list, fingerprint
    tokenizer.json        the byte-level BPE (``tokenizer="bpe"`` only)
    train_00000.bin ...   raw little-endian uint16 (vocab <= 65536) or uint32 token ids
    val_00000.bin ...

**Blocks.** Each input file (a file, or every ``*.txt`` under a folder, in sorted path order) is
streamed in *blocks* of at least ``block_chars`` characters, cut at the first line start at or
after that length where the previous line ends in a non-space character and the new line
starts with one (``...x\\nY``). The GPT-2 pre-tokenizer never merges text across such a
boundary, so tokenizing block by block gives exactly the ids of tokenizing each file whole. A
file with no such boundary in ``4 * block_chars`` characters is cut there anyway (BPE may then
differ from whole-file tokenization at that point; char and byte ids never do). Files are
concatenated without a separator token.

**Split.** Block ``k`` (counted over all files) is held out for validation iff
``floor((k + 1) f + 1/2) > floor(k f + 1/2)`` with ``f = val_fraction``: exactly
``round(n f)`` of the first ``n`` blocks, spread evenly (``f = 0.1``: blocks 4, 14, 24, ...).
Validation text is never in a training shard, and the BPE is trained on training blocks only.

**Shards** hold whole blocks: a shard is closed at the first block boundary at or past
``shard_tokens`` tokens (the last shard of a split may be shorter).

**Resuming.** After every shard, ``progress.json`` records the finished shards (token count and
SHA-256) and, per split, the next block to tokenize. Rerunning the same command after an
interruption keeps every finished shard whose size and hash check out, skips tokenizing the
blocks they hold and produces files bit-identical to an uninterrupted run. A complete folder
(``meta.json`` present, shard sizes intact) makes a rerun a no-op; a folder prepared from other
inputs or options (another fingerprint) is an error, never overwritten.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from synthfuse.shared.io import atomic_open, atomic_write_text
from synthfuse.synthe.train.bpe import MIN_BPE_VOCAB, BpeTokenizer
from synthfuse.synthe.train.text import ByteTokenizer, CharTokenizer

FORMAT_VERSION = 1
META, PROGRESS, TOKENIZER_FILE = "meta.json", "progress.json", "tokenizer.json"
TOKENIZER_KINDS = ("bpe", "char", "byte")
SPLITS = ("train", "val")
#: Largest vocabulary stored as uint16 (ids 0 .. 65535).
UINT16_MAX_VOCAB = 65536
DEFAULT_SHARD_TOKENS = 1 << 24
DEFAULT_BLOCK_CHARS = 1 << 14
_HARD_CUT = 4  # cut a block at HARD_CUT * block_chars when no safe boundary shows up
_BLOCKS_PER_BATCH = 64  # blocks tokenized per library call
_SAFE_CUT = re.compile(r"(?<=[^\s]\n)(?=[^\s])")


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian ``uint16`` for ``vocab_size <= 65536``, else ``uint32``."""
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


def is_val_block(k: int, val_fraction: float) -> bool:
    """Whether block ``k`` is held out: ``floor((k + 1) f + 1/2) > floor(k f + 1/2)``."""
    return int((k + 1) * val_fraction + 0.5) > int(k * val_fraction + 0.5)


def list_inputs(inputs: str | os.PathLike) -> list[tuple[Path, str]]:
    """``(path, name)`` of the corpus files: ``inputs`` itself, or every ``*.txt`` under it (sorted)."""
    root = Path(inputs)
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise FileNotFoundError(f"corpus {str(inputs)!r} not found: pass a UTF-8 text file or a folder of .txt files")
    files = sorted((p for p in root.rglob("*.txt") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise ValueError(f"folder {root} holds no .txt files")
    return [(p, p.relative_to(root).as_posix()) for p in files]


def _sha256_file(path: Path, check_utf8: bool = False) -> str:
    """SHA-256 of a file's bytes, read 1 MiB at a time; ``check_utf8`` also validates it as UTF-8."""
    digest, decoder, done = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            digest.update(chunk)
            try:
                if check_utf8:
                    decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                pending = len(err.object) - len(chunk)  # bytes of an incomplete character carried over
                raise ValueError(f"{path} is not valid UTF-8 ({err.reason} at byte {done - pending + err.start}); "
                                 f"convert it (e.g. iconv -t UTF-8) or remove it from the corpus") from err
            if not chunk:
                return digest.hexdigest()
            done += len(chunk)


def _file_blocks(path: Path, block_chars: int) -> Iterator[str]:
    """The blocks of one UTF-8 file (module docstring), streamed ``block_chars`` at a time."""
    buf = ""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            while piece := fh.read(block_chars):
                buf += piece
                while len(buf) >= block_chars:
                    match = _SAFE_CUT.search(buf, block_chars)
                    cut = match.start() if match else (len(buf) if len(buf) >= _HARD_CUT * block_chars else None)
                    if cut is None:
                        break
                    yield buf[:cut]
                    buf = buf[cut:]
    except UnicodeDecodeError as err:  # checked up front; here only if the file changed since
        raise ValueError(f"{path} is not valid UTF-8 ({err.reason}); convert it or remove it from the corpus") from err
    if buf:
        yield buf


def iter_blocks(files: list[tuple[Path, str]], block_chars: int) -> Iterator[str]:
    """Every block of every file, in order (block ``k`` of the split rule is the ``k``-th item)."""
    for path, _ in files:
        yield from _file_blocks(path, block_chars)


def _fit_tokenizer(kind: str, files, block_chars: int, vocab_size: int, val_fraction: float, out: Path,
                   bar) -> dict:
    """Fit ``kind`` on the corpus (BPE: training blocks only; char: all characters); its spec."""
    if kind == "byte":
        return {"kind": "byte", "vocab_size": ByteTokenizer.vocab_size}
    if kind == "char":
        chars: set[str] = set()
        for block in iter_blocks(files, block_chars):
            chars.update(block)
            bar.update(len(block.encode("utf-8")))
        return {"kind": "char", "vocab_size": len(chars), "chars": "".join(sorted(chars))}

    def training_blocks():
        for k, block in enumerate(iter_blocks(files, block_chars)):
            bar.update(len(block.encode("utf-8")))
            if not is_val_block(k, val_fraction):
                yield block

    tok = BpeTokenizer.train(training_blocks(), vocab_size)
    tok.save(out / TOKENIZER_FILE)
    return {"kind": "bpe", "vocab_size": tok.vocab_size, "requested_vocab_size": vocab_size, "file": TOKENIZER_FILE,
            "sha256": _sha256_file(out / TOKENIZER_FILE)}


def _encode_chars(texts: list[str], chars: str, dtype: np.dtype) -> list[np.ndarray]:
    """Char ids of each text, vectorised: the rank of each code point among the sorted vocabulary."""
    codes = np.frombuffer(chars.encode("utf-32-le"), dtype="<u4")
    return [np.searchsorted(codes, np.frombuffer(t.encode("utf-32-le"), dtype="<u4")).astype(dtype) for t in texts]


def _block_encoder(spec: dict, out: Path) -> Callable[[list[str]], list[np.ndarray]]:
    """texts -> token id arrays (in the shard dtype) for the fitted tokenizer ``spec``."""
    dtype = token_dtype(spec["vocab_size"])
    if spec["kind"] == "byte":
        return lambda texts: [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(dtype) for t in texts]
    if spec["kind"] == "char":
        return lambda texts: _encode_chars(texts, spec["chars"], dtype)
    tok = BpeTokenizer.load(out / spec["file"])
    return lambda texts: tok.encode_arrays(texts, dtype)


def load_tokenizer(spec: dict, folder: str | os.PathLike):
    """The tokenizer described by a prepared folder's ``meta.json["tokenizer"]``."""
    if spec["kind"] == "byte":
        return ByteTokenizer()
    if spec["kind"] == "char":
        return CharTokenizer(spec["chars"])
    return BpeTokenizer.load(Path(folder) / spec["file"])


def _shard_intact(out: Path, shard: dict, itemsize: int, check_hash: bool) -> bool:
    path = out / shard["file"]
    if not path.is_file() or path.stat().st_size != shard["tokens"] * itemsize:
        return False
    return not check_hash or _sha256_file(path) == shard["sha256"]


def _read_state(out: Path, fingerprint: str) -> dict | None:
    """The folder's ``meta.json`` (complete) or ``progress.json`` (interrupted), if any, for ``fingerprint``."""
    for name in (META, PROGRESS):
        path = out / name
        if path.is_file():
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("fingerprint") != fingerprint:
                raise ValueError(f"{out} already holds shards prepared from other inputs or options ({name} has "
                                 f"another fingerprint); pass another --out folder or delete {out}")
            return state
    return None


def _validate(tokenizer: str, vocab_size: int, shard_tokens: int, val_fraction: float, block_chars: int) -> None:
    if tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer must be one of {TOKENIZER_KINDS}; got {tokenizer!r}")
    if tokenizer == "bpe" and not MIN_BPE_VOCAB <= vocab_size <= 2**32:
        raise ValueError(f"byte-level BPE needs {MIN_BPE_VOCAB} <= vocab_size <= 2**32 (256 = the byte alphabet); "
                         f"got {vocab_size}")
    if shard_tokens < 1 or block_chars < 1:
        raise ValueError(f"shard_tokens and block_chars must be >= 1; got {shard_tokens}, {block_chars}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")


def _write_shard(path: Path, tokens: np.ndarray) -> str:
    """Write ``tokens`` raw to ``path`` atomically; return their SHA-256."""
    with atomic_open(path, "wb") as fh:
        fh.write(memoryview(tokens))
    return hashlib.sha256(memoryview(tokens)).hexdigest()


def prepare_shards(inputs: str | os.PathLike, out_dir: str | os.PathLike, tokenizer: str = "bpe",
                   vocab_size: int = 32000, shard_tokens: int = DEFAULT_SHARD_TOKENS, val_fraction: float = 0.1,
                   block_chars: int = DEFAULT_BLOCK_CHARS, progress: bool = True) -> dict:
    """Tokenize a corpus into train / val shards in ``out_dir`` (resumable); returns ``meta.json``'s content.

    Parameters
    ----------
    inputs : path-like
        A UTF-8 text file or a folder (every ``*.txt`` below it, sorted by relative path).
    out_dir : path-like
        The prepared folder (created). See the module docstring for its layout and the rules.
    tokenizer : {"bpe", "char", "byte"}
        Byte-level BPE trained here on the training blocks (Sennrich et al. 2016), one id per
        distinct character of the corpus, or the 256 UTF-8 byte values.
    vocab_size : int
        BPE vocabulary (>= 256; the result may be smaller on a small corpus). Ignored by
        ``char`` (the corpus' characters) and ``byte`` (256).
    shard_tokens : int
        Tokens per shard (a shard closes at the first block boundary at or past it).
    val_fraction : float
        Fraction of blocks held out for validation, in (0, 1).
    block_chars : int
        Minimum characters per block, the unit of the split (default 16384).
    progress : bool
        Show tqdm progress bars (over input bytes).
    """
    from tqdm.auto import tqdm

    _validate(tokenizer, vocab_size, shard_tokens, val_fraction, block_chars)
    files = list_inputs(inputs)
    out = Path(out_dir)
    total = sum(p.stat().st_size for p, _ in files)
    if total == 0:
        raise ValueError(f"corpus {str(inputs)!r} is empty: no text to tokenize")
    with tqdm(total=3 * total, unit="B", unit_scale=True, desc="prepare", disable=not progress) as bar:
        inputs_info = []
        for path, name in files:  # pass 1: the content hash (and a UTF-8 check)
            inputs_info.append({"path": name, "bytes": path.stat().st_size, "sha256": _sha256_file(path, True)})
            bar.update(inputs_info[-1]["bytes"])
        options = {"tokenizer": tokenizer, "vocab_size": vocab_size if tokenizer == "bpe" else None,
                   "shard_tokens": shard_tokens, "val_fraction": val_fraction, "block_chars": block_chars}
        fingerprint = hashlib.sha256(json.dumps([FORMAT_VERSION, options, inputs_info], sort_keys=True).encode())
        state = _read_state(out, fingerprint.hexdigest())
        if state is not None and state["complete"] and _all_shards_intact(out, state, check_hash=False):
            bar.update(bar.total - bar.n)  # already prepared
            return state
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # temp files of a killed run (atomic_open cleans up on exceptions)
            if stale.name.startswith(tuple(f".{name}" for name in (*SPLITS, META, PROGRESS, TOKENIZER_FILE))):
                stale.unlink()
        tok_spec = _kept_tokenizer(out, state)
        if tok_spec is None:  # pass 2: fit the tokenizer; shards encoded with another one are dropped
            tok_spec, state = _fit_tokenizer(tokenizer, files, block_chars, vocab_size, val_fraction, out, bar), None
        bar.update(2 * total - bar.n)
        if state is None:
            state = {"splits": {s: {"shards": [], "next_block": 0} for s in SPLITS}}
        state.update(format="synthfuse.synthe.shards", version=FORMAT_VERSION, fingerprint=fingerprint.hexdigest(),
                     options=options, inputs=inputs_info, tokenizer=tok_spec, vocab_size=tok_spec["vocab_size"],
                     complete=False)
        _drop_damaged_shards(out, state)
        (out / META).unlink(missing_ok=True)  # a folder with meta.json is always complete
        atomic_write_text(out / PROGRESS, json.dumps(state, indent=1))
        _encode_corpus(files, out, state, shard_tokens, bar)  # pass 3
    atomic_write_text(out / META, json.dumps(state, indent=1))
    (out / PROGRESS).unlink()
    return state


def _all_shards_intact(out: Path, state: dict, check_hash: bool) -> bool:
    itemsize = token_dtype(state["vocab_size"]).itemsize
    return all(_shard_intact(out, s, itemsize, check_hash) for split in SPLITS for s in state["splits"][split]["shards"])


def _kept_tokenizer(out: Path, state: dict | None) -> dict | None:
    """The spec of an earlier run's tokenizer when its file (BPE) is still intact, else None."""
    spec = state and state["tokenizer"]
    if spec and spec["kind"] == "bpe":
        path = out / spec["file"]
        return spec if path.is_file() and _sha256_file(path) == spec["sha256"] else None
    return spec or None


def _drop_damaged_shards(out: Path, state: dict) -> None:
    """Keep each split's finished shards up to the first missing / truncated / altered one."""
    itemsize = token_dtype(state["vocab_size"]).itemsize
    for record in state["splits"].values():
        intact = 0
        while intact < len(record["shards"]) and _shard_intact(out, record["shards"][intact], itemsize, True):
            intact += 1
        record["shards"] = record["shards"][:intact]
        record["next_block"] = record["shards"][-1]["end_block"] if intact else 0


def _encode_corpus(files, out: Path, state: dict, shard_tokens: int, bar) -> None:
    """Tokenize the blocks no finished shard holds and write the remaining shards (updates ``state``)."""
    options, dtype = state["options"], token_dtype(state["vocab_size"])
    encode = _block_encoder(state["tokenizer"], out)
    pending: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)

    def close_shard(split: str, end_block: int) -> None:
        record = state["splits"][split]
        tokens = np.concatenate(pending[split])
        name = f"{split}_{len(record['shards']):05d}.bin"
        record["shards"].append({"file": name, "tokens": int(tokens.size), "sha256": _write_shard(out / name, tokens),
                                 "end_block": end_block})
        record["next_block"] = end_block
        pending[split], counts[split] = [], 0
        atomic_write_text(out / PROGRESS, json.dumps(state, indent=1))

    blocks = enumerate(iter_blocks(files, options["block_chars"]))
    n_blocks = 0
    while batch := list(islice(blocks, _BLOCKS_PER_BATCH)):
        split_of = {k: SPLITS[is_val_block(k, options["val_fraction"])] for k, _ in batch}
        todo = [(k, text) for k, text in batch if k >= state["splits"][split_of[k]]["next_block"]]
        for (k, _), ids in zip(todo, encode([text for _, text in todo])):
            pending[split_of[k]].append(ids)
            counts[split_of[k]] += ids.size
            if counts[split_of[k]] >= shard_tokens:
                close_shard(split_of[k], k + 1)
        n_blocks = batch[-1][0] + 1
        bar.update(sum(len(text.encode("utf-8")) for _, text in batch))
    for split in SPLITS:
        if pending[split]:
            close_shard(split, n_blocks)
        if not state["splits"][split]["shards"]:
            raise ValueError(
                f"the corpus gave {n_blocks} block(s) of >= {options['block_chars']} characters and none for the "
                f"{split} split (val_fraction f = {options['val_fraction']} holds out block k when "
                f"floor((k+1)f+1/2) > floor(kf+1/2)); pass a smaller block_chars (--block_chars) or another val_fraction")
        state["splits"][split]["tokens"] = sum(s["tokens"] for s in state["splits"][split]["shards"])
    state.update(blocks=n_blocks, dtype=dtype.name, complete=True)


class ShardData:
    """Random windows over the token shards of a folder written by :func:`prepare_shards`.

    The same interface as :class:`~synthfuse.synthe.train.text.TextData`: ``vocab_size``,
    ``tokenizer`` (``encode`` / ``decode``) and ``batch(split, batch_size, generator)``.
    Shards are ``np.memmap``-ed on first use, so only the pages holding drawn windows are read.

    A window of ``T + 1`` tokens never crosses a shard boundary: shard ``i`` of a split, with
    ``n_i`` tokens, offers ``m_i = max(0, n_i - T)`` start offsets; a draw
    ``u ~ U{0, ..., sum_i m_i - 1}`` (one ``torch.randint`` per row, from ``generator``) picks
    shard ``i`` with ``M_{i-1} <= u < M_i`` (``M`` the running sum of ``m``) and offset
    ``u - M_{i-1}``, i.e. every admissible window is equally likely.

    Parameters
    ----------
    path : path-like
        A prepared folder (holding ``meta.json``).
    seq_len : int
        ``T``: inputs ``ids[s : s + T]``, targets ``ids[s + 1 : s + T + 1]``.
    """

    def __init__(self, path: str | os.PathLike, seq_len: int) -> None:
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            hint = " (an interrupted prepare: rerun it)" if (self.path / PROGRESS).is_file() else ""
            raise FileNotFoundError(f"{meta_path} not found{hint}; make the folder with `synthfuse synthe prepare`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != "synthfuse.synthe.shards" or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path} is not a version-{FORMAT_VERSION} synthfuse shard folder")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1; got {seq_len}")
        self.meta, self.seq_len = meta, seq_len
        self.tokenizer = load_tokenizer(meta["tokenizer"], self.path)
        self.dtype = token_dtype(meta["vocab_size"])
        self._files = {s: [self.path / r["file"] for r in meta["splits"][s]["shards"]] for s in SPLITS}
        self._tokens = {s: [r["tokens"] for r in meta["splits"][s]["shards"]] for s in SPLITS}
        for split in SPLITS:
            for path, n in zip(self._files[split], self._tokens[split]):
                if not path.is_file() or path.stat().st_size != n * self.dtype.itemsize:
                    raise ValueError(f"shard {path} is missing or not {n} tokens long; rerun `synthfuse synthe prepare`")
        # M_i: running sum of the admissible start offsets per shard
        self._ends = {s: torch.tensor([max(0, n - seq_len) for n in self._tokens[s]]).cumsum(0) for s in SPLITS}
        short = [s for s in SPLITS if int(self._ends[s][-1]) == 0]
        if short:
            raise ValueError(f"seq_len {seq_len} does not fit any shard of the {short} split(s) of {self.path} "
                             f"(largest: {[max(self._tokens[s]) for s in short]} tokens)")
        self._maps: dict[tuple[str, int], np.memmap] = {}

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def num_tokens(self, split: str) -> int:
        """Tokens in ``split`` (all its shards)."""
        return sum(self._tokens[split])

    def _memmap(self, split: str, i: int) -> np.memmap:
        key = (split, i)
        if key not in self._maps:
            self._maps[key] = np.memmap(self._files[split][i], dtype=self.dtype, mode="r", shape=(self._tokens[split][i],))
        return self._maps[key]

    def window_starts(self, split: str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(shard, offset)`` of ``batch_size`` windows of ``split``, drawn from ``generator``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        ends = self._ends[split]
        u = torch.randint(0, int(ends[-1]), (batch_size,), generator=generator)
        shard = torch.searchsorted(ends, u, right=True)
        first = ends - ends.diff(prepend=ends.new_zeros(1))  # M_{i-1}
        return shard, u - first[shard]

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``batch_size`` windows of ``split`` at random offsets drawn from ``generator`` (int64 ``(B, T)``)."""
        return self.batch_rows(split, batch_size, generator, slice(None))

    def batch_rows(self, split: str, batch_size: int, generator: torch.Generator, rows: slice) -> tuple[Tensor, Tensor]:
        """Rows ``rows`` of ``batch(split, batch_size, generator)``, reading only those windows from disk.

        All ``batch_size`` offsets are drawn (so the generator advances exactly as in :meth:`batch`);
        a data-parallel rank passes its slice of the global batch.
        """
        shard, offset = self.window_starts(split, batch_size, generator)
        shard, offset = shard[rows], offset[rows]
        windows = torch.empty((len(shard), self.seq_len + 1), dtype=torch.long)
        span = np.arange(self.seq_len + 1)
        for i in shard.unique().tolist():  # one gather per shard touched
            sel = (shard == i).nonzero().squeeze(1)
            tokens = self._memmap(split, i)[offset[sel].numpy()[:, None] + span]  # (rows in shard i, T + 1)
            windows[sel] = torch.from_numpy(tokens.astype(np.int64))
        return windows[:, :-1], windows[:, 1:]
