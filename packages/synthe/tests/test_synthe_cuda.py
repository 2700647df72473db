"""The same exactness guarantees on a CUDA device (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from synthfuse.synthe import Synthe
from synthfuse.synthe.layers._common import l2_normalize
from synthfuse.synthe.layers.delta import _naive_gated_delta_rule, chunk_gated_delta_rule

pytestmark = pytest.mark.cuda


def test_chunked_delta_rule_on_cuda(rel_err):
    g = torch.Generator().manual_seed(0)
    b, h, t, d = 2, 2, 130, 16
    q, k = (l2_normalize(torch.randn(b, h, t, d, generator=g, dtype=torch.float64)).cuda() for _ in range(2))
    v = torch.randn(b, h, t, d, generator=g, dtype=torch.float64).cuda()
    beta = torch.rand(b, h, t, generator=g, dtype=torch.float64).cuda()
    log_alpha = -torch.rand(b, h, t, generator=g, dtype=torch.float64).cuda()
    s0 = torch.randn(b, h, d, d, generator=g, dtype=torch.float64).cuda()
    o1, s1 = chunk_gated_delta_rule(q, k, v, beta, log_alpha, s0, 32)
    o2, s2 = _naive_gated_delta_rule(q, k, v, beta, log_alpha, s0)
    assert o1.is_cuda and rel_err(o1, o2) <= 1e-10 and rel_err(s1, s2) <= 1e-10


def test_model_streams_and_generates_on_cuda(small_config, calibrate):
    torch.manual_seed(0)
    model = Synthe(small_config(), device="cuda", dtype=torch.float64).eval()
    ids = torch.randint(0, 61, (2, 70), device="cuda")
    calibrate(model, ids)
    full = model(ids)
    state, pieces = None, []
    for start, stop in ((0, 1), (1, 8), (8, 40), (40, 70)):
        out = model(ids[:, start:stop], state=state, return_state=True)
        state = out["state"]
        pieces.append(out["logits"])
    assert (torch.cat(pieces, 1) - full["logits"]).abs().max().item() <= 1e-9
    generated = model.generate(ids[:1, :5], 20, temperature=0.0)
    seq = ids[:1, :5]
    for _ in range(20):
        seq = torch.cat([seq, model(seq)["logits"][:, -1:].argmax(-1)], 1)
    assert torch.equal(generated, seq)
