"""One fitted mixture: root expert, partitions and expert corrections (final model or a fold model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthfuse.acr._partition import Partition

__all__ = ["Submodel", "partition_bases"]


def partition_bases(partitions: list[Partition]) -> np.ndarray:
    """Index of each partition's first expert when experts are stored partition after partition."""
    return np.concatenate([[0], np.cumsum([p.n_leaves for p in partitions])[:-1]]).astype(np.int64)


@dataclass
class Submodel:
    """:math:`\\hat z(x) = \\phi(x)^\\top \\big(w_0 + \\tfrac1B \\sum_b w_{k_b(x)}\\big)` (standardized units).

    ``root_coef`` (P,); ``partitions`` the B region maps; ``expert_coef`` (sum of leaves, P), the
    experts of partition 0, then of partition 1, ...
    """

    root_coef: np.ndarray
    partitions: list[Partition]
    expert_coef: np.ndarray

    def experts_of(self, Z: np.ndarray) -> list[np.ndarray]:
        """Row of ``expert_coef`` covering each sample, one array per partition."""
        return [b + p.assign(Z) for b, p in zip(partition_bases(self.partitions), self.partitions)]

    def predict(self, phi: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """:math:`\\hat z` for features ``phi`` (n, P) of standardized inputs ``Z``; shape (n,)."""
        corrections = [np.einsum("ip,ip->i", phi, self.expert_coef[ids]) for ids in self.experts_of(Z)]
        return phi @ self.root_coef + np.mean(corrections, axis=0)
