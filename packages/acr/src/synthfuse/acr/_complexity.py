"""The local noise scale behind the complexity map Ω and the conformal intervals.

From cross-fitted residuals :math:`e_i = y_i - \\hat y_{-f(i)}(x_i)` (each sample predicted by the
model of the fold that did not see it), a bagged forest of regression trees (Breiman 2001)
estimates the local scale :math:`g(x) \\approx \\mathbb{E}[\\,|e| \\mid x\\,]`. Absolute residuals
are averaged rather than squared ones because they are less heavy-tailed; for Gaussian noise
:math:`\\mathbb{E}|e| = \\sigma\\sqrt{2/\\pi}`, so :math:`g \\propto \\sigma` and the constant cancels
in both uses below.

* Complexity map (ACR): :math:`\\Omega(x) = g(x)^2 / \\overline{g^2}`, normalized to mean 1 over the
  training samples, so the penalty :math:`\\lambda\\Omega` tracks the local noise *variance* (the
  ridge-optimal penalty grows like :math:`\\sigma^2`).
* Conformal scale: :math:`g(x)`, with out-of-bag estimates at the calibration points.

Each tree is grown on a random half of the samples (subagging), which gives every sample a set of
out-of-bag trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.tree import DecisionTreeRegressor

__all__ = ["NoiseForest"]

#: Ω grows like g ** _OMEGA_POWER: 2 makes the penalty track the local noise variance.
_OMEGA_POWER = 2.0
#: Floor on the scale, relative to its mean, so normalized scores stay finite.
_SCALE_FLOOR = 1e-6


@dataclass
class NoiseForest:
    """Bagged trees regressing :math:`|e|` on standardized inputs."""

    trees: list[DecisionTreeRegressor]
    oob_scale: np.ndarray  # (n_train,) out-of-bag g(x_i)
    typical: float  # root mean square of g over the training samples (in-bag forest)
    omega_norm: float  # mean over the training samples of g(x_i) ** _OMEGA_POWER

    @classmethod
    def fit(
        cls,
        Z: np.ndarray,
        abs_resid: np.ndarray,
        *,
        rng: np.random.RandomState,
        n_trees: int = 25,
        max_samples: int = 4096,
    ) -> "NoiseForest":
        """Grow ``n_trees`` trees, each on ``min(n // 2, max_samples)`` random samples.

        Leaves hold at least ``max(5, n // 50)`` samples, so :math:`g` averages over
        neighbourhoods rather than echoing single residuals.
        """
        n = Z.shape[0]
        Zf = np.asarray(Z, dtype=np.float32)
        size = max(1, min(n // 2, max_samples))
        min_leaf = max(5, n // 50)
        trees, oob_sum, oob_cnt = [], np.zeros(n), np.zeros(n)
        full = np.zeros(n)
        for _ in range(n_trees):
            idx = rng.choice(n, size=size, replace=False)
            tree = DecisionTreeRegressor(min_samples_leaf=min_leaf, random_state=rng.randint(2**31 - 1))
            tree.fit(Zf[idx], abs_resid[idx])
            pred = tree.predict(Zf)
            full += pred
            oob = np.ones(n, dtype=bool)
            oob[idx] = False
            oob_sum[oob] += pred[oob]
            oob_cnt[oob] += 1
            trees.append(tree)
        full /= n_trees
        # a sample no tree left out (possible only for tiny n) falls back to the in-bag forest
        oob_scale = np.where(oob_cnt > 0, oob_sum / np.maximum(oob_cnt, 1), full)
        typical = float(np.sqrt(np.mean(full**2)))
        full = _floor(full, typical)
        return cls(trees, _floor(oob_scale, typical), typical, float(np.mean(full**_OMEGA_POWER)))

    def scale(self, Z: np.ndarray) -> np.ndarray:
        """:math:`g(x)` for every row of ``Z`` (in-bag forest average), floored above 0."""
        Zf = np.asarray(Z, dtype=np.float32)
        g = np.mean([t.predict(Zf) for t in self.trees], axis=0)
        return _floor(g, self.typical)

    def omega(self, Z: np.ndarray) -> np.ndarray:
        """:math:`\\Omega(x) = g(x)^2 / \\overline{g^2}` (mean 1 over the training samples)."""
        if not self.typical > 0:  # all residuals zero (e.g. a constant target): no noise anywhere
            return np.ones(Z.shape[0])
        return self.scale(Z) ** _OMEGA_POWER / self.omega_norm


def _floor(g: np.ndarray, typical: float) -> np.ndarray:
    """``max(g, _SCALE_FLOOR * typical)``, and above 0 even when every residual is 0."""
    return np.maximum(g, _SCALE_FLOOR * typical + np.finfo(np.float64).tiny)
