"""The KODA training loop: hybrid objective, K-FAC or plain optimizer, resumable checkpoints.

Per step, on a batch of prompted programs:

.. math::
    \\mathcal{L} = w_{ce}\\,\\mathrm{CE} + w_{bal}\\,\\mathcal{L}_{\\text{bal}}
      + w_{s}\\,\\mathcal{L}_{\\text{struct}} - w_{adv}\\,\\mathbb{E}[D(\\tilde h)]

(each term switchable in the config), with ``n_critic`` WGAN-GP critic updates before the
model update (:mod:`.critic`), the K-FAC factors refreshed from targets sampled from the
model (:mod:`synthfuse.koda.optim`), and gradients applied with the staleness and learning
rate of the communication plan (:mod:`.comm`). Checkpoints hold everything the next step
depends on -- weights, optimizer, critic, K-FAC and delay states, the sampler's position --
and every step reseeds its random numbers from ``(seed, rank, step)``, so a resumed run
continues with exactly the losses the uninterrupted run would have had.

Under ``torchrun`` the same loop runs data-parallel (:mod:`.parallel`): the model sharded with
FSDP2 (or replicated with DDP), each rank on its share of the global batch, losses normalised
over the global batch, K-FAC factors summed over ranks, randomness reseeded per step and
rank, and sharded ``torch.distributed.checkpoint`` checkpoints in ``out_dir/checkpoints``
that load on any number of processes.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from synthfuse.koda.model.hyperbolic import structure_stress_loss
from synthfuse.koda.model.moe import SwitchFeedForward
from synthfuse.koda.model.tokenizer import KLTokenizer
from synthfuse.koda.model.transformer import KodaOutput, KodaTransformer
from synthfuse.koda.optim import DistributedKFAC, keyed_categorical, sampled_nll_categorical
from synthfuse.koda.topology_model import Torus
from synthfuse.koda.train.comm import DelayedGradients, plan_communication
from synthfuse.koda.train.config import OptimConfig, RunConfig
from synthfuse.koda.train.critic import SequenceCritic, critic_loss
from synthfuse.koda.train.curves import plot_history
from synthfuse.koda.train.data import Batch, ProgramCorpus, collate
from synthfuse.koda.train.parallel import Parallelism, shard_rows
from synthfuse.shared.distributed import (
    CheckpointInfo, check_finite, load_checkpoint, resume_point, save_checkpoint, seed_everything,
)
from synthfuse.shared.io import atomic_open, atomic_write_text

__all__ = ["KodaTrainer", "lr_at"]

CHECKPOINT = "checkpoint.pt"
#: Sharded checkpoints of a multi-process run: ``out_dir/checkpoints/step_<n>/``.
SHARDED = "checkpoints"
#: What a non-finite loss error suggests (:class:`~synthfuse.shared.distributed.NonFiniteError`).
NONFINITE_HINT = ("no model update and no checkpoint were made from this step. Try a lower optim.lr, "
                  "gradient clipping (optim.grad_clip), or more K-FAC damping (optim.kfac.damping)")


def _to_device(obj, device: torch.device):
    """``obj`` (nested dicts/lists of tensors and plain values) with every tensor moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``min_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


class KodaTrainer:
    """Train a :class:`~synthfuse.koda.model.KodaTransformer` on generated KL programs.

    Parameters
    ----------
    config : RunConfig
    out_dir : path, optional
        Overrides ``config.train.out_dir``; checkpoints, ``history.json``, ``comm_plan.json``
        and ``loss_curves.png`` go there.
    resume : bool
        Continue from the newest checkpoint in ``out_dir``: ``checkpoint.pt`` of a one-process
        run or the latest sharded checkpoint in ``out_dir/checkpoints`` (any world size).

    Attributes
    ----------
    model : KodaTransformer
        The model (FSDP2-sharded in place under ``parallel.strategy: fsdp``).
    net : nn.Module
        What the forward passes call: ``model``, or its DDP wrapper.
    parallel : Parallelism
        Process group, rank and the cross-rank reductions (:mod:`.parallel`).
    """

    def __init__(self, config: RunConfig, *, out_dir: str | Path | None = None, resume: bool = True) -> None:
        self.config = cfg = config
        self.out_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
        self.parallel = par = Parallelism(cfg.parallel, cfg.train.device)
        self.device = par.device
        state, sharded = self._resume_point() if resume else (None, None)
        seed_everything(cfg.train.seed)  # rank 0's stream everywhere: the same initial weights on every rank
        saved = state["tokenizer"] if state is not None else sharded.extra["tokenizer"] if sharded is not None else None
        tokenizer = KLTokenizer.from_dict(saved) if saved is not None else None
        d = cfg.data
        self.corpus = ProgramCorpus(d.n_programs, seed=d.seed, val_fraction=d.val_fraction,
                                    signature_prob=d.signature_prob, max_identifiers=d.max_identifiers,
                                    max_len=cfg.model["max_len"], tokenizer=tokenizer)
        self.tokenizer = self.corpus.tokenizer
        local = par.local_batch_size(cfg.train.batch_size)
        if len(self.corpus.train) // par.world_size < local:
            raise ValueError(f"{len(self.corpus.train)} training programs cannot fill a batch of "
                             f"train.batch_size={cfg.train.batch_size}; raise data.n_programs")
        self.model = KodaTransformer(cfg.model_config(len(self.tokenizer)))
        c = cfg.comm
        torus = Torus(c.torus_k, c.torus_n) if c.torus_k else None
        grad_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        network, world_size = par.network(c)
        self.plan = plan_communication(grad_bytes, world_size=world_size, torus=torus, network=network,
                                       step_seconds=c.step_seconds, delayed=c.delayed)
        if par.is_distributed and self.plan.staleness:
            raise ValueError("comm.delayed simulates an overlapped all-reduce in one process; a distributed run "
                             "all-reduces for real: set comm.delayed to false")
        self.net = par.shard(self.model, bucket_bytes=self.plan.bucket_bytes)
        wgan = cfg.loss.wgan
        self.critic = SequenceCritic(self.model.config.d_model, wgan.critic_channels) if wgan.enabled else None
        self.critic_net = par.replicate(self.critic) if self.critic is not None else None
        # Gulrajani et al.: Adam with beta1 = 0, beta2 = 0.9 for the critic.
        self.critic_opt = (torch.optim.Adam(self.critic.parameters(), lr=wgan.critic_lr, betas=(0.0, 0.9))
                           if self.critic is not None else None)
        self.optimizer = self._build_optimizer()
        self.kfac = self._build_kfac()
        self.delayed = DelayedGradients(self.model.parameters(), self.plan.staleness)
        self.sampler = par.sampler(len(self.corpus.train), d.seed)
        self.step = 0
        self.history: list[dict] = []
        if state is not None:
            self._load(state)
        elif sharded is not None:
            self._load_sharded(sharded.path)

    def _resume_point(self) -> tuple[dict | None, CheckpointInfo | None]:
        """The newest checkpoint to resume from: ``(state of checkpoint.pt, None)``, ``(None, sharded)`` or neither.

        ``checkpoint.pt`` counts only when it holds trainer state (a sharded run writes it with
        the weights alone, for synthesis and RL). A one-process run takes the newer of the
        two; a sharded run cannot start from a one-process file and says so.
        """
        path = self.out_dir / CHECKPOINT
        state = torch.load(path, map_location=self.device, weights_only=True) if path.exists() else None
        if state is not None and "optimizer" not in state:
            state = None
        sharded = resume_point(None if state is None else int(state["step"]), path, self.out_dir / SHARDED,
                               self.parallel.world_size)
        if sharded is not None:
            state = None
        if state is None and sharded is None:
            return None, None
        saved = state["config"] if state is not None else sharded.extra["config"]
        here = self.config.to_dict()
        if saved["model"] != here["model"] or saved["data"] != here["data"]:
            where = path if state is not None else sharded.path
            raise ValueError(f"{where} was trained with another model/data config; use a new out_dir or resume=False")
        return state, (None if state is not None else sharded)

    # --- construction --------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        params = self.model.parameters()
        if o.name == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _build_kfac(self) -> DistributedKFAC | None:
        k = self.config.optim.kfac
        if not k.enabled:
            return None
        # Routers learn through a straight-through estimator, not a likelihood: keep them plain.
        routers = {id(m.router) for m in self.model.modules() if isinstance(m, SwitchFeedForward)}
        layers = [m for m in self.model.modules() if isinstance(m, nn.Linear) and id(m) not in routers]
        # Factors summed over ranks (plain K-FAC on one process); built after sharding.
        return DistributedKFAC(self.model, lr=self.config.optim.lr, damping=k.damping, ema_decay=k.ema_decay,
                               inv_update_period=k.inv_update_period, kl_clip=k.kl_clip, modules=layers)

    # --- one step ------------------------------------------------------------------------------
    def _adversarial(self, out: KodaOutput, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Critic updates on (teacher-forced, self-fed) hidden states; return the model's adversarial loss."""
        w = self.config.loss.wgan
        soft = F.gumbel_softmax(out.logits, tau=w.gumbel_temperature, hard=True)  # (B, T, V): token t+1
        shifted = torch.cat([torch.zeros_like(soft[:, :1]), soft[:, :-1]], dim=1)  # token t, from step t-1
        real_tokens = F.one_hot(batch.inputs, soft.shape[-1]).to(soft.dtype)  # (B, T, V)
        # Program positions read the model's own samples, the prompt its real tokens; embedded inside
        # the forward pass, where sharded parameters are gathered.
        fake_tokens = torch.where(batch.program[..., None], shifted, real_tokens)
        fake = self.net(soft_tokens=fake_tokens, mask=batch.valid).hidden
        real = out.hidden

        def critic(x: torch.Tensor) -> torch.Tensor:
            return self.critic_net(x, batch.program)

        for _ in range(w.n_critic):
            self.critic_opt.zero_grad(set_to_none=True)
            loss_d, wdist, gp = critic_loss(critic, real, fake, w.lambda_gp)
            loss_d.backward()
            self.critic_opt.step()
        adv = -critic(fake).mean()
        return adv, {"critic": loss_d.detach(), "wdist": wdist, "gp": gp}

    def train_step(self) -> dict:
        """One optimization step; returns the logged values.

        A non-finite total loss on any rank raises
        :class:`~synthfuse.shared.distributed.NonFiniteError` on every rank (one all-reduce of
        ``W`` flags) before the K-FAC update, the backward pass and the optimizer step.

        ``adv`` is :math:`-\\mathbb{E}[D(\\tilde h)]`; a WGAN critic is defined up to an additive
        constant, so its level drifts freely -- only its gradient matters. ``wdist`` is the
        critic's Wasserstein estimate :math:`\\mathbb{E}[D(h)] - \\mathbb{E}[D(\\tilde h)]`.
        """
        cfg, terms, par = self.config, self.config.loss, self.parallel
        lr = lr_at(self.step, cfg.optim, cfg.train.steps) * self.plan.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.kfac is not None:
            self.kfac.lr = lr
        par.seed_step(cfg.train.seed, self.step)  # Gumbel routing, critic noise: per rank, per step
        ids, batch = self._next_batch()
        self.net.train()
        with self.kfac.capture() if self.kfac is not None else contextlib.nullcontext():
            out = self.net(batch.inputs, mask=batch.valid)
        tokens = batch.loss_mask
        # Means over the global batch (per-rank shares, see Parallelism.global_mean).
        ce = par.global_mean(F.cross_entropy(out.logits[tokens], batch.targets[tokens], reduction="sum"), tokens.sum())
        parts = {"ce": ce, "balance": out.balance_loss}
        total = out.logits.new_zeros(())
        if terms.ce.enabled:
            total = total + terms.ce.weight * ce
        if terms.balance.enabled:
            total = total + terms.balance.weight * out.balance_loss
        if terms.structure.enabled:
            stress = structure_stress_loss(out.ball_dist, batch.tree, batch.program, terms.structure.scale)
            n = batch.program.sum(dim=1)
            pairs = (n * (n - 1)).sum()  # |P|: ordered pairs i != j of program tokens
            stress = par.global_mean(stress * pairs, pairs)
            total = total + terms.structure.weight * stress
            parts["structure"] = stress
        if terms.wgan.enabled:
            adv, critic_parts = self._adversarial(out, batch)
            total = total + terms.wgan.weight * adv
            parts.update(adv=adv, **critic_parts)
        # Collective: a NaN/inf on any rank stops every rank here, before K-FAC, backward and step.
        check_finite(total, step=self.step + 1, hint=NONFINITE_HINT)
        if self.kfac is not None:
            # The examples of the Fisher are the positions with a target; each draws its sampled
            # target from the key (seed, step, example, position), whichever rank holds it.
            positions = torch.arange(batch.inputs.shape[1], device=self.device)
            sampled = keyed_categorical(out.logits, cfg.train.seed, self.step, ids[:, None], positions[None, :])
            self.kfac.update_factors(sampled_nll_categorical(out.logits, tokens, targets=sampled), mask=tokens)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if self.delayed.exchange():
            if self.kfac is not None:
                self.kfac.step()
            self.optimizer.step()
        parts["total"] = total
        log = {"lr": lr, **par.mean_over_ranks(parts)}  # global values, the same on every rank
        self.step += 1
        log["step"] = self.step  # steps completed, the x-axis of the curves
        return log

    def _next_batch(self) -> tuple[torch.Tensor, Batch]:
        """This rank's example ids and batch for the next step (starting the next epoch when needed)."""
        size = self.parallel.local_batch_size(self.config.train.batch_size)
        while (ids := next(self.sampler.batches(size, drop_last=True), None)) is None:
            self.sampler.set_epoch(self.sampler.epoch + 1)
        batch = collate([self.corpus.train[i] for i in ids.tolist()], self.tokenizer.pad_id)
        return ids.to(self.device), batch.to(self.device)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-averaged cross-entropy on the validation programs (eval mode: argmax routing).

        Each rank scores rows ``rank, rank + W, ...`` of every validation batch; the sums are
        added over ranks.
        """
        self.net.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # (loss sum, token count)
        for batch in self.corpus.val_batches(self.config.train.batch_size):
            batch = shard_rows(batch, self.parallel.rank, self.parallel.world_size).to(self.device)
            logits = self.net(batch.inputs, mask=batch.valid).logits
            sums[0] += F.cross_entropy(logits[batch.loss_mask], batch.targets[batch.loss_mask], reduction="sum")
            sums[1] += batch.loss_mask.sum()
        self.net.train()
        total, count = self.parallel.sum_over_ranks(sums).tolist()
        return total / count

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, progress: bool | None = None) -> list[dict]:
        """Train until ``steps`` (default ``config.train.steps``) steps are done in total.

        Logs every ``log_every`` steps, evaluates every ``eval_every``, checkpoints every
        ``checkpoint_every`` and at the end, then writes ``loss_curves.png``.
        """
        t = self.config.train
        target = t.steps if steps is None else steps
        show = t.progress if progress is None else progress
        from tqdm.auto import tqdm

        bar = tqdm(total=target, initial=min(self.step, target), desc="koda train",
                   disable=not show or not self.parallel.is_main, dynamic_ncols=True)
        while self.step < target:
            log = self.train_step()
            done = self.step
            self.parallel.fault_point(done, self.out_dir)  # test hook: SYNTHFUSE_FAULT_AT_STEP
            if done % t.eval_every == 0 or done == target:
                log["val_ce"] = self.evaluate()
            if done % t.log_every == 0 or "val_ce" in log or done == target:
                self.history.append(log)
                bar.set_postfix({k: f"{log[k]:.3f}" for k in ("ce", "val_ce", "structure", "wdist") if k in log})
            if done % t.checkpoint_every == 0 or done == target:
                self.save()
            bar.update(1)
        bar.close()
        if self.history and self.parallel.is_main:
            plot_history(self.history, self.out_dir / "loss_curves.png")
        return self.history

    # --- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed one-process run needs (tensors and plain Python values only).

        No RNG state: every step reseeds from ``(seed, rank, step)``.
        """
        return {
            "step": self.step,
            "config": self.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "critic_opt": self.critic_opt.state_dict() if self.critic_opt is not None else None,
            "kfac": self.kfac.state_dict() if self.kfac is not None else None,
            "delayed": self.delayed.state_dict(),
            "sampler": self.sampler.state_dict(),
            "history": self.history,
        }

    def _load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None and state["critic"] is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_opt.load_state_dict(state["critic_opt"])
        if self.kfac is not None and state["kfac"] is not None:
            self.kfac.load_state_dict(state["kfac"])
        self.delayed.load_state_dict(state["delayed"])
        self.sampler.load_state_dict(state["sampler"])
        self.history = list(state["history"])
        self.step = int(state["step"])

    def _stateful(self) -> tuple[nn.Module, list[torch.optim.Optimizer]]:
        """What a sharded checkpoint holds: model and critic under plain names, and their optimizers."""
        parts, optimizers = {"model": self.model}, [self.optimizer]
        if self.critic is not None:
            parts["critic"] = self.critic
            optimizers.append(self.critic_opt)
        return nn.ModuleDict(parts), optimizers

    def _load_sharded(self, path: Path) -> None:
        """Load a sharded checkpoint (saved on any number of ranks) into this run's shards (collective)."""
        modules, optimizers = self._stateful()
        info = load_checkpoint(path, modules, optimizers)
        if self.kfac is not None and info.replicated is not None and info.replicated.get("kfac") is not None:
            self.kfac.load_state_dict(_to_device(info.replicated["kfac"], self.device))
        self.sampler.load_state_dict(info.extra["sampler"])
        self.history = list(info.extra["history"])
        self.step = info.step

    def save(self) -> Path:
        """Write the checkpoint, ``history.json`` and ``comm_plan.json`` atomically; return ``checkpoint.pt``'s path.

        One process: ``checkpoint.pt`` holds the whole trainer state. Several (collective):
        every rank writes its shards to ``out_dir/checkpoints/step_<n>`` (keeping the newest
        ``parallel.keep_checkpoints``), then rank 0 writes ``checkpoint.pt`` with the gathered
        weights, tokenizer and config only -- what synthesis and the RL phase read.
        """
        path = self.out_dir / CHECKPOINT
        if self.parallel.is_distributed:
            modules, optimizers = self._stateful()
            extra = {"config": self.config.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                     "history": self.history, "sampler": self.sampler.state_dict()}
            save_checkpoint(self.out_dir / SHARDED, self.step, modules, optimizers, extra=extra,
                            replicated={"kfac": self.kfac.state_dict() if self.kfac is not None else None},
                            keep_last=self.config.parallel.keep_checkpoints)
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # on rank 0 only
            state = {"step": self.step, "config": self.config.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                     "model": get_model_state_dict(self.model, options=options), "history": self.history}
        else:
            state = self.state_dict()
        if self.parallel.is_main:
            with atomic_open(path, "wb") as fh:
                torch.save(state, fh)
            atomic_write_text(self.out_dir / "history.json", json.dumps(self.history, indent=1) + "\n")
            atomic_write_text(self.out_dir / "comm_plan.json", json.dumps(self.plan.to_dict(), indent=2) + "\n")
        return path
