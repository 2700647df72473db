"""Apply data parallelism to a plain model: FSDP2 per block and on the root, or DDP.

The model file knows nothing about sharding (torchtitan's ``apply_fsdp`` pattern): build the
model as for one process, then hand it to :func:`apply_fsdp` or :func:`apply_ddp`, then build
the optimizer over the returned model's parameters.

**FSDP2** (``torch.distributed.fsdp.fully_shard``; Zhao et al. 2023, PyTorch FSDP; the ZeRO-3
scheme of Rajbhandari et al. 2020): every parameter becomes a ``DTensor`` sharded on dim 0
over the ``W`` ranks of the mesh, so each rank stores :math:`1/W` of the parameters, gradients
and optimizer state. Each *block* given here is one communication unit: its parameters are
all-gathered just before its forward (and again before its backward) and freed after; its
gradients are reduce-scattered with an average, so with a mean loss over equal local batches
:math:`g = \\frac1W \\sum_r \\nabla L_r` is the gradient of the global-batch mean loss. The
root call groups the remaining parameters (embeddings, heads, final norms).

**DDP** (Li et al. 2020, PyTorch Distributed): every rank keeps a full replica and gradients
are all-reduced (averaged) in buckets during backward.
"""

from __future__ import annotations

from typing import Any, Iterable

from synthfuse.shared.backend import import_optional

torch = import_optional("torch")
dist = import_optional("torch.distributed")
fsdp = import_optional("torch.distributed.fsdp")
device_mesh = import_optional("torch.distributed.device_mesh")
placement_types = import_optional("torch.distributed.tensor.placement_types")

__all__ = ["apply_ddp", "apply_fsdp"]


def _require_process_group(what: str) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{what} needs a process group: call synthfuse.shared.distributed.init_distributed() "
            "first (under torchrun, or with rank/world_size/init_method)"
        )


def _blocks_of(model: "torch.nn.Module", blocks: Any) -> list["torch.nn.Module"]:
    """The submodules to shard one by one, children before parents, the root excluded."""
    classes = isinstance(blocks, tuple) and blocks and all(isinstance(b, type) for b in blocks)
    if isinstance(blocks, type) or classes:
        types = blocks if isinstance(blocks, tuple) else (blocks,)
        found = [m for m in model.modules() if isinstance(m, types) and m is not model]
        if not found:
            names = ", ".join(t.__name__ for t in types)
            raise ValueError(f"model {type(model).__name__} has no submodule of type {names}; "
                             "pass the transformer-block class(es) or the block modules themselves")
    else:
        containers = (torch.nn.ModuleList, torch.nn.Sequential)
        if isinstance(blocks, torch.nn.Module) and not isinstance(blocks, containers):
            raise TypeError("blocks must be block classes or an iterable of modules; wrap a single "
                            "module in a list (an nn.ModuleList is fine as it is)")
        found = list(dict.fromkeys(blocks))  # each unit once, in the given order
        members = {id(m) for m in model.modules()}
        for m in found:
            if not isinstance(m, torch.nn.Module):
                raise TypeError(f"blocks must be nn.Module instances or classes, got {type(m).__name__}")
            if id(m) not in members or m is model:
                raise ValueError(f"block {type(m).__name__} is not a proper submodule of the model")
    # modules() is pre-order, so reversing it visits every child before its parent: fully_shard
    # must wrap inner units first.
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(found, key=lambda m: -order[id(m)])


def _balanced_shard_dim(shape: tuple[int, ...], shards: int) -> int:
    """The first dimension ``shards`` divides, else the largest (ties: the first)."""
    for dim, size in enumerate(shape):
        if size % shards == 0:
            return dim
    return max(range(len(shape)), key=lambda d: (shape[d], -d)) if shape else 0


def apply_fsdp(
    model: "torch.nn.Module",
    blocks: "type | tuple[type, ...] | Iterable[torch.nn.Module]",
    *,
    mesh: Any = None,
    reshard_after_forward: bool = True,
    mp_policy: Any = None,
    balanced: bool = False,
) -> "torch.nn.Module":
    """Shard ``model`` with FSDP2: ``fully_shard`` on each block, then on the root.

    Parameters
    ----------
    model : nn.Module
        A plain model, built identically on every rank (e.g. after
        :func:`~synthfuse.shared.distributed.seed_everything` with the same seed); on CPU or
        on the meta device is fine, parameters are moved to the mesh's device.
    blocks : type, tuple of types, or iterable of modules
        The repeated layers (e.g. ``TransformerBlock`` or ``model.layers``); every submodule
        of that type is one FSDP unit. Nested matches are wrapped inner first.
    mesh : DeviceMesh, optional
        Default: a 1-D mesh over all ranks on the current device type. A 2-D mesh
        ``("replicate", "shard")`` gives HSDP (shard inside a node, replicate across nodes).
    reshard_after_forward : bool
        Free each block's gathered parameters after its forward (ZeRO-3, least memory);
        ``False`` keeps them until backward (ZeRO-2 style, less communication). The root unit
        always keeps its parameters gathered until backward, which starts with them.
    mp_policy : torch.distributed.fsdp.MixedPrecisionPolicy, optional
        E.g. ``MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)``
        on GPUs.
    balanced : bool
        Shard each parameter on its first dimension that the number of shards ``W`` divides
        (dim 0 whenever it can), else on its largest one, instead of always on dim 0. Then
        every rank holds :math:`1/W` of each parameter even when a leading dimension is
        smaller than ``W`` (4 experts on 8 ranks: with dim-0 sharding ranks 0-3 hold a whole
        expert each and ranks 4-7 nothing).

    Returns
    -------
    nn.Module
        The same object, now an ``FSDPModule``; its parameters are ``DTensor`` shards. Build
        the optimizer after this call.
    """
    _require_process_group("apply_fsdp")
    if isinstance(model, fsdp.FSDPModule):
        raise ValueError("model is already sharded with fully_shard; apply parallelism once")
    units = _blocks_of(model, blocks)
    if mesh is None:
        kind = "cuda" if torch.cuda.is_available() and "nccl" in dist.get_backend() else "cpu"
        mesh = device_mesh.init_device_mesh(kind, (dist.get_world_size(),))
    kwargs: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    if balanced:
        shards = mesh.size(mesh.ndim - 1)  # the last mesh dimension shards (HSDP: replicate, shard)
        kwargs["shard_placement_fn"] = lambda p: placement_types.Shard(_balanced_shard_dim(tuple(p.shape), shards))
    for unit in units:
        fsdp.fully_shard(unit, **kwargs)
    # The root unit (embedding, head, ...) stays gathered from forward to backward: its parameters
    # are the first that backward needs. Passing ``reshard_after_forward=True`` to the root makes
    # torch free them and relies on hooks on the model's outputs to gather them again; torch 2.11
    # does not gather them for a dataclass output ("setStorage ... storage of size 0" in backward).
    fsdp.fully_shard(model, **{**kwargs, "reshard_after_forward": False})
    return model


def apply_ddp(model: "torch.nn.Module", device: "str | torch.device | None" = None, **ddp_kwargs: Any):
    """Replicate ``model`` on every rank with ``DistributedDataParallel``.

    Parameters
    ----------
    model : nn.Module
        A plain model, identical on every rank (DDP also broadcasts rank 0's weights).
    device : str or torch.device, optional
        The rank's device; a CUDA device moves the model there and becomes ``device_ids``.
        Default: where the model's parameters are.
    **ddp_kwargs
        Passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters``,
        ``gradient_as_bucket_view``).

    Returns
    -------
    DistributedDataParallel
        The wrapper; the plain model is its ``.module``. Checkpoints written through
        :func:`~synthfuse.shared.distributed.save_checkpoint` use the plain names.
    """
    _require_process_group("apply_ddp")
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        raise ValueError("model is already wrapped in DistributedDataParallel")
    if device is not None:
        device = torch.device(device)
        model = model.to(device)
        if device.type == "cuda":
            ddp_kwargs.setdefault("device_ids", [device])
    return torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
