"""RiemannianSGD / RiemannianAdam: torch's optimizers on flat space, known minima on curved ones."""

from __future__ import annotations

import io

import numpy as np
import pytest

from synthfuse.shared.manifold import Euclidean, PoincareBall, Sphere

torch = pytest.importorskip("torch")

from synthfuse.shared.optim import RiemannianAdam, RiemannianSGD  # noqa: E402


def _params(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=g, dtype=torch.float64),
            torch.randn(3, generator=g, dtype=torch.float64),
            torch.randn((), generator=g, dtype=torch.float64)]  # a 0-d parameter too


def _loss(params, step: int):
    w, b, s = params
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4) + 0.1 * step
    return ((torch.tanh(x @ w + b) * s - 0.3) ** 2).sum() + (w**4).sum() * 0.01


def _run(opt_cls, kwargs, steps: int = 25):
    params = [torch.nn.Parameter(p) for p in _params()]
    opt = opt_cls(params, **kwargs)
    for i in range(steps):
        opt.zero_grad()
        _loss(params, i).backward()
        opt.step()
    return params


SGD_CONFIGS = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
]
ADAM_CONFIGS = [
    dict(lr=0.02),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
    dict(lr=0.02, amsgrad=True),
]


@pytest.mark.parametrize("kwargs", SGD_CONFIGS, ids=lambda k: ",".join(k))
def test_shared_riemannian_sgd_on_euclidean_equals_torch_sgd(kwargs):
    ours = _run(RiemannianSGD, dict(kwargs, manifold=Euclidean()))
    ref = _run(torch.optim.SGD, kwargs)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ours[0], torch.nn.Parameter(_params()[0]))  # it did move


@pytest.mark.parametrize("kwargs", ADAM_CONFIGS, ids=lambda k: ",".join(k))
def test_shared_riemannian_adam_on_euclidean_equals_torch_adam(kwargs):
    ours = _run(RiemannianAdam, kwargs)  # Euclidean is the default manifold
    ref = _run(torch.optim.Adam, kwargs)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _rayleigh_problem(n: int = 8):
    """Symmetric A with a known spectrum: eigenvalues 1..n, eigenvectors the columns of Q."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    eigenvalues = torch.arange(1, n + 1, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T, q[:, -1]


@pytest.mark.parametrize(
    "opt_cls,kwargs",
    [(RiemannianSGD, dict(lr=0.02, momentum=0.5)), (RiemannianAdam, dict(lr=0.05))],
    ids=["sgd", "adam"],
)
def test_shared_riemannian_optimizers_find_the_leading_eigenvector_on_the_sphere(opt_cls, kwargs):
    """min_{||x|| = r} -x^T A x is attained at r times the leading eigenvector (Rayleigh quotient)."""
    a, leading = _rayleigh_problem()
    sphere = Sphere(radius=2.0)
    x = torch.nn.Parameter(sphere.random(8, generator=3, like=a))
    opt = opt_cls([x], manifold=sphere, **kwargs)
    for _ in range(400):
        opt.zero_grad()
        (-(x @ a @ x)).backward()
        opt.step()
        assert abs(float(x.detach().norm()) - 2.0) < 1e-12  # stays on the sphere at every step
    x = x.detach()
    assert abs(float(x @ leading)) / 2.0 > 1 - 1e-6
    np.testing.assert_allclose(float(x @ a @ x) / 4.0, 8.0, rtol=1e-6)  # lambda_max


@pytest.mark.parametrize(
    "opt_cls,kwargs",
    [(RiemannianSGD, dict(lr=0.2, momentum=0.7, nesterov=True)),
     (RiemannianAdam, dict(lr=0.05, amsgrad=True))],
    ids=["sgd", "adam"],
)
def test_shared_riemannian_optimizers_reach_a_target_in_the_ball(opt_cls, kwargs):
    ball = PoincareBall(c=1.5)
    target = torch.tensor([[0.7, -0.2], [-0.1, 0.75], [0.0, 0.0], [0.3, 0.3]], dtype=torch.float64)
    target = ball.proj(target / 1.5**0.5)
    x = torch.nn.Parameter(ball.random(4, 2, std=0.5, generator=4, like=target))
    opt = opt_cls([x], manifold=ball, **kwargs)
    for _ in range(300):
        opt.zero_grad()
        (ball.dist(x, target) ** 2).sum().backward()
        opt.step()
        ball.check_point(x.detach())  # inside the ball (within the margin) at every step
    assert float(ball.dist(x.detach(), target).max()) < 1e-4


def test_shared_riemannian_sgd_transports_momentum_into_the_new_tangent_space():
    sphere = Sphere()
    x = torch.nn.Parameter(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    opt = RiemannianSGD([x], lr=0.5, momentum=0.9, manifold=sphere)
    x.grad = torch.tensor([0.0, -1.0, 0.5], dtype=torch.float64)
    opt.step()
    buf = opt.state[x]["momentum_buffer"]
    # one step from e1 along the great circle of v = (0, 1, -0.5): buffer = transported v
    v = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64) * 0.5
    expected_x = sphere.exp(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), v)
    torch.testing.assert_close(x.detach(), expected_x)
    torch.testing.assert_close(buf, sphere.transp(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                                                  expected_x, x.grad))
    assert abs(float(buf @ x.detach())) < 1e-12 and abs(float(buf.norm()) - 1.25**0.5) < 1e-12


def test_shared_riemannian_optimizers_param_groups_and_state_dict_roundtrip():
    def build():
        torch.manual_seed(0)
        like = torch.zeros((), dtype=torch.float64)
        sphere_p = torch.nn.Parameter(Sphere().random(3, 4, generator=5, like=like))
        flat_p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
        groups = [{"params": [sphere_p], "manifold": Sphere()}, {"params": [flat_p], "lr": 0.1}]
        opt = RiemannianAdam(groups, lr=0.05)
        return [sphere_p, flat_p], opt

    def step(params, opt):
        opt.zero_grad()
        (params[0][:, 0].sum() + (params[1] ** 2).sum()).backward()
        opt.step()

    params, opt = build()
    for _ in range(3):
        step(params, opt)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": [p.detach() for p in params]}, buffer)
    for _ in range(3):
        step(params, opt)

    params2, opt2 = build()
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    with torch.no_grad():
        for p, q in zip(params2, saved["params"]):
            p.copy_(q)
    opt2.load_state_dict(saved["opt"])
    assert isinstance(opt2.param_groups[0]["manifold"], Sphere)
    assert saved["opt"]["param_groups"][0]["manifold"] == "Sphere(radius=1.0)"
    for _ in range(3):
        step(params2, opt2)
    for p, q in zip(params, params2):
        torch.testing.assert_close(p, q, rtol=0, atol=0)

    on_radius_2 = torch.nn.Parameter(2 * params2[0].detach())
    wrong = RiemannianAdam([{"params": [on_radius_2], "manifold": Sphere(radius=2.0)},
                            {"params": [params2[1]]}])
    with pytest.raises(ValueError, match=r"saved for manifold 'Sphere\(radius=1.0\)'"):
        wrong.load_state_dict(saved["opt"])


def test_shared_riemannian_optimizers_reject_bad_input():
    off_sphere = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"param group 0, parameter 0 \(shape \(3,\)\).*not on Sphere"):
        RiemannianSGD([off_sphere], lr=0.1, manifold=Sphere())
    with pytest.raises(TypeError, match="manifold must be a"):
        RiemannianAdam([off_sphere], manifold="sphere")
    with pytest.raises(ValueError, match="nesterov"):
        RiemannianSGD([off_sphere], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        RiemannianAdam([off_sphere], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr must be > 0"):
        RiemannianSGD([off_sphere], lr=0.0)
    emb = torch.nn.Embedding(4, 2, sparse=True)
    opt = RiemannianSGD(emb.parameters(), lr=0.1)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_shared_riemannian_step_accepts_a_closure():
    x = torch.nn.Parameter(torch.tensor([0.6, 0.8], dtype=torch.float64))
    opt = RiemannianSGD([x], lr=0.1, manifold=Sphere())

    def closure():
        opt.zero_grad()
        loss = x[0] ** 2
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == pytest.approx(0.36)
    x = x.detach()
    assert float(x[0]) < 0.6 and abs(float(x.norm()) - 1) < 1e-12


@pytest.mark.cuda
def test_shared_riemannian_adam_on_cuda_matches_cpu():
    a, _ = _rayleigh_problem()
    sphere = Sphere(radius=2.0)
    start = sphere.random(8, generator=3, like=a)
    results = []
    for device in ("cpu", "cuda"):
        x = torch.nn.Parameter(start.to(device, copy=True))  # the CPU run must not move `start`
        opt = RiemannianAdam([x], lr=0.05, manifold=sphere)
        for _ in range(50):
            opt.zero_grad()
            (-(x @ a.to(device) @ x)).backward()
            opt.step()
        assert x.device.type == device
        results.append(x.detach().cpu())
    torch.testing.assert_close(results[1], results[0], rtol=1e-9, atol=1e-10)
