"""The Lorentz (hyperboloid) model: closed forms, the maps to and from the Poincaré ball,
accuracy far from the origin (mpmath as the oracle), geoopt as an oracle, and optimisation.

The generic identities (exp/log, transport, gradients, numpy/torch/jax agreement, edge cases)
run on ``Lorentz`` in test_shared_manifold.py and test_shared_manifold_torch.py.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from synthfuse.shared.manifold import Lorentz, PoincareBall, lorentz_to_poincare, poincare_to_lorentz

torch = pytest.importorskip("torch")


def _polar(radius: np.ndarray, angle: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Points of the hyperbolic plane at ``radius`` from the origin, shape (..., 3)."""
    s = math.sqrt(c)
    r = s * np.asarray(radius)[..., None]
    a = np.asarray(angle)[..., None]
    return np.concatenate([np.cosh(r), np.sinh(r) * np.cos(a), np.sinh(r) * np.sin(a)], axis=-1) / s


def _mp_dist(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> float:
    """arcosh(-c <x, y>_L) / sqrt(c) in 60-digit arithmetic, time coordinates from the spatial parts."""
    with mpmath.workdps(60):
        xs, ys = [mpmath.mpf(float(t)) for t in x[1:]], [mpmath.mpf(float(t)) for t in y[1:]]
        x0 = mpmath.sqrt(1 / mpmath.mpf(c) + sum(t * t for t in xs))
        y0 = mpmath.sqrt(1 / mpmath.mpf(c) + sum(t * t for t in ys))
        prod = x0 * y0 - sum(a * b for a, b in zip(xs, ys))
        return float(mpmath.acosh(mpmath.mpf(c) * prod) / mpmath.sqrt(c))


def test_shared_lorentz_dist_closed_forms():
    m = Lorentz()
    # hyperbolic law of cosines: cosh d = cosh r1 cosh r2 - sinh r1 sinh r2 cos(angle)
    r1, r2, angle = np.array([0.3, 2.0, 5.0]), np.array([1.1, 0.4, 3.0]), np.array([0.0, 2.0, np.pi])
    expected = np.arccosh(np.cosh(r1) * np.cosh(r2) - np.sinh(r1) * np.sinh(r2) * np.cos(angle))
    np.testing.assert_allclose(m.dist(_polar(r1, 0 * angle), _polar(r2, angle)), expected, rtol=1e-12)
    # distance to the apex is the radius, for any curvature
    for c in (1.0, 0.3, 4.0):
        mc = Lorentz(c)
        radii = np.array([0.0, 1e-9, 0.5, 20.0, 60.0])
        np.testing.assert_allclose(mc.dist(mc.origin(_polar(radii, radii)), _polar(radii, 1 + radii, c)),
                                   radii, rtol=1e-12, atol=1e-15)
    # two points on one ray at 12 and 12 + 1e-6 (coordinates ~1e5, rounded to ~4e-11): their radii apart
    np.testing.assert_allclose(m.dist(_polar(12.0, 1.0), _polar(12.0 + 1e-6, 1.0)), 1e-6, rtol=1e-4)


def test_shared_lorentz_dist_is_accurate_far_from_the_origin():
    """Nearby points up to 32 from the origin: relative error ~ eps e^r (1e-3 at r = 30) against
    a 60-digit evaluation of the same float64 coordinates, where arcosh(-<x, y>) loses every digit."""
    rng = np.random.default_rng(0)
    r = rng.uniform(0.0, 32.0, 60)
    x = _polar(r, rng.uniform(-3, 3, 60))
    step = np.stack([rng.normal(size=60), 3 * rng.normal(size=60)], axis=-1)  # radial, sideways
    y = _polar(np.abs(r + 0.5 * step[:, 0]), np.arctan2(x[:, 2], x[:, 1]) + step[:, 1] * np.exp(-r))
    m = Lorentz()
    got = m.dist(x, y)
    np.testing.assert_array_equal(got, m.dist(y, x))  # symmetric bit for bit
    expected = np.array([_mp_dist(a, b) for a, b in zip(x, y)])
    tolerance = 1e-14 + 4 * np.finfo(np.float64).eps * np.exp(r)
    assert np.all(np.abs(got - expected) <= tolerance * np.maximum(expected, 1e-3))
    naive = np.arccosh(np.maximum(x[:, 0] * y[:, 0] - np.sum(x[:, 1:] * y[:, 1:], -1), 1.0))
    assert np.max(np.abs(naive - expected)[r > 25]) > 1.0  # the textbook formula fails there
    # opposite sides: the second form of the identity, also far out
    far = _polar(np.array([28.0, 3.0]), np.array([0.0, 0.2]))
    mirror = far * np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(m.dist(far, mirror), [56.0, 6.0], rtol=1e-12)
    np.testing.assert_array_equal(m.dist(far, mirror), m.dist(mirror, far))


def test_shared_lorentz_matches_the_poincare_ball_through_the_isometry():
    for c in (1.0, 0.4):
        ball, hyperboloid = PoincareBall(c), Lorentz(c)
        p, q = ball.random(50, 3, std=1.5, generator=1), ball.random(50, 3, std=1.5, generator=2)
        x, y = poincare_to_lorentz(p, c), poincare_to_lorentz(q, c)
        hyperboloid.check_point(x)
        np.testing.assert_allclose(lorentz_to_poincare(x, c), p, atol=1e-14)
        np.testing.assert_allclose(hyperboloid.dist(x, y), ball.dist(p, q), rtol=1e-9)
        # the maps carry geodesics to geodesics (exp/log commute with the isometry)
        np.testing.assert_allclose(lorentz_to_poincare(hyperboloid.geodesic(x, y, 0.3), c),
                                   ball.geodesic(p, q, 0.3), atol=1e-9)
        # apex <-> centre; x0 = (1 + c|p|^2) / (sqrt(c) (1 - c|p|^2))
        np.testing.assert_allclose(poincare_to_lorentz(np.zeros(3), c), hyperboloid.origin(np.zeros(4)))
        sq = c * np.sum(p * p, -1)
        np.testing.assert_allclose(x[:, 0], (1 + sq) / (math.sqrt(c) * (1 - sq)), rtol=1e-12)
    with pytest.raises(ValueError, match="inside the ball"):
        poincare_to_lorentz(np.array([0.6, 0.8]))
    with pytest.raises(ValueError, match="NaN or inf"):
        poincare_to_lorentz(np.array([np.nan, 0.0]))


def test_shared_lorentz_goes_where_the_ball_cannot():
    """At 30 from the origin the ball's float64 margin (radius 12.2) has merged the points;
    the hyperboloid still measures them (torch, as the embeddings use it)."""
    m, ball = Lorentz(), PoincareBall()
    x = torch.from_numpy(_polar(np.array([30.0, 30.0]), np.array([0.0, 2e-13])))  # ~1.07 apart
    d = m.dist(x[0], x[1])
    assert abs(float(d) - _mp_dist(x[0].numpy(), x[1].numpy())) < 1e-3
    assert 1.0 < float(d) < 1.15
    on_ball = ball.proj(lorentz_to_poincare(x))
    assert float(ball.dist(on_ball[0], on_ball[1])) < 1e-6  # both clamped to the same margin point
    v = m.log(x[0], x[1])
    torch.testing.assert_close(m.exp(x[0], v), x[1], rtol=2e-3, atol=0.0)
    np.testing.assert_allclose(float(m.inner(x[0], v, v)) ** 0.5, float(d), rtol=1e-9)


@pytest.mark.parametrize("c", [1.0, 0.5, 2.3])
def test_shared_lorentz_matches_geoopt(c):
    """geoopt.Lorentz(k) is this model with k = 1/c (a float32 buffer unless given as a float64
    tensor); compared at radii up to 4 (geoopt's arcosh form is accurate there), float64, 1e-6."""
    geoopt = pytest.importorskip("geoopt")
    ours, ref = Lorentz(c), geoopt.Lorentz(k=torch.tensor(1.0 / c, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    like = torch.zeros((), dtype=torch.float64)
    x, y = ours.random(40, 4, std=1.0, generator=gen, like=like), ours.random(40, 4, std=1.0, generator=gen, like=like)
    v = ours.proju(x, 0.3 * torch.randn(40, 4, generator=gen, dtype=torch.float64))
    pairs = {
        "dist": (ours.dist(x, y), ref.dist(x, y)),
        "expmap": (ours.exp(x, v), ref.expmap(x, v)),
        "logmap": (ours.log(x, y), ref.logmap(x, y)),
        "transp": (ours.transp(x, y, v), ref.transp(x, y, v)),
        "inner": (ours.inner(x, v, 2 * v), ref.inner(x, v, 2 * v)),
        "proju": (ours.proju(x, v + 0.2 * y), ref.proju(x, v + 0.2 * y)),
        "egrad2rgrad": (ours.egrad2rgrad(x, v + y), ref.egrad2rgrad(x, v + y)),
        "projx": (ours.proj(x + 0.1 * v), ref.projx(x + 0.1 * v)),
        "origin": (ours.origin(x), ref.origin(40, 4, dtype=torch.float64)),
    }
    for name, (got, expected) in pairs.items():
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6, msg=name)


def test_shared_lorentz_check_point_and_validation():
    m = Lorentz(c=2.0)
    x = m.random(6, 3, generator=3)
    m.check_point(x)
    with pytest.raises(ValueError, match=r"not on Lorentz\(c=2.0\).*\.proj"):
        m.check_point(x * np.array([1.01, 1.0, 1.0]))
    with pytest.raises(ValueError, match="not on Lorentz"):
        m.check_point(-x)  # the lower sheet
    m.check_point(m.proj(x * 1.7))
    # far points are judged relative to their size
    Lorentz().check_point(_polar(35.0, 0.3))
    with pytest.raises(ValueError, match="n >= 1"):
        m.dist(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="use Euclidean"):
        Lorentz(c=0.0)
    assert repr(Lorentz(2)) == "Lorentz(c=2.0)" and Lorentz(2) == Lorentz(2.0)  # optimizer state key


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_shared_riemannian_optimizers_find_the_frechet_mean_on_the_hyperboloid(opt_name):
    """Points at radius 3 in 2k directions symmetric about a ray: their Fréchet mean lies on the
    ray, at the radius t* minimising sum_i d(x(t), y_i)^2 (a 1-D problem, solved by a fine grid)."""
    from synthfuse.shared.optim import RiemannianAdam, RiemannianSGD

    m = Lorentz()
    angles = np.array([0.4, -0.4, 1.1, -1.1])
    targets = torch.from_numpy(_polar(np.full(4, 3.0), angles))
    grid = np.linspace(0.0, 3.0, 30001)
    cost = sum(np.asarray(m.dist(_polar(grid, 0 * grid), _polar(3.0, a))) ** 2 for a in angles)
    t_star = grid[np.argmin(cost)]
    x = torch.nn.Parameter(torch.from_numpy(_polar(np.array([1.5]), np.array([2.5]))))
    if opt_name == "sgd":
        opt = RiemannianSGD([x], lr=0.05, momentum=0.5, manifold=m)
    else:
        opt = RiemannianAdam([x], lr=0.05, manifold=m)
    for _ in range(250):
        opt.zero_grad()
        (m.dist(x, targets) ** 2).sum().backward()
        opt.step()
    m.check_point(x.detach())
    expected = torch.from_numpy(_polar(np.array([t_star]), np.array([0.0])))
    assert float(m.dist(x.detach(), expected)) < 1e-3
