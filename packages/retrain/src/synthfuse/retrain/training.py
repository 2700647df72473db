"""The one training loop every method and helper uses: seeded, in-memory, minibatch.

``fit`` shuffles with its own ``torch.Generator`` and runs under ``torch.random.fork_rng`` seeded
with ``seed`` (dropout and other global randomness), so the same seed gives the same model.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.retrain.data import DataLike, as_dataset, batches

__all__ = ["fit", "make_optimizer", "train_classifier"]

LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"adam"`` (AdamW; decoupled weight decay) or ``"sgd"`` (momentum 0.9, Nesterov)."""
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    n: int,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    seed: int,
    cosine: bool = True,
    on_epoch: Callable[[int], None] | None = None,
    progress: str | None = None,
) -> nn.Module:
    """Minimize ``loss_fn(model, batch_index)`` over ``epochs`` shuffled passes of ``range(n)``.

    Parameters
    ----------
    model : nn.Module
        Trained in place (train mode during the loop, eval mode after).
    loss_fn : callable
        ``loss_fn(model, idx)`` returns the scalar loss of the samples ``idx`` (the caller holds
        the data and any per-sample targets, indexed by ``idx``).
    n : int
        Number of training samples.
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    epochs, batch_size, seed
        Schedule; ``seed`` fixes the shuffling and any global randomness (dropout).
    cosine : bool
        Cosine-decay the learning rate to 0 over all steps (else constant).
    on_epoch : callable, optional
        Called with the epoch number (1-based) after each epoch, model in eval mode.
    progress : str, optional
        Show a tqdm bar with this description.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(n / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1)) if cosine else None
    epoch_iter = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc=progress, leave=False)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in epoch_iter:
            model.train()
            for idx in batches(n, batch_size, generator):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model, idx.to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower the learning rate")
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            model.eval()
            if on_epoch is not None:
                on_epoch(epoch)
    model.eval()
    return model


def train_classifier(
    model: nn.Module,
    data: DataLike,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: str | None = None,
) -> nn.Module:
    """Train ``model`` with cross-entropy on ``data`` (DataLoader or (X, y)); returns it in eval mode.

    How the benchmarks, the demo and ``synthfuse retrain train`` make θ* and θ†.
    """
    ds = as_dataset(data, "train").to(device)
    model.to(device)

    def loss_fn(m: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(ds.X[idx]), ds.y[idx])

    opt = make_optimizer(model, optimizer, lr, weight_decay)
    return fit(model, loss_fn, len(ds), optimizer=opt, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
