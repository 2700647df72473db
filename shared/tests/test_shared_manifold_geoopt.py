"""geoopt (a well-kept Riemannian optimization library) as a test-only oracle, float64, 1e-6.

Conventions checked against geoopt 0.5:
- ``geoopt.PoincareBall(c)`` has curvature ``k = -c``: the same ``c`` as ours. Its ``c`` is a
  softplus-parametrised parameter, so it is built from a float64 tensor to stay exact.
- ``geoopt.Sphere()`` is the unit sphere; its ``dist`` is ``acos`` of the clamped inner product
  (so only angles above ~1e-3 are compared) and its ``transp`` is the *projection* vector
  transport ``proju(y, v)``, not parallel transport — ours is compared with geoopt's
  ``transp`` only to first order, and with the transport ODE in test_shared_manifold.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from synthfuse.shared.manifold import PoincareBall, Sphere

torch = pytest.importorskip("torch")
geoopt = pytest.importorskip("geoopt")

ATOL = 1e-6


def _ball_points(c: float, seed: int, n: int = 40, dim: int = 5) -> torch.Tensor:
    """Points at Euclidean radii up to 0.995 / sqrt(c) (away from geoopt's artanh clamp at 1 - 1e-7)."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n, dim))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    radius = rng.uniform(0.0, 0.995, size=(n, 1)) / np.sqrt(c)
    return torch.from_numpy(d * radius)


@pytest.mark.parametrize("c", [1.0, 0.5, 2.3])
def test_shared_ball_matches_geoopt(c):
    ours = PoincareBall(c=c)
    ref = geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))
    x, y = _ball_points(c, 0), _ball_points(c, 1)
    v = torch.from_numpy(np.random.default_rng(2).standard_normal(x.shape)) * 0.3
    pairs = {
        "dist": (ours.dist(x, y), ref.dist(x, y)),
        "expmap": (ours.exp(x, v), ref.expmap(x, v)),
        "logmap": (ours.log(x, y), ref.logmap(x, y)),
        "transp": (ours.transp(x, y, v), ref.transp(x, y, v)),
        "mobius_add": (ours.mobius_add(x, y), ref.mobius_add(x, y)),
        "geodesic": (ours.geodesic(x, y, 0.35), ref.geodesic(torch.tensor(0.35, dtype=torch.float64), x, y)),
        "egrad2rgrad": (ours.egrad2rgrad(x, v), ref.egrad2rgrad(x, v)),
        # geoopt 0.5's ball inner mis-broadcasts batches with keepdim=False: compare keepdim=True
        "inner": (ours.inner(x, v, 2 * v, keepdims=True), ref.inner(x, v, 2 * v, keepdim=True)),
        "retr": (ours.retr(x, 0.01 * v), ref.retr(x, 0.01 * v)),
        "proj": (ours.proj(10 * x), ref.projx(10 * x)),
        "dist0": (ours.dist(torch.zeros_like(y), y), ref.dist0(y)),
    }
    for name, (got, expected) in pairs.items():
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-6, msg=name)


def test_shared_ball_matches_geoopt_near_the_margin():
    """Points on the float64 margin (the same 1e-5 as geoopt's projx) and the origin."""
    c = 1.0
    ours, ref = PoincareBall(c=c), geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))
    edge = ref.projx(_ball_points(c, 3) * 1e3)
    x = _ball_points(c, 4) * 0.5
    torch.testing.assert_close(ours.proj(edge * 1e3), edge, atol=1e-12, rtol=0)
    v = torch.from_numpy(np.random.default_rng(5).standard_normal(x.shape)) * 1e-3
    for name, got, expected in (
        ("dist", ours.dist(edge, x), ref.dist(edge, x)),
        ("logmap", ours.log(x, edge), ref.logmap(x, edge)),
        ("expmap", ours.exp(edge, v), ref.expmap(edge, v)),
        ("transp", ours.transp(x, edge, v), ref.transp(x, edge, v)),
        ("origin", ours.log(torch.zeros_like(x), x), ref.logmap0(x)),
    ):
        # dist near the margin is ~12: compare with relative tolerance
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-6, msg=name)


def test_shared_sphere_matches_geoopt():
    ours, ref = Sphere(), geoopt.Sphere()
    x = ours.random(40, 5, generator=6, like=torch.zeros((), dtype=torch.float64))
    y = ours.random(40, 5, generator=7, like=torch.zeros((), dtype=torch.float64))
    raw = torch.from_numpy(np.random.default_rng(8).standard_normal(x.shape))
    v = ours.proju(x, raw)
    assert float(ours.dist(x, y).min()) > 1e-2  # away from geoopt's acos clamp
    for name, got, expected in (
        ("dist", ours.dist(x, y), ref.dist(x, y)),
        ("expmap", ours.exp(x, v), ref.expmap(x, v)),
        ("logmap", ours.log(x, y), ref.logmap(x, y)),
        ("proju", ours.proju(x, raw), ref.proju(x, raw)),
        ("egrad2rgrad", ours.egrad2rgrad(x, raw), ref.egrad2rgrad(x, raw)),
        ("projx", ours.proj(3 * raw), ref.projx(3 * raw)),
        ("retr", ours.retr(x, v), ref.retr(x, v)),
    ):
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-6, msg=name)
    # geoopt's sphere transp is the projection proju(y, v): equal to parallel transport to first
    # order in the step, so the two agree to O(h^2) for y = exp_x(h u)
    u = ours.proju(x, torch.from_numpy(np.random.default_rng(9).standard_normal(x.shape)))
    for h in (1e-2, 1e-3):
        y_h = ours.exp(x, h * u)
        gap = (ours.transp(x, y_h, v) - ref.transp(x, y_h, v)).norm(dim=-1).max()
        assert gap < 5 * h**2 * float(u.norm(dim=-1).max() * v.norm(dim=-1).max())
