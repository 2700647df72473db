"""The training loop: AdamW, warmup + cosine, clipping, evaluation, metrics and resumable checkpoints.

Checkpoints (``out_dir/checkpoint.pt``, written atomically with :func:`synthfuse.shared.io.atomic_open`)
hold plain tensors and Python values only, so they load with ``torch.load(weights_only=True)``:
``model``, ``optimizer``, ``scheduler`` state dicts, the torch RNG state, the step (which is also
the data position: batch ``k`` depends only on the seed and ``k``), the elapsed training time,
the metric history and the run config. ``Trainer(run, resume=True)`` continues from it, and a run
stopped after step ``k`` and resumed reproduces the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from synthfuse.shared.io import atomic_open, atomic_write_text
from synthfuse.synthe.baseline import TransformerBaseline, TransformerConfig
from synthfuse.synthe.model import Synthe
from synthfuse.synthe.train.config import RunConfig
from synthfuse.synthe.train.data import batch_generator, build_data

CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    r"""Multiplier of the peak learning rate at ``step`` (0-based).

    .. math:: f(s) = \frac{s + 1}{W} \ (s < W), \qquad
              f(s) = r + \frac{1 - r}{2}\left(1 + \cos \pi \frac{s - W}{S - W}\right) \ (s \ge W),

    with warmup ``W``, ``S = max_steps`` and floor ``r = min_lr / lr`` (constant ``r`` past ``S``).
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress))


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
    """Train ``run`` (a :class:`RunConfig`); ``resume=True`` continues from ``out_dir/checkpoint.pt``."""

    def __init__(self, run: RunConfig, resume: bool = False, progress: bool = True) -> None:
        self.run, t = run, run.train
        self.device = resolve_device(t.device)
        self.data = build_data(run.data)
        torch.manual_seed(t.seed)
        self.model = build_model(run, self.data.vocab_size).to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, t.weight_decay), lr=t.lr,
                                           betas=(t.beta1, t.beta2))
        ratio = t.min_lr / t.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, t.warmup_steps, t.max_steps, ratio))
        self.step, self.elapsed, self.history, self.progress = 0, 0.0, [], progress
        self.out_dir = None if t.out_dir is None else Path(t.out_dir)
        if resume:
            if self.out_dir is None or not (self.out_dir / CHECKPOINT).exists():
                raise FileNotFoundError(f"--resume: no checkpoint at {self.out_dir and self.out_dir / CHECKPOINT}")
            self.load(self.out_dir / CHECKPOINT)

    # -- one step / evaluation -------------------------------------------------------------------
    def _forward(self, x: Tensor, y: Tensor) -> dict:
        x, y = x.to(self.device), y.to(self.device)
        if isinstance(self.model, Synthe):
            return self.model(x, targets=y, early_exit=False)
        return self.model(x, targets=y)

    def train_step(self) -> dict:
        """One optimisation step on training batch ``self.step``; returns its metrics."""
        t = self.run.train
        self.model.train()
        x, y = self.data.batch("train", t.batch_size, batch_generator(t.seed, "train", self.step))
        out = self._forward(x, y)
        if not torch.isfinite(out["loss"]):
            raise FloatingPointError(f"non-finite loss {out['loss'].item()} at step {self.step + 1}; lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip) if t.grad_clip > 0 else None
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        lm = out["info"]["lm_loss"] if "info" in out else float(out["loss"].detach())
        record = {"step": self.step, "loss": float(out["loss"].detach()), "lm_loss": lm, "lr": lr}
        if norm is not None:
            record["grad_norm"] = float(norm)
        return record

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict:
        """Mean loss and accuracy (at scored positions) over ``eval_batches`` fixed batches."""
        t = self.run.train
        self.model.eval()
        total, correct, scored = 0.0, 0, 0
        for i in range(t.eval_batches):
            x, y = self.data.batch(split, t.batch_size, batch_generator(t.seed, split, i))
            out = self._forward(x, y)
            total += float(out["loss"])
            c, n = masked_accuracy(out["logits"], y.to(self.device))
            correct, scored = correct + c, scored + n
        return {f"{split}_loss": total / t.eval_batches, f"{split}_acc": correct / max(scored, 1)}

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
                start = time.perf_counter()
                record = self.train_step()
                self.elapsed += time.perf_counter() - start
                record["elapsed_s"] = self.elapsed
                out_of_time = t.time_budget_s is not None and self.elapsed >= t.time_budget_s
                done = self.step >= last or out_of_time
                if self.step % t.eval_interval == 0 or done:
                    final = self.evaluate()
                    record.update(final)
                self.history.append(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", **({"val": f"{final['val_loss']:.4f}"} if final else {}))
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
        if self.out_dir is not None:
            self.plot()
        return final

    # -- files -----------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
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

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the checkpoint atomically (to ``out_dir/checkpoint.pt`` by default)."""
        path = path or (self.out_dir and self.out_dir / CHECKPOINT)
        if path is None:
            return None
        with atomic_open(path, "wb") as fh:
            torch.save(self.checkpoint_state(), fh)
        return Path(path)

    def load(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG, step, time and history from a checkpoint."""
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt["run_config"]["model"] != self.run.to_dict()["model"] or ckpt["run_config"]["model_type"] != self.run.model_type:
            raise ValueError(f"checkpoint {path} was written for another model configuration; use its run config")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        self.step, self.elapsed, self.history = int(ckpt["step"]), float(ckpt["elapsed_s"]), list(ckpt["history"])

    def write_metrics(self) -> None:
        """``out_dir/metrics.jsonl``: one JSON object per step (rewritten atomically)."""
        if self.out_dir is not None:
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
