"""Text data, tokenizers, the 90/10 split and the Zoology task generators."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from synthfuse.synthe.train import ByteTokenizer, CharTokenizer, SyntheticData, TextData, load_corpus
from synthfuse.synthe.train.synthetic import S5_PERMUTATIONS, S5_TABLE, copy_task, mqar, parity, prefix_compose, s5

SHAKESPEARE = Path(__file__).resolve().parents[4] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture
def corpus() -> str:
    """tinyshakespeare's first 20k characters when present, else a generated text."""
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8")[:20000]
    gen = torch.Generator().manual_seed(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "\n"]
    return " ".join(words[i] for i in torch.randint(0, len(words), (4000,), generator=gen).tolist())


def test_char_tokenizer_round_trip(corpus):
    tok = CharTokenizer(corpus)
    ids = tok.encode(corpus[:500])
    assert tok.decode(ids) == corpus[:500] and tok.vocab_size == len(set(corpus))
    assert ids.max() < tok.vocab_size
    with pytest.raises(ValueError, match="not in the tokenizer"):
        tok.encode("\u2603")


def test_byte_tokenizer_round_trip_unicode():
    text = "héllo wörld ☃"
    ids = ByteTokenizer().encode(text)
    assert ids.tolist() == list(text.encode("utf-8")) and ByteTokenizer().decode(ids) == text


def test_split_is_contiguous_90_10_and_windows_stay_inside(corpus):
    data = TextData(corpus, seq_len=32)
    ids = CharTokenizer(corpus).encode(corpus)
    n_train = int(len(ids) * 0.9)
    assert torch.equal(data.splits["train"], ids[:n_train]) and torch.equal(data.splits["val"], ids[n_train:])
    # windows of a text whose token = position: every window is a contiguous run inside its split
    data.splits = {"train": torch.arange(100), "val": torch.arange(100, 112)}
    data.seq_len = 11
    for split, (lo, hi) in (("train", (0, 100)), ("val", (100, 112))):
        x, y = data.batch(split, 256, torch.Generator().manual_seed(1))
        assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y - x, torch.ones_like(x))
        assert x.min() >= lo and y.max() < hi
    assert set(data.batch("val", 256, torch.Generator().manual_seed(1))[0][:, 0].tolist()) == {100}


def test_load_corpus_cache_and_errors(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\n", encoding="utf-8")
    assert load_corpus("tinyshakespeare", cache_dir=tmp_path) == "First Citizen:\n"
    path = tmp_path / "any.txt"
    path.write_text("ünïcode", encoding="utf-8")
    assert load_corpus(str(path)) == "ünïcode"
    with pytest.raises(FileNotFoundError, match="not found"):
        load_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="UTF-8"):
        load_corpus(str(tmp_path / "bad.txt"))
    with pytest.raises(ValueError, match="seq_len"):
        TextData("abc" * 5, seq_len=10)


def _reference_mqar_check(x, y, vocab, k):
    """Zoology's layout, checked example by example."""
    half = vocab // 2
    for xi, yi in zip(x.tolist(), y.tolist()):
        keys, values = xi[0 : 2 * k : 2], xi[1 : 2 * k : 2]
        assert len(set(keys)) == k and all(1 <= key < half for key in keys)
        assert len(set(values)) == k and all(half <= v < vocab for v in values)
        pairs = dict(zip(keys, values))
        scored = [t for t, v in enumerate(yi) if v != -100]
        assert len(scored) == k and all(t >= 2 * k and (t - 2 * k) % 2 == 0 for t in scored)
        assert sorted(xi[t] for t in scored) == sorted(keys)
        assert all(yi[t] == pairs[xi[t]] for t in scored)


def test_mqar_matches_zoology_layout():
    x, y = mqar(64, 64, 8192, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (64, 64) and x.min() >= 0 and x.max() < 8192
    _reference_mqar_check(x, y, 8192, 4)
    x2, _ = mqar(64, 64, 8192, 4, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # seeded
    with pytest.raises(ValueError, match="MQAR"):
        mqar(2, 30, 8192, 8, torch.Generator())


def test_mqar_gaps_follow_a_power_law():
    # P(g) ~ (g + 1)^(a - 1), a = 0.01: the first query slot is used far more often than the last
    x, y = mqar(2000, 64, 256, 1, torch.Generator().manual_seed(3))
    gaps = ((y != -100).float().argmax(1) - 2) // 2
    counts = torch.bincount(gaps, minlength=31).double()
    p = torch.arange(1, 32, dtype=torch.float64) ** -0.99
    assert counts[0] / 2000 == pytest.approx((p[0] / p.sum()).item(), abs=0.04)
    assert counts[:4].sum() > counts[-8:].sum() * 3


def test_copy_and_parity_targets():
    x, y = copy_task(8, 20, 50, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 10:], x[:, :10]) and (y[:, :10] == -100).all() and (x[:, 10] == 0).all()
    assert torch.equal(x[:, 11:], x[:, :9])
    bits, par = parity(8, 33, torch.Generator().manual_seed(0))
    ref = torch.tensor([[sum(row[: t + 1]) % 2 for t in range(33)] for row in bits.tolist()])
    assert torch.equal(par, ref)


def test_s5_table_is_composition():
    perms = [tuple(p) for p in itertools.permutations(range(5))]
    assert torch.equal(S5_PERMUTATIONS, torch.tensor(perms))
    for a, b in ((3, 77), (119, 5), (0, 42), (64, 64)):
        composed = tuple(perms[a][perms[b][i]] for i in range(5))
        assert S5_TABLE[a, b].item() == perms.index(composed)
    assert (S5_TABLE[0] == torch.arange(120)).all()  # identity
    assert not torch.equal(S5_TABLE, S5_TABLE.T)  # non-abelian


def _naive_prefix(ids, table):
    out = ids.clone()
    for t in range(1, ids.shape[1]):
        out[:, t] = table[ids[:, t], out[:, t - 1]]
    return out


@pytest.mark.parametrize("length", [1, 2, 7, 64, 100])
def test_prefix_compose_matches_naive(length):
    ids = torch.randint(0, 120, (5, length), generator=torch.Generator().manual_seed(length))
    assert torch.equal(prefix_compose(ids, S5_TABLE), _naive_prefix(ids, S5_TABLE))
    x, y = s5(3, length, torch.Generator().manual_seed(0))
    assert torch.equal(y, _naive_prefix(x, S5_TABLE))


def test_synthetic_data_vocab_and_unknown_task():
    assert SyntheticData("parity", 16).vocab_size == 2 and SyntheticData("s5", 16).vocab_size == 120
    assert SyntheticData("mqar", 64, vocab=512).vocab_size == 512
    with pytest.raises(ValueError, match="unknown synthetic task"):
        SyntheticData("sorting", 16)
