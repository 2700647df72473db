"""The batched expert solver against closed forms, scipy, liblinear and a per-expert reference."""

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.svm import LinearSVR

from synthfuse.acr._experts import (
    expert_objective,
    pack_problem,
    plan_bucket,
    solve_experts,
    trace_count,
)


def _unequal_problem(seed=0, sizes=(400, 3, 57, 120, 9), n_feat=6):
    """Experts of very unequal sizes with offsets: (phi, y, offset, expert)."""
    rng = np.random.default_rng(seed)
    expert = np.repeat(np.arange(len(sizes)), sizes)
    n = expert.size
    phi = np.column_stack([np.ones(n), rng.normal(size=(n, n_feat - 1))])
    W_true = rng.normal(size=(len(sizes), n_feat))
    offset = 0.3 * rng.normal(size=n)
    y = offset + np.einsum("ip,ip->i", phi, W_true[expert]) + 0.3 * rng.standard_t(3, size=n)
    perm = rng.permutation(n)  # the packer must not rely on sorted input
    return phi[perm], y[perm], offset[perm], expert[perm]


def _reference_solve(phi, y, offset, expert, reg, *, C, epsilon, delta):
    """Slow, obviously-correct reference: one float64 L-BFGS solve per expert (a Python loop)."""
    K, P = int(expert.max()) + 1, phi.shape[1]
    W = np.zeros((K, P))
    for k in range(K):
        m = expert == k
        A, t = phi[m], y[m] - offset[m]

        def f(w, A=A, t=t, k=k):
            r = t - A @ w
            a = np.abs(r) - epsilon
            loss = np.where(a <= 0, 0, np.where(a <= delta, 0.5 * a * a / delta, a - 0.5 * delta))
            dl = np.sign(r) * np.clip(a / delta, 0, 1)
            pen = np.r_[0.0, np.full(P - 1, reg[k])]
            return C * loss.sum() + pen @ (w * w), -C * A.T @ dl + 2 * pen * w

        W[k] = minimize(f, np.zeros(P), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000}).x
    return W


@pytest.mark.parametrize("delta", [0.05, 0.5, 3.0], ids=lambda d: f"delta{d}")
def test_acr_experts_match_per_expert_reference(delta):
    phi, y, offset, expert = _unequal_problem()
    reg = np.array([0.5, 2.0, 0.1, 10.0, 1.0])
    kw = dict(C=1.0, epsilon=0.1, delta=delta)
    problem = pack_problem(phi, y, expert, 5, offset=offset)
    W, n_iter = solve_experts(problem, reg, tol=1e-7, max_iter=5000, **kw)
    W_ref = _reference_solve(phi, y, offset, expert, reg, **kw)
    obj = expert_objective(phi, y, offset, W, expert, reg, **kw)
    obj_ref = expert_objective(phi, y, offset, W_ref, expert, reg, **kw)
    assert n_iter < 5000
    np.testing.assert_allclose(obj, obj_ref, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(W, W_ref, rtol=0, atol=5e-3 * (1 + np.abs(W_ref).max()))


def test_acr_experts_closed_form_ridge_in_one_step():
    # ε = 0 and δ larger than every residual: the loss is r²/(2δ) everywhere, the problem is ridge
    # regression  (C/δ ΦᵀΦ + 2R) w = (C/δ) Φᵀ(y - o)  and the preconditioned step solves it at once.
    phi, y, offset, expert = _unequal_problem(seed=1)
    reg = np.array([0.5, 2.0, 0.1, 10.0, 1.0])
    C = delta = 1e4
    W, n_iter = solve_experts(pack_problem(phi, y, expert, 5, offset=offset), reg, C=C, epsilon=0.0,
                              delta=delta, tol=1e-6, max_iter=50)
    for k in range(5):
        m = expert == k
        A, t = phi[m], y[m] - offset[m]
        R = np.diag(np.r_[0.0, np.full(phi.shape[1] - 1, reg[k])])
        w = np.linalg.solve(C / delta * A.T @ A + 2 * R, C / delta * A.T @ t)
        np.testing.assert_allclose(W[k], w, rtol=1e-4, atol=1e-4)
    assert n_iter <= 3


def _liblinear_problem(seed=2, n=300):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.5, -2.0, 0.5, 0.0]) + 0.4 * rng.normal(size=n)
    # column 0 of φ is the unpenalized intercept: zero it so both problems are intercept-free
    phi = np.column_stack([np.zeros(n), X])
    return X, y, phi


def test_acr_experts_match_liblinear_squared_epsilon_insensitive():
    # δ → ∞ turns L_{ε,δ} into (|r| - ε)₊² / (2δ): liblinear's L2-loss SVR
    #   ½‖w‖² + C_svr Σ (|r| - ε)₊²   ⇔   ours with λ = ½ and C / (2δ) = C_svr.
    X, y, phi = _liblinear_problem()
    delta, C_svr = 1e4, 0.7
    svr = LinearSVR(loss="squared_epsilon_insensitive", epsilon=0.2, C=C_svr, fit_intercept=False,
                    dual=False, tol=1e-10, max_iter=100000).fit(X, y)
    W, _ = solve_experts(pack_problem(phi, y, np.zeros(len(y), int), 1), np.array([0.5]),
                         C=2 * delta * C_svr, epsilon=0.2, delta=delta, tol=1e-7, max_iter=2000)
    np.testing.assert_allclose(W[0, 1:], svr.coef_, rtol=1e-4, atol=1e-5)


def test_acr_experts_approach_exact_svr_objective_as_delta_shrinks():
    # Exact ε-insensitive loss: L_δ ≤ L ≤ L_δ + δ/2, so the smoothed optimum is within C n δ / 2 of
    # liblinear's exact L1-loss SVR optimum (½‖w‖² + C Σ (|r| - ε)₊).
    X, y, phi = _liblinear_problem(seed=3)
    C, eps, n = 0.5, 0.2, len(y)
    svr = LinearSVR(loss="epsilon_insensitive", epsilon=eps, C=C, fit_intercept=False, dual=True,
                    tol=1e-12, max_iter=1_000_000).fit(X, y)

    def exact(w):
        return 0.5 * w @ w + C * np.maximum(np.abs(y - X @ w) - eps, 0).sum()

    best = exact(svr.coef_)
    for delta in (0.1, 0.01):
        W, _ = solve_experts(pack_problem(phi, y, np.zeros(n, int), 1), np.array([0.5]), C=C,
                             epsilon=eps, delta=delta, tol=1e-8, max_iter=20000)
        assert best - 1e-6 <= exact(W[0, 1:]) <= best + C * n * delta / 2 + 1e-4


def test_acr_experts_padding_and_bigger_buckets_change_nothing():
    phi, y, offset, expert = _unequal_problem(seed=4)
    reg = np.full(5, 1.0)
    kw = dict(C=1.0, epsilon=0.1, delta=0.5, tol=1e-7, max_iter=3000)
    small = pack_problem(phi, y, expert, 5, offset=offset)
    big = pack_problem(phi, y, expert, 5, offset=offset, bucket=plan_bucket([(4 * len(y), 40)], 13))
    assert big.bucket.n_tiles > small.bucket.n_tiles and big.bucket.n_experts > small.bucket.n_experts
    W_small, _ = solve_experts(small, reg, **kw)
    W_big, _ = solve_experts(big, reg, **kw)
    np.testing.assert_allclose(W_small, W_big, atol=1e-4)


def test_acr_experts_pack_is_a_permutation_with_zero_weight_padding():
    phi, y, offset, expert = _unequal_problem(seed=5)
    prob = pack_problem(phi, y, expert, 5, offset=offset)
    rows = prob.row_index.ravel()
    real = rows >= 0
    assert sorted(rows[real]) == list(range(len(y)))
    np.testing.assert_array_equal(prob.weight.ravel() > 0, real)
    np.testing.assert_allclose(prob.y.ravel()[real], y[rows[real]], rtol=1e-6)
    np.testing.assert_allclose(prob.phi.reshape(-1, prob.phi.shape[-1])[real, : phi.shape[1]],
                               phi[rows[real]], rtol=1e-6)
    # every tile holds rows of a single expert, and the owners are sorted
    owner = np.repeat(prob.tile_expert, prob.bucket.tile)
    np.testing.assert_array_equal(owner[real], expert[rows[real]])
    assert np.all(np.diff(prob.tile_expert) >= 0)


def test_acr_experts_unequal_leaves_do_not_blow_up_padding():
    # one big expert and 200 tiny ones: padding to the largest expert would need 200 x 5000 rows
    sizes = [5000] + [7] * 200
    expert = np.repeat(np.arange(len(sizes)), sizes)
    phi = np.ones((expert.size, 4))
    prob = pack_problem(phi, np.zeros(expert.size), expert, len(sizes))
    padded = prob.bucket.n_tiles * prob.bucket.tile
    assert padded <= 3 * expert.size
    used = int(np.sum(prob.weight > 0))
    assert used == expert.size


def test_acr_experts_refit_same_bucket_never_recompiles():
    phi, y, offset, expert = _unequal_problem(seed=6)
    bucket = plan_bucket([(len(y), 5)], phi.shape[1])
    kw = dict(C=1.0, epsilon=0.1, delta=0.5)
    solve_experts(pack_problem(phi, y, expert, 5, offset=offset, bucket=bucket), np.ones(5), **kw)
    before = trace_count()
    # new values, fewer rows, different regularization and solver settings: same bucket, no compile
    for seed in (7, 8):
        phi2, y2, off2, exp2 = _unequal_problem(seed=seed, sizes=(300, 5, 40, 100, 9))
        prob = pack_problem(phi2, y2, exp2, 5, offset=off2, bucket=bucket)
        solve_experts(prob, np.full(5, 3.0), C=2.0, epsilon=0.2, delta=0.1, tol=1e-3, max_iter=77)
    assert trace_count() == before
    # a different bucket compiles exactly once
    other = plan_bucket([(8 * len(y), 5)], phi.shape[1])
    solve_experts(pack_problem(phi, y, expert, 5, offset=offset, bucket=other), np.ones(5), **kw)
    solve_experts(pack_problem(phi, y, expert, 5, offset=offset, bucket=other), np.ones(5), **kw)
    assert trace_count() == before + 1


def test_acr_experts_smaller_learning_rate_reaches_the_same_optimum():
    phi, y, offset, expert = _unequal_problem(seed=9)
    prob = pack_problem(phi, y, expert, 5, offset=offset)
    kw = dict(C=1.0, epsilon=0.1, delta=0.5, tol=1e-7, max_iter=5000)
    W1, it1 = solve_experts(prob, np.ones(5), learning_rate=1.0, **kw)
    W2, it2 = solve_experts(prob, np.ones(5), learning_rate=0.3, **kw)
    np.testing.assert_allclose(W1, W2, atol=1e-3)
    assert it2 > it1


def test_acr_experts_dense_sums_match_segment_sums():
    # the GPU path (one-hot matmul) against the CPU path (scatter-add), both run here on the CPU
    from synthfuse.acr._experts import _expert_sum

    rng = np.random.default_rng(10)
    x = rng.normal(size=(64, 5, 3)).astype(np.float32)
    owner = np.sort(rng.integers(0, 9, size=64)).astype(np.int32)
    dense, scatter = np.asarray(_expert_sum(x, owner, 16, True)), np.asarray(_expert_sum(x, owner, 16, False))
    reference = np.stack([x[owner == k].sum(axis=0) for k in range(16)])
    np.testing.assert_allclose(dense, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scatter, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_floats", [1 << 22, 3 * 16])
def test_acr_experts_chunked_gram_matches_naive(monkeypatch, chunk_floats):
    from synthfuse.acr import _experts

    monkeypatch.setattr(_experts, "_GRAM_CHUNK_FLOATS", chunk_floats)  # 3*16 -> chunks of 2 tiles
    phi, y, offset, expert = _unequal_problem(seed=11, sizes=(40, 3, 17), n_feat=4)
    prob = pack_problem(phi, y, expert, 3, offset=offset)
    gram = np.asarray(_experts._gram(prob.phi, prob.weight, prob.tile_expert, prob.bucket.n_experts, False))
    for k in range(3):
        A = phi[expert == k]
        np.testing.assert_allclose(gram[k, :4, :4], A.T @ A, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(gram[3:], 0.0)


def test_acr_experts_inverse_cholesky_factor_matches_numpy():
    # the solver's right-side triangular solve against numpy's inverse of numpy's Cholesky factor
    from synthfuse.acr._experts import _inverse_cholesky_factor

    rng = np.random.default_rng(12)
    A = rng.normal(size=(6, 30, 9))
    M = np.einsum("knp,knq->kpq", A, A) + 0.1 * np.eye(9)
    L_inv = np.asarray(_inverse_cholesky_factor(M.astype(np.float32)), dtype=np.float64)
    reference = np.linalg.inv(np.linalg.cholesky(M))
    np.testing.assert_allclose(L_inv, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())
    np.testing.assert_array_equal(np.triu(L_inv[0], 1), 0.0)  # lower triangular
    np.testing.assert_allclose(np.swapaxes(L_inv, 1, 2) @ L_inv, np.linalg.inv(M), rtol=1e-2, atol=1e-3)
