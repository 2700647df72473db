"""Parallel prefix scans (linear and Moebius) vs plain loops; chunk helpers."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe.layers._chunk import chunk_length, pad_time
from synthfuse.synthe.layers._scan import linear_scan, mobius_scan

LENGTHS = [1, 2, 7, 64, 65, 300]


@pytest.mark.parametrize("t", LENGTHS)
def test_linear_scan_matches_loop(t, rel_err):
    g = torch.Generator().manual_seed(t)
    c = torch.rand(3, t, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, t, 5, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    h, expected = h0, []
    for i in range(t):
        h = c[:, i] * h + b[:, i]
        expected.append(h)
    assert rel_err(linear_scan(c, b, h0), torch.stack(expected, 1)) <= 1e-13


@pytest.mark.parametrize("t", LENGTHS)
def test_mobius_scan_matches_loop(t, rel_err):
    g = torch.Generator().manual_seed(t)
    m = tuple(torch.rand(2, t, 4, generator=g, dtype=torch.float64) + 0.01 for _ in range(4))
    p0 = torch.rand(2, 4, generator=g, dtype=torch.float64)
    p, expected = p0, []
    for i in range(t):
        p = (m[0][:, i] * p + m[1][:, i]) / (m[2][:, i] * p + m[3][:, i])
        expected.append(p)
    assert rel_err(mobius_scan(m, p0), torch.stack(expected, 1)) <= 1e-13


def test_mobius_scan_is_finite_on_long_float32_sequences(rel_err):
    """Unnormalised products of 20,000 matrices would overflow float32 (entries ~ 2^20000)."""
    t = 20_000
    g = torch.Generator().manual_seed(0)
    m = (torch.full((1, t, 3), 2.0), torch.rand(1, t, 3, generator=g), torch.full((1, t, 3), 0.5), torch.full((1, t, 3), 0.25))
    p = mobius_scan(m, torch.ones(1, 3))
    assert torch.isfinite(p).all()
    p64 = mobius_scan(tuple(x.double() for x in m), torch.ones(1, 3, dtype=torch.float64))
    assert rel_err(p, p64) <= 1e-5


def test_chunk_length_and_padding():
    assert [chunk_length(64, t) for t in (1, 2, 3, 15, 16, 17, 64, 300)] == [1, 2, 4, 16, 16, 32, 64, 64]
    with pytest.raises(ValueError, match="power of two"):
        chunk_length(48, 10)
    x = torch.randn(2, 3, 5, 4)
    padded = pad_time(x, 3)
    assert padded.shape == (2, 3, 8, 4) and torch.equal(padded[:, :, :5], x) and not padded[:, :, 5:].any()
