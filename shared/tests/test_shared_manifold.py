"""Geometry of Euclidean, Sphere, PoincareBall and Lorentz on numpy arrays: identities and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from synthfuse.shared.manifold import Euclidean, Lorentz, PoincareBall, Sphere

MANIFOLDS = [
    pytest.param(Euclidean(), id="euclidean"),
    pytest.param(Sphere(), id="sphere"),
    pytest.param(Sphere(radius=2.5), id="sphere-r2.5"),
    pytest.param(PoincareBall(), id="ball"),
    pytest.param(PoincareBall(c=0.3), id="ball-c0.3"),
    pytest.param(Lorentz(), id="lorentz"),
    pytest.param(Lorentz(c=0.3), id="lorentz-c0.3"),
]
DIM = 5


def _points(m, n: int, seed: int) -> np.ndarray:
    if isinstance(m, (PoincareBall, Lorentz)):
        return m.random(n, DIM, std=0.8, generator=seed)
    return m.random(n, DIM, generator=seed)


def _tangent(m, x: np.ndarray, seed: int, max_norm: float = 2.0) -> np.ndarray:
    """Tangent vectors at ``x`` with Riemannian norm uniform in (0, max_norm)."""
    rng = np.random.default_rng(seed)
    u = m.proju(x, rng.standard_normal(x.shape))
    length = rng.uniform(0.05, max_norm, size=x.shape[:-1] + (1,))
    return u * length / np.sqrt(m.inner(x, u, u, keepdims=True))


def _max_step(m) -> float:
    """Tangent norms for which exp is injective (below pi r on the sphere)."""
    return 0.9 * np.pi * m.radius if isinstance(m, Sphere) else 3.0


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_exp_log_inverse(m):
    x, y = _points(m, 64, 0), _points(m, 64, 1)
    np.testing.assert_allclose(m.exp(x, m.log(x, y)), y, atol=1e-10)
    v = _tangent(m, x, 2, _max_step(m))
    np.testing.assert_allclose(m.log(x, m.exp(x, v)), v, atol=1e-9)
    np.testing.assert_allclose(m.dist(x, m.exp(x, v)), np.sqrt(m.inner(x, v, v)), atol=1e-10)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_dist_is_norm_of_log_and_symmetric(m):
    x, y = _points(m, 64, 3), _points(m, 64, 4)
    u = m.log(x, y)
    np.testing.assert_allclose(np.sqrt(m.inner(x, u, u)), m.dist(x, y), rtol=1e-10)
    np.testing.assert_allclose(m.dist(x, y), m.dist(y, x), rtol=1e-10)
    np.testing.assert_allclose(m.dist(x, x), 0.0, atol=1e-12)
    assert m.dist(x, y).shape == (64,) and m.dist(x, y, keepdims=True).shape == (64, 1)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_geodesic_endpoints_and_constant_speed(m):
    x, y = _points(m, 16, 5), _points(m, 16, 6)
    np.testing.assert_allclose(m.geodesic(x, y, 0.0), x, atol=1e-12)
    np.testing.assert_allclose(m.geodesic(x, y, 1.0), y, atol=1e-10)
    d = m.dist(x, y)
    ts = np.linspace(0.0, 1.0, 7)
    path = m.geodesic(x[:, None], y[:, None], ts[None, :])  # batch (16, 1) with t (1, 7)
    assert path.shape == (16, 7, DIM)
    np.testing.assert_allclose(m.dist(x[:, None], path), ts * d[:, None], atol=1e-9)
    # equal steps between consecutive samples: the speed is constant
    steps = m.dist(path[:, :-1], path[:, 1:])
    np.testing.assert_allclose(steps, np.broadcast_to(d[:, None] / 6, steps.shape), atol=1e-9)
    # one pair, a vector of times: t of shape (k,) gives k points
    assert m.geodesic(x[0], y[0], ts).shape == (7, DIM)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_transport_preserves_inner_products(m):
    x, y = _points(m, 32, 7), _points(m, 32, 8)
    u, v = _tangent(m, x, 9), _tangent(m, x, 10)
    pu, pv = m.transp(x, y, u), m.transp(x, y, v)
    np.testing.assert_allclose(m.inner(y, pu, pv), m.inner(x, u, v), atol=1e-10)
    np.testing.assert_allclose(m.proju(y, pu), pu, atol=1e-12)  # lands in T_y
    np.testing.assert_allclose(m.transp(x, x, u), u, atol=1e-12)
    # the geodesic's own velocity is carried along it: P(log_x y) = -log_y x
    np.testing.assert_allclose(m.transp(x, y, m.log(x, y)), -m.log(y, x), atol=1e-9)
    # transporting back returns the vector
    np.testing.assert_allclose(m.transp(y, x, pu), u, atol=1e-9)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_egrad2rgrad_is_the_riemannian_gradient(m):
    """<rgrad, u>_x = <egrad, u> for every tangent u (definition of the Riemannian gradient)."""
    x = _points(m, 32, 11)
    g = np.random.default_rng(12).standard_normal(x.shape)
    u = _tangent(m, x, 13)
    rgrad = m.egrad2rgrad(x, g)
    np.testing.assert_allclose(m.inner(x, rgrad, u), np.sum(g * u, -1), atol=1e-10)
    np.testing.assert_allclose(m.proju(x, rgrad), rgrad, atol=1e-12)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_retraction_agrees_with_exp_to_first_order(m):
    x = _points(m, 16, 14)
    v = _tangent(m, x, 15, 1.0)
    for h in (1e-2, 1e-3):
        gap = m.dist(m.retr(x, h * v), m.exp(x, h * v))
        assert np.all(gap <= 10 * h**2)


def _point_from(m, raw: np.ndarray, scale: float) -> np.ndarray:
    if isinstance(m, Sphere):
        return m.proj(raw)  # raw = 0 is allowed: proj has a documented answer
    if isinstance(m, PoincareBall):
        return m.exp(np.zeros_like(raw), scale * raw)  # reaches the boundary margin for large scale
    if isinstance(m, Lorentz):
        return m.exp(m.origin(raw), scale * raw)  # exp reads the spatial part of the step
    return scale * raw


@settings(max_examples=40, deadline=None)
@given(
    raw=hnp.arrays(np.float64, (3, DIM), elements=st.floats(-1.0, 1.0)),
    scale=st.floats(0.01, 4.0),
    antipodal=st.booleans(),
)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_triangle_inequality(m, raw, scale, antipodal):
    x, y, z = _point_from(m, raw, scale)
    if antipodal:  # exercise y = -x (antipodes on the sphere, mirror points in the ball)
        y = -x
    dxy, dyz, dxz = m.dist(x, y), m.dist(y, z), m.dist(x, z)
    assert dxz <= dxy + dyz + 1e-9 * (1 + dxz)
    assert dxy >= 0 and np.isclose(dxy, m.dist(y, x), rtol=1e-9, atol=1e-12)


def test_shared_sphere_dist_closed_form_and_antipodes():
    r = 2.5
    m = Sphere(radius=r)
    x, y = m.random(100, 3, generator=16), m.random(100, 3, generator=17)
    np.testing.assert_allclose(m.dist(x, y), r * np.arccos(np.sum(x * y, -1) / r**2), rtol=1e-10)
    # antipodes: distance pi r, log has the documented direction (from e_j, j = argmin |x_j|)
    np.testing.assert_allclose(m.dist(x, -x), np.pi * r, rtol=1e-12)
    log = m.log(x, -x)
    np.testing.assert_allclose(np.linalg.norm(log, axis=-1), np.pi * r, rtol=1e-12)
    e = np.eye(3)[np.argmin(np.abs(x), -1)]
    e = m.proju(x, e)
    np.testing.assert_allclose(log, np.pi * r * e / np.linalg.norm(e, axis=-1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(m.exp(x, log), -x, atol=1e-10)
    np.testing.assert_allclose(m.geodesic(x, -x, 1.0), -x, atol=1e-10)
    # proj of the zero vector is the documented point r 1 / sqrt(n)
    np.testing.assert_allclose(m.proj(np.zeros(4)), np.full(4, r / 2))


def test_shared_ball_dist_closed_forms():
    x = np.array([[0.3, -0.4, 0.1], [0.0, 0.0, 0.9], [0.0, 0.0, 0.0]])
    y = np.array([[-0.2, 0.5, 0.6], [0.1, 0.2, -0.3], [0.7, 0.1, 0.0]])
    for c in (1.0, 0.5, 2.0):
        m = PoincareBall(c=c)
        xs, ys = x / np.sqrt(c), y / np.sqrt(c)  # same relative position inside the ball
        norm = np.linalg.norm(ys, axis=-1)
        # dist0(x) = 2 / sqrt(c) artanh(sqrt(c) |x|)
        np.testing.assert_allclose(m.dist(np.zeros(3), ys), 2 / np.sqrt(c) * np.arctanh(np.sqrt(c) * norm))
        # Nickel & Kiela (2017): arcosh(1 + 2c |x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2))) / sqrt(c)
        num = 2 * c * np.sum((xs - ys) ** 2, -1)
        den = (1 - c * np.sum(xs**2, -1)) * (1 - c * np.sum(ys**2, -1))
        np.testing.assert_allclose(m.dist(xs, ys), np.arccosh(1 + num / den) / np.sqrt(c), rtol=1e-12)
        # exp/log at the origin: tanh / artanh of the scaled norm
        v = np.array([0.3, -1.2, 2.0])
        nv = np.linalg.norm(v)
        np.testing.assert_allclose(m.exp(np.zeros(3), v), np.tanh(np.sqrt(c) * nv) * v / (np.sqrt(c) * nv))
        np.testing.assert_allclose(m.log(np.zeros(3), ys[0]),
                                   np.arctanh(np.sqrt(c) * norm[0]) * ys[0] / (np.sqrt(c) * norm[0]))
        np.testing.assert_allclose(m.conformal_factor(xs), 2 / (1 - c * np.sum(xs**2, -1, keepdims=True)))


def test_shared_ball_geodesic_is_the_mobius_scalar_form():
    """exp_x(t log_x y) = x (+) (t (x) (-x (+) y)),
    with r (x) w = tanh(r artanh(sqrt(c)|w|)) w / (sqrt(c)|w|)."""
    c = 0.7
    m = PoincareBall(c=c)
    x, y = m.random(20, 4, std=0.8, generator=18), m.random(20, 4, std=0.8, generator=19)
    w = m.mobius_add(-x, y)
    nw = np.linalg.norm(w, axis=-1, keepdims=True)
    for t in (0.0, 0.25, 0.8, 1.0):
        tw = np.tanh(t * np.arctanh(np.sqrt(c) * nw)) * w / (np.sqrt(c) * nw)
        np.testing.assert_allclose(m.geodesic(x, y, t), m.mobius_add(x, tw), atol=1e-12)


def _reference_gyration(m: PoincareBall, u, v, w):
    """gyr[u, v] w = -(u (+) v) (+) (u (+) (v (+) w)) straight from the definition (Ungar)."""
    return m.mobius_add(-m.mobius_add(u, v), m.mobius_add(u, m.mobius_add(v, w)))


def test_shared_ball_gyration_closed_form_matches_definition():
    from synthfuse.shared.backend import get_namespace

    m = PoincareBall(c=1.3)
    u, v = m.random(10, 3, std=0.7, generator=20), m.random(10, 3, std=0.7, generator=21)
    w = np.random.default_rng(22).standard_normal((10, 3)) * 0.2
    closed_form = m._gyration(get_namespace(u), u, v, w)
    np.testing.assert_allclose(closed_form, _reference_gyration(m, u, v, w), atol=1e-12)


def _rk4(f, y0, n_steps: int = 400):
    """Integrate dy/dt = f(t, y) from 0 to 1 with classical Runge-Kutta."""
    h, y = 1.0 / n_steps, y0
    for i in range(n_steps):
        t = i * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _reference_transp(m, x, y, v):
    """Parallel transport by integrating the transport ODE along gamma(t) = exp_x(t log_x y).

    Sphere: dv/dt = -<gamma', v> gamma / r^2 (the normal part of dv/dt vanishes).
    Ball (conformal metric e^{2 phi} I, grad phi = c lambda gamma):
    dv/dt = -(<grad phi, gamma'> v + <grad phi, v> gamma' - <gamma', v> grad phi).
    """
    u = m.log(x, y)

    def velocity(t):  # gamma'(t) by central differences of the closed-form geodesic
        h = 1e-6
        return (m.exp(x, (t + h) * u) - m.exp(x, (t - h) * u)) / (2 * h)

    if isinstance(m, Sphere):
        def f(t, w):
            g = m.exp(x, t * u)
            return -np.sum(velocity(t) * w, -1, keepdims=True) * g / m.radius**2
    else:
        def f(t, w):
            g, dg = m.exp(x, t * u), velocity(t)
            grad_phi = m.c * m.conformal_factor(g) * g
            return -(np.sum(grad_phi * dg, -1, keepdims=True) * w
                     + np.sum(grad_phi * w, -1, keepdims=True) * dg
                     - np.sum(dg * w, -1, keepdims=True) * grad_phi)
    return _rk4(f, v)


@pytest.mark.parametrize("m", [Sphere(radius=1.7), PoincareBall(c=0.8)], ids=["sphere", "ball"])
def test_shared_manifold_transport_matches_the_transport_ode(m):
    x, y = _points(m, 6, 23), _points(m, 6, 24)
    v = _tangent(m, x, 25)
    np.testing.assert_allclose(m.transp(x, y, v), _reference_transp(m, x, y, v), atol=1e-7)


def test_shared_sphere_transport_of_antipodal_pair_follows_the_log_direction():
    m = Sphere()
    x = m.random(8, 4, generator=26)
    v = _tangent(m, x, 27)
    pv = m.transp(x, -x, v)
    np.testing.assert_allclose(np.sum(pv * pv, -1), np.sum(v * v, -1), rtol=1e-10)
    np.testing.assert_allclose(np.sum(pv * x, -1), 0.0, atol=1e-12)
    np.testing.assert_allclose(pv, _reference_transp(m, x, -x, v), atol=1e-7)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_shared_manifold_random_and_check_point(m):
    x = m.random(3, 4, DIM, generator=7)
    assert x.shape == (3, 4, DIM) and x.dtype == np.float64
    np.testing.assert_array_equal(x, m.random((3, 4, DIM), generator=7))  # same seed, same points
    m.check_point(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        m.check_point(np.full(DIM, np.nan))
    with pytest.raises(ValueError, match="shape must be positive"):
        m.random(0, DIM)
    with pytest.raises(ValueError, match="last .coordinate. axis"):
        m.dist(np.zeros((2, 3)), np.zeros((2, 4)))


def test_shared_manifold_check_point_rejects_points_off_the_manifold():
    with pytest.raises(ValueError, match=r"not on Sphere\(radius=1.0\).*\.proj"):
        Sphere().check_point(np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"not on PoincareBall\(c=4.0\)"):
        PoincareBall(c=4.0).check_point(np.array([0.0, 0.5]))
    PoincareBall(c=4.0).check_point(PoincareBall(c=4.0).proj(np.array([0.0, 0.5])))
    with pytest.raises(ValueError, match="radius must be a positive"):
        Sphere(radius=0.0)
    assert repr(Sphere(2)) == "Sphere(radius=2.0)" and Sphere(2) == Sphere(2.0)  # optimizer state key
    with pytest.raises(ValueError, match="use Euclidean"):
        PoincareBall(c=0.0)


def test_shared_ball_proj_margin_and_exp_stay_inside():
    for c in (1.0, 3.0):
        m = PoincareBall(c=c)
        far = np.array([[10.0, 0.0], [0.0, 1e-3]])
        p = m.proj(far)
        np.testing.assert_allclose(np.linalg.norm(p[0]), (1 - 1e-5) / np.sqrt(c))
        np.testing.assert_array_equal(p[1], far[1])  # inside points are untouched
        huge = m.exp(p[:1], np.array([[1e6, 3e5]]))
        assert np.sqrt(c) * np.linalg.norm(huge) <= 1 - 1e-5 + 1e-15
        assert np.isfinite(m.dist(huge, -huge)).all()
