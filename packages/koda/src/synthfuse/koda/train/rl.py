"""Reinforcement learning from the verifier: REINFORCE with a group baseline and a KL penalty.

After cross-entropy training, the policy :math:`\\pi_\\theta` (initialized from the trained
model :math:`\\pi_{\\text{ref}}`, which stays frozen) is improved on the reward of
:func:`synthfuse.koda.synthesis.verifier_reward` -- the program parses, type-checks, and the
verifier (Akra–Bazzi and the operation counts) confirms the requested Θ. Per step, for each
of ``P`` prompts ``x`` it samples ``k`` programs :math:`y_1..y_k \\sim \\pi_\\theta(\\cdot\\mid x)`
and minimizes

.. math::
    \\mathcal{L}(\\theta) = -\\frac{1}{Pk}\\sum_{x}\\sum_{i=1}^{k} A_i \\log\\pi_\\theta(y_i\\mid x)
        + \\beta\\,\\frac{1}{Pk}\\sum_{x,i}\\sum_{t}
          \\mathrm{KL}\\bigl(\\pi_\\theta(\\cdot\\mid c_{it})\\,\\big\\|\\,
          \\pi_{\\text{ref}}(\\cdot\\mid c_{it})\\bigr),
    \\qquad c_{it} = (x, y_{i,<t}),

with the leave-one-out group baseline (Kool, van Hoof & Welling 2019; Ahmadian et al. 2024)

.. math:: A_i = r_i - \\frac{1}{k-1}\\sum_{j\\ne i} r_j = \\frac{k}{k-1}\\,(r_i - \\bar r),

which is unbiased (the baseline does not depend on :math:`y_i`) and sums to zero over the group
(Williams 1992 for REINFORCE). The KL term is exact over the vocabulary at every sampled
position. :math:`\\pi` is the *constrained* policy the decoder samples from: the softmax of
the logits over the tokens :class:`~synthfuse.koda.decode.ProgramConstraint` allows, at
temperature 1, with argmax expert routing (eval mode), so the log-probabilities are those of
the samples' actual distribution.

The verdicts come through the shared verifier cache
(:data:`synthfuse.koda.analysis.verify.VERIFY_CACHE`, keyed by the program up to renaming),
so a program sampled again -- in the group or in a later step -- is not verified twice.

Every step is a pure function of the step number and the weights/optimizer state (prompts
and sampling seeds derive from ``(rl.seed, step)``), so a run resumed from
``rl_checkpoint.pt`` continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from synthfuse.koda.data.families import THETA_CLASSES
from synthfuse.koda.decode import ProgramConstraint, sample
from synthfuse.koda.model.transformer import KodaTransformer
from synthfuse.koda.synthesis.check import check_program, verifier_reward
from synthfuse.koda.synthesis.prompts import Prompt, make_prompts
from synthfuse.koda.synthesis.run import load_model
from synthfuse.koda.train.config import RunConfig
from synthfuse.koda.train.curves import plot_history
from synthfuse.koda.train.trainer import CHECKPOINT
from synthfuse.shared.io import atomic_open, atomic_write_text

__all__ = ["RL_CHECKPOINT", "VerifierRL", "constrained_log_probs", "group_advantages", "policy_kl"]

RL_CHECKPOINT = "rl_checkpoint.pt"
_PANELS = (("reward", ("reward",)), ("verifier gates (fraction)", ("parse", "typed", "theta")),
           ("KL to the CE model (nats / program)", ("kl",)))


def group_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages :math:`A_i = \\frac{k}{k-1}(r_i - \\bar r)` of rewards (P, k), k >= 2."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, k >= 2 samples), got {tuple(rewards.shape)}")
    k = rewards.shape[1]
    return k / (k - 1) * (rewards - rewards.mean(dim=1, keepdim=True))


def _reference_group_advantages(rewards: Tensor) -> Tensor:
    """:math:`r_i` minus the mean of the group's other rewards, by loops (testing only)."""
    out = torch.empty_like(rewards)
    for p, row in enumerate(rewards.tolist()):
        for i, r in enumerate(row):
            others = row[:i] + row[i + 1:]
            out[p, i] = r - sum(others) / len(others)
    return out


def constrained_log_probs(logits: Tensor, allowed: Tensor) -> Tensor:
    """:math:`\\log\\pi(v)` of the softmax over the allowed tokens (``-inf`` elsewhere); (..., V)."""
    return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


def policy_kl(logp: Tensor, ref_logp: Tensor, allowed: Tensor) -> Tensor:
    """:math:`\\sum_v \\pi(v)(\\log\\pi(v) - \\log\\pi_{ref}(v))` over the allowed tokens; (...,) from (..., V).

    The disallowed log-probabilities (``-inf``) are zeroed before the difference, so neither
    the value nor the gradient sees ``-inf - (-inf)``.
    """
    diff = logp.masked_fill(~allowed, 0.0) - ref_logp.masked_fill(~allowed, 0.0)
    return (logp.exp() * diff).sum(dim=-1)


class VerifierRL:
    """The RL phase of a training run (``rl:`` section of the config).

    Parameters
    ----------
    config : RunConfig
    out_dir : path, optional
        The training run's folder (default ``config.train.out_dir``): the reference model is
        its ``checkpoint.pt``; the phase writes ``rl_checkpoint.pt`` (same layout, so
        ``synthfuse koda synthesize --checkpoint`` takes it), ``rl_history.json`` and
        ``rl_curves.png``.
    resume : bool
        Continue from ``rl_checkpoint.pt`` when it exists.
    """

    def __init__(self, config: RunConfig, *, out_dir: str | Path | None = None, resume: bool = True) -> None:
        self.config = config
        self.rl = config.rl
        self.out_dir = Path(out_dir if out_dir is not None else config.train.out_dir)
        self.device = torch.device(config.train.device)
        ce_path = self.out_dir / CHECKPOINT
        if not ce_path.is_file():
            raise FileNotFoundError(f"no trained model at {ce_path}: run the cross-entropy training first")
        self.reference, self.tokenizer, ce_state = load_model(ce_path, self.device)
        self.ce_step = int(ce_state["step"])
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.policy = KodaTransformer(self.reference.config, device=self.device)
        self.policy.load_state_dict(self.reference.state_dict())
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.rl.lr, weight_decay=self.rl.weight_decay)
        self.constraint = ProgramConstraint(self.tokenizer, self.device)
        self.classes = [c for c in THETA_CLASSES if c in self.tokenizer.classes]
        self.step = 0
        self.history: list[dict] = []
        path = self.out_dir / RL_CHECKPOINT
        if resume and path.exists():
            self._load(torch.load(path, map_location=self.device, weights_only=True))

    # --- one step ------------------------------------------------------------------------------
    def prompts(self, step: int) -> list[Prompt]:
        """The ``prompts_per_step`` prompts of ``step``: classes in rotation, headers seeded by step."""
        offset = (step * self.rl.prompts_per_step) % len(self.classes)
        rotated = self.classes[offset:] + self.classes[:offset]
        return make_prompts(self.rl.prompts_per_step, rotated, seed=self._seed(step),
                            signature_prob=self.rl.signature_prob)

    def _seed(self, step: int) -> int:
        return self.rl.seed * 1_000_003 + step

    def _sequences(self, prompts: list[list[int]], programs: list[list[int]], finished: list[bool]):
        """Right-padded prompt + program (+ ``<eos>``) inputs and the program-position index tensors."""
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        targets = [prog + [eos] if done else prog for prog, done in zip(programs, finished)]
        n, m = len(targets), max(1, max(len(t) for t in targets))
        seq_len = max(len(p) + len(t) for p, t in zip(prompts, targets))
        inputs = torch.full((n, seq_len), pad, dtype=torch.long)
        valid = torch.zeros(n, seq_len, dtype=torch.bool)
        program = torch.full((n, m), pad, dtype=torch.long)  # the program tokens (for the constraint)
        target = torch.full((n, m), pad, dtype=torch.long)
        where = torch.zeros(n, m, dtype=torch.long)  # input position that predicts target j
        mask = torch.zeros(n, m, dtype=torch.bool)
        for row, (p, t) in enumerate(zip(prompts, targets)):
            full = p + t
            inputs[row, :len(full)] = torch.tensor(full)
            valid[row, :len(full)] = True
            prog = programs[row]
            program[row, :len(prog)] = torch.tensor(prog, dtype=torch.long)
            target[row, :len(t)] = torch.tensor(t, dtype=torch.long)
            where[row, :len(t)] = torch.arange(len(p) - 1, len(p) - 1 + len(t))
            mask[row, :len(t)] = True
        dev = self.device
        return inputs.to(dev), valid.to(dev), program.to(dev), target.to(dev), where.to(dev), mask.to(dev)

    def _log_probs(self, model: KodaTransformer, inputs: Tensor, valid: Tensor, where: Tensor,
                   allowed: Tensor) -> Tensor:
        logits = model.extend(inputs, valid=valid)[0].logits  # (N, S, V), no capacity drops
        picked = logits.gather(1, where[..., None].expand(-1, -1, logits.shape[-1]))  # (N, M, V)
        return constrained_log_probs(picked, allowed)

    def train_step(self) -> dict:
        """Sample, verify, and take one policy-gradient step; return the logged values."""
        rl = self.rl
        prompts = self.prompts(self.step)
        group = [p for p in prompts for _ in range(rl.group_size)]  # each prompt k times, contiguous
        prompt_ids = [p.ids(self.tokenizer) for p in group]
        generator = torch.Generator(device=self.device).manual_seed(self._seed(self.step))
        gen = sample(self.policy, self.tokenizer, prompt_ids, generator=generator, max_new_tokens=rl.max_new_tokens,
                     batch_size=len(prompt_ids))
        checks = [check_program(src, p.theta_class, signature=p.signature, step_budget=rl.step_budget)
                  for p, src in zip(group, gen.sources)]
        w = rl.reward
        rewards = torch.tensor([verifier_reward(c, parse=w.parse, typecheck=w.typecheck, theta=w.theta)
                                for c in checks], device=self.device)
        advantages = group_advantages(rewards.view(len(prompts), rl.group_size)).reshape(-1)

        inputs, valid, program, target, where, mask = self._sequences(prompt_ids, gen.ids, gen.finished)
        allowed = self.constraint.allowed_along(program)[:, :program.shape[1]]  # (N, M, V): before target j
        self.policy.eval()  # argmax routing, as when sampling; gradients still flow
        logp = self._log_probs(self.policy, inputs, valid, where, allowed)
        with torch.no_grad():
            ref_logp = self._log_probs(self.reference, inputs, valid, where, allowed)
        token_logp = logp.gather(-1, target[..., None])[..., 0].masked_fill(~mask, 0.0)  # (N, M)
        kl = (policy_kl(logp, ref_logp, allowed) * mask).sum(dim=1)  # (N,) per program
        pg = -(advantages * token_logp.sum(dim=1)).mean()
        loss = pg + rl.kl_coef * kl.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if rl.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), rl.grad_clip)
        self.optimizer.step()
        self.step += 1
        n = len(checks)
        return {"step": self.step, "loss": float(loss.detach()), "pg": float(pg.detach()),
                "kl": float(kl.mean().detach()), "reward": float(rewards.mean()),
                "parse": sum(c.parsed for c in checks) / n, "typed": sum(c.well_typed for c in checks) / n,
                "theta": sum(c.theta_match for c in checks) / n,
                "length": sum(len(i) for i in gen.ids) / n}

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, progress: bool | None = None) -> list[dict]:
        """Run until ``steps`` (default ``rl.steps``) RL steps are done; checkpoint and plot."""
        target = self.rl.steps if steps is None else steps
        show = self.config.train.progress if progress is None else progress
        from tqdm.auto import tqdm

        bar = tqdm(total=target, initial=min(self.step, target), desc="koda rl", disable=not show, dynamic_ncols=True)
        while self.step < target:
            log = self.train_step()
            done = self.step
            if done % self.rl.log_every == 0 or done == target:
                self.history.append(log)
            bar.set_postfix({k: f"{log[k]:.3f}" for k in ("reward", "theta", "kl")})
            if done % self.rl.checkpoint_every == 0 or done == target:
                self.save()
            bar.update(1)
        bar.close()
        if self.history:
            plot_history(self.history, self.out_dir / "rl_curves.png", title="KODA RL from the verifier",
                         panels=_PANELS)
        return self.history

    # --- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The policy (as ``model``, so :func:`~synthfuse.koda.synthesis.load_model` reads it) and RL state."""
        return {"phase": "rl", "step": self.step, "ce_step": self.ce_step, "config": self.config.to_dict(),
                "tokenizer": self.tokenizer.to_dict(), "model": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history}

    def _load(self, state: dict) -> None:
        if int(state["ce_step"]) != self.ce_step:
            raise ValueError(f"{self.out_dir / RL_CHECKPOINT} started from the model at training step "
                             f"{state['ce_step']}, but {CHECKPOINT} is now at step {self.ce_step}; "
                             "delete the RL checkpoint or use resume=False")
        if state["config"]["rl"] != self.config.to_dict()["rl"] | {"steps": state["config"]["rl"]["steps"]}:
            raise ValueError(f"{self.out_dir / RL_CHECKPOINT} was written with other rl settings; "
                             "only rl.steps may change when resuming")
        self.policy.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state["history"])

    def save(self) -> Path:
        """Write ``rl_checkpoint.pt`` and ``rl_history.json`` atomically."""
        path = self.out_dir / RL_CHECKPOINT
        with atomic_open(path, "wb") as fh:
            torch.save(self.state_dict(), fh)
        atomic_write_text(self.out_dir / "rl_history.json", json.dumps(self.history, indent=1) + "\n")
        return path
