"""Training: config validation, WGAN-GP penalty values, loss goes down, exact resume, the CLI."""

from pathlib import Path

import pytest
import torch
from torch import nn

from synthfuse.koda.train.config import load_config
from synthfuse.koda.train.critic import SequenceCritic, critic_loss, gradient_penalty
from synthfuse.koda.train.trainer import KodaTrainer, lr_at

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "koda_tiny.yaml"

TINY = {
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 2, "ball_dim": 4,
              "max_len": 160},
    "data": {"n_programs": 60, "seed": 1},
    "loss": {"wgan": {"n_critic": 2, "critic_channels": 16}},
    "optim": {"lr": 5e-3, "warmup_steps": 2},
    "train": {"steps": 6, "batch_size": 6, "log_every": 1, "eval_every": 100, "checkpoint_every": 3,
              "progress": False},
}


def _config(**overrides):
    import copy

    data = copy.deepcopy(TINY)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return load_config(data)


def test_shipped_config_loads_and_unknown_keys_fail(tmp_path):
    cfg = load_config(CONFIG)
    assert cfg.loss.wgan.lambda_gp == 10.0 and cfg.loss.wgan.n_critic == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "\nextra_section: {a: 1}\n")
    with pytest.raises(ValueError, match="extra_section"):
        load_config(bad)
    for data, message in [({"loss": {"wgan": {"lamda": 1}}}, r"loss\.wgan\.lamda"),
                          ({"model": {"dmodel": 8}}, r"model\.dmodel"),
                          ({"train": {"steps": 1.5}}, "train.steps must be an integer"),
                          ({"loss": {"ce": {"enabled": False}, "structure": {"enabled": False},
                                     "wgan": {"enabled": False}}}, "at least one"),
                          ({"model": {"router_temperature": 0}}, "router_temperature")]:
        with pytest.raises(ValueError, match=message):
            load_config(data)


def test_gradient_penalty_known_values():
    d = 12
    linear = nn.Linear(d, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(1, d))
        linear.weight /= linear.weight.norm()  # unit norm: |grad D| = 1 everywhere

    def critic(x):
        return linear(x.reshape(x.shape[0], -1))[:, 0]

    real, fake = torch.randn(8, 3, 4), torch.randn(8, 3, 4)
    assert gradient_penalty(critic, real, fake, 10.0).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        linear.weight *= 3.0
    assert gradient_penalty(critic, real, fake, 10.0).item() == pytest.approx(10.0 * (3 - 1) ** 2, rel=1e-5)
    loss, w, gp = critic_loss(critic, real, fake, 10.0)
    assert loss.item() == pytest.approx(gp.item() - w.item(), rel=1e-6)


def test_sequence_critic_ignores_masked_positions_and_has_no_batch_norm():
    torch.manual_seed(0)
    critic = SequenceCritic(8, channels=8)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 4 + [False] * 2] * 2)
    y = x.clone()
    y[:, 4:] = 100.0
    torch.testing.assert_close(critic(x, mask), critic(y, mask))
    # Each score depends on its own sequence only (no batch statistics).
    torch.testing.assert_close(critic(x[:1], mask[:1]), critic(x, mask)[:1])


def test_lr_schedule():
    cfg = _config().optim
    assert lr_at(0, cfg, 10) == pytest.approx(cfg.lr / 2)
    assert lr_at(2, cfg, 10) == pytest.approx(cfg.lr)
    assert lr_at(10, cfg, 10) == pytest.approx(cfg.lr * cfg.min_lr_ratio)


def test_training_lowers_the_loss(tmp_path):
    trainer = KodaTrainer(_config(), out_dir=tmp_path, resume=False)
    before = trainer.evaluate()
    for _ in range(8):
        log = trainer.train_step()
    after = trainer.evaluate()
    assert after < before - 0.3, (before, after)
    assert {"ce", "structure", "wdist", "gp", "adv", "balance"} <= set(log)


def test_resume_gives_identical_losses(tmp_path):
    cfg = _config(optim={"kfac": {"enabled": True, "inv_update_period": 2}, "name": "sgd", "lr": 0.05},
                  comm={"world_size": 4, "alpha": 1e-3, "step_seconds": 0.001, "delayed": True})
    full = KodaTrainer(cfg, out_dir=tmp_path / "full", resume=False)
    assert full.plan.staleness >= 1 and full.kfac is not None
    history = full.fit(steps=6)
    assert (tmp_path / "full" / "loss_curves.png").stat().st_size > 0

    part = KodaTrainer(cfg, out_dir=tmp_path / "part", resume=False)
    part.fit(steps=3)
    resumed = KodaTrainer(cfg, out_dir=tmp_path / "part", resume=True)
    assert resumed.step == 3
    resumed.fit(steps=6)
    keys = ("ce", "structure", "wdist", "gp", "total")
    expected = [h[k] for h in history[3:] for k in keys]
    got = [h[k] for h in resumed.history[3:] for k in keys]
    assert len(got) == 3 * len(keys)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_nonfinite_loss_stops_before_the_update_and_the_checkpoint(tmp_path, monkeypatch):
    import dataclasses

    from synthfuse.shared.distributed import NonFiniteError

    trainer = KodaTrainer(_config(loss={"wgan": {"enabled": False}}), out_dir=tmp_path, resume=False)
    trainer.fit(steps=3)  # checkpoint at step 3
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer.net.forward

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        return dataclasses.replace(out, logits=out.logits * float("nan"))

    monkeypatch.setattr(trainer.net, "forward", poisoned)
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(NaN or inf\) at step 4; no model update .*optim\.lr"):
        trainer.fit(steps=6)
    assert trainer.step == 3 and torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())


def test_cli_trains_and_resumes(tmp_path, capsys):
    import yaml

    from synthfuse.koda.train.command import main

    path = tmp_path / "run.yaml"
    data = dict(TINY, loss={"wgan": {"enabled": False}, "structure": {"enabled": False}})
    path.write_text(yaml.safe_dump(data))
    assert main(["--config", str(path), "--steps", "2", "--out-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "done: step 2" in capsys.readouterr().out
    from synthfuse.koda.cli import main as koda_main  # `synthfuse koda train ...`

    assert koda_main(["train", "--config", str(path), "--steps", "3", "--out-dir", str(tmp_path / "out"),
                      "--no-progress"]) == 0
    assert "resuming at step 2" in capsys.readouterr().out
    for name in ("checkpoint.pt", "history.json", "loss_curves.png", "comm_plan.json"):
        assert (tmp_path / "out" / name).exists()


def test_package_import_stays_light_and_lazy_names_resolve():
    from synthfuse.shared.testing import modules_imported_by

    assert "torch" not in modules_imported_by("import synthfuse.koda")
    assert "torch" not in modules_imported_by("import synthfuse.koda.cli; synthfuse.koda.cli.build_parser()")
    import synthfuse.koda as koda

    assert koda.KFAC.__name__ == "KFAC" and koda.Torus(4, 2).diameter() == 4
    with pytest.raises(AttributeError):
        koda.not_a_name
