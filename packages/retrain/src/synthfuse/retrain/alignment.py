"""Align the hidden units of one network to another's: weight and activation matching.

Permuting the hidden units of a layer (rows of its weight, entries of its bias and of the
normalization carried along, columns of the next layer's weight) leaves the network's function
unchanged. Two independently trained networks are therefore compared only after choosing, per
hidden layer :math:`\\ell`, the permutation :math:`P_\\ell` that brings model B's units onto
model A's. **Weight matching** (Ainsworth, Hayase & Srinivasa 2023) maximizes

.. math:: \\sum_\\ell \\big\\langle W^A_\\ell,\\; P_\\ell W^B_\\ell P_{\\ell-1}^\\top \\big\\rangle_F

over all :math:`P_\\ell` at once (NP-hard); coordinate descent solves it one layer at a time,
each step an exact linear assignment (optimal transport between the units' weight vectors,
:func:`synthfuse.shared.ot.match_units`), until no permutation changes. The descent starts from
a forward greedy pass (each layer matched on its incoming weights given the layers below, as
in Singh & Jaggi's OT fusion), so the result does not depend on how B's units were ordered.
**Activation matching** instead matches units by the correlation of their (post-activation)
outputs on data; each layer is then one assignment.

Supported architectures are chains: ``Linear``/``Conv1d``/``Conv2d`` layers separated by
elementwise activations, dropout, pooling, ``Flatten``, and ``BatchNorm``/``LayerNorm``
(carried along with their layer's units). Branches (residual connections), attention, grouped
convolutions, ``GroupNorm`` and anything else raise :class:`AlignmentError` naming the layer.

References
----------
Ainsworth, Hayase & Srinivasa. Git Re-Basin: Merging Models modulo Permutation Symmetries.
ICLR 2023. Singh & Jaggi. Model Fusion via Optimal Transport. NeurIPS 2020. Entezari et al.
The Role of Permutation Invariance in Linear Mode Connectivity of Neural Networks. ICLR 2022.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from synthfuse.retrain.data import DataLike, as_dataset, check_architectures
from synthfuse.shared.ot import match_units

__all__ = ["AlignmentError", "AlignmentResult", "PermutationSpec", "align", "apply_permutations", "permutation_spec"]


class AlignmentError(ValueError):
    """The architecture cannot be aligned unit by unit (the message names the layer and why)."""


_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
    nn.Dropout, nn.AlphaDropout,
)
_CHANNEL_MODULES = (  # act on each channel separately: need the channel axis at dim 1
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Dropout1d, nn.Dropout2d,
)
_ELEMENTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, torch.tanh, F.tanh,
    torch.sigmoid, F.sigmoid, F.softplus, F.hardtanh, F.dropout,
}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "float"}
_HELPER_METHODS = {"size", "dim"}  # produce shapes, not tensors


@dataclass(frozen=True)
class Member:
    """One tensor axis a permutation group acts on; ``repeat`` > 1 after a flatten (channel-major blocks)."""

    name: str
    axis: int
    repeat: int = 1


@dataclass
class PermutationSpec:
    """The permutation symmetry of a chain network: one group per hidden layer.

    Attributes
    ----------
    sizes : list of int
        Units per group.
    members : list of list of Member
        The ``state_dict`` tensors and axes each group permutes.
    probes : list of str
        The graph node whose output holds each group's units (for activation matching).
    channel_axes : list of int
        The axis of that output along which the group's units lie.
    """

    sizes: list[int] = field(default_factory=list)
    members: list[list[Member]] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    channel_axes: list[int] = field(default_factory=list)


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"layer {node.target!r} ({type(modules[node.target]).__name__})"
    return f"operation {node.name!r} ({getattr(node.target, '__name__', node.target)})"


def _tensor_users(node: fx.Node) -> list[fx.Node]:
    return [u for u in node.users if not (u.op == "call_method" and u.target in _HELPER_METHODS)]


def permutation_spec(model: nn.Module, example: torch.Tensor) -> PermutationSpec:
    """Trace ``model`` (``torch.fx``) on ``example`` inputs and derive its :class:`PermutationSpec`.

    Raises
    ------
    AlignmentError
        The model is not a chain of supported layers; the message names the first offender.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for untraceable Python control flow
        raise AlignmentError(
            f"cannot trace {type(model).__name__} with torch.fx ({err}); unit alignment supports "
            "chains of Linear/Conv layers with elementwise activations, pooling, flatten and norms"
        ) from err
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    finally:
        model.train(was_training)
    modules = dict(gm.named_modules())
    spec = PermutationSpec()
    group: int | None = None  # group acting on the current tensor's channel axis
    channel_axis = 1  # where that axis is in the current tensor (-1 for Linear outputs)
    repeat = 1
    current: fx.Node | None = None
    last_weight_group: int | None = None

    def shape(n: fx.Node) -> tuple[int, ...]:
        return tuple(n.meta["tensor_meta"].shape)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise AlignmentError("unit alignment supports models with a single input")
            current = node
            continue
        if node.op == "get_attr":
            raise AlignmentError(f"{_describe(node, modules)} reads a parameter directly; unit alignment cannot follow it")
        if node.op == "call_method" and node.target in _HELPER_METHODS:
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise AlignmentError("the model's output is not the end of its layer chain (multiple outputs or branches)")
            break
        tensor_args = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)
                       and not (a.op == "call_method" and a.target in _HELPER_METHODS)]
        if tensor_args != [current] or len(_tensor_users(current)) != 1:
            kind = "residual connection" if node.target in (operator.add, torch.add, operator.iadd) else "branch or multi-input operation"
            raise AlignmentError(
                f"{_describe(node, modules)} is a {kind}; unit alignment supports chains only "
                "(no residual connections, attention, concatenations)"
            )
        out_shape = shape(node)
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
                    raise AlignmentError(f"{_describe(node, modules)} is a grouped convolution; unit alignment needs groups=1")
                if isinstance(m, nn.Linear) and len(shape(current)) != 2 and group is not None:
                    raise AlignmentError(f"{_describe(node, modules)} acts on inputs of shape {shape(current)}; unit alignment needs (N, features)")
                if group is not None:
                    spec.members[group].append(Member(f"{node.target}.weight", 1, repeat))
                spec.sizes.append(m.weight.shape[0])
                spec.members.append([Member(f"{node.target}.weight", 0)])
                if m.bias is not None:
                    spec.members[-1].append(Member(f"{node.target}.bias", 0))
                group = last_weight_group = len(spec.sizes) - 1
                channel_axis, repeat = (-1 if isinstance(m, nn.Linear) else 1), 1
                spec.probes.append(node.name)
                spec.channel_axes.append(channel_axis)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if group is not None:
                    if channel_axis == -1 and len(out_shape) != 2:
                        raise AlignmentError(f"{_describe(node, modules)}: batch norm over a non-feature axis")
                    names = ["weight", "bias"] if m.affine else []
                    names += ["running_mean", "running_var"] if m.track_running_stats else []
                    spec.members[group] += [Member(f"{node.target}.{k}", 0) for k in names]
                    spec.probes[group] = node.name
            elif isinstance(m, nn.LayerNorm):
                if group is not None and m.elementwise_affine:
                    rank = len(out_shape)
                    ch = rank - 1 if channel_axis == -1 else channel_axis
                    axis = len(m.normalized_shape) - (rank - ch)  # the channel axis inside normalized_shape
                    if axis >= 0:
                        spec.members[group] += [Member(f"{node.target}.{k}", axis) for k in ("weight", "bias")
                                                if getattr(m, k, None) is not None]
                    spec.probes[group] = node.name
            elif isinstance(m, _CHANNEL_MODULES):
                if group is not None and channel_axis != 1:
                    raise AlignmentError(f"{_describe(node, modules)} needs channels at axis 1")
                if group is not None:
                    spec.probes[group] = node.name
            elif isinstance(m, nn.Flatten):
                repeat, channel_axis = _flatten(node, modules, shape(current), out_shape, group, channel_axis, repeat, m.start_dim, m.end_dim)
            elif isinstance(m, _ELEMENTWISE_MODULES):
                if group is not None:
                    spec.probes[group] = node.name
            else:
                raise AlignmentError(
                    f"{_describe(node, modules)} cannot be aligned unit by unit; supported: Linear, Conv1d/2d, "
                    "elementwise activations, dropout, pooling, Flatten, BatchNorm, LayerNorm"
                )
        elif node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS:
            if group is not None:
                spec.probes[group] = node.name
        elif node.op == "call_function" and node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            repeat, channel_axis = _flatten(node, modules, shape(current), out_shape, group, channel_axis, repeat, start, end)
        elif node.op == "call_method" and node.target in _ELEMENTWISE_METHODS:
            if group is not None:
                spec.probes[group] = node.name
        elif node.op == "call_method" and node.target in ("flatten", "view", "reshape"):
            in_shape = shape(current)
            if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
                raise AlignmentError(f"{_describe(node, modules)} reshapes {in_shape} to {out_shape}; only flattening to (N, features) is supported")
            repeat, channel_axis = _flatten(node, modules, in_shape, out_shape, group, channel_axis, repeat, 1, -1)
        else:
            raise AlignmentError(
                f"{_describe(node, modules)} cannot be aligned unit by unit (not an elementwise, pooling, "
                "flatten, norm, Linear or Conv operation)"
            )
        current = node
    if last_weight_group is None:
        raise AlignmentError("the model has no Linear or Conv layer to align")
    # the last weight layer's outputs are the logits: never permuted
    del spec.sizes[last_weight_group], spec.members[last_weight_group]
    del spec.probes[last_weight_group], spec.channel_axes[last_weight_group]
    return spec


def _flatten(node, modules, in_shape, out_shape, group, channel_axis, repeat, start, end) -> tuple[int, int]:
    """Repeat factor and channel axis after a flatten of the channel and spatial axes."""
    if group is None:
        return repeat, channel_axis
    rank = len(in_shape)
    if start % rank != 1 or end % rank != rank - 1 or len(out_shape) != 2:
        raise AlignmentError(f"{_describe(node, modules)} must flatten all axes after the batch axis, got {in_shape} -> {out_shape}")
    if channel_axis == -1 and rank == 2:
        return repeat, channel_axis
    if channel_axis != 1:
        raise AlignmentError(f"{_describe(node, modules)} flattens a tensor whose units are not at axis 1")
    spatial = 1
    for s in in_shape[2:]:
        spatial *= s
    return repeat * spatial, -1


def _index(perm: torch.Tensor, repeat: int) -> torch.Tensor:
    if repeat == 1:
        return perm
    return (perm[:, None] * repeat + torch.arange(repeat, device=perm.device)).reshape(-1)


def apply_permutations(state: dict[str, torch.Tensor], spec: PermutationSpec, perms: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every group's axes reindexed: new unit ``i`` is old unit ``perms[g][i]``."""
    out = dict(state)
    for g, members in enumerate(spec.members):
        for m in members:
            out[m.name] = out[m.name].index_select(m.axis, _index(perms[g].to(out[m.name].device), m.repeat))
    return out


def _unit_features(state, spec, g, perms, solved) -> torch.Tensor:
    """Rows = units of group ``g``: every member tensor, its other axes permuted by ``perms`` (if given).

    Members whose other axes belong to a group not in ``solved`` are left out (the greedy pass).
    """
    owner = {(m.name, m.axis): (h, m.repeat) for h, ms in enumerate(spec.members) for m in ms}
    rows = []
    for m in spec.members[g]:
        t = state[m.name]
        others = [(axis, owner.get((m.name, axis))) for axis in range(t.ndim) if axis != m.axis]
        if any(o is not None and o[0] not in solved for _, o in others):
            continue
        for axis, o in others:
            if o is not None and perms is not None:
                t = t.index_select(axis, _index(perms[o[0]].to(t.device), o[1]))
        rows.append(t.movedim(m.axis, 0).reshape(spec.sizes[g], -1))
    return torch.cat(rows, 1).double()


def _match(sa, sb, spec, g, perms, solved) -> torch.Tensor:
    """Exact assignment of B's units of group ``g`` onto A's, the other groups held fixed."""
    fa = _unit_features(sa, spec, g, None, solved)
    fb = _unit_features(sb, spec, g, perms, solved)
    return torch.as_tensor(match_units(fa, fb), device=perms[g].device).long()


@dataclass
class AlignmentResult:
    """Outcome of :func:`align`.

    Attributes
    ----------
    model : nn.Module
        A copy of the aligned model with its units permuted onto the reference's.
    permutations : list of torch.Tensor
        Per hidden group, ``perm[i]`` = the original unit that became unit ``i``.
    objective : list of float
        Weight-matching objective :math:`\\sum \\langle W^A, \\pi W^B\\rangle` after the greedy
        pass and after each sweep (non-decreasing); empty for activation matching.
    output_error : float
        :math:`\\max |f_{\\pi B}(x) - f_B(x)|` on the data: the alignment must not change the function.
    """

    model: nn.Module
    permutations: list[torch.Tensor]
    objective: list[float]
    output_error: float


def _activations(model: nn.Module, spec: PermutationSpec, X: torch.Tensor) -> list[torch.Tensor]:
    """Per group, the probe node's output with units on rows: ``(units, samples·positions)``."""
    gm = fx.symbolic_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    out_node.args = (tuple(nodes[p] for p in spec.probes),)
    gm.recompile()
    with torch.no_grad():
        outs = gm(X)
    feats = []
    for z, axis in zip(outs, spec.channel_axes):
        z = z.movedim(axis, 0).reshape(z.shape[axis], -1).double()
        z = z - z.mean(1, keepdim=True)
        feats.append(z / z.norm(dim=1, keepdim=True).clamp_min(1e-12))  # rows: unit-norm, so <.,.> = correlation
    return feats


def align(
    reference: nn.Module,
    model: nn.Module,
    *,
    data: DataLike,
    matching: str = "weights",
    max_sweeps: int = 100,
    n_samples: int = 2048,
) -> AlignmentResult:
    """Permute ``model``'s hidden units onto ``reference``'s (module docstring).

    Parameters
    ----------
    reference, model : nn.Module
        Same architecture, a chain network (see the module docstring).
    data : DataLoader or (X, y)
        Traces the shapes; activation matching and the output check use its first ``n_samples``.
    matching : {"weights", "activations"}
        Weight matching by coordinate descent, or activation (correlation) matching.
    max_sweeps : int
        Coordinate-descent sweeps at most (stops earlier when no permutation changes).

    Returns
    -------
    AlignmentResult
    """
    check_architectures(reference, model)
    if matching not in ("weights", "activations"):
        raise ValueError(f"matching must be 'weights' or 'activations', got {matching!r}")
    ds = as_dataset(data, "data")
    device = next(model.parameters(), ds.X).device
    X = ds.X[:n_samples].to(device)
    reference, aligned = copy.deepcopy(reference).eval(), copy.deepcopy(model).eval()
    spec = permutation_spec(aligned, X[:2])
    sa, sb = reference.state_dict(), aligned.state_dict()
    perms: list[torch.Tensor] = [torch.arange(n, device=device) for n in spec.sizes]
    objective: list[float] = []
    if matching == "activations":
        for g, (za, zb) in enumerate(zip(_activations(reference, spec, X), _activations(aligned, spec, X))):
            perms[g] = torch.as_tensor(match_units(za, zb), device=device).long()
    else:
        groups = range(len(spec.sizes))
        for g in groups:  # forward greedy pass (incoming weights only): independent of B's unit order
            perms[g] = _match(sa, sb, spec, g, perms, set(range(g)))
        objective.append(_objective(sa, sb, spec, perms))
        for _ in range(max_sweeps if len(spec.sizes) > 1 else 0):
            changed = False
            for g in groups:
                new = _match(sa, sb, spec, g, perms, set(groups))
                changed |= not torch.equal(new, perms[g])
                perms[g] = new
            objective.append(_objective(sa, sb, spec, perms))
            if not changed:
                break
    with torch.no_grad():
        before = aligned(X)
        aligned.load_state_dict(apply_permutations(sb, spec, perms))
        error = float((aligned(X) - before).abs().max())
    return AlignmentResult(aligned, perms, objective, error)


def _objective(sa, sb, spec, perms) -> float:
    permuted = apply_permutations(sb, spec, perms)
    return float(sum((sa[k].double() * permuted[k].double()).sum() for k in {m.name for ms in spec.members for m in ms}))
