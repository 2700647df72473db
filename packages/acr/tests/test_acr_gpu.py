"""On a CUDA build of jaxlib the experts are solved on the GPU and agree with the CPU fit."""

import numpy as np
import pytest

from synthfuse.acr import MixtureOfSVRExperts
from synthfuse.acr._experts import pack_problem, solve_experts
from synthfuse.acr.datasets import make_heteroscedastic_sine


@pytest.mark.cuda
def test_acr_experts_land_on_gpu_and_match_cpu():
    import jax

    gpu, cpu = jax.devices("gpu")[0], jax.devices("cpu")[0]
    X, y, _, _ = make_heteroscedastic_sine(2000, random_state=0)
    rng = np.random.default_rng(0)
    expert = rng.integers(0, 16, size=len(y))
    phi = np.column_stack([np.ones(len(y)), X, X**2])
    prob = pack_problem(phi, y, expert, 16)
    kw = dict(C=1.0, epsilon=0.1, delta=1.0, tol=1e-6, max_iter=2000, as_numpy=False)
    W_gpu, _ = solve_experts(prob, np.full(16, 3.0), device=gpu, **kw)
    W_cpu, _ = solve_experts(prob, np.full(16, 3.0), device=cpu, **kw)
    assert W_gpu.devices() == {gpu} and W_cpu.devices() == {cpu}
    np.testing.assert_allclose(np.asarray(W_gpu), np.asarray(W_cpu), rtol=1e-3, atol=1e-3)

    X_test, _, f_test, _ = make_heteroscedastic_sine(2000, random_state=1)
    fits = {d: MixtureOfSVRExperts(device=d, random_state=0).fit(X, y) for d in ("gpu", "cpu")}
    np.testing.assert_allclose(fits["gpu"].predict(X_test), fits["cpu"].predict(X_test), atol=2e-3 * np.std(y))
    rmse = {d: np.sqrt(np.mean((m.predict(X_test) - f_test) ** 2)) for d, m in fits.items()}
    assert abs(rmse["gpu"] - rmse["cpu"]) < 0.01
