r"""Optimal transport between point clouds, Gaussians and the units of two layers.

For discrete measures :math:`\mu = \sum_i a_i \delta_{x_i}`, :math:`\nu = \sum_j b_j \delta_{y_j}`
with cost :math:`M_{ij} = c(x_i, y_j)`, the Kantorovich problem (Peyré & Cuturi 2019, ch. 2) is

.. math::

    \mathrm{OT}(\mu, \nu) = \min_{P \in U(a, b)} \langle P, M \rangle, \qquad
    U(a, b) = \{P \in \mathbb{R}_{+}^{n \times m} : P \mathbf{1}_m = a,\; P^{\top} \mathbf{1}_n = b\},

solved exactly by the network simplex (:func:`ot.emd`), or with entropic regularisation
(Cuturi 2013) by Sinkhorn's algorithm in the log domain (written here, vectorised over all
points). Every function takes numpy arrays or torch tensors (torch in, torch out; one
implementation through POT's backend ``nx``), and :func:`w2` passes gradients to the points.

References
----------
.. [1] Peyré, G., & Cuturi, M. (2019). Computational optimal transport. Foundations and Trends
   in Machine Learning, 11(5-6), 355-607.
.. [2] Cuturi, M. (2013). Sinkhorn distances: lightspeed computation of optimal transport. NeurIPS.
.. [3] Dowson, D. C., & Landau, B. V. (1982). The Fréchet distance between multivariate normal
   distributions. Journal of Multivariate Analysis, 12(3), 450-455.
.. [4] Givens, C. R., & Shortt, R. M. (1984). A class of Wasserstein metrics for probability
   distributions. Michigan Mathematical Journal, 31(2), 231-240.
.. [5] Ainsworth, S., Hayase, J., & Srinivasa, S. (2023). Git Re-Basin: merging models modulo
   permutation symmetries. ICLR.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import ot
from ot.backend import get_backend

__all__ = ["barycentric_projection", "coupling", "gaussian_w2", "match_units", "w2"]

Metric = Literal["sqeuclidean", "euclidean"]
_METRICS = ("sqeuclidean", "euclidean")
_EMD_MAX_ITER = 100_000
_SINKHORN_MAX_ITER = 10_000


# --------------------------------------------------------------------------- validation
def _backend(*arrays: Any):
    try:
        return get_backend(*arrays)
    except ValueError as err:
        raise TypeError(
            "inputs must all be numpy arrays or all torch tensors (on one device); "
            f"convert them to one library first ({err})"
        ) from err


def _as_array(x: Any) -> Any:
    """Floating arrays and tensors pass through; lists and integer arrays become float64."""
    if x is None:
        return x
    if hasattr(x, "is_floating_point"):  # a torch tensor
        return x if x.is_floating_point() else x.double()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_finite(nx, x, name: str) -> None:
    if bool(nx.any(nx.isnan(x))) or bool(nx.any(nx.isinf(x))):
        raise ValueError(f"{name} contains NaN or inf")


def _points(nx, x, name: str):
    """A cloud of points, shape (n, d) (1-D input is n points on the line)."""
    if x.ndim == 1:
        x = nx.reshape(x, (-1, 1))
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty (n, d) array of points, got shape {tuple(x.shape)}")
    _check_finite(nx, x, name)
    return x


def _weights(nx, w, n: int, like, name: str):
    """Non-negative weights of n points (uniform 1/n when ``w`` is None)."""
    if w is None:
        return nx.ones((n,), type_as=like) / n
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of {n} weights (one per point), got shape {tuple(w.shape)}")
    _check_finite(nx, w, name)
    if bool(nx.any(w < 0)):
        raise ValueError(f"{name} has negative weights; transport weights must be >= 0")
    if not float(nx.sum(w)) > 0:
        raise ValueError(f"{name} has zero total mass")
    return w


def _problem(x, y, a, b):
    """Validated (nx, x, y, a, b) for a transport problem between two point clouds."""
    x, y, a, b = (_as_array(v) for v in (x, y, a, b))
    nx = _backend(*(v for v in (x, y, a, b) if v is not None))
    x, y = _points(nx, x, "x"), _points(nx, y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got {x.shape[1]} and {y.shape[1]}")
    a, b = _weights(nx, a, x.shape[0], x, "a"), _weights(nx, b, y.shape[0], x, "b")
    mass_a, mass_b = float(nx.sum(a)), float(nx.sum(b))
    rtol = 1e-6 if "64" in str(a.dtype) else 1e-4  # float64 vs lower precision
    if abs(mass_a - mass_b) > rtol * max(mass_a, mass_b):
        raise ValueError(f"a and b must have the same total mass, got {mass_a:.8g} and {mass_b:.8g}")
    return nx, x, y, a, b


def _cost(x, y, metric: str):
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return ot.dist(x, y, metric=metric)  # sqeuclidean: ‖x_i − y_j‖², clipped at 0


# --------------------------------------------------------------------------- solvers
def _sinkhorn_log(nx, a, b, M, reg: float, max_iter: int, tol: float):
    r"""Entropic plan by log-domain Sinkhorn iterations on the dual potentials (f, g).

    .. math::

        f_i \leftarrow \varepsilon \log a_i - \varepsilon \operatorname{LSE}_j\big((g_j - M_{ij})/\varepsilon\big),
        \qquad
        g_j \leftarrow \varepsilon \log b_j - \varepsilon \operatorname{LSE}_i\big((f_i - M_{ij})/\varepsilon\big),

    :math:`P_{ij} = \exp((f_i + g_j - M_{ij})/\varepsilon)`. After each g-update the column
    marginals are exact; iterate until :math:`\|P\mathbf{1} - a\|_1 <` ``tol``.
    """
    tiny = float(np.finfo(np.float64).tiny)
    log_a, log_b = nx.log(nx.maximum(a, tiny)), nx.log(nx.maximum(b, tiny))  # zero mass -> ~-708
    f = nx.zeros(a.shape, type_as=M)
    g = nx.zeros(b.shape, type_as=M)
    err = float("inf")
    for it in range(1, max_iter + 1):
        f = reg * (log_a - nx.logsumexp((g[None, :] - M) / reg, axis=1))
        g = reg * (log_b - nx.logsumexp((f[:, None] - M) / reg, axis=0))
        if it % 10 == 0 or it == max_iter:
            plan = nx.exp((f[:, None] + g[None, :] - M) / reg)
            err = float(nx.sum(nx.abs(nx.sum(plan, axis=1) - a)))
            if err < tol:
                return plan
    warnings.warn(
        f"Sinkhorn did not converge in {max_iter} iterations (row-marginal error {err:.2e} > "
        f"tol={tol:.1e}); increase max_iter or reg",
        RuntimeWarning, stacklevel=3,
    )
    return plan


def _plan(nx, a, b, M, reg: float, max_iter: int | None, tol: float | None):
    if not (isinstance(reg, (int, float)) and np.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite float >= 0, got {reg!r}")
    if max_iter is not None and (not isinstance(max_iter, (int, np.integer)) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive int or None, got {max_iter!r}")
    if reg == 0:
        plan, log = ot.emd(a, b, M, numItermax=max_iter or _EMD_MAX_ITER, log=True)
        if log["result_code"] != 1:
            raise RuntimeError(f"exact OT (network simplex) failed: {log['warning']}")
        return plan
    if tol is None:
        tol = 1e-9 if "64" in str(M.dtype) else 1e-5
    return _sinkhorn_log(nx, a, b, M, float(reg), max_iter or _SINKHORN_MAX_ITER, tol)


# --------------------------------------------------------------------------- public API
def coupling(
    x,
    y,
    a=None,
    b=None,
    *,
    reg: float = 0.0,
    metric: Metric = "sqeuclidean",
    max_iter: int | None = None,
    tol: float | None = None,
):
    r"""Optimal transport plan between two weighted point clouds.

    ``reg = 0``: the exact plan (network simplex, :func:`ot.emd`; Peyré & Cuturi 2019, ch. 3)

    .. math:: P^\star = \operatorname*{arg\,min}_{P \in U(a, b)} \langle P, M \rangle .

    ``reg = ε > 0``: the entropic plan (Cuturi 2013), by log-domain Sinkhorn iterations

    .. math::

        P^\varepsilon = \operatorname*{arg\,min}_{P \in U(a, b)}
        \langle P, M \rangle - \varepsilon H(P), \qquad H(P) = -\sum_{ij} P_{ij} (\log P_{ij} - 1),

    which stays stable for small :math:`\varepsilon` where the kernel :math:`e^{-M/\varepsilon}`
    underflows (Peyré & Cuturi 2019, sec. 4.4).

    Parameters
    ----------
    x : array or tensor, shape (n, d) or (n,)
    y : array or tensor, shape (m, d) or (m,)
    a, b : array or tensor, shape (n,), (m,), optional
        Non-negative weights with equal totals; uniform :math:`1/n`, :math:`1/m` by default.
    reg : float
        Entropic regularisation :math:`\varepsilon \ge 0`, in units of the cost.
    metric : {"sqeuclidean", "euclidean"}
        :math:`M_{ij} = \|x_i - y_j\|^2` or :math:`\|x_i - y_j\|`.
    max_iter : int, optional
        Network simplex iterations (default 100000) or Sinkhorn iterations (default 10000).
    tol : float, optional
        Sinkhorn stops when :math:`\|P\mathbf{1} - a\|_1 <` ``tol`` (the column marginals are
        exact after every iteration); default 1e-9 in float64, 1e-5 otherwise. A warning says
        when ``max_iter`` is reached first.

    Returns
    -------
    array or tensor, shape (n, m)
        The plan :math:`P`, same library, dtype and device as ``x``. On torch tensors that
        require grad the entropic plan is differentiable through the unrolled iterations
        (memory grows with them); for gradients of the transport cost use :func:`w2`.

    Raises
    ------
    ValueError
        Shape mismatch, NaN/inf, negative weights, unequal masses, bad ``reg``/``metric``.
    TypeError
        Inputs from different array libraries.

    Examples
    --------
    >>> import numpy as np
    >>> coupling(np.array([[0.0], [1.0]]), np.array([[1.1], [0.1]])) * 2
    array([[0., 1.],
           [1., 0.]])
    """
    nx, x, y, a, b = _problem(x, y, a, b)
    return _plan(nx, a, b, _cost(x, y, metric), reg, max_iter, tol)


def w2(
    x,
    y,
    a=None,
    b=None,
    *,
    reg: float = 0.0,
    squared: bool = False,
    max_iter: int | None = None,
    tol: float | None = None,
):
    r"""2-Wasserstein distance between two weighted point clouds.

    .. math::

        W_2(\mu, \nu)^2 = \min_{P \in U(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^2
                        = \langle P^\star, M \rangle .

    With ``reg > 0`` the plan is the entropic one and the value is its transport cost
    :math:`\langle P^\varepsilon, M\rangle` (the "sharp" Sinkhorn cost, an upper bound on
    :math:`W_2^2`).

    Gradients (torch): by the envelope (Danskin) theorem the gradient of the optimal value with
    respect to the cost is the optimal plan, so the plan is computed on detached inputs and the
    cost :math:`M(x, y)` is differentiated with the plan held fixed:
    :math:`\nabla_{x_i} W_2^2 = \sum_j 2 P^\star_{ij} (x_i - y_j)` (a subgradient where the
    plan is not unique). For ``reg > 0`` this is the gradient of the entropic objective.
    Weights ``a``, ``b`` receive no gradient. Use ``squared=True`` for a penalty that is smooth
    where the distance is 0.

    Parameters
    ----------
    x, y, a, b, reg, max_iter, tol
        As in :func:`coupling` (the cost is always squared Euclidean).
    squared : bool
        Return :math:`W_2^2` instead of :math:`W_2`.

    Returns
    -------
    float or torch.Tensor
        A Python float for numpy inputs, a 0-d tensor (differentiable in ``x``, ``y``) for torch.
    """
    nx, x, y, a, b = _problem(x, y, a, b)
    M = _cost(x, y, "sqeuclidean")  # differentiable in x, y
    plan = _plan(nx, nx.detach(a), nx.detach(b), nx.detach(M), reg, max_iter, tol)
    cost = nx.sum(nx.detach(plan) * M)  # ⟨P*, M(x, y)⟩ with P* fixed: envelope theorem
    out = cost if squared else nx.sqrt(nx.clip(cost, 0.0, None))
    return float(out) if isinstance(out, (np.ndarray, np.generic)) else out


def gaussian_w2(m1, C1, m2, C2):
    r"""2-Wasserstein (Bures–Wasserstein) distance between two Gaussians, in closed form.

    For :math:`\mathcal{N}(m_1, \Sigma_1)` and :math:`\mathcal{N}(m_2, \Sigma_2)`
    (Dowson & Landau 1982; Givens & Shortt 1984; Peyré & Cuturi 2019, remark 2.31)

    .. math::

        W_2^2 = \|m_1 - m_2\|^2 + \operatorname{Tr}\Sigma_1 + \operatorname{Tr}\Sigma_2
                - 2 \operatorname{Tr}\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2},

    the second part being the squared Bures distance. :math:`\Sigma_1^{1/2}` is the symmetric
    square root by an eigendecomposition (negative round-off eigenvalues clipped to 0), and
    :math:`\operatorname{Tr}(S^{1/2}) = \sum_k \sqrt{\lambda_k(S)}` for the symmetric PSD
    :math:`S = \Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}`. For commuting covariances it reduces to
    :math:`\|m_1 - m_2\|^2 + \|\Sigma_1^{1/2} - \Sigma_2^{1/2}\|_F^2`; in 1-D to
    :math:`(m_1 - m_2)^2 + (\sigma_1 - \sigma_2)^2`.

    Parameters
    ----------
    m1, m2 : array or tensor, shape (d,)
    C1, C2 : array or tensor, shape (d, d)
        Symmetric positive semi-definite covariances.

    Returns
    -------
    float or torch.Tensor
        :math:`W_2` (not squared): a float for numpy inputs, a 0-d tensor for torch.
    """
    m1, C1, m2, C2 = (_as_array(v) for v in (m1, C1, m2, C2))
    nx = _backend(m1, C1, m2, C2)
    d = m1.shape[0] if m1.ndim == 1 else -1
    for name, m in (("m1", m1), ("m2", m2)):
        if m.ndim != 1 or m.shape[0] != d:
            raise ValueError(f"{name} must be a mean vector of shape (d,) with d={d}, got shape {tuple(m.shape)}")
        _check_finite(nx, m, name)
    for name, C in (("C1", C1), ("C2", C2)):
        if C.ndim != 2 or tuple(C.shape) != (d, d):
            raise ValueError(f"{name} must be a ({d}, {d}) covariance matrix, got shape {tuple(C.shape)}")
        _check_finite(nx, C, name)
        scale = float(nx.max(nx.abs(C))) or 1.0
        if float(nx.max(nx.abs(C - C.T))) > 1e-8 * scale:
            raise ValueError(f"{name} must be symmetric")
        if float(nx.eigh(C)[0][0]) < -1e-8 * scale:
            raise ValueError(f"{name} must be positive semi-definite (it has a negative eigenvalue)")

    def sqrtm_psd(C):
        w, V = nx.eigh((C + C.T) / 2)
        return (V * nx.sqrt(nx.clip(w, 0.0, None))[None, :]) @ V.T

    root1 = sqrtm_psd(C1)
    cross = root1 @ C2 @ root1
    eig = nx.eigh((cross + cross.T) / 2)[0]
    bures2 = nx.trace(C1) + nx.trace(C2) - 2 * nx.sum(nx.sqrt(nx.clip(eig, 0.0, None)))
    w2sq = nx.sum((m1 - m2) ** 2) + bures2
    out = nx.sqrt(nx.clip(w2sq, 0.0, None))
    return float(out) if isinstance(out, (np.ndarray, np.generic)) else out


def barycentric_projection(plan, y):
    r"""Map each source point to the plan-weighted mean of its targets.

    .. math:: T(x_i) = \frac{\sum_j P_{ij}\, y_j}{\sum_j P_{ij}}

    (Peyré & Cuturi 2019, remark 4.11); for a permutation plan it is :math:`y_{\sigma(i)}`.

    Parameters
    ----------
    plan : array or tensor, shape (n, m)
        A transport plan (non-negative; every row with positive mass).
    y : array or tensor, shape (m, d) or (m,)

    Returns
    -------
    array or tensor, shape (n, d) (or (n,) for 1-D ``y``)
    """
    plan, y = _as_array(plan), _as_array(y)
    nx = _backend(plan, y)
    if plan.ndim != 2:
        raise ValueError(f"plan must be an (n, m) matrix, got shape {tuple(plan.shape)}")
    if y.ndim not in (1, 2) or y.shape[0] != plan.shape[1]:
        raise ValueError(
            f"y must have one row per plan column ({plan.shape[1]}), shape (m, d) or (m,); got {tuple(y.shape)}"
        )
    _check_finite(nx, plan, "plan")
    _check_finite(nx, y, "y")
    if bool(nx.any(plan < 0)):
        raise ValueError("plan has negative entries")
    mass = nx.sum(plan, axis=1)
    if bool(nx.any(mass <= 0)):
        empty = np.flatnonzero(nx.to_numpy(mass) <= 0)[:5].tolist()
        raise ValueError(f"plan rows {empty} carry no mass; their projection is undefined")
    return nx.dot(plan, y) / (mass[:, None] if y.ndim == 2 else mass)


def match_units(W_a, W_b):
    r"""Exact assignment of the units (rows) of ``W_b`` onto those of ``W_a``.

    Optimal transport between the rows as two uniform measures of equal size,

    .. math::

        P^\star = \operatorname*{arg\,min}_{P \in U(\mathbf{1}/n, \mathbf{1}/n)}
        \sum_{ij} P_{ij} \|W^a_i - W^b_j\|^2 ,

    whose solution is a vertex of the Birkhoff polytope, a permutation matrix divided by
    :math:`n` (Peyré & Cuturi 2019, prop. 2.1), so OT is the linear assignment problem. As
    :math:`\sum_i \|W^a_i\|^2 + \|W^b_{\sigma(i)}\|^2` does not depend on the permutation,
    this also maximises :math:`\sum_i \langle W^a_i, W^b_{\sigma(i)}\rangle`, the per-layer
    step of weight matching (Ainsworth et al. 2023). To match hidden units on their incoming
    and outgoing weights, stack them per unit first, e.g.
    ``np.hstack([W1, b1[:, None], W2.T])``.

    Parameters
    ----------
    W_a, W_b : array or tensor, shape (n, ...)
        One row per unit (trailing axes are flattened: conv filters are fine), same shape.

    Returns
    -------
    perm : numpy int64 array or torch long tensor, shape (n,)
        ``W_b[perm]`` is ``W_b``'s rows reordered to best match ``W_a`` (``perm[i]`` is the
        unit of B assigned to unit i of A).

    Examples
    --------
    >>> import numpy as np
    >>> W = np.arange(12.0).reshape(4, 3)
    >>> match_units(W, W[[2, 0, 3, 1]])
    array([1, 3, 0, 2])
    """
    W_a, W_b = _as_array(W_a), _as_array(W_b)
    nx = _backend(W_a, W_b)
    if W_a.ndim < 1 or W_a.shape[0] < 1 or tuple(W_a.shape) != tuple(W_b.shape):
        raise ValueError(
            f"W_a and W_b must have the same shape (n_units, ...), got {tuple(W_a.shape)} and {tuple(W_b.shape)}"
        )
    _check_finite(nx, W_a, "W_a")
    _check_finite(nx, W_b, "W_b")
    n = W_a.shape[0]
    A = nx.to_numpy(W_a).reshape(n, -1).astype(np.float64)
    B = nx.to_numpy(W_b).reshape(n, -1).astype(np.float64)
    uniform = np.full(n, 1.0 / n)
    plan = _plan(None, uniform, uniform, ot.dist(A, B), 0.0, max(_EMD_MAX_ITER, 20 * n * n), None)
    perm = plan.argmax(axis=1)
    if np.unique(perm).size != n or not np.allclose(plan[np.arange(n), perm], 1.0 / n):
        raise RuntimeError("the exact OT plan is not a permutation matrix (network simplex failed)")
    perm = perm.astype(np.int64)
    return perm if isinstance(W_a, np.ndarray) else nx.from_numpy(perm).to(W_a.device)
