"""RL from the verifier: group baseline, KL penalty, rewards from the real verifier, exact resume."""

import copy

import pytest
import torch

from synthfuse.koda.analysis import verify
from synthfuse.koda.decode import sample
from synthfuse.koda.errors import KodaError
from synthfuse.koda.lang import check, parse
from synthfuse.koda.synthesis.prompts import class_theta
from synthfuse.koda.train.config import load_config
from synthfuse.koda.train.rl import (RL_CHECKPOINT, VerifierRL, _reference_group_advantages, constrained_log_probs,
                                     group_advantages, policy_kl)
from synthfuse.koda.train.trainer import KodaTrainer

TINY = {
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 2, "ball_dim": 4, "max_len": 160},
    "data": {"n_programs": 40, "seed": 1},
    "loss": {"wgan": {"enabled": False}},
    "train": {"steps": 1, "batch_size": 4, "progress": False},
    "rl": {"enabled": True, "steps": 2, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 40,
           "step_budget": 20_000, "lr": 3e-3, "kl_coef": 0.1, "signature_prob": 0.0, "checkpoint_every": 1,
           "log_every": 1},
}
#: Binary search: Θ(log n). The fixture's model writes (mostly) this for every prompt.
PROGRAM = "def {f}(n: int) {{ if n <= 1 {{ work(1); return; }} {f}(n / 2); }}"


def test_group_advantages_are_leave_one_out_and_zero_mean():
    torch.manual_seed(0)
    rewards = torch.rand(5, 4)
    adv = group_advantages(rewards)
    torch.testing.assert_close(adv, _reference_group_advantages(rewards))
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(5), atol=1e-6, rtol=0)
    assert torch.equal(group_advantages(torch.ones(2, 3)), torch.zeros(2, 3))  # no signal, no push
    with pytest.raises(ValueError, match="k >= 2"):
        group_advantages(torch.rand(3, 1))


def test_kl_penalty_is_zero_for_equal_policies_and_exact_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    allowed = torch.rand(3, 5, 7) > 0.3
    allowed[..., 0] = True
    logp = constrained_log_probs(logits, allowed)
    torch.testing.assert_close(policy_kl(logp, logp, allowed), torch.zeros(3, 5))
    leaf = logits.clone().requires_grad_(True)
    policy_kl(constrained_log_probs(leaf, allowed), logp.detach() - 0.1, allowed).sum().backward()
    assert torch.isfinite(leaf.grad).all() and not leaf.grad[~allowed].any()  # no -inf - (-inf) in the gradient
    assert torch.isfinite(policy_kl(logp, constrained_log_probs(torch.randn(3, 5, 7), allowed), allowed)).all()
    # Two allowed tokens: KL of Bernoulli(p) from Bernoulli(q).
    two = torch.tensor([True, True, False])
    p, q = 0.8, 0.3
    lp = constrained_log_probs(torch.tensor([0.0, torch.logit(torch.tensor(p)).item(), 5.0]), two)
    lq = constrained_log_probs(torch.tensor([0.0, torch.logit(torch.tensor(q)).item(), -5.0]), two)
    expected = p * torch.log(torch.tensor(p / q)) + (1 - p) * torch.log(torch.tensor((1 - p) / (1 - q)))
    torch.testing.assert_close(policy_kl(lp, lq, two), expected)


def test_rl_config_is_validated():
    for rl, message in [({"group_size": 1}, "group_size"), ({"lr": 0}, "rl.lr"),
                        ({"temperature": 1.0}, "rl.temperature"),
                        ({"reward": {"parse": 0, "typecheck": 0, "theta": 0}}, "at least one"),
                        ({"reward": {"thetta": 1}}, r"rl\.reward\.thetta")]:
        with pytest.raises(ValueError, match=message):
            load_config({"rl": rl})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A CE checkpoint whose model half-learned to write binary search for every prompt."""
    out = tmp_path_factory.mktemp("rl") / "run"
    cfg = load_config(copy.deepcopy(TINY))
    trainer = KodaTrainer(cfg, out_dir=out, resume=False)
    trainer.fit()
    tok, model = trainer.tokenizer, trainer.model
    name = next(i for i in tok.identifiers if i not in ("n", "m", "size", "len"))
    program = tok.encode_program(PROGRAM.format(f=name))
    seqs = torch.tensor([tok.prompt(c) + program + [tok.eos_id] for c in tok.classes])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(36):
        logits = model(seqs[:, :-1]).logits[:, 2:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seqs[:, 3:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    trainer.save()
    return out


def _reward_by_hand(source: str, theta_class: str) -> float:
    """The reward spelled out with the front end and ``verify`` themselves."""
    try:
        program = parse(source)
    except KodaError:
        return 0.0
    try:
        check(program)
    except KodaError:
        return 0.1
    return 0.3 + 1.0 * verify(program, class_theta(theta_class), step_budget=20_000).verified


def test_rl_steps_use_the_verifier_and_resume_identically(run_dir, tmp_path):
    import shutil

    cfg = load_config(copy.deepcopy(TINY))
    full = VerifierRL(cfg, out_dir=run_dir, resume=False)
    before = {k: v.clone() for k, v in full.policy.state_dict().items()}
    # Step 0's programs, sampled again by hand from the untouched policy, and rewarded by hand.
    prompts = [p for p in full.prompts(0) for _ in range(cfg.rl.group_size)]
    gen = sample(full.policy, full.tokenizer, [p.ids(full.tokenizer) for p in prompts],
                 generator=torch.Generator().manual_seed(full._seed(0)), max_new_tokens=40)
    by_hand = torch.tensor([_reward_by_hand(s, p.theta_class) for s, p in zip(gen.sources, prompts)])
    assert by_hand.max() == pytest.approx(1.3) and by_hand.min() < 1.3  # a real signal to learn from
    history = full.fit(progress=False)
    assert history[0]["reward"] == pytest.approx(float(by_hand.mean()))
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert history[1]["kl"] > 0
    assert any(not torch.equal(before[k], v) for k, v in full.policy.state_dict().items())
    assert (run_dir / "rl_curves.png").stat().st_size > 0

    part_dir = tmp_path / "part"
    shutil.copytree(run_dir, part_dir, ignore=shutil.ignore_patterns("rl_*"))
    VerifierRL(cfg, out_dir=part_dir, resume=False).fit(steps=1, progress=False)
    resumed = VerifierRL(cfg, out_dir=part_dir, resume=True)
    assert resumed.step == 1
    resumed.fit(progress=False)
    keys = ("loss", "pg", "kl", "reward", "theta", "length")
    assert [h[k] for h in resumed.history for k in keys] == pytest.approx([h[k] for h in history for k in keys],
                                                                           rel=1e-5, abs=1e-7)
    for k, v in full.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[k], v)
    changed = load_config({**copy.deepcopy(TINY), "rl": {**TINY["rl"], "kl_coef": 0.5}})
    with pytest.raises(ValueError, match="other rl settings"):
        VerifierRL(changed, out_dir=part_dir, resume=True)
    with pytest.raises(FileNotFoundError, match="cross-entropy"):
        VerifierRL(cfg, out_dir=tmp_path / "empty")
    assert (part_dir / RL_CHECKPOINT).exists()
