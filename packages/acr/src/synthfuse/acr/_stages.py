"""The solver stages of one fit: bucket planning, packing and solving (root, fold, final experts)."""

from __future__ import annotations

import warnings

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from synthfuse.acr._experts import Bucket, pack_problem, plan_buckets, solve_experts

__all__ = ["PARTITION_SUBSAMPLE", "StageSolver", "resolve_device", "stage_buckets"]

#: Fraction of the training rows each partition tree is grown on when ``n_partitions > 1``.
PARTITION_SUBSAMPLE = 0.8


def stage_buckets(est, train, stage_a, n_features) -> list[Bucket]:
    """Solver buckets of the root, fold and final stages (shared where cheap: one compile).

    ``train[m]`` are the training rows of model ``m`` (0: the final model, 1..F: the folds) and
    ``stage_a`` the models solved in the fold stage (the final model too when Ω = 1, in which case
    there is no final stage). Expert counts are upper bounds, so the buckets depend only on the
    sizes: a tree on ``n`` rows has at most ``min(n_experts, n // min_samples_leaf)`` leaves.
    """
    sub = PARTITION_SUBSAMPLE if est.n_partitions > 1 else 1.0
    B = est.n_partitions

    def leaves(m):
        return B * min(est.n_experts, max(1, int(sub * train[m].size) // est.min_samples_leaf))

    stages = [(sum(t.size for t in train), len(train))]
    stages.append((B * sum(train[m].size for m in stage_a), sum(leaves(m) for m in stage_a)))
    if 0 not in stage_a:
        stages.append((B * train[0].size, leaves(0)))
    return plan_buckets(stages, n_features)


class StageSolver:
    """Packs (row, expert) pairs of one fit and solves them with the estimator's settings."""

    def __init__(self, est, phi: np.ndarray, yz: np.ndarray, device, buckets: list[Bucket]):
        self.est, self.device, self.buckets = est, device, list(buckets)
        self.phi, self.yz = phi.astype(np.float32), yz

    def __call__(self, rows, expert, offset, reg):
        """Solve the next stage's experts; warn when ``epochs`` ran out before ``tol``."""
        est = self.est
        problem = pack_problem(
            self.phi, self.yz, expert, reg.shape[0], rows=rows, offset=offset, bucket=self.buckets.pop(0)
        )
        W, n_iter = solve_experts(
            problem, reg, C=est.C, epsilon=est.epsilon, delta=est.smoothing,
            learning_rate=est.learning_rate, tol=est.tol, max_iter=est.epochs, device=self.device,
        )
        if n_iter >= est.epochs and est.tol > 0:
            warnings.warn(
                f"The expert solver stopped after epochs={est.epochs} iterations before reaching "
                f"tol={est.tol}; increase `epochs` or `tol`.",
                ConvergenceWarning,
            )
        return W, n_iter

    def models(self, models, train, parts, leaves, root_pred, omega):
        """Solve every partition's experts of ``models`` in one call; penalty λ Ω_k (Ω = 1 if None).

        Returns ``(W, bases, n_iter)``; ``bases[m][b]`` indexes expert 0 of partition ``b`` of model
        ``m`` in ``W``.
        """
        rows, expert, offset, bases, start = [], [], [], {}, 0
        for m in models:
            bases[m] = []
            for part, leaf in zip(parts[m], leaves[m]):
                bases[m].append(start)
                rows.append(train[m])
                expert.append(start + leaf[train[m]])
                offset.append(root_pred[train[m], m])
                start += part.n_leaves
        reg = self.est.lam_tree * (np.ones(start) if omega is None else omega)
        W, n_iter = self(np.concatenate(rows), np.concatenate(expert), np.concatenate(offset), reg)
        return W, bases, n_iter


def resolve_device(name: str | None):
    """The JAX device for ``device`` (None: JAX's default), with a clear error when absent."""
    if name is None:
        return None
    try:
        return jax.devices(name)[0]
    except RuntimeError as exc:
        raise ValueError(
            f"device={name!r} but JAX sees no {name.upper()} ({exc}); install a CUDA build of jaxlib "
            "or use device='cpu' / None."
        ) from exc
