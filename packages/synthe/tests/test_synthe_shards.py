"""``synthfuse synthe prepare``: byte-level BPE, block split, resumable shards and ``ShardData`` windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthfuse.synthe import SyntheConfig
from synthfuse.synthe.cli import main
from synthfuse.synthe.train import DataConfig, RunConfig, TrainConfig, Trainer, batch_generator, build_data
from synthfuse.synthe.train import shards as shards_module
from synthfuse.synthe.train.bpe import BpeTokenizer
from synthfuse.synthe.train.shards import ShardData, is_val_block, prepare_shards, token_dtype
from synthfuse.synthe.train.text import CharTokenizer

SHAKESPEARE = Path(__file__).resolve().parents[4] / "shared" / "data" / "tinyshakespeare.txt"  # ../shared/data
UNICODE = "héllo wörld ☃ 日本語 — «ça» naïve café\r\n\ttab  two  spaces\n\n🙂 emoji, ok?\n"
BLOCK = 1500  # characters per block in these tests: a 30k-character corpus gives ~20 blocks


@pytest.fixture(scope="module")
def corpus() -> str:
    """tinyshakespeare's first 30k characters (plus some Unicode) when present, else generated lines."""
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8")[:30000] + UNICODE
    gen = torch.Generator().manual_seed(0)
    words = ["to", "be,", "or", "not", "that", "is", "the", "question:", "whether", "'tis", "nobler", "mind", "1601"]
    ids = torch.randint(0, len(words), (6000,), generator=gen).tolist()
    return "\n".join(" ".join(words[i] for i in ids[j:j + 7]) for j in range(0, len(ids), 7)) + UNICODE


@pytest.fixture(scope="module")
def corpus_file(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes(corpus.encode("utf-8"))  # write_bytes: keep the \r\n as is
    return path


@pytest.fixture(scope="module")
def bpe_dir(corpus_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bpe") / "shards"
    prepare_shards(corpus_file, out, "bpe", vocab_size=500, shard_tokens=2000, block_chars=BLOCK, progress=False)
    return out


def _reference_blocks(text: str, block_chars: int) -> list[str]:
    """Cut ``text`` at the first ``...x\\nY`` line start at or past ``block_chars`` characters (a plain loop)."""
    blocks, start = [], 0
    for i in range(len(text)):
        if (i - start >= block_chars and text[i - 1] == "\n" and not text[i - 2].isspace()
                and not text[i].isspace()):
            blocks.append(text[start:i])
            start = i
    assert all(len(b) < 4 * block_chars for b in blocks), "the reference does not model the hard cut"
    return blocks + [text[start:]]


def _split_tokens(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    dtype = token_dtype(meta["vocab_size"])
    return np.concatenate([np.fromfile(folder / s["file"], dtype=dtype) for s in meta["splits"][split]["shards"]])


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_bpe_round_trip_unicode_and_save_load(corpus, tmp_path):
    tok = BpeTokenizer.train([corpus], vocab_size=400)
    assert 256 < tok.vocab_size <= 400
    for text in (UNICODE, corpus[:2000], "never seen: Ωmega ∑ 𝔘 \x00 end"):
        ids = tok.encode(text)
        assert ids.dtype == torch.int64 and int(ids.max()) < tok.vocab_size and tok.decode(ids) == text
    assert len(tok.encode(corpus[:2000])) < len(corpus[:2000].encode("utf-8"))  # merges compress
    tok.save(tmp_path / "tokenizer.json")
    again = BpeTokenizer.load(tmp_path / "tokenizer.json")
    assert torch.equal(again.encode(corpus[:3000]), tok.encode(corpus[:3000]))
    assert BpeTokenizer.train([corpus], vocab_size=400).to_json() == tok.to_json()  # training is deterministic
    with pytest.raises(ValueError, match="vocab_size >= 256"):
        BpeTokenizer.train([corpus], vocab_size=100)


def test_token_dtype_and_the_uint32_path(corpus_file, corpus, tmp_path, monkeypatch):
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    monkeypatch.setattr(shards_module, "UINT16_MAX_VOCAB", 100)  # the byte vocabulary (256) now needs uint32
    meta = prepare_shards(corpus_file, tmp_path, "byte", shard_tokens=5000, block_chars=BLOCK, progress=False)
    assert meta["dtype"] == "uint32"
    shard = meta["splits"]["train"]["shards"][0]
    assert (tmp_path / shard["file"]).stat().st_size == 4 * shard["tokens"]
    blocks = _reference_blocks(corpus, BLOCK)
    train = "".join(b for k, b in enumerate(blocks) if not is_val_block(k, 0.1)).encode("utf-8")
    assert _split_tokens(tmp_path, "train").tolist() == list(train)
    x, y = ShardData(tmp_path, 8).batch("train", 4, torch.Generator().manual_seed(0))
    assert x.dtype == torch.int64 and bytes(x[0].tolist()) in train


def test_block_split_rule_holds_out_round_n_f_blocks():
    for f in (0.1, 0.25, 0.5):
        held = [k for k in range(200) if is_val_block(k, f)]
        assert len(held) == round(200 * f) and all(sum(1 for k in held if k < n) == int(n * f + 0.5) for n in range(200))
    assert [k for k in range(30) if is_val_block(k, 0.1)] == [4, 14, 24]


@pytest.mark.parametrize("kind", ["bpe", "char", "byte"])
def test_shards_concatenate_to_the_reference_encoding(kind, corpus, corpus_file, bpe_dir, tmp_path):
    out = bpe_dir if kind == "bpe" else tmp_path
    if kind != "bpe":
        prepare_shards(corpus_file, out, kind, shard_tokens=4000, block_chars=BLOCK, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    if kind == "bpe":
        tok = BpeTokenizer.load(out / "tokenizer.json")
        encode = lambda text: tok.encode(text).tolist()  # noqa: E731
    elif kind == "char":
        encode = lambda text: CharTokenizer(corpus).encode(text).tolist()  # noqa: E731
    else:
        encode = lambda text: list(text.encode("utf-8"))  # noqa: E731
    blocks = _reference_blocks(corpus, BLOCK)
    assert "".join(blocks) == corpus and len(blocks) == meta["blocks"] >= 15
    # block-wise tokenization is whole-corpus tokenization (the cut rule never splits a pre-token)
    assert sum((encode(b) for b in blocks), []) == encode(corpus)
    for split in ("train", "val"):
        expected = sum((encode(b) for k, b in enumerate(blocks) if is_val_block(k, 0.1) == (split == "val")), [])
        assert _split_tokens(out, split).tolist() == expected and meta["splits"][split]["tokens"] == len(expected)
    assert len(meta["splits"]["train"]["shards"]) >= 3 and meta["dtype"] == "uint16"


def test_folder_input_order_and_hard_cut(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    texts = {"b.txt": "second file\n" * 50, "a/c.txt": "x y " * 500, "a/skip.md": "not text"}
    for name, text in texts.items():
        (tmp_path / "in" / name).write_text(text, encoding="utf-8")
    meta = prepare_shards(tmp_path / "in", tmp_path / "out", "byte", block_chars=100, val_fraction=0.25, progress=False)
    assert [f["path"] for f in meta["inputs"]] == ["a/c.txt", "b.txt"]
    both = np.concatenate([_split_tokens(tmp_path / "out", s) for s in ("train", "val")])
    assert len(both) == len(texts["a/c.txt"]) + len(texts["b.txt"])
    # "x y x y ..." has no line start to cut at: blocks are cut hard at 4 * block_chars
    blocks = list(shards_module.iter_blocks(shards_module.list_inputs(tmp_path / "in"), 100))
    assert [len(b) for b in blocks[:5]] == [400, 400, 400, 400, 400] and "".join(blocks[:5]) == texts["a/c.txt"]


def test_interrupted_prepare_resumes_bit_identically(corpus_file, bpe_dir, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    writes, fits = [], []
    real_write, real_train = shards_module._write_shard, BpeTokenizer.train.__func__

    def failing_write(path, tokens):
        if writes:
            raise RuntimeError("simulated crash")
        writes.append(path.name)
        return real_write(path, tokens)

    monkeypatch.setattr(shards_module, "_write_shard", failing_write)
    args = dict(tokenizer="bpe", vocab_size=500, shard_tokens=2000, block_chars=BLOCK, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_shards(corpus_file, out, **args)
    assert (out / "progress.json").exists() and not (out / "meta.json").exists() and (out / "train_00000.bin").exists()
    assert not list(out.glob(".*.tmp"))  # the failed shard's temp file was removed
    (out / ".train_00001.bin.left_by_kill.tmp").write_bytes(b"junk")  # as a SIGKILL would leave it

    def counting_write(path, tokens):
        writes.append(path.name)
        return real_write(path, tokens)

    monkeypatch.setattr(shards_module, "_write_shard", counting_write)
    monkeypatch.setattr(BpeTokenizer, "train", classmethod(lambda cls, *a, **k: fits.append(1) or real_train(cls, *a, **k)))
    writes.clear()
    meta = prepare_shards(corpus_file, out, **args)
    n_shards = sum(len(meta["splits"][s]["shards"]) for s in ("train", "val"))
    assert "train_00000.bin" not in writes and len(writes) == n_shards - 1 and not fits
    assert _folder_bytes(out) == _folder_bytes(bpe_dir)  # == the uninterrupted run, file by file
    writes.clear()
    assert prepare_shards(corpus_file, out, **args) == meta and not writes  # complete: a no-op
    # a damaged shard is rebuilt (with the ones after it in its split), the rest kept
    (out / "train_00001.bin").write_bytes((out / "train_00001.bin").read_bytes()[:-2])
    prepare_shards(corpus_file, out, **args)
    assert writes == [s["file"] for s in meta["splits"]["train"]["shards"][1:]]
    assert _folder_bytes(out) == _folder_bytes(bpe_dir)
    with pytest.raises(ValueError, match="other inputs or options"):
        prepare_shards(corpus_file, out, **{**args, "vocab_size": 400})


def _reference_windows(folder: Path, split: str, seq_len: int, batch_size: int, seed: int):
    """Windows at the same draws, located by walking the shards one row at a time, sliced from the concatenation."""
    meta = json.loads((folder / "meta.json").read_text())
    sizes = [s["tokens"] for s in meta["splits"][split]["shards"]]
    tokens = torch.from_numpy(_split_tokens(folder, split).astype(np.int64))
    total = sum(max(0, n - seq_len) for n in sizes)
    rows = []
    for u in torch.randint(0, total, (batch_size,), generator=torch.Generator().manual_seed(seed)).tolist():
        base = 0
        for n in sizes:
            if u < max(0, n - seq_len):
                break
            u -= max(0, n - seq_len)
            base += n
        rows.append(tokens[base + u: base + u + seq_len + 1])
        assert base + u + seq_len < base + n  # inside one shard
    windows = torch.stack(rows)
    return windows[:, :-1], windows[:, 1:]


@pytest.mark.parametrize("seq_len", [16, 700])
def test_batch_windows_equal_the_reference_slices(bpe_dir, seq_len):
    data = ShardData(bpe_dir, seq_len)
    assert 256 < data.vocab_size == data.tokenizer.vocab_size <= 500  # < 500 once every word is one token
    for split in ("train", "val"):
        x, y = data.batch(split, 64, torch.Generator().manual_seed(5))
        rx, ry = _reference_windows(bpe_dir, split, seq_len, 64, seed=5)
        assert x.dtype == torch.int64 and x.shape == (64, seq_len) and torch.equal(x, rx) and torch.equal(y, ry)
    shard, offset = data.window_starts("train", 2000, torch.Generator().manual_seed(0))
    sizes = torch.tensor([s["tokens"] for s in data.meta["splits"]["train"]["shards"]])
    assert bool((offset + seq_len < sizes[shard]).all()) and bool((offset >= 0).all())
    assert set(shard.tolist()) == {i for i, n in enumerate(sizes.tolist()) if n > seq_len}  # every usable shard


def test_batch_rows_equal_the_sliced_batch_and_read_only_their_shards(bpe_dir):
    full = ShardData(bpe_dir, 32).batch("train", 12, batch_generator(7, "train", 3))
    for rows in (slice(0, 3), slice(3, 12), slice(5, None), slice(0, 12, 4)):
        data = ShardData(bpe_dir, 32)  # a fresh open: as after a restart
        gen = batch_generator(7, "train", 3)
        x, y = data.batch_rows("train", 12, gen, rows)
        assert torch.equal(x, full[0][rows]) and torch.equal(y, full[1][rows])
        shard, _ = ShardData(bpe_dir, 32).window_starts("train", 12, batch_generator(7, "train", 3))
        assert {i for _, i in data._maps} == set(shard[rows].tolist())
        reference = batch_generator(7, "train", 3)
        data.batch("train", 12, reference)
        assert torch.equal(gen.get_state(), reference.get_state())  # the generator advanced as in batch()


def test_trainer_and_cli_train_from_shards(corpus_file, bpe_dir, tmp_path, capsys):
    model = SyntheConfig(d_model=16, n_layers=3, n_heads=2, chunk_size=16, probe_window=8, sentence_len=4,
                         discourse_len=16, probe_layers=[1], exit_layers=[1])
    train = TrainConfig(batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=1, max_steps=5, eval_interval=5,
                        eval_batches=1, seed=0, device="cpu")
    trainer = Trainer(RunConfig("synthe", model, DataConfig(name=str(bpe_dir), seq_len=32), train), progress=False)
    assert isinstance(trainer.data, ShardData) and trainer.model.config.vocab_size == trainer.data.vocab_size
    final = trainer.fit()
    losses = [r["lm_loss"] for r in trainer.history]
    assert len(losses) == 5 and all(np.isfinite(losses)) and np.isfinite(final["val_loss"])
    assert losses[-1] < losses[0]
    text = trainer.sample("First Citizen:\n", 12, temperature=0.0)
    assert isinstance(text, str) and len(trainer.data.tokenizer.encode(text)) >= 1
    out, config = tmp_path / "cli_shards", tmp_path / "run.yaml"
    assert main(["prepare", "--input", str(corpus_file), "--out", str(out), "--tokenizer", "char",
                 "--block_chars", str(BLOCK), "--no_progress"]) == 0
    assert "train on it: synthfuse synthe train --data" in capsys.readouterr().out
    RunConfig("synthe", model, DataConfig(seq_len=16), train).to_yaml(config)
    assert main(["train", "--config", str(config), "--data", str(out), "--max_steps", "2", "--out_dir",
                 str(tmp_path / "run"), "--sample_tokens", "8", "--no_progress"]) == 0
    samples = (tmp_path / "run" / "samples.txt").read_text(encoding="utf-8")
    generated = [line for line in samples.splitlines() if not line.startswith("--- ")]
    assert samples.startswith("--- greedy ---") and set("".join(generated)) <= set(corpus_file.read_text(encoding="utf-8"))


def test_bad_input_errors(corpus_file, bpe_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        prepare_shards(tmp_path / "missing.txt", tmp_path / "o", progress=False)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        prepare_shards(tmp_path / "empty.txt", tmp_path / "o", progress=False)
    (tmp_path / "nodocs").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        prepare_shards(tmp_path / "nodocs", tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="vocab_size"):
        prepare_shards(corpus_file, tmp_path / "o", "bpe", vocab_size=255, progress=False)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not valid UTF-8 \(invalid continuation byte at byte 3\)"):
        prepare_shards(tmp_path / "latin1.txt", tmp_path / "o", "byte", progress=False)
    assert not (tmp_path / "o").exists()  # every error so far came before anything was written
    with pytest.raises(ValueError, match="none for the val split"):
        prepare_shards(corpus_file, tmp_path / "o2", "byte", progress=False)  # 30k characters: 2 default blocks
    for bad in (dict(val_fraction=1.0), dict(tokenizer="wordpiece"), dict(shard_tokens=0)):
        with pytest.raises(ValueError):
            prepare_shards(corpus_file, tmp_path / "o", **bad, progress=False)
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        ShardData(tmp_path / "nodocs", 8)
    with pytest.raises(ValueError, match="seq_len 100000 does not fit"):
        ShardData(bpe_dir, 100000)
    with pytest.raises(ValueError, match="prepared shard folder"):
        build_data(DataConfig(name=str(corpus_file), tokenizer="bpe"))
    with pytest.raises(ValueError, match="DataConfig.tokenizer"):
        DataConfig(tokenizer="wordpiece")
    broken = tmp_path / "broken"
    prepare_shards(corpus_file, broken, "byte", block_chars=BLOCK, progress=False)
    (broken / "val_00000.bin").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="missing or not"):
        ShardData(broken, 8)
