"""Manifolds on torch tensors and jax arrays: same numbers as numpy, finite values and gradients
at the edge cases (dist(x, x), the origin, the ball's margin, antipodes), correct gradients."""

from __future__ import annotations

import numpy as np
import pytest

from synthfuse.shared.manifold import Euclidean, Lorentz, PoincareBall, Sphere

torch = pytest.importorskip("torch")

MANIFOLDS = [
    pytest.param(Euclidean(), id="euclidean"),
    pytest.param(Sphere(radius=1.5), id="sphere"),
    pytest.param(PoincareBall(c=0.7), id="ball"),
    pytest.param(Lorentz(c=0.7), id="lorentz"),
]


def _sample(m, seed: int, n: int = 6, dim: int = 4):
    """Points x, y and tangent vectors u, v at x (numpy float64)."""
    rng = np.random.default_rng(seed)
    kw = {"std": 0.6} if isinstance(m, (PoincareBall, Lorentz)) else {}
    x, y = m.random(n, dim, generator=rng, **kw), m.random(n, dim, generator=rng, **kw)
    u, v = m.proju(x, rng.standard_normal((n, dim))), m.proju(x, rng.standard_normal((n, dim)))
    if isinstance(m, PoincareBall):  # Riemannian norms ~ 2, so exp stays clear of the margin
        u, v = u / m.conformal_factor(x), v / m.conformal_factor(x)
    return x, y, u, v


def _all_ops(m, x, y, u, v, *, float32: bool = False):
    """Every public operation once, as a dict of arrays.

    ``float32``: leave out the ball's ``proj`` of outside points, whose margin is 4e-3 in
    float32 and 1e-5 in float64 by design.
    """
    out = {
        "proj": m.proj(2 * x),
        "proju": m.proju(x, u + 0.3 * x),
        "inner": m.inner(x, u, v),
        "exp": m.exp(x, u),
        "retr": m.retr(x, 0.1 * u),
        "log": m.log(x, y),
        "dist": m.dist(x, y),
        "geodesic": m.geodesic(x, y, 0.3),
        "transp": m.transp(x, y, u),
        "egrad2rgrad": m.egrad2rgrad(x, u),
        "component_inner": m.component_inner(x, u),
    }
    if isinstance(m, PoincareBall):
        out["mobius_add"] = m.mobius_add(x, y)
        if float32:
            del out["proj"]
    return out


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_numpy_and_torch_agree(m):
    x, y, u, v = _sample(m, 0)
    reference = _all_ops(m, x, y, u, v)
    got = _all_ops(m, *(torch.from_numpy(a) for a in (x, y, u, v)))
    for name, value in reference.items():
        assert isinstance(got[name], torch.Tensor) and got[name].dtype == torch.float64, name
        np.testing.assert_allclose(got[name].numpy(), value, rtol=1e-12, atol=1e-13, err_msg=name)


def test_shared_manifold_jax_agrees_with_numpy_in_float32():
    """jax runs the same code, also under ``jax.jit`` (one compiled function per manifold)."""
    jax = pytest.importorskip("jax")
    for m in (Euclidean(), Sphere(radius=1.5), PoincareBall(c=0.7), Lorentz(c=0.7)):
        x, y, u, v = _sample(m, 1)
        reference = _all_ops(m, x, y, u, v, float32=True)
        args = tuple(jax.numpy.asarray(a, dtype=jax.numpy.float32) for a in (x, y, u, v))
        got = jax.jit(lambda *a, m=m: _all_ops(m, *a, float32=True))(*args)
        for name, value in reference.items():
            assert got[name].dtype == jax.numpy.float32, name
            np.testing.assert_allclose(np.asarray(got[name]), value, rtol=2e-4, atol=2e-5,
                                       err_msg=f"{m!r} {name}")


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_float32_torch_stays_float32_and_close(m):
    x, y, u, v = _sample(m, 2)
    got = _all_ops(m, *(torch.tensor(a, dtype=torch.float32) for a in (x, y, u, v)), float32=True)
    for name, value in _all_ops(m, x, y, u, v, float32=True).items():
        assert got[name].dtype == torch.float32, name
        np.testing.assert_allclose(got[name].numpy(), value, rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_gradients_match_finite_differences(m):
    x, y, u, _ = (torch.from_numpy(a).requires_grad_() for a in _sample(m, 3, n=3, dim=3))
    checks = {
        "dist": lambda x, y, u: m.dist(x, y),
        "log": lambda x, y, u: m.log(x, y),
        "exp": lambda x, y, u: m.exp(x, 0.5 * u),
        "transp": lambda x, y, u: m.transp(x, y, u),
        "geodesic": lambda x, y, u: m.geodesic(x, y, 0.4),
        "inner": lambda x, y, u: m.inner(x, u, u),
    }
    for name, fn in checks.items():
        assert torch.autograd.gradcheck(fn, (x, y, u), eps=1e-6, atol=1e-5), name


def _unit_tangent(m, x, v):
    """``proju(x, v)`` scaled to Riemannian norm 1."""
    w = m.proju(x, v)
    return w / m.inner(x, w, w, keepdims=True).sqrt()


def _edge_cases(m, dtype):
    """(name, function of tensors, inputs) at the numerically delicate places."""
    dim = 3
    rng = np.random.default_rng(4)
    x = m.random(5, dim, generator=rng, like=torch.zeros((), dtype=dtype))
    v = m.proju(x, torch.tensor(rng.standard_normal((5, dim)), dtype=dtype))
    zero = torch.zeros(5, dim, dtype=dtype)
    cases = [
        ("dist(x, x)", lambda x: m.dist(x, x), (x,)),
        ("log(x, x)", lambda x: m.log(x, x), (x,)),
        ("exp(x, 0)", lambda x, z: m.exp(x, z), (x, zero)),
        ("transp(x, x, v)", lambda x, v: m.transp(x, x, v), (x, v)),
        ("geodesic(x, x, t)", lambda x: m.geodesic(x, x, 0.5), (x,)),
    ]
    if isinstance(m, Sphere):
        cases += [
            ("dist(x, -x)", lambda x: m.dist(x, -x), (x,)),
            ("log(x, -x)", lambda x: m.log(x, -x), (x,)),
            ("transp(x, -x, v)", lambda x, v: m.transp(x, -x, v), (x, v)),
            ("geodesic(x, -x, t)", lambda x: m.geodesic(x, -x, 0.5), (x,)),
            ("proj(0)", lambda z: m.proj(z), (zero,)),
        ]
    if isinstance(m, PoincareBall):
        edge = m.proj(torch.tensor(rng.standard_normal((5, dim)) * 100, dtype=dtype))  # on the margin
        cases += [
            ("dist(0, 0)", lambda z: m.dist(z, z), (zero,)),
            ("log(0, 0)", lambda z: m.log(z, z), (zero,)),
            ("dist(0, y)", lambda z, y: m.dist(z, y), (zero, x)),
            ("transp(0, 0, v)", lambda z, v: m.transp(z, z, v), (zero, v)),
            ("dist(edge, x)", lambda e, x: m.dist(e, x), (edge, x)),
            ("dist(edge, -edge)", lambda e: m.dist(e, -e), (edge,)),
            ("dist(edge, edge)", lambda e: m.dist(e, e), (edge,)),
            ("log(edge, x)", lambda e, x: m.log(e, x), (edge, x)),
            ("log(x, edge)", lambda x, e: m.log(x, e), (x, edge)),
            ("exp(edge, v)", lambda e, v: m.exp(e, v), (edge, v)),
            ("exp(x, 1e4 v)", lambda x, v: m.exp(x, 1e4 * v), (x, v)),
            ("transp(edge, x, v)", lambda e, x, v: m.transp(e, x, v), (edge, x, v)),
            ("egrad2rgrad(edge, v)", lambda e, v: m.egrad2rgrad(e, v), (edge, v)),
            ("inner(edge, v, v)", lambda e, v: m.inner(e, v, v), (edge, v)),
        ]
    if isinstance(m, Lorentz):
        apex = m.origin(x)
        out = m.proju(apex, x)
        far = m.exp(apex, 20 * out / m.inner(apex, out, out, keepdims=True).sqrt())  # 20 from the apex
        cases += [
            ("dist(o, o)", lambda o: m.dist(o, o), (apex,)),
            ("log(o, o)", lambda o: m.log(o, o), (apex,)),
            ("dist(o, y)", lambda o, y: m.dist(o, y), (apex, x)),
            ("log(o, y)", lambda o, y: m.log(o, y), (apex, x)),
            ("transp(o, o, v)", lambda o, v: m.transp(o, o, v), (apex, v)),
            ("dist(far, x)", lambda f, x: m.dist(f, x), (far, x)),
            ("dist(far, far)", lambda f: m.dist(f, f), (far,)),
            ("dist(far, mirror)", lambda f: m.dist(f, f * torch.tensor([1.0, -1.0, -1.0], dtype=dtype, device=f.device)), (far,)),
            ("log(x, far)", lambda x, f: m.log(x, f), (x, far)),
            ("exp(far, v)", lambda f, v: m.exp(f, _unit_tangent(m, f, v)), (far, v)),
            ("transp(far, x, v)", lambda f, x, v: m.transp(f, x, _unit_tangent(m, f, v)), (far, x, v)),
        ]
    return cases


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_values_and_gradients_finite_at_edge_cases(m, dtype):
    for name, fn, inputs in _edge_cases(m, dtype):
        inputs = tuple(t.detach().clone().requires_grad_() for t in inputs)
        out = fn(*inputs)
        assert torch.isfinite(out).all(), f"{m!r} {name}: non-finite value {out}"
        grads = torch.autograd.grad(out.sum() + (out**2).sum(), inputs, allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), f"{m!r} {name} ({dtype}): non-finite gradient {g}"


def test_shared_manifold_edge_case_values_are_the_right_ones():
    S, B = Sphere(radius=1.5), PoincareBall(c=0.7)
    x = S.random(4, 3, generator=5, like=torch.zeros((), dtype=torch.float64))
    assert torch.equal(S.dist(x, x), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(S.dist(x, -x), torch.full((4,), 1.5 * np.pi, dtype=torch.float64))
    # dist(x, x) has gradient exactly 0 (a subgradient) instead of NaN
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(S.dist(xg, xg).sum(), xg)
    assert torch.equal(g, torch.zeros_like(g))
    # ball: points on the margin have the documented norm, distances to the origin match the closed form
    for dtype, margin in ((torch.float64, 1e-5), (torch.float32, 4e-3)):
        edge = B.proj(torch.tensor([[30.0, 40.0, 0.0]], dtype=dtype))
        expected_norm = (1 - margin) / np.sqrt(0.7)
        assert abs(float(edge.norm()) - expected_norm) < 1e-6
        d0 = B.dist(torch.zeros_like(edge), edge)
        np.testing.assert_allclose(float(d0), 2 / np.sqrt(0.7) * np.arctanh(1 - margin), rtol=1e-5)
        B.check_point(edge)


def test_shared_manifold_random_follows_like_and_torch_generators():
    like = torch.zeros((), dtype=torch.float32)
    a = Sphere().random(2, 3, generator=torch.Generator().manual_seed(0), like=like)
    b = Sphere().random(2, 3, generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.float32 and b.dtype == torch.get_default_dtype()
    torch.testing.assert_close(a, b.to(torch.float32))
    assert torch.equal(PoincareBall().random(4, 2, generator=3, like=like),
                       PoincareBall().random(4, 2, generator=3, like=like))
    with pytest.raises(TypeError, match="cannot be mixed"):
        Sphere().dist(torch.zeros(3), np.ones(3))


@pytest.mark.cuda
@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_on_cuda_matches_cpu(m):
    x, y, u, v = _sample(m, 7)
    cpu = _all_ops(m, *(torch.from_numpy(a) for a in (x, y, u, v)))
    gpu = _all_ops(m, *(torch.from_numpy(a).to("cuda") for a in (x, y, u, v)))
    for name, value in cpu.items():
        assert gpu[name].device.type == "cuda", name
        torch.testing.assert_close(gpu[name].cpu(), value, rtol=1e-10, atol=1e-12, msg=name)
    like = torch.zeros((), device="cuda", dtype=torch.float32)
    for seed in (0, torch.Generator(device="cuda").manual_seed(0)):
        z = m.random(3, 4, generator=seed, like=like)
        assert z.device.type == "cuda" and z.dtype == torch.float32
        m.check_point(z)
    # the delicate cases keep finite values and gradients on the GPU too
    for name, fn, inputs in _edge_cases(m, torch.float32):
        inputs = tuple(t.to("cuda").requires_grad_() for t in inputs)
        out = fn(*inputs)
        grads = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
        assert torch.isfinite(out).all() and all(g is None or torch.isfinite(g).all() for g in grads), name
