"""The training loop: AdamW, warmup + cosine, clipping, evaluation, metrics and resumable checkpoints.

Checkpoints (``out_dir/checkpoint.pt``, written atomically with :func:`synthfuse.shared.io.atomic_open`)
hold plain tensors and Python values only, so they load with ``torch.load(weights_only=True)``:
``model``, ``optimizer``, ``scheduler`` state dicts, the torch RNG state, the step (which is also
the data position: batch ``k`` depends only on the seed and ``k``), the elapsed training time,
the metric history and the run config. ``Trainer(run, resume=True)`` continues from it, and a run
stopped after step ``k`` and resumed reproduces the uninterrupted run's losses exactly.

Under ``torchrun`` (``train.parallel: ddp | fsdp``, :mod:`.parallel`) every rank trains on its
rows of the global batch, the loss is the global mean over scored tokens, rank 0 alone logs,
plots and shows the progress bar, and checkpoints are sharded
``torch.distributed.checkpoint`` folders ``out_dir/checkpoints/step_<n>`` (the trainer's step,
time, history, scheduler and RNG state ride along) that load on any number of processes --
also into a one-process run (``--resume`` picks the newer of ``checkpoint.pt`` and the latest
sharded checkpoint). Each step logs tokens/s and, with a known peak, MFU (:mod:`.flops`).
A NaN or inf loss on any rank stops every rank at that step with the same
:class:`~synthfuse.shared.distributed.NonFiniteError` (its flags ride on the all-reduce of the
logged losses), before the optimizer step and before any checkpoint. :mod:`.restore` loads
either kind of checkpoint into one process for inference.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from synthfuse.shared.distributed import (
    all_reduce_mean, all_reduce_sum, load_checkpoint, nonfinite_flags, raise_if_nonfinite, resume_point,
    save_checkpoint,
)
from synthfuse.shared.io import atomic_open, atomic_write_text
from synthfuse.synthe.baseline import TransformerBaseline, TransformerConfig
from synthfuse.synthe.model import Synthe
from synthfuse.synthe.train import parallel
from synthfuse.synthe.train.config import RunConfig
from synthfuse.synthe.train.data import batch_generator, build_data
from synthfuse.synthe.train.flops import mfu, model_flops, peak_flops

CHECKPOINT = "checkpoint.pt"
#: Sharded checkpoints of a multi-process run: ``out_dir/checkpoints/step_<n>/``.
SHARDED = "checkpoints"
#: What a non-finite loss error suggests (:class:`~synthfuse.shared.distributed.NonFiniteError`).
NONFINITE_HINT = ("nothing was applied or checkpointed from this step. Try a lower --lr, --dtype float64, "
                  "or gradient clipping (--grad_clip 1.0)")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float, spent: float | None = None) -> float:
    r"""Multiplier of the peak learning rate at ``step`` (0-based).

    .. math:: f(s) = \frac{s + 1}{W} \ (s < W), \qquad
              f(s) = c\!\left(\frac{s - W}{S - W}\right) \ (s \ge W), \qquad
              c(\tau) = r + \frac{1 - r}{2}\left(1 + \cos \pi \min(\tau, 1)\right),

    with warmup ``W``, ``S = max_steps`` and floor ``r = min_lr / lr`` (constant ``r`` past ``S``).
    With ``spent`` (the fraction :math:`\tau` of the time budget used, ``schedule: time``) the
    cosine runs over time and the warmup multiplies it:
    :math:`f(s, \tau) = \min(1, (s + 1) / W)\, c(\tau)`.
    """
    ramp = 1.0 if step >= warmup else (step + 1) / warmup
    if spent is None:
        if step < warmup:
            return ramp
        spent = (step - warmup) / max(1, max_steps - warmup)
    progress = min(1.0, max(0.0, spent))
    return ramp * (min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress)))


def build_model(run: RunConfig, vocab_size: int) -> nn.Module:
    """The run's model at the data's vocabulary: ``Synthe`` or a parameter-matched Transformer."""
    import dataclasses

    config = dataclasses.replace(run.model, vocab_size=vocab_size)
    if run.model_type == "transformer":
        return TransformerBaseline(TransformerConfig.matching(config))
    return Synthe(config)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def masked_accuracy(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """(correct, scored) argmax predictions over positions with ``targets != -100``."""
    scored = targets != -100
    return int((logits.argmax(-1) == targets)[scored].sum()), int(scored.sum())


class Trainer:
    """Train ``run`` (a :class:`RunConfig`); ``resume=True`` continues from the newest checkpoint.

    Parameters
    ----------
    run : RunConfig
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (one process) or the latest sharded checkpoint
        in ``out_dir/checkpoints`` (saved on any number of processes), whichever is newer.
    progress : bool
        Show a progress bar (rank 0 only).
    data : optional
        A batch source (``batch(split, batch_size, generator)``, ``vocab_size``) instead of
        the one ``run.data`` names.

    Attributes
    ----------
    model : nn.Module
        The model (FSDP2-sharded in place under ``parallel: fsdp``).
    net : nn.Module
        What the forward passes call: ``model`` or its DDP wrapper.
    env : DistributedEnv
        Rank, world size and device of this process.
    """

    def __init__(self, run: RunConfig, resume: bool = False, progress: bool = True, data=None) -> None:
        self.run, t = run, run.train
        self.env = parallel.join(t, resolve_device(t.device))
        self.device = self.env.device
        self.rows = parallel.rank_rows(t.batch_size, self.env.world_size, self.env.rank, t.grad_accum)
        self.amp_dtype = parallel.autocast_dtype(t.autocast, self.device) if t.dtype == "float32" else None
        self.data = build_data(run.data) if data is None else data
        torch.manual_seed(t.seed)  # the same initial weights on every rank
        model = build_model(run, self.data.vocab_size).to(getattr(torch, t.dtype))
        self.flops = model_flops(model, run.data.seq_len)  # a step's count: from its scored rows
        self.peak_flops = peak_flops(self.device, t.peak_flops)
        self.model, self.net = parallel.prepare_model(model, t, self.env)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, t.weight_decay), lr=t.lr,
                                           betas=(t.beta1, t.beta2))
        ratio = t.min_lr / t.lr
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(
            s, t.warmup_steps, t.max_steps, ratio, self.elapsed / t.time_budget_s if t.schedule == "time" else None))
        self.progress = progress and self.env.is_main
        self.out_dir = None if t.out_dir is None else Path(t.out_dir)
        if resume:
            self._resume()

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): logs, plots, progress bar, shared files."""
        return self.env.is_main

    # -- one step / evaluation -------------------------------------------------------------------
    def _forward(self, x: Tensor, y: Tensor, scored_logits: bool = False) -> dict:
        """``scored_logits``: the LM head only at scored targets (training; same loss, see
        :mod:`synthfuse.synthe.head`) -- MQAR scores 4 of 64 positions."""
        x, y = x.to(self.device), y.to(self.device)
        with parallel.autocast(self.amp_dtype, self.device):
            if isinstance(self.model, Synthe):
                return self.net(x, targets=y, early_exit=False, scored_logits=scored_logits)
            return self.net(x, targets=y, scored_logits=scored_logits)

    def _aux_stride(self) -> int:
        return self.model.config.router_aux_stride if isinstance(self.model, Synthe) else 1

    def backward_step(self, index: int) -> dict[str, float]:
        """Add the gradient of training batch ``index`` (this rank's rows) to the parameters' ``.grad``.

        ``grad_accum`` forward/backward passes over equal micro-batches, each loss weighted by its
        share of the global batch's scored tokens (:func:`~.parallel.loss_weights`), so the
        accumulated (and, across ranks, averaged) gradient is the gradient of the whole batch's
        mean loss. Returns the batch's ``loss`` and ``lm_loss`` (global values, equal on every rank)
        and the step's training ``flops_per_token`` (the heads counted at the scored rows only).

        Raises
        ------
        synthfuse.shared.distributed.NonFiniteError
            On every rank, when a micro-batch loss is NaN or inf on any rank (the flags ride on
            the all-reduce of the logged losses; no extra collective).
        """
        t = self.run.train
        x, y = parallel.read_rows(self.data, "train", t.batch_size, batch_generator(t.seed, "train", index), self.rows)
        micro = parallel.micro_batches(x, y, t.grad_accum)
        stride = self._aux_stride()
        counts = [parallel.scored_counts(mb_y, stride) for _, mb_y in micro]
        total = all_reduce_sum(torch.stack(counts).sum(0).to(self.device))
        aux_weight = self.model.config.router_aux_weight if isinstance(self.model, Synthe) else 0.0
        logged = torch.zeros(2, dtype=torch.float64, device=self.device)  # (lm share, aux share) of this rank
        losses = []
        self.model.train()
        for i, ((mb_x, mb_y), count) in enumerate(zip(micro, counts)):
            w_lm, w_aux = parallel.loss_weights(count, total, self.env.world_size)
            last = i == len(micro) - 1
            with self._gradient_sync(last):
                out = self._forward(mb_x, mb_y, scored_logits=True)
                lm = out["losses"]["lm"] if "losses" in out else out["loss"]
                aux = out["losses"]["router_aux"] if "losses" in out else None
                loss = _weighted(lm, w_lm)
                if aux is not None:
                    loss = loss + aux_weight * _weighted(aux, w_aux)
                losses.append(loss.detach())
                loss.backward()  # also when non-finite: every rank joins the gradient reduction, then all raise
            if w_lm:
                logged[0] += float(lm.detach()) * w_lm
            if aux is not None and w_aux:
                logged[1] += float(aux.detach()) * w_aux
        # One all-reduce: the ranks' shares average to the global means; the flags say which ranks
        # saw a NaN/inf loss, the same on every rank, so all raise before the optimizer step.
        reduced = all_reduce_mean(torch.cat([logged, nonfinite_flags(*losses)]))
        raise_if_nonfinite(reduced[2:], self.step + 1, hint=NONFINITE_HINT)
        lm_loss, aux_loss = reduced[:2].tolist()
        scored, scored_aux = (int(n) for n in total.tolist())
        return {"loss": lm_loss + aux_weight * aux_loss, "lm_loss": lm_loss,
                "flops_per_token": self.flops.per_token(t.batch_size, scored, scored_aux)}

    def _gradient_sync(self, sync: bool):
        """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch."""
        if sync or not self.env.is_distributed:
            return contextlib.nullcontext()
        if self.net is not self.model:  # DDP
            return self.net.no_sync()
        if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2
            self.model.set_requires_gradient_sync(False)
            return _restore_gradient_sync(self.model)
        return contextlib.nullcontext()

    def train_step(self) -> dict:
        """One optimisation step on training batch ``self.step``; returns its metrics."""
        t = self.run.train
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        record = self.backward_step(self.step)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip) if t.grad_clip > 0 else None
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        seconds = time.perf_counter() - start
        self._advance_clock(seconds)  # before the scheduler: a time schedule reads the clock
        self.scheduler.step()
        self.step += 1
        record = {"step": self.step, **record, "lr": lr, "elapsed_s": self.elapsed,
                  "tokens_per_s": t.batch_size * self.run.data.seq_len / seconds}
        if norm is not None:
            record["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        return record

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict:
        """Mean loss and accuracy (at scored positions) over ``eval_batches`` fixed batches.

        Each batch's loss is its mean over scored tokens; every rank scores its rows and the
        sums are added over ranks.
        """
        t = self.run.train
        self.model.eval()
        rows = parallel.rank_rows(t.batch_size, self.env.world_size, self.env.rank)
        # per batch: loss sum over scored tokens; then correct and scored over all batches
        sums = torch.zeros(t.eval_batches + 2, dtype=torch.float64, device=self.device)
        counts = torch.zeros(t.eval_batches, dtype=torch.float64, device=self.device)
        for i in range(t.eval_batches):
            x, y = parallel.read_rows(self.data, split, t.batch_size, batch_generator(t.seed, split, i), rows)
            out = self._forward(x, y)
            y = y.to(self.device)
            c, n = masked_accuracy(out["logits"], y)
            lm = out["losses"]["lm"] if "losses" in out else out["loss"]
            sums[i] = float(lm) * n if n else 0.0
            sums[-2] += c
            sums[-1] += n
            counts[i] = n
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        loss = float((sums[:-2] / counts.clamp_min(1)).mean())
        return {f"{split}_loss": loss, f"{split}_acc": float(sums[-2] / sums[-1].clamp_min(1))}

    # -- the loop --------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict:
        """Train to ``max_steps`` (or ``stop_after`` steps, or the time budget); returns the last eval."""
        from tqdm.auto import tqdm

        t = self.run.train
        last = min(t.max_steps, stop_after) if stop_after is not None else t.max_steps
        bar = tqdm(total=last, initial=self.step, desc=f"train {self.run.model_type}", disable=not self.progress)
        final = None
        try:
            while self.step < last:
                record = self.train_step()
                utilisation = mfu(record["flops_per_token"], record["tokens_per_s"], self.peak_flops,
                                  self.env.world_size)
                if utilisation is not None:
                    record["mfu"] = utilisation
                out_of_time = t.time_budget_s is not None and self.elapsed >= t.time_budget_s
                done = self.step >= last or out_of_time
                if self.step % t.eval_interval == 0 or done:
                    final = self.evaluate()
                    record.update(final)
                self.history.append(record)
                bar.update(1)
                postfix = {"loss": f"{record['loss']:.4f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
                if utilisation is not None:
                    postfix["mfu"] = f"{100 * utilisation:.1f}%"
                if final:
                    postfix["val"] = f"{final['val_loss']:.4f}"
                bar.set_postfix(**postfix)
                if self.step % t.log_interval == 0 or done:
                    self.write_metrics()
                if self.step % t.checkpoint_interval == 0 or done:
                    self.save()
                if out_of_time:
                    break
        finally:
            bar.close()
        if final is None:
            final = self.evaluate()
        if self.out_dir is not None and self.is_main:
            self.plot()
        return final

    def _advance_clock(self, seconds: float) -> None:
        """Add a step's seconds to the training time; with a time budget every rank adopts rank 0's
        clock, so the budget stops all ranks at the same step and a time schedule gives them the
        same learning rate."""
        self.elapsed += seconds
        if self.run.train.time_budget_s is not None:
            clock = torch.tensor([self.elapsed if self.is_main else 0.0], dtype=torch.float64, device=self.device)
            self.elapsed = float(all_reduce_sum(clock).item())

    # -- files -----------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """The one-process checkpoint: model, optimizer, scheduler, RNG, step, time, history, config."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "step": self.step,
            "elapsed_s": self.elapsed,
            "history": self.history,
            "run_config": self.run.to_dict(),
        }

    def _extra_state(self) -> dict:
        """The trainer state a sharded checkpoint keeps beside the model and optimizer (JSON)."""
        return {"step": self.step, "elapsed_s": self.elapsed, "history": self.history,
                "scheduler": self.scheduler.state_dict(), "run_config": self.run.to_dict()}

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint atomically; returns its path (``None`` without ``out_dir``).

        One process: ``out_dir/checkpoint.pt`` (or ``path``). A process group (collective):
        every rank writes its shards to ``out_dir/checkpoints/step_<n>``, keeping the newest
        ``keep_checkpoints``.
        """
        if self.env.is_distributed:
            if path is not None:
                raise ValueError("a process group saves sharded checkpoints under out_dir; "
                                 "save(path) is for one process")
            if self.out_dir is None:
                return None
            return save_checkpoint(self.out_dir / SHARDED, self.step, self.model, self.optimizer,
                                   extra=self._extra_state(), replicated={"rng": torch.get_rng_state()},
                                   keep_last=self.run.train.keep_checkpoints)
        path = path or (self.out_dir and self.out_dir / CHECKPOINT)
        if path is None:
            return None
        with atomic_open(path, "wb") as fh:
            torch.save(self.checkpoint_state(), fh)
        return Path(path)

    def _check_config(self, saved: dict, where) -> None:
        if saved["model"] != self.run.to_dict()["model"] or saved["model_type"] != self.run.model_type:
            raise ValueError(f"checkpoint {where} was written for another model configuration; use its run config")

    def _resume(self) -> None:
        """Load the newest checkpoint of ``out_dir``: ``checkpoint.pt`` or the latest sharded one.

        A process group resumes from sharded checkpoints only (a newer ``checkpoint.pt`` of a
        one-process run is an error); one process takes whichever is newer.
        """
        if self.out_dir is None:
            raise FileNotFoundError("--resume: no checkpoint.pt and no sharded checkpoint: the run has no out_dir")
        single = self.out_dir / CHECKPOINT
        single_step = int(torch.load(single, map_location="cpu", weights_only=True)["step"]) if single.exists() else None
        sharded = resume_point(single_step, single, self.out_dir / SHARDED, self.env.world_size)
        if sharded is None:
            if single_step is None:
                raise FileNotFoundError(f"--resume: no checkpoint.pt and no sharded checkpoint in {self.out_dir}")
            self.load(single)
            return
        self._check_config(sharded.extra["run_config"], sharded.path)
        info = load_checkpoint(sharded.path, self.model, self.optimizer)
        extra = info.extra
        self.scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(info.replicated["rng"].cpu())
        self.step, self.elapsed, self.history = info.step, float(extra["elapsed_s"]), list(extra["history"])

    def load(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG, step, time and history from a ``checkpoint.pt``."""
        if self.env.is_distributed:
            raise ValueError(f"{path} is a one-process checkpoint; a process group loads sharded checkpoints "
                             f"(out_dir/{SHARDED}); continue on one process")
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        self._check_config(ckpt["run_config"], path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        self.step, self.elapsed, self.history = int(ckpt["step"]), float(ckpt["elapsed_s"]), list(ckpt["history"])

    def write_metrics(self) -> None:
        """``out_dir/metrics.jsonl``: one JSON object per step (rewritten atomically, by rank 0)."""
        if self.out_dir is not None and self.is_main:
            atomic_write_text(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def plot(self) -> Path:
        """``out_dir/loss.png``: training loss per step and validation loss at each evaluation."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in self.history], [r["lm_loss"] for r in self.history], lw=0.8, label="train")
        evals = [r for r in self.history if "val_loss" in r]
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val")
        ax.set(xlabel="step", ylabel="cross-entropy (nats)", title=f"{self.run.model_type} on {self.run.data.name}")
        ax.grid(alpha=0.3)
        ax.legend()
        path = self.out_dir / "loss.png"
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
        plt.close(fig)
        return path

    @torch.no_grad()
    def sample(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = None) -> str:
        """Greedy (``temperature=0``) or sampled text continuing ``prompt`` (text data only)."""
        tokenizer = getattr(self.data, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"sampling text needs text data; this run trains on {self.run.data.name!r}")
        ids = tokenizer.encode(prompt)[None].to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(self.run.train.seed)
        out = self.model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)
        return tokenizer.decode(out[0, ids.shape[1]:].tolist())


def _weighted(mean: Tensor, weight: float) -> Tensor:
    """``weight * mean``; a micro-batch with nothing scored (``mean`` is 0/0) still joins the graph
    with zero gradients -- DDP expects a gradient for every parameter on every rank."""
    return mean * weight if weight else mean.nan_to_num() * 0.0


@contextlib.contextmanager
def _restore_gradient_sync(model: nn.Module):
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
