"""Partitions of the input space into expert regions: the leaves of a regression tree.

A tree (CART, Breiman et al. 1984) with at most ``max_leaves`` leaves is grown best-first on the
*residual* of the root expert (a global polynomial), so it splits where one polynomial does not
fit, not where the target merely varies smoothly. Each leaf is one expert's region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.tree import DecisionTreeRegressor

__all__ = ["Partition", "grow_partition"]


@dataclass
class Partition:
    """A fitted partition: ``assign(Z)`` maps standardized inputs to region ids ``0..n_leaves-1``."""

    tree: DecisionTreeRegressor | None  # None: a single region
    leaf_of_node: np.ndarray  # tree node id -> region id (-1 for internal nodes)
    n_leaves: int

    def assign(self, Z: np.ndarray) -> np.ndarray:
        """Region id of every row of ``Z``; shape (n,), int64."""
        if self.tree is None:
            return np.zeros(Z.shape[0], dtype=np.int64)
        return self.leaf_of_node[self.tree.apply(np.asarray(Z, dtype=np.float32))]


def grow_partition(
    Z: np.ndarray, target: np.ndarray, *, max_leaves: int, min_samples_leaf: int, random_state: int
) -> Partition:
    """Grow a best-first tree with at most ``max_leaves`` leaves of ``>= min_samples_leaf`` samples.

    The tree returns fewer leaves when the data allow no more splits (e.g. ``max_leaves *
    min_samples_leaf > n``); with ``max_leaves == 1`` or fewer than ``2 * min_samples_leaf`` samples
    the partition is one region.
    """
    if max_leaves < 2 or Z.shape[0] < 2 * min_samples_leaf:
        return Partition(None, np.zeros(1, dtype=np.int64), 1)
    tree = DecisionTreeRegressor(
        max_leaf_nodes=max_leaves, min_samples_leaf=min_samples_leaf, random_state=random_state
    ).fit(np.asarray(Z, dtype=np.float32), target)
    is_leaf = tree.tree_.children_left == -1
    leaf_of_node = np.full(is_leaf.shape[0], -1, dtype=np.int64)
    leaf_of_node[is_leaf] = np.arange(int(is_leaf.sum()))
    return Partition(tree, leaf_of_node, int(is_leaf.sum()))
