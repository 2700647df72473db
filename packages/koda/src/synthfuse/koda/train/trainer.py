"""The KODA training loop: hybrid objective, K-FAC or plain optimizer, resumable checkpoints.

Per step, on a batch of prompted programs:

.. math::
    \\mathcal{L} = w_{ce}\\,\\mathrm{CE} + w_{bal}\\,\\mathcal{L}_{\\text{bal}}
      + w_{s}\\,\\mathcal{L}_{\\text{struct}} - w_{adv}\\,\\mathbb{E}[D(\\tilde h)]

(each term switchable in the config), with ``n_critic`` WGAN-GP critic updates before the
model update (:mod:`.critic`), the K-FAC factors refreshed from targets sampled from the
model (:mod:`synthfuse.koda.optim`), and gradients applied with the staleness and learning
rate of the communication plan (:mod:`.comm`). Checkpoints hold everything the next step
depends on -- weights, optimizer, critic, K-FAC and delay states, the RNG state -- so a
resumed run continues with exactly the losses the uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.koda.model.hyperbolic import structure_stress_loss
from synthfuse.koda.model.moe import SwitchFeedForward
from synthfuse.koda.model.tokenizer import KLTokenizer
from synthfuse.koda.model.transformer import KodaOutput, KodaTransformer
from synthfuse.koda.optim import KFAC, sampled_nll_categorical
from synthfuse.koda.topology_model import NetworkModel, Torus
from synthfuse.koda.train.comm import DelayedGradients, plan_communication
from synthfuse.koda.train.config import OptimConfig, RunConfig
from synthfuse.koda.train.critic import SequenceCritic, critic_loss
from synthfuse.koda.train.curves import plot_history
from synthfuse.koda.train.data import Batch, ProgramCorpus
from synthfuse.shared.io import atomic_open, atomic_write_text

__all__ = ["KodaTrainer", "lr_at"]

CHECKPOINT = "checkpoint.pt"


def _value(t: torch.Tensor) -> float:
    return float(t.detach())


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
        Continue from ``out_dir/checkpoint.pt`` when it exists.
    """

    def __init__(self, config: RunConfig, *, out_dir: str | Path | None = None, resume: bool = True) -> None:
        self.config = cfg = config
        self.out_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
        self.device = torch.device(cfg.train.device)
        state = None
        ckpt = self.out_dir / CHECKPOINT
        if resume and ckpt.exists():
            state = torch.load(ckpt, map_location=self.device, weights_only=True)
            if state["config"]["model"] != cfg.to_dict()["model"] or state["config"]["data"] != cfg.to_dict()["data"]:
                raise ValueError(f"{ckpt} was trained with another model/data config; use a new out_dir "
                                 "or resume=False")
        torch.manual_seed(cfg.train.seed)
        tokenizer = KLTokenizer.from_dict(state["tokenizer"]) if state else None
        d = cfg.data
        self.corpus = ProgramCorpus(d.n_programs, seed=d.seed, val_fraction=d.val_fraction,
                                    signature_prob=d.signature_prob, max_identifiers=d.max_identifiers,
                                    max_len=cfg.model["max_len"], tokenizer=tokenizer)
        self.tokenizer = self.corpus.tokenizer
        self.model = KodaTransformer(cfg.model_config(len(self.tokenizer)), device=self.device)
        wgan = cfg.loss.wgan
        self.critic = (SequenceCritic(self.model.config.d_model, wgan.critic_channels).to(self.device)
                       if wgan.enabled else None)
        # Gulrajani et al.: Adam with beta1 = 0, beta2 = 0.9 for the critic.
        self.critic_opt = (torch.optim.Adam(self.critic.parameters(), lr=wgan.critic_lr, betas=(0.0, 0.9))
                           if self.critic is not None else None)
        self.optimizer = self._build_optimizer()
        self.kfac = self._build_kfac()
        c = cfg.comm
        torus = Torus(c.torus_k, c.torus_n) if c.torus_k else None
        grad_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.plan = plan_communication(grad_bytes, world_size=c.world_size, torus=torus,
                                       network=NetworkModel(c.alpha, c.beta, c.gamma, c.beta_byte),
                                       step_seconds=c.step_seconds, delayed=c.delayed)
        self.delayed = DelayedGradients(self.model.parameters(), self.plan.staleness)
        self.step = 0
        self.history: list[dict] = []
        if state is not None:
            self._load(state)

    # --- construction --------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        params = self.model.parameters()
        if o.name == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _build_kfac(self) -> KFAC | None:
        k = self.config.optim.kfac
        if not k.enabled:
            return None
        # Routers learn through a straight-through estimator, not a likelihood: keep them plain.
        routers = {id(m.router) for m in self.model.modules() if isinstance(m, SwitchFeedForward)}
        layers = [m for m in self.model.modules() if isinstance(m, nn.Linear) and id(m) not in routers]
        return KFAC(self.model, lr=self.config.optim.lr, damping=k.damping, ema_decay=k.ema_decay,
                    inv_update_period=k.inv_update_period, kl_clip=k.kl_clip, modules=layers)

    # --- one step ------------------------------------------------------------------------------
    def _adversarial(self, out: KodaOutput, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Critic updates on (teacher-forced, self-fed) hidden states; return the model's adversarial loss."""
        w = self.config.loss.wgan
        soft = F.gumbel_softmax(out.logits, tau=w.gumbel_temperature, hard=True)  # (B, T, V): token t+1
        shifted = torch.cat([torch.zeros_like(soft[:, :1]), soft[:, :-1]], dim=1)  # token t, from step t-1
        real_embeds = self.model.embed(batch.inputs)
        fake_embeds = torch.where(batch.program[..., None], shifted @ self.model.embed.weight, real_embeds)
        fake = self.model(embeds=fake_embeds, mask=batch.valid).hidden
        real = out.hidden

        def critic(x: torch.Tensor) -> torch.Tensor:
            return self.critic(x, batch.program)

        for _ in range(w.n_critic):
            self.critic_opt.zero_grad(set_to_none=True)
            loss_d, wdist, gp = critic_loss(critic, real, fake, w.lambda_gp)
            loss_d.backward()
            self.critic_opt.step()
        adv = -critic(fake).mean()
        return adv, {"critic": _value(loss_d), "wdist": _value(wdist), "gp": _value(gp)}

    def train_step(self) -> dict:
        """One optimization step; returns the logged values.

        ``adv`` is :math:`-\\mathbb{E}[D(\\tilde h)]`; a WGAN critic is defined up to an additive
        constant, so its level drifts freely -- only its gradient matters. ``wdist`` is the
        critic's Wasserstein estimate :math:`\\mathbb{E}[D(h)] - \\mathbb{E}[D(\\tilde h)]`.
        """
        cfg, terms = self.config, self.config.loss
        lr = lr_at(self.step, cfg.optim, cfg.train.steps) * self.plan.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.kfac is not None:
            self.kfac.lr = lr
        batch = self.corpus.train_batch(self.step, cfg.train.batch_size).to(self.device)
        self.model.train()
        with self.kfac.capture() if self.kfac is not None else contextlib.nullcontext():
            out = self.model(batch.inputs, mask=batch.valid)
        ce = F.cross_entropy(out.logits[batch.loss_mask], batch.targets[batch.loss_mask])
        log = {"lr": lr, "ce": _value(ce), "balance": _value(out.balance_loss)}
        total = out.logits.new_zeros(())
        if terms.ce.enabled:
            total = total + terms.ce.weight * ce
        if terms.balance.enabled:
            total = total + terms.balance.weight * out.balance_loss
        if terms.structure.enabled:
            stress = structure_stress_loss(out.ball_dist, batch.tree, batch.program, terms.structure.scale)
            total = total + terms.structure.weight * stress
            log["structure"] = _value(stress)
        if terms.wgan.enabled:
            adv, critic_log = self._adversarial(out, batch)
            total = total + terms.wgan.weight * adv
            log.update(adv=_value(adv), **critic_log)
        if self.kfac is not None:
            # The examples of the Fisher are the positions with a (sampled) target.
            self.kfac.update_factors(sampled_nll_categorical(out.logits, batch.loss_mask), mask=batch.loss_mask)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if self.delayed.exchange():
            if self.kfac is not None:
                self.kfac.step()
            self.optimizer.step()
        log["total"] = _value(total)
        self.step += 1
        log["step"] = self.step  # steps completed, the x-axis of the curves
        return log

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-averaged cross-entropy on the validation programs (eval mode: argmax routing)."""
        self.model.eval()
        total, count = 0.0, 0
        for batch in self.corpus.val_batches(self.config.train.batch_size):
            batch = batch.to(self.device)
            logits = self.model(batch.inputs, mask=batch.valid).logits
            total += float(F.cross_entropy(logits[batch.loss_mask], batch.targets[batch.loss_mask], reduction="sum"))
            count += int(batch.loss_mask.sum())
        self.model.train()
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

        bar = tqdm(total=target, initial=min(self.step, target), desc="koda train", disable=not show,
                   dynamic_ncols=True)
        while self.step < target:
            log = self.train_step()
            done = self.step
            if done % t.eval_every == 0 or done == target:
                log["val_ce"] = self.evaluate()
            if done % t.log_every == 0 or "val_ce" in log or done == target:
                self.history.append(log)
                bar.set_postfix({k: f"{log[k]:.3f}" for k in ("ce", "val_ce", "structure", "wdist") if k in log})
            if done % t.checkpoint_every == 0 or done == target:
                self.save()
            bar.update(1)
        bar.close()
        if self.history:
            plot_history(self.history, self.out_dir / "loss_curves.png")
        return self.history

    # --- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (tensors and plain Python values only)."""
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
            "history": self.history,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
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
        self.history = list(state["history"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"].cpu())
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)

    def save(self) -> Path:
        """Write ``checkpoint.pt``, ``history.json`` and ``comm_plan.json`` atomically."""
        path = self.out_dir / CHECKPOINT
        with atomic_open(path, "wb") as fh:
            torch.save(self.state_dict(), fh)
        atomic_write_text(self.out_dir / "history.json", json.dumps(self.history, indent=1) + "\n")
        atomic_write_text(self.out_dir / "comm_plan.json", json.dumps(self.plan.to_dict(), indent=2) + "\n")
        return path
