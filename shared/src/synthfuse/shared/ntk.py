r"""Empirical neural tangent kernels of torch modules and JAX functions.

For a network :math:`f(\cdot;\theta): \mathbb{R}^{d} \to \mathbb{R}^{K}` with parameters
:math:`\theta \in \mathbb{R}^{P}`, the empirical NTK (Jacot et al. 2018) between two inputs is
the :math:`K \times K` matrix

.. math::

    \Theta_\theta(x, x')_{ab}
    = \sum_{p=1}^{P} \frac{\partial f_a(x;\theta)}{\partial \theta_p}
                     \frac{\partial f_b(x';\theta)}{\partial \theta_p}
    = \big[J_\theta(x)\, J_\theta(x')^{\top}\big]_{ab},
    \qquad J_\theta(x) = \partial f(x;\theta) / \partial \theta \in \mathbb{R}^{K \times P}.

Three reductions are offered (``kind``):

- ``"full"``: :math:`\Theta(x_i, x'_j)_{ab}`, shape ``(n1, n2, K, K)``;
- ``"trace"``: :math:`\operatorname{Tr}\Theta(x_i, x'_j) = \sum_a \Theta_{aa}`, shape ``(n1, n2)``;
- ``"logit_sum"``: the NTK of the summed output :math:`\sum_a f_a`,
  :math:`\sum_{a,b}\Theta_{ab} = \nabla_\theta \mathbf{1}^{\top} f(x)\cdot
  \nabla_\theta \mathbf{1}^{\top} f(x')`, shape ``(n1, n2)``.

Three exact algorithms compute it (Novak et al. 2022, "Fast Finite Width Neural Tangent
Kernel"), all vectorised over samples:

- *Jacobian contraction* (``method="jacobian"``) materialises the per-sample Jacobians with
  ``vmap(jacrev(...))`` and contracts them, :math:`O(n_1 n_2 K^2 P)` time and :math:`O(nKP)`
  memory;
- *structured derivatives* (``"structured"``, the default) do the same except for plain
  ``nn.Linear`` layers :math:`y = Wu + b`, whose block is
  :math:`\Theta^{(W,b)}(x, x') = G(x) G(x')^{\top} \, (u(x)^{\top} u(x') + 1)` with
  :math:`G = \partial f / \partial y`: :math:`O(K^2 d_{out} + d_{in})` per pair instead of
  :math:`O(K^2 d_{out} d_{in})`, and no weight Jacobian is stored;
- *NTK-vector products* (``"ntk_vp"``) never form :math:`J`: for each cotangent basis vector
  :math:`e_{jb}` one VJP pulls back :math:`J(X_2)^\top e_{jb}` and one JVP pushes it forward,
  :math:`J(X_1) J(X_2)^\top e_{jb} = \Theta(X_1, x'_j)_{:, :, b}`.

Each can be tiled over samples (``chunk_size``) so that peak memory grows with the tile, not
with :math:`n`.

Every kernel is computed per sample: the network sees each input as a batch of one, so a model
whose layers mix samples (batch norm in training mode) must be put in ``eval()`` mode first,
and so must a model with dropout (random ops are rejected under ``vmap``).

References
----------
.. [1] Jacot, A., Gabriel, F., & Hongler, C. (2018). Neural tangent kernel: convergence and
   generalization in neural networks. NeurIPS.
.. [2] Novak, R., Sohl-Dickstein, J., & Schoenholz, S. S. (2022). Fast finite width neural
   tangent kernel. ICML.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from synthfuse.shared.backend import import_optional

if TYPE_CHECKING:
    import torch

__all__ = ["empirical_ntk", "empirical_ntk_jax", "ntk_distance"]

Kind = Literal["full", "trace", "logit_sum"]
Method = Literal["structured", "jacobian", "ntk_vp"]
_KINDS = ("full", "trace", "logit_sum")
_METHODS = ("structured", "jacobian", "ntk_vp")
# Contraction of per-sample Jacobians J[n, a, p] (no output axis a for logit_sum) into a kernel.
_CONTRACTIONS = {"full": "naf,mbf->nmab", "trace": "naf,maf->nm", "logit_sum": "nf,mf->nm"}


# --------------------------------------------------------------------------- shared helpers
def _require_jax():
    return import_optional("jax"), import_optional("jax.numpy")


def _check_options(kind: str, chunk_size: int | None) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _check_inputs(
    x1_shape, x2_shape, x1_finite: bool, x2_finite: bool, names: tuple[str, str] = ("x1", "x2")
) -> None:
    """Validate sample axes and finiteness of x1 and x2 (shapes as tuples)."""
    for name, shape, finite in ((names[0], x1_shape, x1_finite), (names[1], x2_shape, x2_finite)):
        if len(shape) < 1 or shape[0] < 1:
            raise ValueError(
                f"{name} must be a batch of at least one sample, shape (n, ...); got shape {shape}"
            )
        if not finite:
            raise ValueError(f"{name} contains NaN or inf; clean the inputs before computing the NTK")
    if tuple(x1_shape[1:]) != tuple(x2_shape[1:]):
        raise ValueError(
            f"x1 and x2 must have the same per-sample shape, got {tuple(x1_shape[1:])} "
            f"and {tuple(x2_shape[1:])}"
        )


def _tiled(
    block: Callable[[int, int, int, int], Any],
    n1: int,
    n2: int,
    chunk_size: int | None,
    symmetric: bool,
    cat: Callable[[list, int], Any],
    swap: Callable[[Any], Any],
):
    """Assemble an ``(n1, n2, ...)`` kernel from tiles ``block(i0, i1, j0, j1)``.

    With ``symmetric`` (x2 is x1) only tiles on or above the diagonal are computed; the others
    are the swapped transposes ``swap(tile)``, so the result is exactly symmetric off the
    diagonal tiles.
    """
    if chunk_size is None or (chunk_size >= n1 and chunk_size >= n2):
        return block(0, n1, 0, n2)
    done: dict[tuple[int, int], Any] = {}
    rows = []
    for i0 in range(0, n1, chunk_size):
        row = []
        for j0 in range(0, n2, chunk_size):
            if symmetric and j0 < i0:
                row.append(swap(done[(j0, i0)]))
                continue
            tile = block(i0, min(i0 + chunk_size, n1), j0, min(j0 + chunk_size, n2))
            if symmetric:
                done[(i0, j0)] = tile
            row.append(tile)
        rows.append(cat(row, 1))
    return cat(rows, 0)


# --------------------------------------------------------------------------- torch
def empirical_ntk(
    model: torch.nn.Module,
    x1,
    x2=None,
    *,
    kind: Kind = "full",
    chunk_size: int | None = None,
    method: Method = "structured",
) -> torch.Tensor:
    r"""Empirical NTK :math:`\Theta_\theta(x_i, x'_j)` of a torch module (Jacot et al. 2018).

    .. math::

        \Theta_\theta(x, x') = J_\theta(x)\, J_\theta(x')^{\top},
        \qquad J_\theta(x) = \frac{\partial f(x;\theta)}{\partial \theta} \in \mathbb{R}^{K\times P}

    over the module's trainable parameters (``requires_grad=True``; frozen parameters and
    buffers are held fixed). Outputs of each sample are flattened to :math:`K` values.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch ``(n, *sample_shape)`` to ``(n, *out_shape)``. Evaluated one sample at a
        time through :func:`torch.func.functional_call`; put it in ``eval()`` mode if it has
        dropout or batch norm.
    x1 : tensor or array-like, shape (n1, *sample_shape)
        Moved to the model's device and floating dtype.
    x2 : tensor or array-like, shape (n2, *sample_shape), optional
        Defaults to ``x1`` (the Gram matrix; then only the upper tiles are computed).
    kind : {"full", "trace", "logit_sum"}
        ``"full"``: :math:`\Theta_{ab}` of shape ``(n1, n2, K, K)``; ``"trace"``:
        :math:`\sum_a \Theta_{aa}`; ``"logit_sum"``: :math:`\sum_{a,b} \Theta_{ab}` (the NTK of
        :math:`\sum_a f_a`), both of shape ``(n1, n2)``.
    chunk_size : int, optional
        Tile the kernel into blocks of at most ``chunk_size`` samples of x1 by ``chunk_size``
        samples of x2 (for large n), so peak memory is that of one tile, independent of n:
        ``chunk_size`` samples' Jacobians (``"jacobian"``; ``"structured"`` stores only the
        non-Linear part), or ``chunk_size * K`` parameter-sized tangents (``"ntk_vp"``).
        With ``x2=None`` only tiles on and above the diagonal are computed.
    method : {"structured", "jacobian", "ntk_vp"}
        All three are exact and vectorised (no Python loop over samples; Novak et al. 2022).
        ``"jacobian"``: per-sample Jacobians by ``vmap(jacrev)`` contracted with ``einsum``,
        :math:`O(n_1 n_2 K^2 P)`. ``"structured"`` (default): the same, except that plain
        ``torch.nn.Linear`` layers on per-sample vectors use the structured-derivative
        identity :math:`\Theta^{(W,b)}(x,x') = G(x)G(x')^\top (u(x)^\top u(x') + 1)` (``u``
        the layer input, ``G`` the output cotangent), :math:`O(n_1 n_2 (K^2 d_{out} +
        d_{in}))` per layer; other layers fall back to ``"jacobian"``. ``"ntk_vp"``:
        NTK-vector products, one VJP and one JVP per cotangent basis vector
        :math:`e_{jb}`, vmapped: :math:`J(X_1)\,(J(X_2)^\top e_{jb})`; no Jacobian is stored.

    Returns
    -------
    torch.Tensor
        ``(n1, n2, K, K)`` for ``"full"``, else ``(n1, n2)``; detached, in the model's dtype.

    Raises
    ------
    ValueError
        Unknown ``kind``/``method``, bad ``chunk_size``, empty or non-finite inputs, x1/x2
        with different sample shapes, or inputs the model cannot evaluate (wrong feature count).

    References
    ----------
    .. [1] Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS.
    .. [2] Novak, Sohl-Dickstein & Schoenholz (2022). Fast finite width neural tangent kernel. ICML.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> empirical_ntk(net, torch.randn(5, 3)).shape
    torch.Size([5, 5, 2, 2])
    """
    torch = import_optional("torch")
    _check_options(kind, chunk_size)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    from synthfuse.shared._ntk_torch import TorchNet, as_model_input, jacobian_block, ntk_vp_block

    net = TorchNet(model)
    symmetric = x2 is None
    x1 = as_model_input(x1, net.like)
    x2 = x1 if symmetric else as_model_input(x2, net.like)
    _check_inputs(
        tuple(x1.shape), tuple(x2.shape),
        bool(torch.isfinite(x1).all()), symmetric or bool(torch.isfinite(x2).all()),
    )
    n_out = net.output_size(x1)  # also: a clear error for a wrong feature count
    if method == "ntk_vp":
        block = ntk_vp_block(net, kind, n_out)
    else:
        block = jacobian_block(net, x1, kind, structured=method == "structured")

    def tile(i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        return block(x1[i0:i1], x2[j0:j1], symmetric and (i0, i1) == (j0, j1))

    def swap(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(0, 1).transpose(2, 3) if kind == "full" else t.T

    with torch.no_grad():
        return _tiled(tile, x1.shape[0], x2.shape[0], chunk_size, symmetric, torch.cat, swap)


def _reference_ntk(model: torch.nn.Module, x1, x2=None, kind: Kind = "full") -> torch.Tensor:
    """Obviously-correct NTK: rows of J by one ``autograd.grad`` per sample and output, J1 J2ᵀ."""
    torch = import_optional("torch")
    from synthfuse.shared._ntk_torch import as_model_input

    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x: torch.Tensor) -> torch.Tensor:  # (n, K, P)
        rows = []
        for xi in x:
            out = model(xi.unsqueeze(0)).reshape(-1)
            per_output = []
            for a in range(out.numel()):
                grads = torch.autograd.grad(out[a], params, retain_graph=True, allow_unused=True)
                per_output.append(
                    torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for g, p in zip(grads, params)])
                )
            rows.append(torch.stack(per_output))
        return torch.stack(rows)

    j1 = jacobian(as_model_input(x1, params[0]))
    j2 = j1 if x2 is None else jacobian(as_model_input(x2, params[0]))
    full = torch.einsum("nap,mbp->nmab", j1, j2)
    if kind == "full":
        return full
    if kind == "trace":
        return full.diagonal(dim1=2, dim2=3).sum(-1)
    return full.sum((2, 3))


# --------------------------------------------------------------------------- distance
def ntk_distance(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    x,
    *,
    ridge: float = 1e-3,
    squared: bool = False,
    chunk_size: int | None = None,
    reference_kernel: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Function-space distance from ``model_a`` to ``model_b`` in the NTK metric of ``model_b``.

    With anchors :math:`X = (x_1, \dots, x_n)`, the output difference
    :math:`\delta = \operatorname{vec}\big(f_a(X) - f_b(X)\big) \in \mathbb{R}^{nK}` (sample-major)
    and :math:`G = \Theta_{\theta_b}(X, X) \in \mathbb{R}^{nK \times nK}` the full empirical
    NTK Gram matrix of the reference model,

    .. math::

        d_\Theta(f_a, f_b)^2 = \delta^{\top} \big(G + \lambda I\big)^{-1} \delta,
        \qquad \lambda = \text{ridge} \cdot \operatorname{Tr}(G) / (nK).

    Why this distance: linearise the reference network, :math:`f(\theta_b + \Delta) \approx
    f_b + J\Delta` with :math:`J = J_{\theta_b}(X)`. The smallest parameter step that moves the
    outputs on the anchors by :math:`\delta` has squared length
    :math:`\min\{\lVert\Delta\rVert^2 : J\Delta = \delta\} = \delta^{\top}(JJ^{\top})^{-1}\delta
    = \delta^{\top} G^{-1} \delta` — the squared RKHS norm of the output change in the
    tangent kernel (Jacot et al. 2018), i.e. the Mahalanobis distance whose metric tensor is
    the NTK. It is therefore measured in parameter units, weighs an output change by how hard it
    is for the network to make (cheap directions of the kernel count little, directions the
    network can hardly move count a lot), is zero for identical models, and is invariant to any
    reparametrisation that leaves the function and the kernel unchanged — in particular to
    permuting hidden units of either model (outputs and :math:`G = JJ^\top` are both
    permutation invariant). For a model linear in its parameters with :math:`P \le nK` and
    :math:`J` of full column rank it equals :math:`\lVert\theta_a - \theta_b\rVert` as
    :math:`\lambda \to 0`. The ridge keeps :math:`G` invertible (its rank is at most
    :math:`P`) and is relative to the mean eigenvalue, so the distance does not depend on the
    output scale through :math:`\lambda`.

    The reference kernel is held constant; gradients flow to ``model_a``'s parameters, which
    makes :math:`d_\Theta^2` a function-space penalty toward ``model_b`` (used by FRR in
    ``synthfuse.retrain``). It is not symmetric in the two models (the metric is ``model_b``'s).

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Any two modules with the same output shape on ``x`` (usually one architecture); same
        device. Put them in ``eval()`` mode if they have dropout or batch norm.
    x : tensor or array-like, shape (n, *sample_shape)
        Anchor inputs.
    ridge : float
        Relative Tikhonov term :math:`\lambda / (\operatorname{Tr}G / nK)`, > 0.
    squared : bool
        Return :math:`d_\Theta^2` (smooth at 0, the better training penalty) instead of
        :math:`d_\Theta`.
    chunk_size : int, optional
        Passed to :func:`empirical_ntk` when the reference kernel is computed.
    reference_kernel : torch.Tensor, optional
        ``empirical_ntk(model_b, x, kind="full")`` computed once and reused across calls
        (shape ``(n, n, K, K)``).

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to ``model_a``'s parameters.

    References
    ----------
    .. [1] Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS.
    .. [2] Novak, Sohl-Dickstein & Schoenholz (2022). Fast finite width neural tangent kernel. ICML.
    """
    torch = import_optional("torch")
    from synthfuse.shared._ntk_torch import TorchNet, as_model_input

    if not (isinstance(ridge, (int, float)) and ridge > 0 and np.isfinite(ridge)):
        raise ValueError(f"ridge must be a positive finite float, got {ridge!r}")
    if not isinstance(model_a, torch.nn.Module):
        raise TypeError(f"model_a must be a torch.nn.Module, got {type(model_a).__name__}")
    x = as_model_input(x, TorchNet(model_b).like)
    finite = bool(torch.isfinite(x).all())
    _check_inputs(tuple(x.shape), tuple(x.shape), finite, finite, names=("x", "x"))
    if reference_kernel is None:
        theta = empirical_ntk(model_b, x, kind="full", chunk_size=chunk_size)
    else:
        theta = torch.as_tensor(reference_kernel).detach()
    n = x.shape[0]
    if theta.ndim != 4 or theta.shape[0] != n or theta.shape[1] != n or theta.shape[2] != theta.shape[3]:
        raise ValueError(
            f"reference_kernel must be the full NTK of model_b on x, shape (n, n, K, K) with "
            f"n={n}; got {tuple(theta.shape)}"
        )
    with torch.no_grad():
        f_b = model_b(x).reshape(n, -1)
    f_a = model_a(x).reshape(n, -1)
    k = theta.shape[2]
    if f_a.shape != f_b.shape or f_b.shape[1] != k:
        raise ValueError(
            f"model_a and model_b must give outputs of the same size K per sample matching the "
            f"kernel: got {tuple(f_a.shape[1:])}, {tuple(f_b.shape[1:])}, kernel K={k}"
        )
    # G[(i,a), (j,b)] = Θ(x_i, x_j)_{ab}: sample-major like δ below
    gram = theta.permute(0, 2, 1, 3).reshape(n * k, n * k).to(f_a.dtype)
    gram = 0.5 * (gram + gram.T)
    scale = torch.diagonal(gram).sum() / (n * k)
    if not scale > 0:
        raise ValueError("model_b's NTK vanishes on x (zero Jacobian): the NTK metric is undefined")
    eye = torch.eye(n * k, dtype=gram.dtype, device=gram.device)
    chol = torch.linalg.cholesky(gram + ridge * scale * eye)
    delta = (f_a - f_b.to(f_a.dtype)).reshape(-1, 1)  # δ, (nK, 1)
    z = torch.linalg.solve_triangular(chol, delta, upper=False)  # L z = δ, so ‖z‖² = δᵀ(G+λI)⁻¹δ
    d2 = (z * z).sum()
    return d2 if squared else d2.sqrt()


# --------------------------------------------------------------------------- jax
@functools.cache
def _jax_block():
    """The jitted JAX tile function, built on first use (keeps jax out of module import)."""
    jax, jnp = _require_jax()

    def block(f, kind, same, params, x1, x2):
        def f_single(p, x):  # (K,)
            return jnp.reshape(f(p, x[None]), (-1,))

        g = f_single if kind != "logit_sum" else (lambda p, x: jnp.sum(f_single(p, x)))
        jac = jax.vmap(jax.jacrev(g), in_axes=(None, 0))
        lead = 1 if kind == "logit_sum" else 2
        j1 = jax.tree_util.tree_leaves(jac(params, x1))
        j2 = j1 if same else jax.tree_util.tree_leaves(jac(params, x2))
        flat = lambda j: jnp.reshape(j, j.shape[:lead] + (-1,))  # noqa: E731
        return sum(jnp.einsum(_CONTRACTIONS[kind], flat(a), flat(b)) for a, b in zip(j1, j2))

    return jax.jit(block, static_argnums=(0, 1, 2))


def empirical_ntk_jax(
    f: Callable[[Any, Any], Any],
    params: Any,
    x1,
    x2=None,
    *,
    kind: Kind = "full",
    chunk_size: int | None = None,
):
    r"""Empirical NTK of a JAX function ``f(params, x)`` of a parameter pytree.

    Same kernel and reductions as :func:`empirical_ntk`,
    :math:`\Theta(x, x') = J(x) J(x')^\top` with :math:`J` the Jacobian of the flattened
    per-sample output with respect to every leaf of ``params``, computed by Jacobian
    contraction (``vmap(jacrev)`` then ``einsum``, jitted; Novak et al. 2022).

    Parameters
    ----------
    f : callable
        ``f(params, x)`` maps a batch ``(n, *sample_shape)`` to ``(n, *out_shape)`` (as
        ``flax``'s ``model.apply``). It is evaluated on one sample at a time (a batch of one).
    params : pytree of arrays
        The parameters (every leaf is differentiated).
    x1, x2 : array-like, shape (n1, *sample_shape), (n2, *sample_shape)
        ``x2`` defaults to ``x1``.
    kind : {"full", "trace", "logit_sum"}
        As in :func:`empirical_ntk`.
    chunk_size : int, optional
        Tile over samples so that only ``chunk_size`` samples' Jacobians live at once.

    Returns
    -------
    jax.Array
        ``(n1, n2, K, K)`` for ``"full"``, else ``(n1, n2)``. Float64 needs
        ``jax.config.update("jax_enable_x64", True)``.

    References
    ----------
    .. [1] Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS.
    .. [2] Novak, Sohl-Dickstein & Schoenholz (2022). Fast finite width neural tangent kernel. ICML.
    """
    jax, jnp = _require_jax()
    _check_options(kind, chunk_size)
    if not callable(f):
        raise TypeError(f"f must be a callable f(params, x), got {type(f).__name__}")
    symmetric = x2 is None
    x1 = jnp.asarray(x1)
    x2 = x1 if symmetric else jnp.asarray(x2)
    _check_inputs(
        tuple(x1.shape), tuple(x2.shape),
        bool(jnp.isfinite(x1).all()), symmetric or bool(jnp.isfinite(x2).all()),
    )
    try:
        jax.eval_shape(f, params, x1[:1])
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(
            f"f cannot be evaluated on samples of shape {tuple(x1.shape[1:])} "
            f"(inputs are (n, *sample_shape)); check the feature count. Error: {err}"
        ) from err
    block = _jax_block()

    def tile(i0: int, i1: int, j0: int, j1: int):
        same = symmetric and (i0, i1) == (j0, j1)
        return block(f, kind, same, params, x1[i0:i1], x2[j0:j1])

    def swap(t):
        return jnp.swapaxes(jnp.swapaxes(t, 0, 1), 2, 3) if kind == "full" else t.T

    return _tiled(tile, x1.shape[0], x2.shape[0], chunk_size, symmetric, jnp.concatenate, swap)
