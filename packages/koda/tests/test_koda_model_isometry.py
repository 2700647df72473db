"""Dynamical-isometry init: Jacobian conditioning of deep linear stacks and the Marchenko–Pastur law."""

import numpy as np
import pytest
import torch

from synthfuse.koda.model.isometry import (
    gaussian_spectrum_law, initialize_, marchenko_pastur_, marchenko_pastur_pdf, marchenko_pastur_quantiles,
    marchenko_pastur_support, orthogonal_,
)


def _condition(layers):
    jac = torch.eye(layers[0].shape[1], dtype=torch.float64)
    for w in layers:
        jac = w.double() @ jac
    s = torch.linalg.svdvals(jac)
    return float(s.max() / s.min())


def test_deep_linear_stack_with_orthogonal_init_is_an_isometry():
    gen = torch.Generator().manual_seed(0)
    depth, width = 32, 64
    ortho = [orthogonal_(torch.empty(width, width), generator=gen) for _ in range(depth)]
    assert _condition(ortho) == pytest.approx(1.0, abs=1e-4)
    # The Gaussian init (and its MP-shaped version) is far from it at the same depth.
    gauss = [torch.randn(width, width, generator=gen) / width**0.5 for _ in range(depth)]
    mp = [marchenko_pastur_(torch.empty(width, width), generator=gen) for _ in range(depth)]
    assert _condition(gauss) > 1e3 and _condition(mp) > 1e3


def test_initialize_applies_to_linear_and_expert_weights():
    from synthfuse.koda.model.transformer import KodaModelConfig, KodaTransformer

    model = KodaTransformer(KodaModelConfig(vocab_size=20, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                                            n_experts=2, moe_every=1))
    s = torch.linalg.svdvals(model.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(s, torch.ones_like(s), atol=1e-5, rtol=0)
    s = torch.linalg.svdvals(model.blocks[1].ffn.w_in)  # (E, d, d_ff) batched
    torch.testing.assert_close(s, torch.ones_like(s), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="init scheme"):
        initialize_(model, "xavier")


def test_mp_law_moments_and_normalization():
    ratio, var = 0.25, 2.0
    lo, hi = marchenko_pastur_support(ratio, var)
    assert (lo, hi) == pytest.approx((var * 0.25, var * 2.25))
    x = np.linspace(lo, hi, 200001)
    pdf = marchenko_pastur_pdf(x, ratio, var)
    assert np.trapezoid(pdf, x) == pytest.approx(1.0, abs=1e-3)
    assert np.trapezoid(x * pdf, x) == pytest.approx(var, rel=1e-3)  # mean s^2
    mean2 = np.trapezoid(x * x * pdf, x)
    assert mean2 - var**2 == pytest.approx(ratio * var**2, rel=1e-2)  # variance lambda s^4
    q = marchenko_pastur_quantiles(2000, ratio, var)
    assert q.mean() == pytest.approx(var, rel=2e-3)
    assert lo <= q.min() and q.max() <= hi


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 96)])
def test_initialized_layer_spectrum_lies_in_mp_support(shape):
    gen = torch.Generator().manual_seed(0)
    ratio, var = gaussian_spectrum_law(shape)
    lo, hi = marchenko_pastur_support(ratio, var)
    eig = torch.linalg.svdvals(marchenko_pastur_(torch.empty(*shape), generator=gen)).double() ** 2
    assert eig.min() >= lo * (1 - 1e-4) and eig.max() <= hi * (1 + 1e-4)
    # The orthogonal init's spectrum (all ones) lies in the same closed support (on its lower
    # edge when m = 4n, where the fan-in Gaussian scales norms by m/n on average).
    eig_o = torch.linalg.svdvals(orthogonal_(torch.empty(*shape), generator=gen)).double() ** 2
    assert eig_o.min() >= lo * (1 - 1e-4) and eig_o.max() <= hi * (1 + 1e-4)
    # And the MP-shaped layer has the spectrum of a real Gaussian init (Kolmogorov-Smirnov).
    gauss = torch.randn(*shape, generator=gen, dtype=torch.float64) / shape[1] ** 0.5
    g_eig = np.sort(torch.linalg.svdvals(gauss).numpy() ** 2)
    ours = np.sort(eig.numpy())
    grid = np.linspace(lo, hi, 500)
    ks = np.abs(np.searchsorted(g_eig, grid) / len(g_eig) - np.searchsorted(ours, grid) / len(ours)).max()
    assert ks < 0.2, ks
