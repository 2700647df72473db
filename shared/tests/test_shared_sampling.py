"""Temperature / top-k / top-p filtering and next-token sampling against hand-computed cases."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from synthfuse.shared.sampling import _reference_filter_logits, filter_logits, sample_next  # noqa: E402

# probabilities 0.5, 0.3, 0.15, 0.05 (already sorted; shuffled below)
PROBS = [0.5, 0.3, 0.15, 0.05]


def _kept(logits, **kwargs):
    return set(torch.isfinite(filter_logits(logits, **kwargs)).nonzero()[:, -1].tolist())


@pytest.mark.parametrize("top_p,kept", [(0.45, {0}), (0.7, {0, 1}), (0.85, {0, 1, 2}), (0.96, {0, 1, 2, 3}),
                                        (1.0, {0, 1, 2, 3}), (None, {0, 1, 2, 3})])
def test_shared_top_p_keeps_smallest_set_reaching_p(top_p, kept):
    # mass ranked before each token: 0, 0.5, 0.8, 0.95 -> a token is kept while that is < p
    order = [2, 0, 3, 1]  # the tokens in a shuffled vocabulary
    logits = torch.full((1, 4), 0.0)
    logits[0, order] = torch.tensor([math.log(p) for p in PROBS])
    assert _kept(logits, top_p=top_p) == {order[i] for i in kept}


def test_shared_top_k_temperature_and_masked_tokens():
    logits = torch.tensor([[1.0, 4.0, -2.0, 3.0, 0.0]])
    assert _kept(logits, top_k=2) == {1, 3}
    assert _kept(logits, top_k=1) == {1}
    assert _kept(logits, top_k=5) == _kept(logits, top_k=50) == set(range(5))
    torch.testing.assert_close(filter_logits(logits, temperature=0.5), logits * 2)
    # top-k first, then the nucleus of what is left: after top-2, p(1) = e^4 / (e^4 + e^3) = 0.731
    assert _kept(logits, top_k=2, top_p=0.7) == {1} and _kept(logits, top_k=2, top_p=0.75) == {1, 3}
    constrained = logits.clone()
    constrained[0, 1] = -math.inf  # a token a constraint forbids stays excluded
    assert _kept(constrained, top_k=2) == {0, 3}
    ties = torch.tensor([[2.0, 1.0, 2.0, 1.0]])
    assert _kept(ties, top_k=1) == {0, 2}  # ties with the k-th logit are kept


def test_shared_small_temperature_tends_to_argmax_and_zero_is_greedy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.stack([torch.randperm(50, generator=gen) for _ in range(64)]).float() * 0.1  # gaps >= 0.1
    probs = filter_logits(logits, temperature=1e-3).softmax(-1)
    torch.testing.assert_close(probs, torch.nn.functional.one_hot(logits.argmax(-1), 50).float())
    before = gen.get_state()
    assert torch.equal(sample_next(logits, temperature=0.0, generator=gen), logits.argmax(-1))
    assert torch.equal(gen.get_state(), before)  # greedy consumes no randomness
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=gen), logits.argmax(-1))


def test_shared_same_seed_same_sample_and_frequencies():
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(1))
    draw = [sample_next(logits, 1.0, 50, 0.9, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    # empirical frequencies match softmax of the filtered logits
    row = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    draws = sample_next(row.expand(20000, 6), 0.8, top_k=4, generator=torch.Generator().manual_seed(2))
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    torch.testing.assert_close(freq, filter_logits(row, 0.8, 4)[0].softmax(-1), atol=0.015, rtol=0)
    assert freq[4:].sum() == 0


@pytest.mark.parametrize("shape", [(3, 17), (2, 3, 11), (40,)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("temperature,top_k,top_p",
                         [(1.0, None, None), (0.7, 3, None), (1.3, None, 0.6), (1.0, 5, 0.8), (2.0, 1, 0.3)])
def test_shared_filter_logits_matches_reference(shape, temperature, top_k, top_p):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    logits.view(-1)[::7] = -math.inf  # constraint-masked tokens
    torch.testing.assert_close(filter_logits(logits, temperature, top_k, top_p),
                               _reference_filter_logits(logits, temperature, top_k, top_p))
    assert sample_next(logits, temperature, top_k, top_p).shape == shape[:-1]


def test_shared_half_logits_are_filtered_in_float32():
    logits = torch.randn(4, 9).to(torch.bfloat16)
    out = filter_logits(logits, 1.0, 3, 0.9)
    assert out.dtype == torch.float32
    assert filter_logits(logits.double(), 1.0).dtype == torch.float64
    assert sample_next(logits, 1.0, 3).dtype == torch.int64


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"temperature": -1.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": True}, "temperature"), ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"top_k": 2.0}, "top_k"), ({"top_k": True}, "top_k"), ({"top_p": 0.0}, "top_p must lie in"),
    ({"top_p": 1.5}, "top_p"),
])
def test_shared_bad_sampling_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        filter_logits(torch.randn(2, 5), **kwargs)
    if kwargs.get("temperature") != 0.0:
        with pytest.raises(ValueError, match=match):
            sample_next(torch.randn(2, 5), **kwargs)


def test_shared_bad_logits():
    for bad in (torch.tensor(1.0), torch.ones(2, 0), torch.ones(2, 3, dtype=torch.long), [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="logits must be a floating-point tensor"):
            sample_next(bad)


def test_shared_sampling_is_lazy_in_the_package():
    import synthfuse.shared as shared

    assert shared.sample_next is sample_next and shared.filter_logits is filter_logits
