"""RoPE: relative-position property, norm preservation, fast form vs explicit rotation matrices."""

import pytest
import torch

from synthfuse.koda.model.rope import RotaryEmbedding, _reference_rotation_matrix


@pytest.mark.parametrize("dim", [2, 8, 16])
def test_rope_matches_explicit_rotation_matrices(dim):
    torch.manual_seed(0)
    rope = RotaryEmbedding(dim, max_len=40)
    x = torch.randn(3, 40, dim, dtype=torch.float64)
    fast = rope(x)
    ref = torch.stack([x[:, m] @ _reference_rotation_matrix(m, dim).T for m in range(40)], dim=1)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-6)


def test_rope_scores_depend_only_on_offset_and_norms_are_preserved():
    torch.manual_seed(1)
    dim, t = 16, 64
    rope = RotaryEmbedding(dim, max_len=t)
    q, k = torch.randn(dim), torch.randn(dim)
    rq = rope(q.expand(t, dim).clone())  # R_m q for every m
    rk = rope(k.expand(t, dim).clone())
    scores = rq @ rk.T  # <R_m q, R_n k>
    for offset in (-7, 0, 3, 20):
        diag = torch.diagonal(scores, offset=offset)
        assert diag.std() < 1e-4 * diag.abs().max().clamp_min(1.0), offset
    # and the common value is <q, R_{n-m} k>
    torch.testing.assert_close(scores[0, 5], q @ rk[5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(t), rtol=1e-5, atol=1e-5)
    # Different offsets really give different scores (the test would pass for R = I otherwise).
    assert (scores[0, 1] - scores[0, 9]).abs() > 1e-3


def test_rope_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7, max_len=4)
    rope = RotaryEmbedding(4, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        rope(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="head_dim"):
        rope(torch.zeros(3, 6))
