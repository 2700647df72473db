"""Load a trained run into one process for inference, whichever checkpoint it left.

A one-process run leaves ``out_dir/checkpoint.pt``; a ``torchrun`` run (``--parallel fsdp|ddp``)
leaves sharded ``torch.distributed.checkpoint`` folders ``out_dir/checkpoints/step_<n>``
(FSDP2: each rank wrote its own slices). :func:`load_trained` takes either -- or the run
folder, or the sharded root -- and loads the weights into a plain model in this process: DCP
reads, without a process group, the slices of every rank's files that make up each full tensor
(:func:`synthfuse.shared.distributed.load_checkpoint`, the same 2 -> 1 reshard that lets a
one-process run resume a 2-rank one). The run config stored with the checkpoint builds the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from synthfuse.shared.distributed import checkpoint_info, latest_checkpoint, load_checkpoint, resume_point
from synthfuse.synthe.train.config import RunConfig
from synthfuse.synthe.train.trainer import CHECKPOINT, SHARDED, Trainer

__all__ = ["find_checkpoint", "load_trained"]


def _is_step_folder(path: Path) -> bool:
    return (path / ".metadata").is_file() and (path / "meta.json").is_file()


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: a ``checkpoint.pt`` file or a sharded ``step_<n>`` folder.

    ``path`` may be a ``checkpoint.pt`` (any file), a ``step_<n>`` folder, a sharded root
    (``out_dir/checkpoints``: its latest complete checkpoint) or a run folder (``out_dir``: the
    newer of ``checkpoint.pt`` and the latest sharded checkpoint).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist or holds no checkpoint of any kind.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist: pass a run folder, its checkpoint.pt or its {SHARDED}/ folder")
    if _is_step_folder(path):
        return path
    single, root = path / CHECKPOINT, path / SHARDED
    if not single.is_file() and latest_checkpoint(root) is None:
        root = path  # a sharded root itself
    single_step = int(torch.load(single, map_location="cpu", weights_only=True)["step"]) if single.is_file() else None
    sharded = resume_point(single_step, single, root, world_size=1)
    if sharded is not None:
        return sharded.path
    if single_step is not None:
        return single
    raise FileNotFoundError(f"no checkpoint in {path}: expected {CHECKPOINT} (one process) or sharded checkpoints "
                            f"in {SHARDED}/step_<n> (torchrun); train first with `synthfuse synthe train`")


def load_trained(path: str | os.PathLike, device: str | None = None) -> Trainer:
    """A one-process :class:`Trainer` holding a trained run's weights, for inference.

    Parameters
    ----------
    path : path-like
        What :func:`find_checkpoint` accepts: a run folder, its ``checkpoint.pt``, its sharded
        root or one ``step_<n>`` folder (saved by any number of ranks, FSDP2 or DDP).
    device : str, optional
        Where to load (default: the run's ``train.device``).

    Returns
    -------
    Trainer
        ``parallel: none``, no activation checkpointing or compilation, ``out_dir`` the run
        folder; ``model``, ``step`` and ``history`` restored. Optimizer, scheduler and RNG are
        not (continue training with ``synthfuse synthe train --resume``).
    """
    ckpt = find_checkpoint(path)
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        config, step, history, run_dir = saved["run_config"], int(saved["step"]), saved["history"], ckpt.parent
    else:
        info = checkpoint_info(ckpt)
        config, step, history = info.extra["run_config"], info.step, info.extra["history"]
        run_dir = ckpt.parent.parent if ckpt.parent.name == SHARDED else ckpt.parent
    run = RunConfig.from_dict(config).replace(train={
        "device": device, "out_dir": str(run_dir), "parallel": "none", "activation_checkpointing": False,
        "compile": False})
    trainer = Trainer(run, progress=False)
    if ckpt.is_file():
        trainer.model.load_state_dict(saved["model"])
    else:
        load_checkpoint(ckpt, trainer.model)  # one process: DCP gathers every rank's slices
    trainer.step, trainer.history = step, list(history)
    return trainer
