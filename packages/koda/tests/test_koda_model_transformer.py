"""The KODA transformer: attention vs reference, causality, hyperbolic bias, soft inputs, size of the tiny config."""

from pathlib import Path

import pytest
import torch

from synthfuse.koda.model.hyperbolic import StructuralBias, pairwise_ball_distance, structure_stress_loss
from synthfuse.koda.model.transformer import KodaModelConfig, KodaTransformer, _reference_attention
from synthfuse.shared.manifold import PoincareBall

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "koda_tiny.yaml"


def _small(**kw):
    base = dict(vocab_size=30, d_model=16, n_layers=3, n_heads=2, d_ff=32, n_experts=2, moe_every=2,
                ball_dim=4, max_len=32)
    base.update(kw)
    torch.manual_seed(0)
    return KodaTransformer(KodaModelConfig(**base))


def test_attention_fast_path_matches_reference_with_and_without_bias():
    torch.manual_seed(0)
    model = _small()
    attn, rope = model.blocks[1].attn, model.rope
    x = torch.randn(2, 9, 16)
    bias = -torch.rand(2, 2, 9, 9)
    for b in (None, bias):
        q, k, v = attn.qkv(x).view(2, 9, 3, 2, 8).permute(2, 0, 3, 1, 4)
        ref = _reference_attention(rope(q), rope(k), v, b).transpose(1, 2).reshape(2, 9, 16)
        torch.testing.assert_close(attn(x, rope, b), attn.proj(ref), atol=1e-5, rtol=1e-5)


def test_model_is_causal_and_soft_inputs_match_tokens():
    model = _small().eval()
    tokens = torch.randint(0, 30, (2, 12))
    out = model(tokens)
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 30
    out2 = model(changed)
    torch.testing.assert_close(out.logits[:, :8], out2.logits[:, :8])
    assert not torch.allclose(out.logits[:, 8:], out2.logits[:, 8:])
    one_hot = torch.nn.functional.one_hot(tokens, 30).float()
    soft = model(embeds=one_hot @ model.embed.weight)
    torch.testing.assert_close(soft.logits, out.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(model(soft_tokens=one_hot).logits, soft.logits)  # embedded inside the forward pass
    assert out.logits.shape == (2, 12, 30) and out.ball.shape == (2, 12, 4) and out.ball_dist.shape == (2, 12, 12)


def test_ball_points_are_in_the_ball_and_gradients_are_finite():
    model = _small().train()
    out = model(torch.randint(0, 30, (3, 10)), mask=torch.ones(3, 10, dtype=torch.bool))
    PoincareBall(c=1.0).check_point(out.ball.detach())
    loss = out.logits.logsumexp(-1).mean() + out.balance_loss + out.ball_dist.mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.struct_bias[0].omega.grad.abs().sum() > 0  # the bias is in the computation


def test_structural_bias_and_stress_loss_values():
    ball = PoincareBall(c=1.0)
    z = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.0, -0.5]]])
    dist = pairwise_ball_distance(ball, z)
    d01 = 2 * torch.atanh(torch.tensor(0.5))  # d(0, x) = 2 artanh(|x|)
    torch.testing.assert_close(dist[0, 0, 1], d01)
    bias = StructuralBias(n_heads=2, init_weight=0.1)(dist)
    torch.testing.assert_close(bias[0, 1, 0, 1], -0.1 * d01)
    tree = torch.tensor([[[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0]]])
    mask = torch.tensor([[True, True, True]])
    expected = ((dist[0] - 0.5 * tree[0]) ** 2).sum() / 6  # off-diagonal mean
    torch.testing.assert_close(structure_stress_loss(dist, tree, mask, 0.5), expected)
    with pytest.raises(ValueError, match="scale"):
        structure_stress_loss(dist, tree, mask, 0.0)


def test_bad_inputs_raise_clear_errors():
    model = _small()
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[0, 31]]))
    with pytest.raises(ValueError, match="NaN"):
        model(embeds=torch.full((1, 3, 16), float("nan")))
    with pytest.raises(ValueError, match=r"soft_tokens must be \(B, T, 30\)"):
        model(soft_tokens=torch.ones(1, 3, 16))
    with pytest.raises(ValueError, match="exactly one"):
        model(torch.tensor([[0, 1]]), soft_tokens=torch.ones(1, 2, 30))
    with pytest.raises(ValueError, match="even head size"):
        KodaModelConfig(vocab_size=10, d_model=12, n_heads=4)
    with pytest.raises(ValueError, match="router_temperature"):
        KodaModelConfig(vocab_size=10, router_temperature=0.0)
    with pytest.raises(ValueError, match="unknown model config"):
        KodaModelConfig.from_dict({"vocab_size": 10, "width": 3})


def test_tiny_config_has_at_most_a_million_parameters():
    from synthfuse.koda.model.tokenizer import SPECIALS, _DIGITS, _OPERATORS
    from synthfuse.koda.data.families import THETA_CLASSES
    from synthfuse.koda.lang.lexer import KEYWORDS
    from synthfuse.koda.train.config import load_config

    cfg = load_config(CONFIG)
    # The largest vocabulary the config allows: every identifier slot filled.
    vocab = len(SPECIALS) + len(THETA_CLASSES) + len(KEYWORDS) + len(_OPERATORS) + len(_DIGITS) \
        + cfg.data.max_identifiers
    model = KodaTransformer(cfg.model_config(vocab))
    assert 500_000 < model.num_parameters() <= 1_000_000
