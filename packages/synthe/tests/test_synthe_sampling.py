"""Next-token sampling: greedy, top-k and top-p supports."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe import sample_next


def test_greedy_is_argmax():
    logits = torch.randn(4, 50)
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))


def test_top_k_and_top_p_restrict_the_support():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    top2 = sample_next(logits, temperature=1.0, top_k=2, generator=g)
    assert set(top2.tolist()) == {0, 1}
    # probabilities ~ [0.64, 0.24, 0.09, 0.03, 0.01]: top_p = 0.8 keeps {0, 1}, 0.5 keeps {0}.
    assert set(sample_next(logits, 1.0, top_p=0.8, generator=g).tolist()) == {0, 1}
    assert set(sample_next(logits, 1.0, top_p=0.5, generator=g).tolist()) == {0}
    full = sample_next(logits, 1.0, generator=g)
    frequency = torch.bincount(full, minlength=5).float() / len(full)
    torch.testing.assert_close(frequency, logits[0].softmax(-1), atol=0.03, rtol=0)


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sample_next(torch.randn(1, 5), **kwargs)


def test_decode_feeds_back_all_but_the_last_token():
    from synthfuse.synthe.sampling import decode

    fed = []

    def step(tokens):
        fed.append(tokens)
        return torch.nn.functional.one_hot(tokens[:, 0] + 1, 10).float()  # always predict token + 1

    first = torch.nn.functional.one_hot(torch.tensor([2, 5]), 10).float()
    new = decode(first, step, 4, temperature=0.0)
    assert new.tolist() == [[2, 3, 4, 5], [5, 6, 7, 8]] and len(fed) == 3
    assert decode(first, step, 0).shape == (2, 0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(first, step, -1)
