"""Run configs, the schedule, the trainer (loss falls, exact resume), Zoology, probe report and CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from synthfuse.synthe import SyntheConfig
from synthfuse.synthe.cli import main
from synthfuse.synthe.train import (
    DataConfig, RunConfig, TrainConfig, Trainer, ZoologySpec, lr_factor, masked_accuracy, probe_report, run_zoology,
    zoology, zoology_run_config,
)

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _run(tmp_path=None, model_type="synthe", data="copy", steps=12, **train):
    model = SyntheConfig(d_model=16, n_layers=4, n_heads=2, chunk_size=16, probe_window=8, sentence_len=4,
                         discourse_len=16, probe_layers=[1, 3], exit_layers=[1, 2])
    values = dict(batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=2, max_steps=steps, eval_interval=4,
                  eval_batches=2, log_interval=2, checkpoint_interval=3, seed=3, device="cpu",
                  out_dir=None if tmp_path is None else str(tmp_path))
    values.update(train)
    return RunConfig(model_type, model, DataConfig(name=data, seq_len=16, vocab_size=12), TrainConfig(**values))


def test_lr_schedule_known_values():
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1) and lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.55)  # cosine midpoint: r + (1 - r) / 2
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1) and lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(35, 10, 110, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_time_schedule_known_values_and_trainer_follows_the_clock(monkeypatch):
    # f(s, tau) = min(1, (s + 1) / W) * (r + (1 - r) / 2 (1 + cos(pi tau))), whatever max_steps says
    assert lr_factor(4, 10, 110, 0.1, spent=0.0) == pytest.approx(0.5)
    assert lr_factor(50, 10, 3000, 0.1, spent=0.5) == pytest.approx(0.55)
    assert lr_factor(50, 10, 20, 0.0, spent=0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(50, 10, 20, 0.1, spent=1.7) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="time_budget_s"):
        TrainConfig(schedule="time")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="epochs", time_budget_s=5.0)
    with pytest.raises(ValueError, match="time_budget_s must be > 0"):
        TrainConfig(time_budget_s=0.0)
    clock = iter(float(i) for i in range(10**6))  # every perf_counter() call advances 1 s: steps take 1 s
    monkeypatch.setattr("synthfuse.synthe.train.trainer.time.perf_counter", lambda: next(clock))
    run = _run(steps=1000, lr=1e-2, min_lr=1e-3, warmup_steps=2, time_budget_s=8.0, schedule="time", eval_interval=100)
    trainer = Trainer(run, progress=False)
    trainer.fit()
    lrs = [r["lr"] for r in trainer.history]
    assert len(lrs) == 8  # stopped by the 8-second budget, far before max_steps
    # the lr of step s was set after s - 1 steps, i.e. after s - 1 seconds of the 8
    expected = [1e-2 * lr_factor(s - 1, 2, 1000, 0.1, spent=(s - 1) / 8.0) for s in range(1, 9)]
    assert [r["elapsed_s"] for r in trainer.history] == [float(s) for s in range(1, 9)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] < 0.2e-2  # annealed near min_lr by the end of the budget


def test_masked_accuracy_counts_only_scored_positions():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    assert masked_accuracy(logits, torch.tensor([[1, 1, -100]])) == (1, 2)


def test_run_config_validation_and_yaml(tmp_path):
    run = RunConfig.from_yaml(CONFIGS / "synthe_cpu.yaml")
    assert run.model.d_model == 128 and run.data.name == "tinyshakespeare" and run.train.time_budget_s == 600
    assert RunConfig.from_yaml(run.to_yaml()) == run
    bare = RunConfig.from_yaml(CONFIGS / "synthe_tiny.yaml")
    assert bare.model == SyntheConfig.tiny() and bare.model_type == "synthe"
    for text, where in (("train: {batch: 3}\n", "TrainConfig key"), ("data: {nam: x}\n", "DataConfig key"),
                        ("model: {d_model: 8, warmup: 1}\n", "SyntheConfig"), ("model: {}\noptim: {}\n", "top-level")):
        with pytest.raises(ValueError, match=where):
            RunConfig.from_yaml(text)
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        RunConfig.from_yaml("train: {lr: fast}\n")
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    assert DataConfig(name="state").name == "s5"


@pytest.mark.parametrize("model_type", ["synthe", "transformer"])
def test_smoke_training_loss_falls(model_type, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcabd abcabe " * 300, encoding="utf-8")
    trainer = Trainer(_run(model_type=model_type, data=str(path), steps=12, lr=2e-2), progress=False)
    before = trainer.evaluate()["val_loss"]
    after = trainer.fit()["val_loss"]
    assert after < before - 0.3, (before, after)


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = Trainer(_run(tmp_path / "full", steps=8), progress=False)
    full.fit()
    part = Trainer(_run(tmp_path / "part", steps=8), progress=False)

    def killed(real=part.train_step):  # the process dies during step 5 (after the checkpoint at 3)
        if part.step == 4:
            raise KeyboardInterrupt
        return real()

    part.train_step = killed
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    ckpt = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and set(ckpt) >= {"model", "optimizer", "scheduler", "rng", "history", "run_config"}
    resumed = Trainer(_run(tmp_path / "part", steps=8), resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 9))
    assert (tmp_path / "part" / "loss.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(_run(tmp_path / "none"), resume=True)


def test_text_training_and_sampling(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    trainer = Trainer(_run(data=str(path), steps=4), progress=False)
    trainer.fit()
    greedy = trainer.sample("the ", 20, temperature=0.0)
    assert len(greedy) == 20 and set(greedy) <= set(path.read_text())
    with pytest.raises(ValueError, match="text data"):
        Trainer(_run(steps=1), progress=False).sample("x")


def test_zoology_variants_and_no_delta_ablation():
    spec = ZoologySpec(seq_len=16, num_kv_pairs=2, vocab_size=64, d_model=16, n_layers=2, n_heads=2, steps=3,
                       batch_size=4, eval_interval=3, eval_batches=1, device="cpu")
    assert zoology_run_config(spec, "synthe").model.probe_layers == []  # MQAR: attention probe off
    assert zoology_run_config(ZoologySpec(task="s5"), "synthe").model.probe_layers == [1]
    rows = run_zoology(spec, progress=False)
    assert [r["variant"] for r in rows] == ["synthe", "synthe-no-delta", "transformer"]
    assert all(0 <= r["val_acc"] <= 1 and r["steps"] == 3 for r in rows)
    assert rows[1]["params"] < rows[0]["params"]
    with pytest.raises(ValueError, match="variant"):
        zoology_run_config(spec, "mamba")


def test_probe_report_sweeps_have_known_endpoints():
    trainer = Trainer(_run(steps=1), progress=False)
    x, y = trainer.data.batch("val", 4, torch.Generator().manual_seed(0))
    report = probe_report(trainer.model, x, y, thresholds=[0.0, 0.5, 1.0 + 1e-9])
    probe, exits = report["probe_sweep"], report["exit_sweep"]
    assert probe[0]["firing_rate"] == 0.0 and probe[-1]["firing_rate"] == 1.0  # c in (0, 1]: none < 0, all < 1+
    assert exits[0]["early_exit_rate"] == 1.0 and exits[-1]["early_exit_rate"] == 0.0
    assert exits[-1]["val_loss"] == pytest.approx(probe[1]["val_loss"], rel=1e-6)  # no exit, probe at its own 0.5
    assert report["confidence"].numel() == 4 * 16 * 4 and trainer.model.router.threshold == 0.9


def test_cli_train_resume_and_probe_report(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefgh " * 200, encoding="utf-8")
    config = tmp_path / "run.yaml"
    _run(steps=3).to_yaml(config)
    args = ["train", "--config", str(config), "--data", str(corpus), "--out_dir", str(tmp_path / "r"), "--no_progress",
            "--sample_tokens", "10", "--max_steps", "2"]
    assert main(args) == 0
    assert main([*args[:-1], "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "step 3:" in out and "--- greedy ---" in out and (tmp_path / "r" / "samples.txt").exists()
    assert main(["probe-report", "--checkpoint", str(tmp_path / "r" / "checkpoint.pt"), "--device", "cpu"]) == 0
    for name in ("probe_confidence", "probe_sweep", "early_exit"):
        assert (tmp_path / "r" / f"{name}.png").exists()
    specs = []
    monkeypatch.setattr(zoology, "run_zoology", lambda spec, *a, **k: specs.append(spec) or run_zoology(spec, *a, **k))
    assert main(["zoology", "--tasks", "parity", "--variants", "synthe", "--seq_len", "8", "--d_model", "16",
                 "--steps", "2", "--batch_size", "2", "--eval_interval", "2", "--device", "cpu", "--no_progress",
                 "--delta_dt_range", "1e-4", "1e-3", "--out_dir", str(tmp_path / "z")]) == 0
    assert json.loads((tmp_path / "z" / "zoology.json").read_text())[0]["task"] == "parity"
    assert specs[0].delta_dt_range == (1e-4, 1e-3)
    assert zoology_run_config(specs[0], "synthe").model.delta_dt_range == (1e-4, 1e-3)


def test_model_without_delta_layer_streams_exactly(small_config):
    from synthfuse.synthe import Synthe

    model = Synthe(small_config(delta=False)).double().eval()
    assert not any(".delta." in name for name in model.state_dict())
    ids = torch.randint(0, 61, (2, 40), generator=torch.Generator().manual_seed(0))
    full = model(ids, early_exit=False)["logits"]
    first = model(ids[:, :17], return_state=True, early_exit=False)
    rest = model(ids[:, 17:], state=first["state"], early_exit=False)["logits"]
    assert "delta" not in first["state"]["blocks"][0]
    assert (torch.cat([first["logits"], rest], 1) - full).abs().max().item() < 1e-10


MQAR_TARGETS = {  # shipped config -> the ZoologySpec it is (the two MQAR targets)
    "synthe_mqar_seq64.yaml": ZoologySpec(),
    "synthe_mqar_seq128.yaml": ZoologySpec(seq_len=128, num_kv_pairs=8, steps=2000, delta_dt_range=(1e-4, 1e-3)),
}


@pytest.mark.parametrize("name", sorted(MQAR_TARGETS))
def test_shipped_mqar_configs_are_the_zoology_specs(name):
    """The README's, the benchmark's and the slow tests' MQAR runs are one configuration."""
    run = RunConfig.from_yaml(CONFIGS / name)
    assert run == zoology_run_config(MQAR_TARGETS[name], "synthe")
    assert run.model.probe_layers == [] and run.model.delta and run.model.n_layers == 2 and run.model.d_model == 128


def _mqar_full_run(name: str) -> None:
    """Train the shipped config on CPU for its step budget; >= 99% held-out accuracy."""
    run = RunConfig.from_yaml(CONFIGS / name).replace(train={"device": "cpu"})
    final = Trainer(run, progress=False).fit()
    assert final["val_acc"] >= 0.99, final


@pytest.mark.slow
def test_mqar_target_seq64_4pairs_full_run():
    """The issue's target: >= 99% MQAR accuracy (seq 64, 4 pairs, vocab 8192, 2 blocks, width 128) within 1,500 steps."""
    _mqar_full_run("synthe_mqar_seq64.yaml")


@pytest.mark.slow
def test_mqar_target_seq128_8pairs_full_run():
    """The issue's second target: >= 99% MQAR accuracy (seq 128, 8 pairs) within 2,000 steps.

    The config starts the DeltaLayers at slow forgetting; its seed 0 passes 99% at step 1,600
    (about 110 minutes on one thread of the 2-core machine, shared with a second run); seed 1 of
    the same config ended at 96.1%: see the README's MQAR section.
    """
    _mqar_full_run("synthe_mqar_seq128.yaml")


@pytest.mark.slow
def test_lm_target_tinyshakespeare_full_run():
    """The issue's target: char-level tinyshakespeare val loss <= 1.88 within 10 minutes of training."""
    corpus = Path(__file__).resolve().parents[4] / "shared" / "data" / "tinyshakespeare.txt"
    if not corpus.exists():
        pytest.skip("tinyshakespeare not on disk")
    run = RunConfig.from_yaml(CONFIGS / "synthe_cpu.yaml").replace(data={"name": str(corpus)}, train={"device": "cpu"})
    assert Trainer(run, progress=False).fit()["val_loss"] <= 1.88
