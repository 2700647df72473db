r"""Parameter space of a torch module: flat vectors, per-layer spheres, interpolation.

A **layer** here is one parameter tensor :math:`\theta_l` of ``module.named_parameters()`` (a
weight and its bias are two layers); the flat vector :math:`\theta = (\theta_1, \dots,
\theta_L)` concatenates them in that order (shared parameters once), like
:func:`torch.nn.utils.parameters_to_vector`. Buffers (e.g. BatchNorm statistics) are not part
of the vector.

Functions
---------
flatten(module)                              -> 1-D tensor :math:`\theta`
unflatten_dict(vector, like)                 -> {name: view of vector} (differentiable; for
                                                ``torch.func.functional_call``)
unflatten(vector, like, inplace=False)       -> module holding ``vector``
project_layer_tangent(direction, like)       -> direction projected onto
                                                :math:`\prod_l T_{\theta_l} S(\|\theta_l\|)`
interpolate(a, b, t, mode="linear" | "spherical") -> new module between ``a`` and ``b``
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from synthfuse.shared.manifold import Sphere

__all__ = ["flatten", "interpolate", "project_layer_tangent", "unflatten", "unflatten_dict"]

_UNIT_SPHERE = Sphere(radius=1.0)


def _named_parameters(module: nn.Module, role: str = "module") -> list[tuple[str, nn.Parameter]]:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{role} must be a torch.nn.Module, got {type(module).__name__}")
    named = list(module.named_parameters())
    if not named:
        raise ValueError(f"{role} ({type(module).__name__}) has no parameters")
    return named


def flatten(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one 1-D tensor, in ``named_parameters()`` order.

    The result is a new tensor that keeps the autograd graph to the parameters (as
    :func:`torch.nn.utils.parameters_to_vector`); call ``.detach()`` for plain values.

    Raises
    ------
    ValueError
        If the module has no parameters, or parameters of several dtypes or devices.
    """
    named = _named_parameters(module)
    kinds = {(p.dtype, p.device) for _, p in named}
    if len(kinds) > 1:
        raise ValueError(
            f"cannot flatten parameters of mixed dtype/device {sorted(map(str, kinds))}; "
            "cast the module first (e.g. module.double())"
        )
    return torch.cat([p.reshape(-1) for _, p in named])


def unflatten_dict(vector: torch.Tensor, like: nn.Module) -> dict[str, torch.Tensor]:
    """Split a flat ``vector`` into ``{name: tensor}`` shaped like ``like``'s parameters.

    The values are views of ``vector`` (gradients flow back to it), ready for
    ``torch.func.functional_call(like, unflatten_dict(vector, like), x)``.
    """
    named = _named_parameters(like, "like")
    total = sum(p.numel() for _, p in named)
    if not isinstance(vector, torch.Tensor) or vector.ndim != 1:
        shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise ValueError(f"vector must be a 1-D torch.Tensor, got {shape}")
    if vector.numel() != total:
        raise ValueError(
            f"vector has {vector.numel()} entries but {type(like).__name__} has {total} "
            f"parameters in {len(named)} tensors"
        )
    sizes = [p.numel() for _, p in named]
    return {
        name: piece.view(p.shape)
        for (name, p), piece in zip(named, torch.split(vector, sizes))
    }


def unflatten(vector: torch.Tensor, like: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A module with the architecture of ``like`` whose parameters are ``vector``.

    Parameters
    ----------
    vector : tensor, shape (P,)
        ``P`` must equal the parameter count of ``like``; values are cast to each
        parameter's dtype and device.
    like : nn.Module
    inplace : bool, default False
        ``False``: return a deep copy of ``like`` (buffers and all) holding ``vector``;
        ``like`` is untouched. ``True``: copy ``vector`` into ``like``'s own parameters (under
        ``torch.no_grad``) and return ``like``.
    """
    values = unflatten_dict(vector.detach(), like)
    target = like if inplace else copy.deepcopy(like)
    with torch.no_grad():
        for name, p in target.named_parameters():
            p.copy_(values[name])
    return target


def project_layer_tangent(
    direction: torch.Tensor, like: nn.Module, *, point: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Project a flat direction onto the tangent space of every layer's sphere of constant norm.

    For each layer :math:`l` with flat parameters :math:`\theta_l \ne 0`,

    .. math:: d_l \leftarrow d_l - \frac{\langle d_l, \theta_l\rangle}{\|\theta_l\|^2}\, \theta_l ,

    so moving along the result keeps every :math:`\|\theta_l\|` fixed to first order
    (the tangent space of :math:`\prod_l S(\|\theta_l\|)`). Layers with :math:`\theta_l = 0`
    (a sphere of radius 0, e.g. zero-initialised biases) are left unchanged.

    Parameters
    ----------
    direction : tensor, shape (..., P)
        Leading dimensions are a batch of directions.
    like : nn.Module
        Gives the layer boundaries and, unless ``point`` is given, the point :math:`\theta`.
    point : tensor, shape (P,), optional
        The flat point :math:`\theta` (default ``flatten(like)``).

    Returns
    -------
    tensor, shape (..., P), differentiable with respect to ``direction``.
    """
    named = _named_parameters(like, "like")
    theta = (flatten(like) if point is None else point).detach()
    n_params = sum(p.numel() for _, p in named)
    if theta.shape != (n_params,):
        raise ValueError(f"point must have shape ({n_params},), got {tuple(theta.shape)}")
    if direction.shape[-1:] != theta.shape:
        raise ValueError(
            f"direction must have shape (..., {theta.numel()}) to match the module's "
            f"parameters, got {tuple(direction.shape)}"
        )
    theta = theta.to(direction)
    counts = torch.tensor([p.numel() for _, p in named], device=theta.device)
    layer = torch.repeat_interleave(torch.arange(len(named), device=theta.device), counts)  # (P,)
    zeros = direction.new_zeros(direction.shape[:-1] + (len(named),))
    dots = zeros.index_add(-1, layer, direction * theta)  # (..., L): <d_l, theta_l>
    sq = zeros.new_zeros(len(named)).index_add(0, layer, theta * theta)  # (L,): ||theta_l||^2
    coef = torch.where(sq > 0, dots / torch.where(sq > 0, sq, 1.0), 0.0)  # (..., L)
    return direction - coef[..., layer] * theta


def _check_same_architecture(module_a: nn.Module, module_b: nn.Module) -> None:
    for kind, named_a, named_b in (
        ("parameter", module_a.named_parameters(), module_b.named_parameters()),
        ("buffer", module_a.named_buffers(), module_b.named_buffers()),
    ):
        shapes_a = {name: tuple(t.shape) for name, t in named_a}
        shapes_b = {name: tuple(t.shape) for name, t in named_b}
        only_a, only_b = sorted(shapes_a.keys() - shapes_b.keys()), sorted(shapes_b.keys() - shapes_a.keys())
        if only_a or only_b:
            raise ValueError(
                f"module_a and module_b have different {kind}s (not the same architecture): "
                f"only in module_a: {only_a}; only in module_b: {only_b}"
            )
        differ = [f"{n}: {shapes_a[n]} vs {shapes_b[n]}" for n in shapes_a if shapes_a[n] != shapes_b[n]]
        if differ:
            raise ValueError(
                f"module_a and module_b differ in {kind} shapes (module_a vs module_b): "
                + "; ".join(differ)
            )


def _norm_preserving_slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    r"""Great-circle interpolation of the direction, linear interpolation of the norm."""
    va, vb = a.reshape(-1), b.reshape(-1)
    na, nb = va.norm(), vb.norm()
    if va.numel() < 2 or na == 0 or nb == 0:
        return torch.lerp(a, b, t)
    direction = _UNIT_SPHERE.geodesic(va / na, vb / nb, t)
    return (((1 - t) * na + t * nb) * direction).view_as(a)


def interpolate(
    module_a: nn.Module, module_b: nn.Module, t: float, *, mode: str = "linear"
) -> nn.Module:
    r"""A new module between ``module_a`` (``t = 0``) and ``module_b`` (``t = 1``).

    ``mode="linear"``: every parameter :math:`\theta(t) = (1 - t)\,\theta^a + t\,\theta^b`
    (any finite ``t``; outside [0, 1] extrapolates).

    ``mode="spherical"`` (per-layer norm preserving, :math:`0 \le t \le 1`): each parameter
    tensor, flattened, has its norm interpolated linearly and its direction along the great
    circle (slerp, Shoemake 1985):

    .. math::
        \theta_l(t) = \big((1 - t)\|\theta^a_l\| + t\|\theta^b_l\|\big)\,
        \frac{\sin((1 - t)\Omega_l)\, \hat\theta^a_l + \sin(t\Omega_l)\, \hat\theta^b_l}{\sin\Omega_l},
        \qquad \hat\theta = \theta / \|\theta\|, \quad
        \Omega_l = \angle(\hat\theta^a_l, \hat\theta^b_l),

    computed as :meth:`Sphere.geodesic` on the unit sphere (so :math:`\Omega_l \to 0` is
    safe and opposite directions follow :class:`~synthfuse.shared.manifold.Sphere`'s documented
    choice of great circle). Tensors with one element or with a zero norm at either end are
    interpolated linearly. Hence :math:`\|\theta_l(t)\|` is exactly the linear interpolation
    of the two norms.

    In both modes floating-point buffers (e.g. BatchNorm running statistics) are interpolated
    linearly and other buffers (e.g. ``num_batches_tracked``) are taken from ``module_a``.
    The result is a deep copy of ``module_a``; the inputs are untouched.

    Raises
    ------
    ValueError
        If the modules' parameter/buffer names or shapes differ (the message lists them), on
        an unknown ``mode``, or a ``t`` outside what the mode allows.
    """
    if mode not in ("linear", "spherical"):
        raise ValueError(f"mode must be 'linear' or 'spherical', got {mode!r}")
    t = float(t)
    if not math.isfinite(t) or (mode == "spherical" and not 0.0 <= t <= 1.0):
        raise ValueError(f"t must be finite (and in [0, 1] for mode='spherical'), got {t}")
    _named_parameters(module_a, "module_a")
    _named_parameters(module_b, "module_b")
    _check_same_architecture(module_a, module_b)
    params_b, buffers_b = dict(module_b.named_parameters()), dict(module_b.named_buffers())
    out = copy.deepcopy(module_a)
    with torch.no_grad():
        for name, p in out.named_parameters():
            b = params_b[name].detach().to(p)
            p.copy_(torch.lerp(p, b, t) if mode == "linear" else _norm_preserving_slerp(p, b, t))
        for name, buf in out.named_buffers():
            if buf.is_floating_point():
                buf.copy_(torch.lerp(buf, buffers_b[name].to(buf), t))
    return out
