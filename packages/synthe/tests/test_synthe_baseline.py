"""Transformer baseline: KV-cache decoding equals recomputation; size matching."""

from __future__ import annotations

import torch

from synthfuse.synthe import Synthe, SyntheConfig, TransformerBaseline, TransformerConfig


def test_kv_cache_matches_full_forward(rel_err):
    torch.manual_seed(0)
    model = TransformerBaseline(TransformerConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2)).double().eval()
    ids = torch.randint(0, 40, (2, 30))
    full = model(ids)["logits"]
    cache = model.init_cache(2, 30)
    pieces = [model(ids[:, a:b], cache=cache)["logits"] for a, b in ((0, 7), (7, 8), (8, 30))]
    assert rel_err(torch.cat(pieces, 1), full) <= 1e-12


def test_generation_matches_recompute_and_is_causal():
    torch.manual_seed(0)
    model = TransformerBaseline(TransformerConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2)).double().eval()
    prompt = torch.randint(0, 40, (1, 4))
    generated = model.generate(prompt, 20, temperature=0.0)
    seq = prompt
    for _ in range(20):
        seq = torch.cat([seq, model(seq)["logits"][:, -1:].argmax(-1)], 1)
    assert torch.equal(generated, seq)
    ids = torch.randint(0, 40, (1, 12))
    ids2 = ids.clone()
    ids2[0, 6] = (ids2[0, 6] + 1) % 40
    assert torch.equal(model(ids)["logits"][:, :6], model(ids2)["logits"][:, :6])


def test_matching_config_has_the_same_size():
    config = SyntheConfig.tiny()
    baseline = TransformerBaseline(TransformerConfig.matching(config), device="meta")
    synthe = Synthe(config, device="meta")
    assert abs(baseline.num_parameters() / synthe.num_parameters() - 1) < 0.06
