"""KL tokenizer round trips and AST tree distances of tokens."""

import numpy as np
import pytest

from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.data.generator import generate
from synthfuse.koda.lang import ast as A
from synthfuse.koda.lang import parse
from synthfuse.koda.model.structure import _reference_tree_distances, ast_parents, token_owners, tree_distances
from synthfuse.koda.model.tokenizer import KLTokenizer

PROGRAMS = [p.source for p in generate(40, seed=3)]


@pytest.fixture(scope="module")
def tokenizer():
    return KLTokenizer.fit(PROGRAMS, list(THETA_CLASSES))


def test_encode_decode_round_trip_on_generated_programs(tokenizer):
    for src in PROGRAMS:
        ids, n_prompt = tokenizer.encode(src, "n log n", "def f(n: int) -> int")
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        assert ids[n_prompt - 1] == tokenizer.sep_id
        assert parse(tokenizer.decode(ids)) == parse(src)


def test_integer_literals_are_spelled_in_digits(tokenizer):
    ids = tokenizer.encode_program("def f(n: int) { work(1234); }")
    digits = [tokenizer.vocab[i] for i in ids if tokenizer.vocab[i].isdigit()]
    assert digits == ["1", "2", "3", "4"]
    assert "work(1234)" in tokenizer.decode(ids).replace(" ", "")


def test_unknown_identifiers_and_classes(tokenizer):
    ids = tokenizer.encode_program("def zzz_unseen(n: int) { work(n); }")
    assert tokenizer.unk_id in ids
    with pytest.raises(ValueError, match="unknown Θ class"):
        tokenizer.prompt("n^17")
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode([len(tokenizer)])
    clone = KLTokenizer.from_dict(tokenizer.to_dict())
    assert clone.vocab == tokenizer.vocab


def test_tree_distances_match_bfs():
    for src in PROGRAMS[:10]:
        _, parents = ast_parents(parse(src))
        np.testing.assert_array_equal(tree_distances(parents), _reference_tree_distances(parents))


def test_token_owners_follow_the_syntax():
    src = "def f(n: int) {\n    if n <= 1 { return; }\n    f(n / 2);\n}"
    tok = KLTokenizer.fit([src], ["log n"])
    ids, pos = tok.encode_with_positions(src)
    nodes, parents = ast_parents(parse(src))
    owners = token_owners(nodes, parents, pos)
    owned = {tok.vocab[i]: type(nodes[o]) for i, o in zip(ids, owners)}
    assert owned["def"] is A.Function and owned["if"] is A.If and owned["<="] is A.Binary
    assert owned["return"] is A.Return and owned["/"] is A.Binary
    # The two operands of n / 2 are 2 edges apart (siblings under the Binary node).
    d = tree_distances(parents)
    i_n = [k for k, i in enumerate(ids) if tok.vocab[i] == "n"][-1]
    i_2 = [k for k, i in enumerate(ids) if tok.vocab[i] == "2"][-1]
    assert d[owners[i_n], owners[i_2]] == 2
