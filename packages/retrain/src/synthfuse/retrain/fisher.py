"""Fisher information of a classifier: diagonal and K-FAC blocks, empirical and true; Fisher merging.

For a classifier :math:`p_\\theta(y\\mid x) = \\mathrm{softmax}(f_\\theta(x))_y` on inputs
:math:`x_1..x_N`, with :math:`g_i(y) = \\nabla_\\theta \\log p_\\theta(y\\mid x_i)`:

- *empirical* Fisher: :math:`F = \\frac1N\\sum_i g_i(y_i) g_i(y_i)^\\top` (observed labels);
- *true* Fisher: :math:`F = \\frac1N\\sum_i \\sum_c p_\\theta(c\\mid x_i)\\, g_i(c) g_i(c)^\\top`
  (labels drawn from the model; here the expectation over :math:`c` is exact, not sampled).

:func:`diagonal_fisher` keeps :math:`\\mathrm{diag}\\,F` per parameter tensor. :func:`kfac_fisher`
keeps one Kronecker-factored block per ``Linear``/``Conv2d`` layer (Martens & Grosse 2015;
Grosse & Martens 2016 for convolutions): with :math:`\\bar a` the layer input (a 1 appended when
it has a bias) and :math:`s` its pre-activation output,

.. math:: F_{\\text{layer}} \\approx G \\otimes A, \\quad
          G = \\mathbb E\\big[\\textstyle\\sum_t g_t g_t^\\top\\big],\\;
          A = \\mathbb E\\big[\\tfrac1{|T|}\\textstyle\\sum_t \\bar a_t \\bar a_t^\\top\\big],
          \\quad g_t = \\partial \\log p / \\partial s_t

(:math:`t` runs over spatial positions for a convolution, :math:`|T| = 1` for a linear layer), in
the row-major order of the flattened matrix :math:`[W \\mid b]` of shape ``(out, in + 1)``.

:func:`fisher_merge` averages models weighted by their Fisher (Matena & Raffel 2022):

.. math:: \\theta = \\Big(\\sum_m \\lambda_m F_m\\Big)^{-1} \\sum_m \\lambda_m F_m \\theta_m .

References
----------
Martens, J. & Grosse, R. Optimizing Neural Networks with Kronecker-factored Approximate
Curvature. ICML 2015. Grosse, R. & Martens, J. A Kronecker-factored approximate Fisher matrix
for convolution layers. ICML 2016. Matena, M. & Raffel, C. Merging Models with Fisher-Weighted
Averaging. NeurIPS 2022. Kunstner, Balles & Hennig. Limitations of the empirical Fisher
approximation for natural gradient descent. NeurIPS 2019.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from synthfuse.retrain.data import DataLike, as_dataset

__all__ = ["KFACBlock", "diagonal_fisher", "fisher_merge", "kfac_fisher"]

_KINDS = ("empirical", "true")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"Fisher kind must be 'empirical' or 'true', got {kind!r}")


def diagonal_fisher(
    model: nn.Module, data: DataLike, *, kind: str = "empirical", batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Diagonal of the empirical or true Fisher, per trainable parameter (module docstring).

    Per-sample gradients come from ``vmap(grad(log p))`` (``vmap(jacrev)`` over the classes for
    the true Fisher); the model is evaluated in eval mode, one sample at a time.

    Returns
    -------
    dict
        ``{parameter name: tensor shaped like the parameter}``, entries >= 0.
    """
    _check_kind(kind)
    ds = as_dataset(data, "data")
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    device = next(iter(params.values())).device
    was_training = model.training
    model.eval()

    def log_probs(p: dict, x: torch.Tensor) -> torch.Tensor:  # (C,)
        return F.log_softmax(functional_call(model, (p, buffers), (x.unsqueeze(0),)), dim=1)[0]

    if kind == "empirical":
        per_sample = vmap(grad(lambda p, x, y: log_probs(p, x).gather(0, y[None])[0]), in_dims=(None, 0, 0))
    else:
        per_class = vmap(jacrev(log_probs), in_dims=(None, 0))  # (B, C, *shape)
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    try:
        for i in range(0, len(ds), batch_size):
            x, y = ds.X[i : i + batch_size].to(device), ds.y[i : i + batch_size].to(device)
            if kind == "empirical":
                grads = per_sample(params, x, y)
                for k in total:
                    total[k] += grads[k].pow(2).sum(0)
            else:
                with torch.no_grad():
                    probs = F.softmax(model(x), dim=1)  # (B, C)
                jac = per_class(params, x)
                for k in total:
                    w = probs.reshape(*probs.shape, *([1] * (jac[k].ndim - 2)))
                    total[k] += (w * jac[k].pow(2)).sum((0, 1))
    finally:
        model.train(was_training)
    return {k: v / len(ds) for k, v in total.items()}


def _reference_diagonal_fisher(model: nn.Module, X: torch.Tensor, y: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """One ``autograd.grad`` per sample (and class): the obviously correct form of :func:`diagonal_fisher`."""
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    model.eval()
    for xi, yi in zip(X, y):
        logp = F.log_softmax(model(xi.unsqueeze(0)), dim=1)[0]
        classes = [(int(yi), 1.0)] if kind == "empirical" else [(c, float(logp[c].detach().exp())) for c in range(len(logp))]
        for c, weight in classes:
            gs = torch.autograd.grad(logp[c], params, retain_graph=True)
            for t, g in zip(total, gs):
                t += weight * g.pow(2)
    return {k: t / len(X) for k, t in zip(names, total)}


@dataclass(frozen=True)
class KFACBlock:
    """Kronecker factors of one layer's Fisher block, :math:`F \\approx G \\otimes A`.

    Attributes
    ----------
    A : torch.Tensor
        Input factor, ``(in + 1, in + 1)`` with a bias (``in·kh·kw (+1)`` for a convolution).
    G : torch.Tensor
        Output-gradient factor, ``(out, out)``.
    has_bias : bool
        Whether the last row/column of ``A`` belongs to the bias.
    """

    A: torch.Tensor
    G: torch.Tensor
    has_bias: bool

    def dense(self) -> torch.Tensor:
        """:math:`G \\otimes A`, for the row-major flattening of ``[W | b]`` (small layers only)."""
        return torch.kron(self.G, self.A)

    def matrix(self, module: nn.Module) -> torch.Tensor:
        """The layer's parameters as the ``(out, in (+1))`` matrix ``[W | b]`` the factors act on."""
        w = module.weight.detach().reshape(module.weight.shape[0], -1)
        return torch.cat([w, module.bias.detach()[:, None]], 1) if self.has_bias else w

    def assign(self, module: nn.Module, matrix: torch.Tensor) -> None:
        """Write ``[W | b]`` back into ``module``'s weight (and bias)."""
        with torch.no_grad():
            w = matrix[:, :-1] if self.has_bias else matrix
            module.weight.copy_(w.reshape(module.weight.shape))
            if self.has_bias:
                module.bias.copy_(matrix[:, -1])


def _layer_inputs(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """Per-sample input vectors ``ā_t`` as ``(N, T, in (+1))``."""
    if isinstance(module, nn.Linear):
        if a.ndim != 2:
            raise ValueError(f"K-FAC supports nn.Linear on (N, features) inputs, got input shape {tuple(a.shape)}")
        a = a[:, None, :]
    else:
        a = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
        a = a.transpose(1, 2)  # (N, T, in·kh·kw)
    if module.bias is not None:
        a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], 2)
    return a


def _kfac_layers(model: nn.Module) -> dict[str, nn.Module]:
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            layers[name] = m
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ValueError(f"K-FAC supports Conv2d with groups=1, zero padding given as ints; {name!r} is not")
            layers[name] = m
    if not layers:
        raise ValueError("K-FAC needs at least one nn.Linear or nn.Conv2d layer in the model")
    return layers


def kfac_fisher(
    model: nn.Module, data: DataLike, *, kind: str = "empirical", batch_size: int = 256
) -> dict[str, KFACBlock]:
    """K-FAC factors of every ``Linear`` and ``Conv2d`` layer, ``{module name: KFACBlock}``.

    The true Fisher takes the expectation over classes exactly (one backward pass per class).
    Other parameters (normalization layers) get no block; see :func:`diagonal_fisher`.
    """
    _check_kind(kind)
    ds = as_dataset(data, "data")
    layers = _kfac_layers(model)
    device = next(model.parameters()).device
    A = {k: 0.0 for k in layers}
    G = {k: 0.0 for k in layers}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(module, args, out):
            inputs[name], outputs[name] = args[0].detach(), out
        return fn

    handles = [m.register_forward_hook(hook(k)) for k, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(ds), batch_size):
            x, y = ds.X[i : i + batch_size].to(device), ds.y[i : i + batch_size].to(device)
            logp = F.log_softmax(model(x), dim=1)
            names = list(layers)
            outs = [outputs[k] for k in names]
            if kind == "empirical":
                targets = [(y, None)]
            else:
                p = logp.detach().exp()
                targets = [(torch.full_like(y, c), p[:, c]) for c in range(logp.shape[1])]
            for j, (yc, weight) in enumerate(targets):
                # sum over samples: each sample's output only feeds its own log-likelihood term
                total = logp.gather(1, yc[:, None]).sum()
                grads = torch.autograd.grad(total, outs, retain_graph=j < len(targets) - 1)
                for k, g in zip(names, grads):
                    g = g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)  # (N, T, out)
                    w = 1.0 if weight is None else weight[:, None, None]
                    G[k] = G[k] + torch.einsum("nto,ntp->op", w * g, g)
            for k, m in layers.items():
                a = _layer_inputs(m, inputs[k])  # (N, T, in+1)
                A[k] = A[k] + torch.einsum("nti,ntj->ij", a, a) / a.shape[1]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: KFACBlock(A[k] / len(ds), G[k] / len(ds), layers[k].bias is not None) for k in layers}


FisherLike = Union[Mapping[str, torch.Tensor], Mapping[str, KFACBlock]]


def _solve_kfac_merge(blocks: Sequence[KFACBlock], mats: Sequence[torch.Tensor], weights: Sequence[float],
                      damping: float, iters: int) -> torch.Tensor:
    """Solve :math:`\\sum_m \\lambda_m G_m W A_m = \\sum_m \\lambda_m G_m W_m A_m` by conjugate gradients.

    :math:`(G \\otimes A)\\,\\mathrm{vec}_r(W) = \\mathrm{vec}_r(G W A)` (symmetric factors), so the
    operator is applied without forming any Kronecker product. Each factor gets
    ``damping × mean eigenvalue`` added (Tikhonov) so the system is positive definite.
    """
    def damp(M: torch.Tensor) -> torch.Tensor:
        return M + damping * M.diagonal().mean().clamp_min(1e-12) * torch.eye(len(M), dtype=M.dtype, device=M.device)

    Gs = [damp(b.G.double()) for b in blocks]
    As = [damp(b.A.double()) for b in blocks]

    def op(W: torch.Tensor) -> torch.Tensor:
        return sum(w * G @ W @ A for w, G, A in zip(weights, Gs, As))

    rhs = sum(w * G @ M.double() @ A for w, G, A, M in zip(weights, Gs, As, mats))
    x = sum(w * M.double() for w, M in zip(weights, mats)) / sum(weights)  # start at the plain average
    r = rhs - op(x)
    p = r.clone()
    rs = (r * r).sum()
    tol = 1e-20 * (rhs * rhs).sum().clamp_min(1e-300)
    for _ in range(iters):
        if rs <= tol:
            break
        Ap = op(p)
        alpha = rs / (p * Ap).sum()
        x, r = x + alpha * p, r - alpha * Ap
        rs_new = (r * r).sum()
        p, rs = r + (rs_new / rs) * p, rs_new
    return x.to(mats[0].dtype)


def fisher_merge(
    models: Sequence[nn.Module],
    fishers: Sequence[FisherLike],
    weights: Sequence[float] | None = None,
    *,
    eps: float = 1e-8,
    damping: float = 1e-3,
    cg_iters: int = 500,
) -> nn.Module:
    """Fisher-weighted average of models of one architecture (Matena & Raffel 2022).

    Parameters
    ----------
    models : sequence of nn.Module
        Same architecture (same ``state_dict`` keys and shapes).
    fishers : sequence
        One per model: all :func:`diagonal_fisher` dicts, or all :func:`kfac_fisher` dicts.
        With diagonal Fishers each entry is :math:`\\theta = \\sum_m\\lambda_m F_m\\theta_m /
        \\sum_m \\lambda_m F_m` (``eps`` added to every :math:`F_m`, so parameters with no Fisher
        mass get the plain weighted average). With K-FAC the Kronecker system of each layer is
        solved exactly by conjugate gradients; parameters outside the blocks and buffers get the
        plain weighted average.
    weights : sequence of float, optional
        :math:`\\lambda_m \\ge 0` (default equal).

    Returns
    -------
    nn.Module
        A new model (a copy of ``models[0]`` with merged parameters).
    """
    if len(models) < 1 or len(models) != len(fishers):
        raise ValueError(f"need one Fisher per model, got {len(models)} models and {len(fishers)} Fishers")
    weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be {len(models)} non-negative numbers with a positive sum, got {weights}")
    keys = [set(f) for f in fishers]
    kfac = [any(isinstance(v, KFACBlock) for v in f.values()) for f in fishers]
    if len(set(kfac)) != 1 or len({frozenset(k) for k in keys}) != 1:
        raise ValueError("all Fishers must be of one kind (diagonal or K-FAC) over the same parameters")
    merged = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    for s in states[1:]:
        if {k: tuple(v.shape) for k, v in s.items()} != {k: tuple(v.shape) for k, v in states[0].items()}:
            raise ValueError("fisher_merge needs models of one architecture (same state_dict keys and shapes)")
    total = sum(weights)
    avg = {k: sum(w * s[k].double() for w, s in zip(weights, states)) / total
           if states[0][k].is_floating_point() else states[0][k] for k in states[0]}
    if not kfac[0]:
        for name in keys[0]:
            num = sum(w * (f[name].double() + eps) * s[name].double() for w, f, s in zip(weights, fishers, states))
            den = sum(w * (f[name].double() + eps) for w, f in zip(weights, fishers))
            avg[name] = num / den
        merged.load_state_dict({k: v.to(states[0][k].dtype) for k, v in avg.items()})
        return merged
    merged.load_state_dict({k: v.to(states[0][k].dtype) for k, v in avg.items()})
    modules = [dict(m.named_modules()) for m in models]
    target = dict(merged.named_modules())
    for name in keys[0]:
        blocks = [f[name] for f in fishers]
        mats = [b.matrix(mods[name]) for b, mods in zip(blocks, modules)]
        blocks[0].assign(target[name], _solve_kfac_merge(blocks, mats, weights, damping, cg_iters))
    return merged
