"""Temporal Memory Hub: streaming = full pass, strict segment causality, absolute positions."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe import TemporalMemoryHub


def make_hub(seed=0, d=12, d_hub=6):
    torch.manual_seed(seed)
    hub = TemporalMemoryHub(d, d_hub, sentence_len=4, discourse_len=16).double()
    return hub, torch.randn(2, 70, d, dtype=torch.float64)


@pytest.mark.parametrize("sizes", [[1] * 70, [7] * 10, [4, 12, 16, 38], [3, 17, 1, 40, 9], [70]])
def test_streaming_equals_full_pass(sizes, rel_err):
    hub, h = make_hub()
    full, full_state = hub(h)
    state, pieces, pos = None, [], 0
    for size in sizes:
        out, state = hub(h[:, pos : pos + size], state, position=pos)
        pieces.append(out)
        pos += size
    assert rel_err(torch.cat(pieces, 1), full) <= 1e-12
    for key in full_state:
        assert rel_err(state[key], full_state[key]) <= 1e-12, key


@pytest.mark.parametrize("p", [0, 5, 18, 31])
def test_sentence_summary_visible_only_after_the_sentence_ends(p):
    hub, h = make_hub()
    h2 = h.clone()
    h2[:, p] += 1.0
    out, out2 = hub(h)[0], hub(h2)[0]
    end = (p // 4 + 1) * 4  # first position after p's sentence
    assert torch.equal(out[:, :p], out2[:, :p])
    assert torch.equal((out - h)[:, p + 1 : end], (out2 - h2)[:, p + 1 : end])  # same context inside the sentence
    assert not torch.equal(out[:, end], out2[:, end])


def test_discourse_summary_visible_only_after_the_discourse_ends():
    hub, h = make_hub()
    with torch.no_grad():  # read the discourse tier alone: no sentence memory, no top-down
        hub.up.weight[:, : hub.d_hub] = 0.0
    h2 = h.clone()
    h2[:, 3] += 1.0  # discourse 0 = positions 0..15
    delta = (hub(h2)[0] - h2) - (hub(h)[0] - h)
    assert not delta[:, :16].any()
    assert delta[:, 16].abs().max() > 0


def test_positions_never_wrap():
    """Far into a stream (2^40 tokens, a multiple of the segment lengths) the hub behaves
    exactly as at the same phase near the start: no modular position, no overflow."""
    hub, h = make_hub()
    near, _ = hub(h[:, :40], position=0)
    far, _ = hub(h[:, :40], position=2**40)
    assert torch.equal(near, far)
    shifted, _ = hub(h[:, :40], position=2**40 + 1)  # another phase: other segment boundaries
    assert not torch.equal(near, shifted)


def test_carried_partial_sum_is_the_unfinished_sentence():
    hub, h = make_hub()
    _, state = hub(h[:, :10])  # sentences 0, 1 done; positions 8, 9 pending
    expected = hub.down(hub.norm(h[:, 8:10])).sum(1)
    torch.testing.assert_close(state["sentence_sum"], expected, rtol=1e-13, atol=1e-13)
    _, state = hub(h[:, :16])
    assert not state["sentence_sum"].any() and not state["discourse_sum"].any()


def test_rejects_inconsistent_segments():
    with pytest.raises(ValueError, match="multiple"):
        TemporalMemoryHub(8, 4, sentence_len=16, discourse_len=100)
