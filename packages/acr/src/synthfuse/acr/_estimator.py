"""``MixtureOfSVRExperts``: tree-partitioned polynomial epsilon-SVR experts with a complexity map."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from synthfuse.acr._complexity import NoiseForest
from synthfuse.acr._conformal import conformal_quantile
from synthfuse.acr._features import PolynomialMap, n_polynomial_features
from synthfuse.acr._partition import Partition, grow_partition
from synthfuse.acr._stages import PARTITION_SUBSAMPLE, StageSolver, resolve_device, stage_buckets
from synthfuse.acr._submodel import Submodel, partition_bases

__all__ = ["MixtureOfSVRExperts"]

#: Largest number of polynomial features per expert (each expert holds a P x P matrix).
MAX_FEATURES = 4096


class MixtureOfSVRExperts(RegressorMixin, BaseEstimator):
    """Mixture of polynomial epsilon-SVR experts on tree regions, with adaptive complexity.

    A root expert (one polynomial over the whole input space) is fitted first; a regression tree
    grown on its residuals cuts the inputs into at most ``n_experts`` regions, and expert :math:`k`
    corrects the root on region :math:`k` by minimizing

    .. math::

        L_k(w_k) = C \\sum_{i \\in k} L_{\\varepsilon,\\delta}\\big(y_i - \\phi_i^\\top (w_0 + w_k)\\big)
                   + \\lambda\\, \\Omega_k\\, \\lVert w_k \\rVert^2 ,

    where :math:`\\phi` are degree-``degree`` polynomial features of the standardized inputs,
    :math:`L_{\\varepsilon,\\delta}` the (``smoothing``-rounded) epsilon-insensitive loss of SVR,
    :math:`\\lambda` = ``lam_tree`` and :math:`\\Omega_k` the complexity map (the local noise
    variance relative to its mean, estimated from cross-fitted residuals; 1 with
    ``complexity="none"``). The intercept is not penalized. All experts of all partitions (and of
    the cross-fitting folds) are solved at once in one jitted JAX program. With ``n_partitions = B
    > 1``, ``B`` trees are grown on random 80 % subsamples and the prediction averages the ``B``
    experts that cover a point, which smooths the region boundaries.

    Parameters
    ----------
    n_experts : int, default=16
        Largest number of regions (experts) per partition. The tree returns fewer when the data
        allow no more splits of ``min_samples_leaf`` samples; ``n_leaves_`` reports how many.
    degree : int, default=3
        Degree of each expert's polynomial.
    epsilon : float, default=0.1
        Half-width of the insensitive tube, in standard deviations of ``y``.
    C : float, default=1.0
        Weight of the data term.
    lam_tree : float, default=30.0
        :math:`\\lambda`, strength of the L2 penalty on the experts (not the intercept).
    complexity : {"forest", "none"}, default="forest"
        ``"forest"``: :math:`\\Omega_k` is the mean over region :math:`k` of
        :math:`\\Omega(x) = g(x)^2/\\overline{g^2}`, where a forest of trees fitted to the absolute
        cross-fitted residuals gives the local residual scale :math:`g`. ``"none"``: :math:`\\Omega=1`.
    n_partitions : int, default=1
        Number of bagged partitions ``B``; ``B x n_experts`` experts train in one call.
    epochs : int, default=500
        Largest number of full-batch solver iterations.
    learning_rate : float, default=1.0
        Step size as a fraction of the majorization step of the preconditioned solver, in (0, 1].
    tol : float, default=1e-4
        Early stopping: the solver stops when no coefficient moves by more than ``tol`` (relative).
    min_samples_leaf : int, default=20
        Fewest training samples per region.
    smoothing : float, default=2.0
        Width :math:`\\delta` over which the kink of the epsilon-insensitive loss is rounded, in
        standard deviations of ``y`` (smaller is closer to the exact SVR loss, and slower).
    cv : int, default=10
        Number of cross-fitting folds behind the complexity map and the conformal intervals. Fold
        models see ``(cv - 1) / cv`` of the data; with fewer folds they are less accurate than the
        final model and the intervals over-cover more.
    device : {"cpu", "gpu"} or None, default=None
        Where JAX solves the experts (None: JAX's default device).
    random_state : int, RandomState instance or None, default=None
        Seeds the folds, the partitions' subsamples and the forests.

    Attributes
    ----------
    n_features_in_ : int
        Number of input features.
    n_leaves_ : ndarray of shape (n_partitions,)
        Number of regions of each partition.
    root_coef_ : ndarray of shape (n_poly,)
        Root expert :math:`w_0` on the polynomial features.
    expert_coef_ : ndarray of shape (n_leaves_.sum(), n_poly)
        Expert corrections :math:`w_k`, partition after partition.
    omega_ : ndarray of shape (n_leaves_.sum(),)
        :math:`\\Omega_k` of every expert.
    n_iter_ : int
        Solver iterations of the final expert solve.
    conformal_scores_ : ndarray of shape (n_samples,)
        Sorted normalized cross-fitted residuals (the conformal scores).
    noise_ : NoiseForest
        The forest giving the local residual scale :math:`g(x)`.

    See Also
    --------
    sklearn.svm.SVR : one kernel SVR (solved in the dual).
    sklearn.ensemble.RandomForestRegressor : averages piecewise-constant trees.

    References
    ----------
    .. [1] A. J. Smola and B. Schoelkopf, "A tutorial on support vector regression",
       Statistics and Computing 14, 2004.
    .. [2] L. Breiman, "Random forests", Machine Learning 45, 2001.
    .. [3] J. Lei, M. G'Sell, A. Rinaldo, R. J. Tibshirani and L. Wasserman, "Distribution-free
       predictive inference for regression", JASA 113, 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from synthfuse.acr import MixtureOfSVRExperts
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 2))
    >>> y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=400)
    >>> model = MixtureOfSVRExperts(n_experts=8, random_state=0).fit(X, y)
    >>> lower, upper = model.predict_interval(X[:3], alpha=0.1)
    >>> bool(np.all(lower < upper))
    True
    """

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "degree": [Interval(Integral, 0, None, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "C": [Interval(Real, 0, None, closed="neither")],
        "lam_tree": [Interval(Real, 0, None, closed="left")],
        "complexity": [StrOptions({"forest", "none"})],
        "n_partitions": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, 1, closed="right")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "smoothing": [Interval(Real, 0, None, closed="neither")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "device": [StrOptions({"cpu", "gpu"}), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_experts: int = 16,
        degree: int = 3,
        epsilon: float = 0.1,
        C: float = 1.0,
        lam_tree: float = 30.0,
        complexity: str = "forest",
        n_partitions: int = 1,
        epochs: int = 500,
        learning_rate: float = 1.0,
        tol: float = 1e-4,
        min_samples_leaf: int = 20,
        smoothing: float = 2.0,
        cv: int = 10,
        device: str | None = None,
        random_state=None,
    ):
        self.n_experts = n_experts
        self.degree = degree
        self.epsilon = epsilon
        self.C = C
        self.lam_tree = lam_tree
        self.complexity = complexity
        self.n_partitions = n_partitions
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.tol = tol
        self.min_samples_leaf = min_samples_leaf
        self.smoothing = smoothing
        self.cv = cv
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the root expert, the partitions, the complexity map and all experts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (finite).
        y : array-like of shape (n_samples,)
            Targets (finite).

        Returns
        -------
        self : MixtureOfSVRExperts
        """
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"MixtureOfSVRExperts needs at least 2 samples to fit, got n_samples={n}."
            )
        n_poly = n_polynomial_features(X.shape[1], self.degree)
        if n_poly > MAX_FEATURES:
            raise ValueError(
                f"degree={self.degree} on {X.shape[1]} features gives {n_poly} polynomial features "
                f"per expert (more than {MAX_FEATURES}); lower `degree` or reduce the features."
            )
        rng = check_random_state(self.random_state)
        device = resolve_device(self.device)
        self.poly_ = PolynomialMap.fit(X, self.degree)
        phi, Z = self.poly_.transform(X), self.poly_.standardize(X)
        self.y_mean_ = float(np.mean(y))
        std = float(np.std(y))
        self.y_scale_ = std if std > 1e-12 * max(1.0, abs(self.y_mean_)) else 1.0
        yz = (y - self.y_mean_) / self.y_scale_

        # models: 0 = the final model on all rows, 1..F = the cross-fitting folds
        n_folds = min(self.cv, n)
        fold = np.empty(n, dtype=np.int64)
        fold[rng.permutation(n)] = np.arange(n) % n_folds
        train = [np.arange(n)] + [np.flatnonzero(fold != f) for f in range(n_folds)]
        stage_a = list(range(1, len(train))) + ([0] if self.complexity == "none" else [])
        # solve(...) runs the stages in order: root experts, fold experts, then the final experts
        solve = StageSolver(self, phi, yz, device, stage_buckets(self, train, stage_a, phi.shape[1]))

        # 1. root experts w_0, one per model
        root_expert = np.repeat(np.arange(len(train)), [t.size for t in train])
        W_root, _ = solve(np.concatenate(train), root_expert, None, np.full(len(train), self.lam_tree))
        root_pred = phi @ W_root.T  # (n, F+1)

        # 2. B partitions per model, grown on that model's root residuals; region of every sample
        parts = [self._grow_partitions(Z, yz - root_pred[:, m], rows, rng) for m, rows in enumerate(train)]
        leaves = [[p.assign(Z) for p in model_parts] for model_parts in parts]

        # 3. fold experts with Ω = 1 -> cross-fitted residuals (the final model joins when Ω = 1)
        W_a, base_a, n_iter = solve.models(stage_a, train, parts, leaves, root_pred, omega=None)

        def submodel(m, W_root_m, W, base):
            size = int(sum(p.n_leaves for p in parts[m]))
            return Submodel(W_root_m, parts[m], W[base[m][0] : base[m][0] + size])

        oof = np.empty(n)  # cross-fitted predictions
        for f in range(n_folds):
            rows = np.flatnonzero(fold == f)
            oof[rows] = submodel(f + 1, W_root[f + 1], W_a, base_a).predict(phi[rows], Z[rows])
        resid = yz - oof
        self.noise_ = NoiseForest.fit(Z, np.abs(resid), rng=rng)
        self.conformal_scores_ = np.sort(np.abs(resid) / self.noise_.oob_scale)

        # 4. the final model's experts, penalized by λ Ω_k
        if self.complexity == "none":
            final = submodel(0, W_root[0], W_a, base_a)
            omega = np.ones(final.expert_coef.shape[0])
        else:
            omega_x = self.noise_.omega(Z)  # Ω(x_i), mean 1
            n_final = int(sum(p.n_leaves for p in parts[0]))
            expert = np.concatenate([b + leaf for b, leaf in zip(partition_bases(parts[0]), leaves[0])])
            omega = np.bincount(expert, weights=np.tile(omega_x, len(parts[0])), minlength=n_final)
            omega /= np.maximum(np.bincount(expert, minlength=n_final), 1)
            W_b, base_b, n_iter = solve.models([0], train, parts, leaves, root_pred, omega=omega)
            final = submodel(0, W_root[0], W_b, base_b)
        self.root_coef_ = final.root_coef
        self.expert_coef_ = final.expert_coef
        self.partitions_ = final.partitions
        self.n_leaves_ = np.array([p.n_leaves for p in final.partitions])
        self.omega_ = omega
        self.n_iter_ = n_iter
        return self

    def _grow_partitions(self, Z, residual, rows, rng) -> list[Partition]:
        """``n_partitions`` trees on ``rows`` (each on an 80 % subsample when there are several)."""
        parts = []
        for _ in range(self.n_partitions):
            idx = rows
            if self.n_partitions > 1:
                size = max(1, int(PARTITION_SUBSAMPLE * rows.size))
                idx = np.sort(rng.choice(rows, size=size, replace=False))
            parts.append(
                grow_partition(
                    Z[idx], residual[idx], max_leaves=self.n_experts,
                    min_samples_leaf=self.min_samples_leaf, random_state=rng.randint(2**31 - 1),
                )
            )
        return parts

    # --------------------------------------------------------------- prediction
    def _final(self) -> Submodel:
        return Submodel(self.root_coef_, self.partitions_, self.expert_coef_)

    def _validated(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X, self.poly_.standardize(X)

    def predict(self, X) -> np.ndarray:
        """Root expert plus the mean correction of the experts covering each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,), float64
        """
        X, Z = self._validated(X)
        return self.y_mean_ + self.y_scale_ * self._final().predict(self.poly_.transform(X), Z)

    def apply(self, X) -> np.ndarray:
        """Region (expert) index of every sample in every partition.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        regions : ndarray of shape (n_samples, n_partitions), int64
            Region ids ``0 .. n_leaves_[b] - 1`` of partition ``b``.
        """
        _, Z = self._validated(X)
        return np.stack([p.assign(Z) for p in self.partitions_], axis=1)

    def complexity_map(self, X) -> np.ndarray:
        """:math:`\\Omega` applied at each sample: the mean :math:`\\Omega_k` of its experts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        omega : ndarray of shape (n_samples,)
            Penalty multiplier (mean 1 over the training samples); all ones with
            ``complexity="none"``.
        """
        _, Z = self._validated(X)
        return np.mean([self.omega_[ids] for ids in self._final().experts_of(Z)], axis=0)

    def predict_interval(self, X, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Locally adaptive conformal interval with coverage ``1 - alpha``.

        :math:`\\hat y(x) \\pm \\hat q_\\alpha\\, g(x)`, where :math:`g` is the local residual scale
        and :math:`\\hat q_\\alpha` the conformal quantile of the normalized cross-fitted residuals
        (see :mod:`synthfuse.acr._conformal`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        alpha : float in (0, 1), default=0.1
            Miscoverage level.

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,)
            Interval bounds (infinite when there are too few training samples for ``alpha``).
        """
        if not (isinstance(alpha, Real) and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}.")
        X, Z = self._validated(X)
        pred = self.y_mean_ + self.y_scale_ * self._final().predict(self.poly_.transform(X), Z)
        half = conformal_quantile(self.conformal_scores_, alpha) * self.y_scale_ * self.noise_.scale(Z)
        return pred - half, pred + half
