"""The SDE engine: Ornstein–Uhlenbeck moments in closed form, determinism, loud failures."""

import math

import pytest
import torch

from synthfuse.retrain.sde import integrate

THETA, SIGMA, X0, T_END = 1.5, 0.8, 2.0, 1.0


def _ou(x, t, k):
    return -THETA * x


def _ou_moments(t):
    """Closed form: E X_t = x0 e^{-θt}, Var X_t = σ²/(2θ)(1 - e^{-2θt})."""
    return X0 * math.exp(-THETA * t), SIGMA**2 / (2 * THETA) * (1 - math.exp(-2 * THETA * t))


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_ou_matches_closed_form_mean_and_variance(scheme):
    n = 100
    out = integrate(_ou, torch.full((1,), X0, dtype=torch.float64), dt=T_END / n, n_steps=n, diffusion=SIGMA,
                    scheme=scheme, seed=3, n_particles=40000, keep_path=True)
    mean, var = _ou_moments(T_END)
    x = out.final[:, 0]
    assert float(x.mean()) == pytest.approx(mean, abs=4 * math.sqrt(var / len(x)) + 0.01 * mean)
    assert float(x.var()) == pytest.approx(var, rel=0.04)
    mid_mean, mid_var = _ou_moments(0.5)
    assert float(out.path[50, :, 0].var()) == pytest.approx(mid_var, rel=0.04)
    assert out.times[-1].item() == pytest.approx(T_END)


def test_heun_is_closer_to_the_exact_mean_than_euler():
    errors = {}
    for scheme in ("euler", "heun"):
        out = integrate(_ou, torch.tensor([X0], dtype=torch.float64), dt=0.1, n_steps=10, scheme=scheme)
        errors[scheme] = abs(float(out.final) - _ou_moments(1.0)[0])
    # deterministic part: Euler is (1 - θdt)^n x0, Heun (1 - θdt + (θdt)²/2)^n x0
    assert float(integrate(_ou, torch.tensor([X0], dtype=torch.float64), dt=0.1, n_steps=10).final) == pytest.approx(X0 * 0.85**10)
    assert errors["heun"] < errors["euler"] / 5


def test_same_seed_same_path_and_different_seed_differs():
    x0 = torch.zeros(5)
    a = integrate(_ou, x0, dt=0.01, n_steps=30, diffusion=1.0, seed=7, n_particles=3, keep_path=True)
    b = integrate(_ou, x0, dt=0.01, n_steps=30, diffusion=1.0, seed=7, n_particles=3, keep_path=True)
    c = integrate(_ou, x0, dt=0.01, n_steps=30, diffusion=1.0, seed=8, n_particles=3, keep_path=True)
    assert torch.equal(a.path, b.path) and not torch.equal(a.path, c.path)


def test_tail_average_and_trace():
    out = integrate(lambda x, t, k: torch.ones_like(x), torch.zeros(2), dt=1.0, n_steps=10, tail=0.3,
                    keep_path=True, monitor=lambda x, t: {"m": float(x.mean())}, trace_every=4)
    assert torch.allclose(out.average, out.path[-3:].mean(0))
    assert torch.allclose(out.average, torch.full((1, 2), 9.0))
    assert [r["step"] for r in out.trace] == [0, 4, 8, 10] and out.trace[-1]["m"] == 10.0


def test_missing_gradient_or_bad_input_raises():
    with pytest.raises(ValueError, match="missing gradient"):
        integrate(lambda x, t, k: None, torch.zeros(3), dt=0.1, n_steps=2, diffusion=1.0)
    with pytest.raises(FloatingPointError):
        integrate(lambda x, t, k: torch.full_like(x, float("nan")), torch.zeros(3), dt=0.1, n_steps=2)
    with pytest.raises(ValueError, match="shape"):
        integrate(lambda x, t, k: x[:, :1], torch.zeros(3), dt=0.1, n_steps=2)
    with pytest.raises(ValueError, match="NaN"):
        integrate(_ou, torch.tensor([float("nan")]), dt=0.1, n_steps=2)
    with pytest.raises(ValueError, match="scheme"):
        integrate(_ou, torch.zeros(1), dt=0.1, n_steps=2, scheme="rk4")
    with pytest.raises(ValueError, match="diffusion"):
        integrate(_ou, torch.zeros(1), dt=0.1, n_steps=2, diffusion=-1.0)
