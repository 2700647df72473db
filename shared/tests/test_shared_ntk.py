"""Empirical NTK (torch and JAX) and the NTK function-space distance."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthfuse.shared.ntk import (  # noqa: E402
    _reference_ntk,
    empirical_ntk,
    empirical_ntk_jax,
    ntk_distance,
)

METHODS = ("structured", "jacobian", "ntk_vp")
KINDS = ("full", "trace", "logit_sum")


class _MixedNet(torch.nn.Module):
    """Exercises every path: plain Linear layers (one with a frozen bias), a Linear called twice
    (not eligible for structured derivatives), a LayerNorm, and a bias-free Linear."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(3, 6)
        self.norm = torch.nn.LayerNorm(6)
        self.shared = torch.nn.Linear(6, 6, bias=False)
        self.frozen_bias = torch.nn.Linear(6, 5)
        self.frozen_bias.bias.requires_grad_(False)
        self.out = torch.nn.Linear(5, 3)

    def forward(self, x):
        h = self.norm(torch.tanh(self.inp(x)))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        return self.out(torch.tanh(self.frozen_bias(h)))


class _SequenceNet(torch.nn.Module):
    """A Linear applied per position (input (T, d) per sample) and a token embedding."""

    def __init__(self, tokens: bool):
        super().__init__()
        self.tokens = tokens
        self.embed = torch.nn.Embedding(7, 3)
        self.pos = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4 * 4, 2)

    def forward(self, x):
        h = self.embed(x) if self.tokens else x  # (n, 4, 3)
        return self.head(torch.tanh(self.pos(h)).flatten(1))


def _mlp(widths=(4, 16, 3), seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    layers = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(d_in, d_out), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)


def _inputs(name: str, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    if name == "tokens":
        return torch.randint(0, 7, (n, 4), generator=g)
    shape = (n, 4, 3) if name == "sequence" else (n, 3)  # "mixed", "tied": (n, 3)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _tied_net():
    """Two Linear modules sharing one weight Parameter (must not be treated as independent)."""
    first, second = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    second.weight = first.weight
    return torch.nn.Sequential(first, torch.nn.Tanh(), second, torch.nn.Tanh(), torch.nn.Linear(3, 2))


def _model(name: str):
    torch.manual_seed(1)
    if name == "tied":
        return _tied_net().double()
    net = _MixedNet() if name == "mixed" else _SequenceNet(tokens=name == "tokens")
    return net.double()


@pytest.mark.parametrize("model_name", ["mixed", "tied", "sequence", "tokens"])
@pytest.mark.parametrize("method", METHODS)
def test_shared_ntk_equals_per_sample_reference(model_name, method):
    net = _model(model_name)
    x1, x2 = _inputs(model_name, 5, 0), _inputs(model_name, 3, 1)
    for kind in KINDS:
        torch.testing.assert_close(
            empirical_ntk(net, x1, x2, kind=kind, method=method),
            _reference_ntk(net, x1, x2, kind=kind), rtol=1e-10, atol=1e-10,
        )
    torch.testing.assert_close(
        empirical_ntk(net, x1, method=method), _reference_ntk(net, x1), rtol=1e-10, atol=1e-10
    )


def test_shared_ntk_linear_model_closed_form():
    # f(x) = W x + b: Θ(x, x')_ab = (xᵀx' + 1) δ_ab (Jacot et al. 2018, the K = 1 layer case)
    net = torch.nn.Linear(4, 3).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    expected = (x @ x.T + 1)[:, :, None, None] * torch.eye(3, dtype=torch.float64)
    for method in METHODS:
        torch.testing.assert_close(empirical_ntk(net, x, method=method), expected)


@pytest.mark.parametrize("method", METHODS)
def test_shared_ntk_gram_is_symmetric_psd(method):
    net = _mlp((4, 32, 32, 3), dtype=torch.float32)
    x = torch.randn(12, 4)
    theta = empirical_ntk(net, x, method=method)  # (n, n, K, K)
    torch.testing.assert_close(theta, theta.permute(1, 0, 3, 2), rtol=1e-6, atol=1e-6)
    gram = theta.permute(0, 2, 1, 3).reshape(36, 36).double()
    eig = torch.linalg.eigvalsh(0.5 * (gram + gram.T))
    assert eig.min() >= -1e-5 * eig.max()
    for kind in ("trace", "logit_sum"):
        k = empirical_ntk(net, x, kind=kind, method=method).double()
        ev = torch.linalg.eigvalsh(0.5 * (k + k.T))
        assert ev.min() >= -1e-5 * ev.max()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 100])
def test_shared_ntk_chunked_equals_unchunked(method, chunk_size):
    net = _model("mixed")
    x1, x2 = _inputs("mixed", 7, 2), _inputs("mixed", 5, 3)
    for kind in KINDS:
        whole = empirical_ntk(net, x1, x2, kind=kind, method=method)
        torch.testing.assert_close(
            empirical_ntk(net, x1, x2, kind=kind, method=method, chunk_size=chunk_size), whole
        )
        torch.testing.assert_close(
            empirical_ntk(net, x1, kind=kind, method=method, chunk_size=chunk_size),
            empirical_ntk(net, x1, kind=kind, method=method),
        )


def test_shared_ntk_reductions_consistent_with_full():
    net = _model("mixed")
    x1, x2 = _inputs("mixed", 6, 4), _inputs("mixed", 4, 5)
    full = empirical_ntk(net, x1, x2, kind="full")
    assert full.shape == (6, 4, 3, 3)
    trace = empirical_ntk(net, x1, x2, kind="trace")
    logit_sum = empirical_ntk(net, x1, x2, kind="logit_sum")
    assert trace.shape == logit_sum.shape == (6, 4)
    torch.testing.assert_close(trace, torch.einsum("nmaa->nm", full))
    torch.testing.assert_close(logit_sum, full.sum((2, 3)))


def test_shared_ntk_accepts_numpy_and_keeps_model_dtype():
    net = _mlp(dtype=torch.float32)
    x = np.random.default_rng(0).normal(size=(4, 4))  # float64 numpy
    theta = empirical_ntk(net, x, kind="trace")
    assert theta.dtype == torch.float32 and theta.shape == (4, 4)
    torch.testing.assert_close(theta, empirical_ntk(net, torch.as_tensor(x, dtype=torch.float32), kind="trace"))


def test_shared_ntk_bad_inputs_raise_clear_errors():
    net = _mlp()
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="feature count"):
        empirical_ntk(net, torch.randn(5, 7, dtype=torch.float64))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x1 contains NaN"):
        empirical_ntk(net, bad)
    with pytest.raises(ValueError, match="x2 contains NaN"):
        empirical_ntk(net, x, bad)
    with pytest.raises(ValueError, match="same per-sample shape"):
        empirical_ntk(net, x, torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one sample"):
        empirical_ntk(net, x[:0])
    with pytest.raises(ValueError, match="kind must be one of"):
        empirical_ntk(net, x, kind="diag")
    with pytest.raises(ValueError, match="method must be one of"):
        empirical_ntk(net, x, method="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_ntk(net, x, chunk_size=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        empirical_ntk(lambda t: t, x)
    frozen = copy.deepcopy(net).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, x)
    broken = copy.deepcopy(net)
    with torch.no_grad():
        broken[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="parameter '0.weight'"):
        empirical_ntk(broken, x)


# ----------------------------------------------------------------------------------- jax
@pytest.fixture
def jax64():
    """JAX with float64 enabled for the test, restored afterwards."""
    jax = pytest.importorskip("jax")
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield jax
    finally:
        jax.config.update("jax_enable_x64", previous)


def _jax_mlp(params, x):
    import jax.numpy as jnp

    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w.T + b
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


def test_shared_ntk_jax_agrees_with_torch(jax64):
    import jax.numpy as jnp

    net = _mlp((4, 16, 8, 3))
    params = [
        (jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
        for m in net if isinstance(m, torch.nn.Linear)
    ]
    x1 = np.random.default_rng(0).normal(size=(6, 4))
    x2 = np.random.default_rng(1).normal(size=(5, 4))
    for kind in KINDS:
        got = empirical_ntk_jax(_jax_mlp, params, x1, x2, kind=kind)
        assert got.dtype == jnp.float64
        expected = empirical_ntk(net, x1, x2, kind=kind).numpy()
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)
    gram = empirical_ntk_jax(_jax_mlp, params, x1, chunk_size=4)
    np.testing.assert_allclose(np.asarray(gram), empirical_ntk(net, x1).numpy(), rtol=1e-10, atol=1e-10)


def test_shared_ntk_jax_bad_inputs(jax64):
    import jax.numpy as jnp

    params = [(jnp.ones((3, 4)), jnp.zeros(3))]
    with pytest.raises(ValueError, match="feature count"):
        empirical_ntk_jax(_jax_mlp, params, np.ones((2, 5)))
    with pytest.raises(ValueError, match="x1 contains NaN"):
        empirical_ntk_jax(_jax_mlp, params, np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="kind must be one of"):
        empirical_ntk_jax(_jax_mlp, params, np.ones((2, 4)), kind="eig")


# ------------------------------------------------------------------------------ distance
def _permute_hidden(net: torch.nn.Sequential, seed: int) -> torch.nn.Sequential:
    """The same function with the hidden units of every hidden layer permuted."""
    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(net)
    linears = [m for m in out if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for a, b in zip(linears[:-1], linears[1:]):
            perm = torch.randperm(a.out_features, generator=g)
            a.weight.copy_(a.weight[perm])
            a.bias.copy_(a.bias[perm])
            b.weight.copy_(b.weight[:, perm])
    return out


def test_shared_ntk_distance_zero_for_identical_and_permutation_invariant():
    a, b = _mlp((4, 16, 8, 3), seed=0), _mlp((4, 16, 8, 3), seed=1)
    x = torch.randn(10, 4, dtype=torch.float64)
    assert ntk_distance(a, copy.deepcopy(a), x).item() == 0.0
    d = ntk_distance(a, b, x)
    assert d.item() > 0
    a_perm, b_perm = _permute_hidden(a, 3), _permute_hidden(b, 4)
    assert not torch.equal(a_perm[0].weight, a[0].weight)
    torch.testing.assert_close(ntk_distance(a_perm, b, x), d)
    torch.testing.assert_close(ntk_distance(a, b_perm, x), d)
    torch.testing.assert_close(ntk_distance(a_perm, b_perm, x), d)


def test_shared_ntk_distance_matches_formula_and_linear_closed_form():
    a, b = _mlp((4, 8, 2), seed=0), _mlp((4, 8, 2), seed=1)
    x = torch.randn(7, 4, dtype=torch.float64)
    # δᵀ (G + λI)⁻¹ δ with G from the per-sample reference
    gram = _reference_ntk(b, x).permute(0, 2, 1, 3).reshape(14, 14)
    lam = 1e-3 * torch.trace(gram) / 14
    delta = (a(x) - b(x)).detach().reshape(-1)
    expected = delta @ torch.linalg.solve(gram + lam * torch.eye(14, dtype=torch.float64), delta)
    torch.testing.assert_close(ntk_distance(a, b, x, squared=True), expected)
    torch.testing.assert_close(ntk_distance(a, b, x), expected.sqrt())
    kernel = empirical_ntk(b, x)
    torch.testing.assert_close(ntk_distance(a, b, x, squared=True, reference_kernel=kernel), expected)
    # A model linear in its parameters with P <= nK: d -> ‖θ_a - θ_b‖ as λ -> 0.
    lin_a, lin_b = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    step = torch.cat([(pa - pb).reshape(-1) for pa, pb in zip(lin_a.parameters(), lin_b.parameters())])
    torch.testing.assert_close(
        ntk_distance(lin_a, lin_b, x, ridge=1e-12), step.norm().detach(), rtol=1e-6, atol=0
    )


def test_shared_ntk_distance_gradient_matches_finite_differences():
    a, b = _mlp((3, 6, 2), seed=0), _mlp((3, 6, 2), seed=1)
    x = torch.randn(5, 3, dtype=torch.float64)
    kernel = empirical_ntk(b, x)
    loss = ntk_distance(a, b, x, squared=True, reference_kernel=kernel)
    (grad,) = torch.autograd.grad(loss, [a[0].weight])
    eps = 1e-6
    for i, j in [(0, 0), (3, 2), (5, 1)]:
        with torch.no_grad():
            a[0].weight[i, j] += eps
            up = ntk_distance(a, b, x, squared=True, reference_kernel=kernel)
            a[0].weight[i, j] -= 2 * eps
            down = ntk_distance(a, b, x, squared=True, reference_kernel=kernel)
            a[0].weight[i, j] += eps
        assert abs((up - down).item() / (2 * eps) - grad[i, j].item()) < 1e-6 * max(1.0, abs(grad[i, j].item()))


def test_shared_ntk_distance_bad_inputs():
    a = _mlp((4, 8, 3))
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="same size K"):
        ntk_distance(a, _mlp((4, 8, 2)), x)
    with pytest.raises(ValueError, match="ridge"):
        ntk_distance(a, a, x, ridge=0.0)
    with pytest.raises(ValueError, match=r"\(n, n, K, K\)"):
        ntk_distance(a, a, x, reference_kernel=torch.zeros(5, 5))
    with pytest.raises(TypeError, match="model_a"):
        ntk_distance(None, a, x)


def test_shared_import_is_light_and_exports_lazily():
    from synthfuse.shared.testing import modules_imported_by

    mods = modules_imported_by("import synthfuse.shared")
    assert not {"torch", "jax", "ot"} & mods
    mods = modules_imported_by(
        "import synthfuse.shared as s; assert callable(s.empirical_ntk) and callable(s.match_units)"
    )
    assert {"torch", "ot"} <= mods


@pytest.mark.cuda
def test_shared_ntk_cuda_matches_cpu():
    net = _model("mixed")
    x1, x2 = _inputs("mixed", 6, 0), _inputs("mixed", 4, 1)
    gpu = copy.deepcopy(net).to("cuda")
    for method in METHODS:
        for kind in KINDS:
            for chunk in (None, 3):
                got = empirical_ntk(gpu, x1.to("cuda"), x2.to("cuda"), kind=kind, method=method, chunk_size=chunk)
                assert got.device.type == "cuda"
                torch.testing.assert_close(got.cpu(), empirical_ntk(net, x1, x2, kind=kind, method=method))
    other = _model("mixed")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    d = ntk_distance(copy.deepcopy(other).to("cuda"), gpu, x1.to("cuda"))
    torch.testing.assert_close(d.cpu(), ntk_distance(other, net, x1))
