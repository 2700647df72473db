"""Solve many polynomial epsilon-SVR experts at once: one jitted JAX program, no loop over experts.

Every expert :math:`k` minimizes its own primal problem

.. math::

    F_k(w) = C \\sum_{i \\in k} s_i\\, L_{\\varepsilon,\\delta}(y_i - o_i - \\phi_i^\\top w)
             + \\sum_p r_{kp}\\, w_p^2 ,

where :math:`\\phi_i` are the (standardized) polynomial features of sample :math:`i`,
:math:`o_i` a fixed offset (the root expert's prediction), :math:`s_i` a sample weight
(0 for padding) and :math:`r_{kp} = \\lambda\\,\\Omega_k` for every coefficient but the
intercept (0). :math:`L_{\\varepsilon,\\delta}` is the epsilon-insensitive loss of SVR
(Vapnik 1995; Smola & Schoelkopf 2004) with its kink at :math:`|u| = \\varepsilon` rounded over
a width :math:`\\delta` (a Huberized epsilon-insensitive loss):

.. math::

    L_{\\varepsilon,\\delta}(u) = \\begin{cases}
        0 & |u| \\le \\varepsilon \\\\
        (|u| - \\varepsilon)^2 / (2\\delta) & \\varepsilon < |u| \\le \\varepsilon + \\delta \\\\
        |u| - \\varepsilon - \\delta / 2 & |u| > \\varepsilon + \\delta ,
    \\end{cases}

which tends to the exact loss :math:`\\max(0, |u| - \\varepsilon)` as :math:`\\delta \\to 0`.
Because :math:`L'' \\le 1/\\delta`, the matrix
:math:`M_k = (C/\\delta) \\sum_{i\\in k} s_i \\phi_i \\phi_i^\\top + 2\\,\\mathrm{diag}(r_k)` majorizes
the Hessian of :math:`F_k`; the solver runs Nesterov-accelerated gradient descent preconditioned by
:math:`M_k^{-1}` (FISTA, Beck & Teboulle 2009) with gradient-based adaptive restart
(O'Donoghue & Candes 2015), for all experts at once, until every expert's step is below ``tol``.

Data layout ("tiles", no padding blow-up): the samples of each expert are cut into tiles of ``T``
rows; expert :math:`k` owns :math:`\\lceil n_k / T \\rceil` tiles, so unequal experts waste at most
``T - 1`` padded rows each. Tiles make every product a dense batched matmul; per-expert sums are one
``jax.ops.segment_sum`` over tiles (a one-hot matmul on GPUs, where it is deterministic). The sizes
(tiles, ``T``, experts) are rounded up to powers of two and the features to a multiple of 8, so refitting with the
same buckets reuses the compiled program (see :func:`plan_bucket`). Products run at full float32
precision (no TF32 on GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Bucket",
    "ExpertProblem",
    "expert_objective",
    "pack_problem",
    "plan_bucket",
    "plan_buckets",
    "solve_experts",
    "trace_count",
]

#: Number of times each jitted solver has been traced (compiled) in this process, by name.
_TRACES: dict[str, int] = {"solve": 0}


def trace_count() -> int:
    """How many times the expert solver has been compiled in this process (for tests/benchmarks)."""
    return _TRACES["solve"]


def _next_pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two ``>= max(n, minimum)``."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def _prev_pow2(n: int) -> int:
    """Largest power of two ``<= max(n, 1)``."""
    return 1 << (max(int(n), 1).bit_length() - 1)


def smoothed_eps_loss(u, epsilon, delta):
    """Huberized epsilon-insensitive loss :math:`L_{\\varepsilon,\\delta}(u)` (elementwise)."""
    a = jnp.abs(u) - epsilon
    return jnp.where(a <= 0, 0.0, jnp.where(a <= delta, 0.5 * a * a / delta, a - 0.5 * delta))


def _smoothed_eps_grad(u, epsilon, delta):
    """:math:`L'_{\\varepsilon,\\delta}(u)`: 0 in the tube, linear ramp of slope 1/δ, then ±1."""
    a = jnp.clip((jnp.abs(u) - epsilon) / delta, 0.0, 1.0)
    return jnp.sign(u) * a


class Bucket(NamedTuple):
    """Padded sizes of one compiled solver program (each a power of two).

    ``n_tiles`` tiles of ``tile`` rows, ``n_features`` feature columns (a multiple of 8) and
    ``n_experts`` experts.
    """

    n_tiles: int
    tile: int
    n_features: int
    n_experts: int


def _feature_width(n_features: int) -> int:
    """Padded feature count: the next multiple of 8.

    Every padded column costs in the per-expert :math:`O(P^3)` factorization, so the padding is
    kept to the SIMD width rather than a power of two (56 features stay 56, not 64).
    """
    return 8 * -(-max(int(n_features), 1) // 8)


def plan_bucket(stages: list[tuple[int, int]], n_features: int) -> Bucket:
    """One bucket large enough for every ``(n_rows, n_experts)`` stage of a fit.

    The tile size follows the stage with the most experts,
    ``T = clip(prev_pow2(n_rows / (2 n_experts)), 8, 256)``; expert :math:`k` fills
    :math:`\\lceil n_k / T \\rceil` tiles, so a stage needs at most ``n_rows / T + n_experts`` tiles
    (at most ``1.5 n_rows`` padded rows when ``T <= n_rows / (2 n_experts)``) before the tile count
    is rounded up to a power of two. Sizing every stage of a fit to one bucket compiles the solver
    once per fit configuration, and refits with the same sizes reuse it.
    """
    rows_k, experts_k = max(stages, key=lambda s: (s[1], s[0]))
    tile = int(np.clip(_prev_pow2(rows_k // max(2 * experts_k, 1)), 8, 256))
    n_tiles = max(-(-rows // tile) + experts for rows, experts in stages)
    return Bucket(
        n_tiles=_next_pow2(n_tiles),
        tile=tile,
        n_features=_feature_width(n_features),
        n_experts=_next_pow2(max(experts for _, experts in stages)),
    )


#: Padded rows above which a stage much smaller than the largest gets its own bucket.
_SHARED_BUCKET_ROWS = 1 << 16


def plan_buckets(stages: list[tuple[int, int]], n_features: int) -> list[Bucket]:
    """A bucket per stage: one shared bucket (one compile), unless that wastes much work.

    A stage whose own bucket has at most a quarter of the shared bucket's padded rows gets its own
    bucket once the shared one exceeds ``2**16`` rows: a second compile then costs less than
    iterating over the padding.
    """
    shared = plan_bucket(stages, n_features)
    shared_rows = shared.n_tiles * shared.tile
    out = []
    for stage in stages:
        own = plan_bucket([stage], n_features)
        small = 4 * own.n_tiles * own.tile <= shared_rows and shared_rows > _SHARED_BUCKET_ROWS
        out.append(own if small else shared)
    return out


@dataclass(frozen=True)
class ExpertProblem:
    """Packed, padded arrays describing ``n_experts`` independent expert problems.

    Shapes follow ``bucket``: ``phi`` (n_tiles, T, P) float32 features; ``y``, ``offset``,
    ``weight`` (n_tiles, T) float32; ``tile_expert`` (n_tiles,) int32 owner of each tile (sorted);
    ``row_index`` (n_tiles, T) int64 source row (-1 for padding); ``n_experts`` and ``n_features``
    the unpadded sizes.
    """

    phi: np.ndarray
    y: np.ndarray
    offset: np.ndarray
    weight: np.ndarray
    tile_expert: np.ndarray
    row_index: np.ndarray
    n_experts: int
    n_features: int
    bucket: Bucket


def pack_problem(
    phi: np.ndarray,
    y: np.ndarray,
    expert: np.ndarray,
    n_experts: int,
    *,
    rows: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    bucket: Bucket | None = None,
) -> ExpertProblem:
    """Sort (row, expert) pairs by expert and cut each expert's rows into tiles.

    Parameters
    ----------
    phi : ndarray of shape (n_samples, P)
        Features of the samples.
    y : ndarray of shape (n_samples,)
        Targets of the samples.
    expert : ndarray of int, shape (n_pairs,)
        Owner expert of each pair, in ``[0, n_experts)``.
    rows : ndarray of int, shape (n_pairs,), optional
        Sample of each pair (default ``arange(n_samples)``): a sample used by several experts
        appears once per expert.
    offset : ndarray of shape (n_pairs,), optional
        Fixed offset of each pair's prediction (default 0).
    bucket : Bucket, optional
        Padded sizes; by default the smallest from :func:`plan_bucket` for this one problem.
    """
    n_feat = phi.shape[1]
    rows = np.arange(phi.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    expert = np.asarray(expert, dtype=np.int64)
    n_pairs = rows.shape[0]
    bucket = bucket or plan_bucket([(n_pairs, n_experts)], n_feat)
    tile = bucket.tile
    counts = np.bincount(expert, minlength=n_experts)
    tiles_per_expert = -(-counts // tile)  # ceil
    used = int(tiles_per_expert.sum())
    if used > bucket.n_tiles or n_experts > bucket.n_experts or n_feat > bucket.n_features:
        raise ValueError(
            f"problem ({used} tiles, {n_experts} experts, {n_feat} features) exceeds {bucket}"
        )
    first_tile = np.concatenate([[0], np.cumsum(tiles_per_expert)[:-1]])
    order = np.argsort(expert, kind="stable")
    sorted_expert = expert[order]
    rank = np.arange(n_pairs) - np.concatenate([[0], np.cumsum(counts)[:-1]])[sorted_expert]
    slot = first_tile[sorted_expert] * tile + rank  # padded position of each sorted pair
    src = rows[order]

    size = bucket.n_tiles * tile
    flat_phi = np.zeros((size, bucket.n_features), dtype=np.float32)
    flat_phi[slot, :n_feat] = phi[src]
    flat = {name: np.zeros(size, dtype=np.float32) for name in ("y", "offset", "weight")}
    flat["y"][slot] = y[src]
    if offset is not None:
        flat["offset"][slot] = np.asarray(offset)[order]
    flat["weight"][slot] = 1.0
    row_index = np.full(size, -1, dtype=np.int64)
    row_index[slot] = src
    tile_expert = np.zeros(bucket.n_tiles, dtype=np.int32)
    tile_expert[:used] = np.repeat(np.arange(n_experts), tiles_per_expert)
    tile_expert[used:] = n_experts - 1 if n_experts else 0  # padding tiles (weight 0) stay sorted
    shape = (bucket.n_tiles, tile)
    return ExpertProblem(
        phi=flat_phi.reshape(*shape, bucket.n_features),
        y=flat["y"].reshape(shape),
        offset=flat["offset"].reshape(shape),
        weight=flat["weight"].reshape(shape),
        tile_expert=tile_expert,
        row_index=row_index.reshape(shape),
        n_experts=int(n_experts),
        n_features=int(n_feat),
        bucket=bucket,
    )


#: Full float32 products: GPUs would otherwise use TF32 (10-bit mantissa), too coarse for ``tol``.
_EXACT = jax.lax.Precision.HIGHEST


def _expert_sum(x, tile_expert, n_experts, dense):
    """Sum ``x`` (n_tiles, ...) over the tiles of each expert -> (n_experts, ...).

    ``dense`` uses a one-hot matmul, which is deterministic on GPUs (a scatter-add there uses
    atomics, whose summation order varies run to run); on CPUs the scatter-add is deterministic
    and cheaper.
    """
    if dense:
        onehot = jax.nn.one_hot(tile_expert, n_experts, dtype=x.dtype)  # (n_tiles, K)
        return jnp.tensordot(onehot, x, axes=(0, 0), precision=_EXACT)
    return jax.ops.segment_sum(x, tile_expert, num_segments=n_experts, indices_are_sorted=True)


#: Tiles per chunk of the Gram accumulation are capped so a chunk's per-tile products (about
#: 2**16 floats, 256 KiB) stay in cache until they are summed per expert.
_GRAM_CHUNK_FLOATS = 1 << 16


def _gram(phi, weight, tile_expert, n_experts, dense):
    """Per-expert Gram matrices :math:`\\sum_{i \\in k} s_i \\phi_i \\phi_i^\\top` -> (K, P, P).

    Tiles are processed in chunks so the per-tile (chunk, P, P) products stay small even for
    wide feature maps; ``n_tiles`` and the chunk are powers of two, so chunks tile exactly.
    """
    n_tiles, _, P = phi.shape
    chunk = min(n_tiles, _prev_pow2(max(_GRAM_CHUNK_FLOATS // (P * P), 1)))  # n_tiles: a power of 2

    def add_chunk(c, acc):
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, c * chunk, chunk)  # noqa: E731
        p, w = sl(phi), sl(weight)
        gram_tiles = jnp.einsum("tnp,tn,tnq->tpq", p, w, p, precision=_EXACT)  # (chunk, P, P)
        return acc + _expert_sum(gram_tiles, sl(tile_expert), n_experts, dense)

    acc = jnp.zeros((n_experts, P, P), phi.dtype)
    if chunk == n_tiles:  # one chunk: no loop (a smaller program to compile)
        return add_chunk(0, acc)
    return jax.lax.fori_loop(0, n_tiles // chunk, add_chunk, acc)


def _predict_tiles(phi, offset, tile_expert, W):
    """Predictions (n_tiles, T) = offset + phi @ W[owner]."""
    return offset + jnp.einsum("tnp,tp->tn", phi, W[tile_expert], precision=_EXACT)  # (n_tiles, T)


def _inverse_cholesky_factor(M):
    """:math:`L^{-1}` for the Cholesky factor :math:`M = L L^\\top` of each SPD matrix in ``M`` (K, P, P).

    The triangular inverse solves :math:`X L = I` from the right: XLA's CPU triangular solve does
    that about twice as fast as the equivalent left solve :math:`L X = I` for a batch of small
    matrices, with the same result (Cholesky + inverse at K = 512, P = 56 on the development CPU:
    8.5 ms against 14.5 ms, the factorization column of ``benchmarks/acr_scaling.py``).
    """
    chol = jnp.linalg.cholesky(M)
    eye = jnp.broadcast_to(jnp.eye(M.shape[-1], dtype=M.dtype), M.shape)
    return jax.lax.linalg.triangular_solve(chol, eye, left_side=False, lower=True)


@partial(jax.jit, static_argnames=("dense_sums",))
def _solve_jit(
    phi, y, offset, weight, tile_expert, reg, W0, C, epsilon, delta, lr, tol, max_iter, dense_sums
):
    """Preconditioned FISTA with adaptive restart for all experts (see module docstring)."""
    _TRACES["solve"] += 1  # runs at trace time only: counts compilations
    K, P = W0.shape
    # M_k = (C/δ) Σ s_i φ_i φ_iᵀ + 2 diag(r_k) + jitter I                       # (K, P, P)
    M = (C / delta) * _gram(phi, weight, tile_expert, K, dense_sums) + 2.0 * jax.vmap(jnp.diag)(reg)
    scale = jnp.maximum(jnp.trace(M, axis1=1, axis2=2) / P, 1.0)
    M = M + (1e-6 * scale)[:, None, None] * jnp.eye(P, dtype=M.dtype)
    L_inv = _inverse_cholesky_factor(M)  # (K, P, P)

    def precondition(g):  # M⁻¹ g = L⁻ᵀ (L⁻¹ g), two batched mat-vecs                          (K, P)
        h = jnp.einsum("kpq,kq->kp", L_inv, g, precision=_EXACT)
        return jnp.einsum("kqp,kq->kp", L_inv, h, precision=_EXACT)

    def grad(W):
        r = y - _predict_tiles(phi, offset, tile_expert, W)  # (n_tiles, T)
        g_rows = -C * weight * _smoothed_eps_grad(r, epsilon, delta)  # dF/dŷ
        g_tiles = jnp.einsum("tn,tnp->tp", g_rows, phi, precision=_EXACT)  # (n_tiles, P)
        g = _expert_sum(g_tiles, tile_expert, K, dense_sums)
        return g + 2.0 * reg * W  # (K, P)

    def body(state):
        W, V, t, it, _ = state
        g = grad(V)
        W_new = V - lr * precondition(g)  # preconditioned step at V
        # restart momentum where the move goes uphill: ∇F(V)·(W_new - W) > 0 (O'Donoghue & Candes)
        uphill = jnp.sum(g * (W_new - W), axis=1) > 0.0  # (K,)
        t_new = jnp.where(uphill, 1.0, 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)))
        beta = jnp.where(uphill, 0.0, (t - 1.0) / t_new)
        V_new = W_new + beta[:, None] * (W_new - W)
        change = jnp.max(jnp.abs(W_new - W) / (1.0 + jnp.max(jnp.abs(W_new), axis=1, keepdims=True)))
        return W_new, V_new, t_new, it + 1, change

    def cond(state):
        return (state[3] < max_iter) & (state[4] > tol)

    init = (W0, W0, jnp.ones(K, W0.dtype), jnp.asarray(0, jnp.int32), jnp.asarray(jnp.inf, W0.dtype))
    W, _, _, n_iter, change = jax.lax.while_loop(cond, body, init)
    return W, n_iter, change


def solve_experts(
    problem: ExpertProblem,
    reg: np.ndarray,
    *,
    C: float,
    epsilon: float,
    delta: float,
    learning_rate: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 500,
    device=None,
    as_numpy: bool = True,
) -> tuple[np.ndarray, int]:
    """Solve every expert of ``problem``; return ``(W, n_iter)`` with ``W`` of shape (n_experts, P).

    Parameters
    ----------
    problem : ExpertProblem
        From :func:`pack_problem`.
    reg : ndarray of shape (n_experts,)
        Penalty :math:`\\lambda\\Omega_k` of each expert (the intercept, feature 0, is not penalized).
    C, epsilon, delta : float
        Loss weight, tube half-width and smoothing width of :math:`L_{\\varepsilon,\\delta}`.
    learning_rate : float
        Fraction of the majorization step taken per iteration (1 = the full step).
    tol, max_iter : float, int
        Stop when every expert's largest relative coefficient change is below ``tol``, or after
        ``max_iter`` iterations.
    device : jax.Device, optional
        Where to solve (default: JAX's default device).
    as_numpy : bool
        Return ``W`` as a float64 numpy array (default) or as the float32 ``jax.Array`` on the
        device that solved it.
    """
    _, _, p_pad, k_pad = problem.bucket
    reg_full = np.zeros((k_pad, p_pad), dtype=np.float32)
    reg_full[: problem.n_experts, 1 : problem.n_features] = np.asarray(reg, dtype=np.float32)[:, None]
    W_init = np.zeros((k_pad, p_pad), dtype=np.float32)  # zero init
    arrays = (problem.phi, problem.y, problem.offset, problem.weight, problem.tile_expert, reg_full, W_init)
    if device is not None:
        arrays = jax.device_put(arrays, device)
    platform = (device or jax.devices()[0]).platform
    scalars = [np.float32(v) for v in (C, epsilon, delta, learning_rate, tol)] + [np.int32(max_iter)]
    W, n_iter, _ = _solve_jit(*arrays, *scalars, dense_sums=platform != "cpu")
    W = W[: problem.n_experts, : problem.n_features]
    return (np.asarray(W, dtype=np.float64) if as_numpy else W), int(n_iter)


def expert_objective(phi, y, offset, W, expert, reg, *, C, epsilon, delta) -> np.ndarray:
    """:math:`F_k(W_k)` of every expert, in float64 numpy (for tests and diagnostics)."""
    r = y - offset - np.einsum("ip,ip->i", phi, W[expert])
    a = np.abs(r) - epsilon
    loss = np.where(a <= 0, 0.0, np.where(a <= delta, 0.5 * a * a / delta, a - 0.5 * delta))
    data = np.bincount(expert, weights=C * loss, minlength=W.shape[0])
    return data + reg * np.sum(W[:, 1:] ** 2, axis=1)
