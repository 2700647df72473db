"""Sharded, atomic checkpoints with ``torch.distributed.checkpoint`` (DCP).

Layout of a checkpoint folder ``root``::

    root/latest                  "step_00000020" (written atomically, last)
    root/step_00000010/          .metadata, __<rank>_0.distcp (one file per writing rank), meta.json,
                                 replicated.pt (optional)
    root/step_00000020/
    root/.tmp-step_00000030/     an interrupted save: ignored, removed by the next save

Every rank writes its own shards (DCP) into ``.tmp-step_<n>``; rank 0 then adds
``meta.json`` (step, world size, your JSON ``extra``) and ``replicated.pt`` (state that is
identical on every rank, e.g. curvature factors, saved with ``torch.save``), renames the folder to ``step_<n>``
(:func:`os.replace`, atomic on one file system) and only then points ``latest`` at it. A
process killed at any moment therefore leaves ``latest`` on the previous complete checkpoint.

The model and optimizer states go through ``torch.distributed.checkpoint.state_dict``
(``get_state_dict``/``set_state_dict``), which names tensors by their plain fully qualified
names whatever the wrapping (FSDP2 ``DTensor`` shards, DDP's ``module.`` prefix, nothing).
So a checkpoint saved on ``W`` ranks loads on ``W'`` ranks or into a plain model in one
process: DCP reads for every local shard the byte ranges it needs (resharding on load).
Multi-machine jobs need ``root`` on a file system every machine sees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from synthfuse.shared.backend import import_optional
from synthfuse.shared.io import atomic_open, atomic_write_text

torch = import_optional("torch")
dist = import_optional("torch.distributed")
dcp = import_optional("torch.distributed.checkpoint")
dcp_state = import_optional("torch.distributed.checkpoint.state_dict")

__all__ = ["CheckpointInfo", "checkpoint_info", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_STEP_DIR = re.compile(r"^step_(\d{8,})$")
_META = "meta.json"
_REPLICATED = "replicated.pt"
_LATEST = "latest"
_FORMAT = 1


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`load_checkpoint` restored.

    Attributes
    ----------
    path : Path
        The ``step_<n>`` folder.
    step : int
    world_size : int
        Number of ranks that saved it.
    extra : dict
        The JSON ``extra`` given to :func:`save_checkpoint` (e.g. sampler state, config).
    replicated : dict or None
        The ``replicated`` state given to :func:`save_checkpoint` (tensors on the CPU), or
        ``None`` when it was saved without.
    """

    path: Path
    step: int
    world_size: int
    extra: dict = field(default_factory=dict)
    replicated: dict | None = None


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _no_dist() -> bool:
    return not (dist.is_available() and dist.is_initialized())


def _is_complete(path: Path) -> bool:
    return (path / ".metadata").is_file() and (path / _META).is_file()


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    found = []
    if root.is_dir():
        for p in root.iterdir():
            match = _STEP_DIR.match(p.name)
            if match and p.is_dir():
                found.append((int(match.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or ``None``.

    That is the folder named in ``root/latest`` when it is complete (``.metadata`` and
    ``meta.json`` present); otherwise (the pointer is missing or names a folder that is gone)
    the complete ``step_<n>`` folder with the largest ``n``.
    """
    root = Path(root)
    pointer = root / _LATEST
    if pointer.is_file():
        target = root / pointer.read_text(encoding="utf-8").strip()
        if _STEP_DIR.match(target.name) and _is_complete(target):
            return target
    complete = [p for _, p in _step_dirs(root) if _is_complete(p)]
    return complete[-1] if complete else None


def _states(model, optimizer):
    if optimizer is None:
        return {"model": dcp_state.get_model_state_dict(model)}
    model_sd, optim_sd = dcp_state.get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def _dcp(call, what: str, path: Path, states) -> None:
    """Run ``dcp.save``/``dcp.load``; DCP's ``CheckpointException`` (a ``BaseException``,
    raised on every rank with the failing ranks' tracebacks) becomes a ``RuntimeError``."""
    try:
        with warnings.catch_warnings():  # single-process use is intended, not a mistake
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            call(states, checkpoint_id=path, no_dist=_no_dist())
    except dcp.api.CheckpointException as err:
        if not all(isinstance(exc, Exception) for exc, _ in err.failures.values()):
            raise  # an interrupt on some rank stays an interrupt
        raise RuntimeError(f"checkpoint {what} {path} failed on rank(s) {sorted(err.failures)}:\n{err}") from err


def _on_rank0(fn) -> None:
    """Run ``fn`` on rank 0 only; if it fails, every rank raises (none waits at a barrier forever)."""
    if _no_dist():
        fn()
        return
    status = [None]
    if dist.get_rank() == 0:
        try:
            fn()
        except BaseException as err:
            status[0] = f"{type(err).__name__}: {err}"
            raise
        finally:
            dist.broadcast_object_list(status, src=0)
    else:
        dist.broadcast_object_list(status, src=0)
        if status[0] is not None:
            raise RuntimeError(f"checkpoint file operations failed on rank 0: {status[0]}")


def _publish(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` folder to ``final`` (replacing an older save of the same step)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    model: "torch.nn.Module",
    optimizer: "torch.optim.Optimizer | list[torch.optim.Optimizer] | None" = None,
    *,
    extra: Mapping[str, Any] | None = None,
    replicated: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Save model (and optimizer) state from every rank as ``root/step_<step>``; collective.

    Parameters
    ----------
    root : path-like
        Checkpoint folder (created if missing); shared by all machines of the job.
    step : int
        Training step, >= 0; names the folder.
    model : nn.Module
        Plain, FSDP2-sharded or DDP-wrapped.
    optimizer : torch.optim.Optimizer or list of them, optional
        Built over ``model``'s parameters (several optimizers over disjoint parameter sets
        of ``model`` go in a list). An optimizer that has not stepped yet gets its
        state initialised first (``get_state_dict`` runs one zero-learning-rate step).
    extra : mapping, optional
        JSON-serialisable data stored in ``meta.json`` (sampler state, scheduler state, the
        config); returned as :attr:`CheckpointInfo.extra`. Identical on all ranks (rank 0's
        copy is written).
    replicated : mapping, optional
        State identical on every rank that is not part of ``model`` or ``optimizer``
        (tensors, numbers, strings, lists, dicts: what ``torch.load(..., weights_only=True)``
        reads), written by rank 0 as ``replicated.pt``; returned as
        :attr:`CheckpointInfo.replicated`.
    keep_last : int, optional
        Afterwards delete all but the newest ``keep_last`` complete checkpoints.

    Returns
    -------
    Path
        The published ``root/step_<step>`` folder.

    Raises
    ------
    ValueError
        If ``step`` < 0, ``keep_last`` < 1 or ``extra`` is not JSON-serialisable.
    RuntimeError
        If writing failed on any rank (raised on every rank, with the failing ranks'
        tracebacks); ``latest`` then still names the previous checkpoint.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    try:
        meta_text = json.dumps({
            "format": _FORMAT, "step": step, "world_size": dist.get_world_size() if not _no_dist() else 1,
            "has_optimizer": optimizer is not None, "has_replicated": replicated is not None,
            "extra": dict(extra or {}),
        }, indent=1, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable (convert tensors with .tolist()): {err}") from None
    root = Path(root)
    name = f"step_{step:08d}"
    tmp, final = root / f".tmp-{name}", root / name

    def prepare() -> None:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step_*"):  # left by interrupted saves
            shutil.rmtree(stale, ignore_errors=True)

    def commit() -> None:
        if replicated is not None:
            with atomic_open(tmp / _REPLICATED, "wb") as fh:
                torch.save(dict(replicated), fh)
        atomic_write_text(tmp / _META, meta_text)
        _publish(tmp, final)
        atomic_write_text(root / _LATEST, name + "\n")  # the commit point
        if keep_last is not None:
            for _, old in _step_dirs(root)[:-keep_last]:
                if old != final:  # a rewound run's newest save is kept whatever its number
                    shutil.rmtree(old, ignore_errors=True)

    _on_rank0(prepare)  # its broadcast doubles as the barrier before writing
    _dcp(dcp.save, "save to", tmp, _states(model, optimizer))
    _on_rank0(commit)  # DCP's own final collective already waited for every rank's shards
    return final


def load_checkpoint(
    path: str | os.PathLike,
    model: "torch.nn.Module",
    optimizer: "torch.optim.Optimizer | list[torch.optim.Optimizer] | None" = None,
) -> CheckpointInfo:
    """Load a checkpoint into ``model`` (and ``optimizer``) in place; collective.

    Parameters
    ----------
    path : path-like
        A checkpoint root (its :func:`latest_checkpoint` is loaded) or a ``step_<n>`` folder.
    model : nn.Module
        Plain, FSDP2-sharded or DDP-wrapped, on any number of ranks: each rank reads the
        slices its shards need.
    optimizer : torch.optim.Optimizer or list of them, optional
        Restored too when given (the checkpoint must contain optimizer state; a list as it
        was saved).

    Returns
    -------
    CheckpointInfo

    Raises
    ------
    FileNotFoundError
        If ``path`` holds no complete checkpoint.
    ValueError
        If ``optimizer`` is given but the checkpoint was saved without one.
    """
    info, has_optimizer = _read_info(path)
    if optimizer is not None and not has_optimizer:
        raise ValueError(f"{info.path} was saved without optimizer state; call load_checkpoint without optimizer")
    states = _states(model, optimizer)
    _dcp(dcp.load, "load from", info.path, states)
    if optimizer is None:
        dcp_state.set_model_state_dict(model, states["model"])
    else:
        dcp_state.set_state_dict(model, optimizer, model_state_dict=states["model"],
                                 optim_state_dict=states["optim"])
    return info


def _read_info(path: str | os.PathLike) -> tuple[CheckpointInfo, bool]:
    path = Path(path)
    target = path if _is_complete(path) else latest_checkpoint(path)
    if target is None:
        raise FileNotFoundError(f"no complete checkpoint (with .metadata and {_META}) in {path}")
    meta = json.loads((target / _META).read_text(encoding="utf-8"))
    replicated = None
    if meta.get("has_replicated"):
        replicated = torch.load(target / _REPLICATED, map_location="cpu", weights_only=True)
    info = CheckpointInfo(target, int(meta["step"]), int(meta["world_size"]), dict(meta["extra"]), replicated)
    return info, bool(meta["has_optimizer"])


def checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """What :func:`load_checkpoint` would return, without loading any model or optimizer tensor.

    For deciding how to build the model before loading (e.g. a tokenizer or config stored in
    ``extra``). ``path``: a checkpoint root (its latest) or a ``step_<n>`` folder; not collective.

    Raises
    ------
    FileNotFoundError
        If ``path`` holds no complete checkpoint.
    """
    return _read_info(path)[0]


def resume_point(single_step: int | None, single_path: str | os.PathLike, root: str | os.PathLike,
                 world_size: int) -> CheckpointInfo | None:
    """Where a run resumes: its one-process checkpoint file or the latest sharded checkpoint.

    Parameters
    ----------
    single_step : int or None
        Step of the one-process checkpoint file ``single_path`` (None: there is none usable).
    single_path : path
        That file (named in the error message).
    root : path
        The sharded checkpoints' root (:func:`save_checkpoint`'s ``root``).
    world_size : int
        Processes of the resuming run.

    Returns
    -------
    CheckpointInfo or None
        The latest sharded checkpoint when it is the newer one (or the only one); ``None`` when the
        one-process file is newer or equally new (resume from it) or when neither exists (the
        caller tells the two apart by ``single_step``).

    Raises
    ------
    ValueError
        When several processes would resume and the newest checkpoint is the one-process file:
        it cannot be split over ranks (DCP can reshard only sharded checkpoints).
    """
    sharded = checkpoint_info(root) if latest_checkpoint(root) is not None else None
    if single_step is None or (sharded is not None and sharded.step > single_step):
        return sharded
    if world_size > 1 and (sharded is None or single_step > sharded.step):
        raise ValueError(f"the newest checkpoint is {single_path} (step {single_step}) of a one-process run; a "
                         f"{world_size}-process run resumes from {root} only: continue on one process, or use "
                         "another output folder")
    return sharded if world_size > 1 else None
