"""Test and benchmark helpers for :mod:`synthfuse.shared.distributed` (not used at run time).

A small residual MLP made of blocks (:class:`BlockMLP`), a training loop that logs the global
mean loss (:func:`train_steps`), a fake process group for ``W`` ranks inside one process
(:func:`fake_process_group`) and the rank functions the shared tests and
``benchmarks/shared_distributed_memory.py`` start with
:func:`~synthfuse.shared.distributed.spawn_local` (they must live in an importable module).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from synthfuse.shared.backend import import_optional
from synthfuse.shared.distributed import _checkpoint
from synthfuse.shared.distributed._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from synthfuse.shared.distributed._finite import NonFiniteError, check_finite, nonfinite_flags, raise_if_nonfinite
from synthfuse.shared.distributed._memory import (
    count_parameters, measure_memory, optimizer_states_per_param, zero_memory,
)
from synthfuse.shared.distributed._parallel import apply_ddp, apply_fsdp
from synthfuse.shared.distributed._runtime import (
    DistributedEnv, all_reduce_mean, all_reduce_sum, destroy_distributed, init_distributed,
)
from synthfuse.shared.distributed._seed import seed_everything

torch = import_optional("torch")
nn = torch.nn
dcp_state = import_optional("torch.distributed.checkpoint.state_dict")
FileSystemWriter = import_optional("torch.distributed.checkpoint.filesystem").FileSystemWriter

__all__ = [
    "Block", "BlockMLP", "fake_process_group", "finite_checks", "full_state", "make_model", "make_optimizer",
    "make_regression_data", "memory_scenario", "memory_scenarios", "run_parity", "train_steps",
    "two_rank_scenarios",
]


class Block(nn.Module):
    """Pre-norm residual block :math:`x + \\tanh(W\\,\\mathrm{LN}(x) + b)`."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return x + torch.tanh(self.fc(self.norm(x)))


class BlockMLP(nn.Module):
    """``Linear(d_in, width)``, ``depth`` :class:`Block` s, ``Linear(width, d_out)``."""

    def __init__(self, d_in: int = 8, width: int = 32, depth: int = 3, d_out: int = 1):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, d_out)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        h = self.inp(x)  # (B, width)
        for block in self.blocks:
            h = block(h)
        return self.head(h)  # (B, d_out)


def make_model(seed: int = 0, **sizes: int) -> BlockMLP:
    """A :class:`BlockMLP` with weights fixed by ``seed`` (identical on every rank)."""
    seed_everything(seed)
    return BlockMLP(**sizes)


def make_regression_data(n: int = 32, d_in: int = 8, d_out: int = 1, seed: int = 1):
    """``(X, Y)`` with ``X ~ N(0, I)`` and ``Y = sin(X A) + noise``, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g)
    A = torch.randn(d_in, d_out, generator=g)
    return X, torch.sin(X @ A) + 0.1 * torch.randn(n, d_out, generator=g)


def make_optimizer(name: str, params, lr: float | None = None) -> "torch.optim.Optimizer":
    """``"sgd"`` (momentum 0.9) or ``"adam"``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr or 0.05, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr or 1e-2)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train_steps(model, optimizer, X, Y, steps: int, *, clip: float | None = None) -> list[float]:
    """``steps`` full-batch steps of mean squared error on this rank's ``(X, Y)``.

    Returns the global mean loss of each step (averaged over ranks: the loss of the global
    batch when every rank holds an equal share).
    """
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)  # DTensor-aware
        optimizer.step()
        losses.append(float(all_reduce_mean(loss)))
    return losses


def full_state(model) -> dict[str, "torch.Tensor"]:
    """Unsharded CPU copies of all parameters (collective; complete on every rank)."""
    options = dcp_state.StateDictOptions(full_state_dict=True)
    state = dcp_state.get_model_state_dict(model, options=options)
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _shard(env: DistributedEnv, model, parallel: str):
    if parallel == "fsdp":
        return apply_fsdp(model.to(env.device), Block)
    if parallel == "ddp":
        return apply_ddp(model, env.device)
    if parallel == "none":
        return model.to(env.device)
    raise ValueError(f"parallel must be 'fsdp', 'ddp' or 'none', got {parallel!r}")


def _local(env: DistributedEnv, X, Y):
    """This rank's equal share of the global batch, on the rank's device."""
    return X.chunk(env.world_size)[env.rank].to(env.device), Y.chunk(env.world_size)[env.rank].to(env.device)


def run_parity(env: DistributedEnv, parallel: str, optimizer: str, steps: int, clip: float | None) -> dict:
    """Train the shared model/data ``steps`` steps; global losses and final full parameters."""
    X, Y = _local(env, *make_regression_data())
    model = _shard(env, make_model(), parallel)
    opt = make_optimizer(optimizer, model.parameters())
    losses = train_steps(model, opt, X, Y, steps, clip=clip)
    return {"losses": losses, "params": full_state(model), "local_batch": len(X)}


def memory_scenario(env: DistributedEnv, parallel: str = "fsdp", optimizer: str = "adam",
                    width: int = 64, depth: int = 4) -> dict[str, Any]:
    """One training step of a :class:`BlockMLP`, then this rank's measured model-state bytes.

    Returns ``{"measured": MemoryBreakdown.as_dict(), "predicted": ..., "num_params": ...}``
    with the ZeRO prediction of stage 3 (``fsdp``) or 0 (``ddp``, ``none``).
    """
    X, Y = _local(env, *make_regression_data(n=8 * env.world_size, d_in=width, d_out=width))
    model = _shard(env, make_model(d_in=width, width=width, depth=depth, d_out=width), parallel)
    opt = make_optimizer(optimizer, model.parameters())
    train_steps(model, opt, X, Y, 1)
    predicted = zero_memory(count_parameters(model), env.world_size, stage=3 if parallel == "fsdp" else 0,
                            optimizer_states=optimizer_states_per_param(opt))
    return {"measured": measure_memory(model, opt).as_dict(), "predicted": predicted.as_dict(),
            "num_params": count_parameters(model), "rank": env.rank, "world_size": env.world_size}


def memory_scenarios(env: DistributedEnv, runs: list[tuple[str, str]], width: int = 64,
                     depth: int = 4) -> dict[str, dict[str, Any]]:
    """:func:`memory_scenario` for each ``(parallel, optimizer)``, keyed ``"parallel-optimizer"``."""
    return {f"{p}-{o}": memory_scenario(env, p, o, width, depth) for p, o in runs}


@contextlib.contextmanager
def fake_process_group(world_size: int, rank: int = 0) -> Iterator[DistributedEnv]:
    """A ``"fake"`` process group: this process plays ``rank`` of ``world_size`` (collectives are no-ops).

    Shapes, sharding and memory are those of a real ``world_size`` run; values after a
    collective are not. Uses ``torch.testing._internal.distributed.fake_pg``.
    """
    fake_pg = import_optional("torch.testing._internal.distributed.fake_pg")  # registers "fake"
    env = init_distributed(backend="fake", store=fake_pg.FakeStore(), rank=rank, world_size=world_size,
                           device="cpu")
    try:
        yield env
    finally:
        destroy_distributed()


@contextlib.contextmanager
def _patched(owner: Any, name: str, fault: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace ``owner.name`` by ``fault(original)`` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, fault(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def _fail_writes_on_rank1(write_data: Callable) -> Callable:
    def write_data_or_crash(self, plan, planner):
        if torch.distributed.get_rank() == 1:
            raise OSError("simulated crash while writing shards")
        return write_data(self, plan, planner)

    return write_data_or_crash


def _fail_publish(publish: Callable) -> Callable:
    def crash(tmp, final):
        raise OSError("simulated crash before rename")

    return crash


def finite_checks(env: DistributedEnv) -> dict[str, Any]:
    """:func:`check_finite` and the ride-along pair with NaN/inf on some ranks; what each rank raised.

    Cases: ``clean`` (finite everywhere), ``nan_on_last`` (NaN on the last rank only),
    ``everywhere`` (inf on rank 0, NaN elsewhere), ``ride_along`` (NaN on the last rank, the flags
    appended to an all-reduce mean of a value: returns that mean too). Each maps to
    ``{"error": message or None, "ranks": [...], "step": ...}``.
    """
    last = env.world_size - 1
    value = torch.tensor([float(env.rank), 1.0], device=env.device)
    cases = {
        "clean": value,
        "nan_on_last": value * (float("nan") if env.rank == last else 1.0),
        "everywhere": value * (float("inf") if env.rank == 0 else float("nan")),
    }
    out: dict[str, Any] = {}
    for step, (name, tensor) in enumerate(cases.items(), start=1):
        try:
            check_finite(tensor, step=step)
            out[name] = {"error": None}
        except NonFiniteError as err:
            out[name] = {"error": str(err), "ranks": err.ranks, "step": err.step}
    logged = torch.tensor([env.rank + 1.0], dtype=torch.float64, device=env.device)
    reduced = all_reduce_mean(torch.cat([logged, nonfinite_flags(cases["nan_on_last"])]))
    out["ride_along_mean"] = float(reduced[0])
    try:
        raise_if_nonfinite(reduced[1:], 7, what="critic loss")
        out["ride_along"] = {"error": None}
    except NonFiniteError as err:
        out["ride_along"] = {"error": str(err), "ranks": err.ranks, "step": err.step}
    return out


def two_rank_scenarios(env: DistributedEnv, ckpt_root: str, steps: int = 20) -> dict[str, Any]:
    """Every 2-rank check of the shared tests in one process group (spawning costs seconds).

    - ``parity``: FSDP2 (SGD, Adam with gradient clipping) and DDP (Adam) runs.
    - ``rank_sum``: :func:`all_reduce_sum` of ``rank + 1``.
    - ``finite``: :func:`finite_checks`.
    - ``memory``: :func:`memory_scenario` for FSDP2 (Adam, SGD) and DDP (Adam).
    - checkpoints: FSDP2 + Adam trains ``steps // 2`` steps, saves, trains to ``steps``
      (``losses_after_save``); a save at ``steps`` whose shard writer fails on rank 1
      (``writer_crash``), and one that fails on rank 0 before the rename (``commit_crash``),
      must raise on every rank and leave ``latest`` alone (``latest_after_crash``); a fresh
      model and optimizer load the checkpoint and train the second half again
      (``losses_after_resume``); the state at the save is returned as ``params_at_save`` for
      the 1-rank reshard check.
    """
    out: dict[str, Any] = {"parity": {}, "rank_sum": all_reduce_sum(torch.tensor([env.rank + 1.0])).item()}
    out["finite"] = finite_checks(env)
    for parallel, optimizer, clip in (("fsdp", "sgd", None), ("fsdp", "adam", 0.5), ("ddp", "adam", 0.5)):
        out["parity"][f"{parallel}-{optimizer}"] = run_parity(env, parallel, optimizer, steps, clip)
    out["memory"] = memory_scenarios(env, [("fsdp", "adam"), ("fsdp", "sgd"), ("ddp", "adam")])

    half = steps // 2
    X, Y = _local(env, *make_regression_data())
    model = _shard(env, make_model(), "fsdp")
    opt = make_optimizer("adam", model.parameters())
    train_steps(model, opt, X, Y, half, clip=0.5)
    save_checkpoint(ckpt_root, half, model, opt, extra={"note": "half"})
    out["params_at_save"] = full_state(model)
    out["losses_after_save"] = train_steps(model, opt, X, Y, steps - half, clip=0.5)
    faults = (("writer_crash", FileSystemWriter, "write_data", _fail_writes_on_rank1),
              ("commit_crash", _checkpoint, "_publish", _fail_publish))
    for key, owner, name, fault in faults:
        with _patched(owner, name, fault):
            try:
                save_checkpoint(ckpt_root, steps, model, opt)
                out[key] = None
            except (OSError, RuntimeError) as err:  # on every rank, or the rank said why
                out[key] = f"{type(err).__name__}: {err}"
    out["latest_after_crash"] = str(latest_checkpoint(ckpt_root))

    model = _shard(env, make_model(seed=123), "fsdp")  # different weights: the load must overwrite
    opt = make_optimizer("adam", model.parameters())
    info = load_checkpoint(ckpt_root, model, opt)
    out["resumed_step"], out["resumed_extra"] = info.step, info.extra
    out["losses_after_resume"] = train_steps(model, opt, X, Y, steps - half, clip=0.5)
    return out
