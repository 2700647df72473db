"""Multi-process SYNTHE training: FSDP2/DDP parity, sharded resume and reshard, accumulation, checkpointing, MFU.

One spawn of 2 gloo ranks (file store, 1 thread each; ``synthfuse.synthe.testing.two_rank_scenarios``)
runs every 2-rank case; one process gives the references. The data masks a different number of
targets in every row (:class:`~synthfuse.synthe.testing.RaggedTargets`), so per-rank or
per-micro-batch means would not match the one-process loss.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthfuse.shared.distributed import spawn_local
from synthfuse.shared.distributed.testing import fake_process_group, full_state
from synthfuse.synthe import Synthe, SyntheConfig
from synthfuse.synthe import testing as st
from synthfuse.synthe.cli import build_parser
from synthfuse.synthe.train import RunConfig, TrainConfig, Trainer
from synthfuse.synthe.train import parallel as par
from synthfuse.synthe.cli import main
from synthfuse.synthe.train import find_checkpoint, load_trained
from synthfuse.synthe.train.cli import run_config_from_args
from synthfuse.synthe.train.flops import (PEAK_FLOPS, mfu, model_flops, model_flops_per_token, peak_flops,
                                          synthe_forward_flops)
from synthfuse.synthe.train.trainer import CHECKPOINT, SHARDED

TOL = 1e-5
LOSS_KEYS = ("loss", "lm_loss")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthe2")
    results = spawn_local(st.two_rank_scenarios, 2, str(root), timeout_s=60)  # a rank stuck in a collective fails
    return {"rank0": results[0], "rank1": results[1], "root": root}


@pytest.fixture(scope="module")
def one_process():
    runs = {(m, s, o.get("dtype", "float32")) for m, s, o in st.PARALLEL_RUNS.values()}
    return {(m, s, d): st.train_run(None, st.parallel_run_config(steps=s, model_type=m, dtype=d)) for m, s, d in runs}


def _series(history: list[dict], key: str, steps: slice = slice(None)) -> torch.Tensor:
    return torch.tensor([h[key] for h in history[steps]], dtype=torch.float64)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _trainer(**overrides) -> Trainer:
    model = overrides.pop("model", {})
    run = RunConfig.from_dict(st.parallel_run_config(**overrides))
    return Trainer(run.replace(model=model), progress=False, data=st.RaggedTargets())


def _gradients(trainer: Trainer, index: int = 0) -> tuple[dict, dict]:
    trainer.optimizer.zero_grad(set_to_none=True)
    record = trainer.backward_step(index)
    return record, {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


# --- two ranks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in st.PARALLEL_RUNS if n != "synthe-fsdp"])
def test_synthe_parallel_two_ranks_equal_one_process(two_ranks, one_process, name):
    model_type, steps, overrides = st.PARALLEL_RUNS[name]
    dtype = overrides.get("dtype", "float32")
    ref = one_process[(model_type, steps, dtype)]
    assert [h["step"] for h in ref["history"]] == list(range(1, steps + 1))
    for rank in ("rank0", "rank1"):
        got = two_ranks[rank][name]
        for key in LOSS_KEYS:
            torch.testing.assert_close(_series(got["history"], key), _series(ref["history"], key), atol=TOL, rtol=0)
        assert got["history"][-1]["val_loss"] == pytest.approx(ref["history"][-1]["val_loss"], abs=TOL)
        assert got["history"][-1]["val_acc"] == ref["history"][-1]["val_acc"]
        assert _max_diff(got["params"], ref["params"]) < TOL
    assert two_ranks["rank0"][name]["history"] == two_ranks["rank1"][name]["history"]  # global values on every rank
    assert all(p.dtype == getattr(torch, dtype) for p in got["params"].values())
    initial = full_state(_trainer(steps=steps, model_type=model_type, dtype=dtype).model)
    assert _max_diff(ref["params"], initial) > 1e-3  # it trained: a frozen model would match trivially


def test_synthe_parallel_sharded_resume_gives_identical_next_losses(two_ranks):
    for rank in ("rank0", "rank1"):
        r = two_ranks[rank]
        assert r["resumed"]["step"] == 20
        assert r["resumed"]["history"] == r["synthe-fsdp"]["history"]  # bit for bit, steps 11-20 recomputed
        assert _max_diff(r["resumed"]["params"], r["synthe-fsdp"]["params"]) == 0.0


@pytest.mark.parametrize("name, extra_steps", [("transformer-fsdp", 10), ("synthe-fsdp", 3)])
def test_synthe_parallel_reshard_two_rank_checkpoint_into_one_process(two_ranks, tmp_path, name, extra_steps):
    """The 2-rank FSDP2 checkpoint of step 10 (AdamW state, scheduler, history) continues in one
    process as the 2-rank run continued (SYNTHE for 3 steps: it is chaotic at this size)."""
    model_type, steps, _ = st.PARALLEL_RUNS[name]
    two = two_ranks["rank0"][name]
    shutil.copytree(two_ranks["root"] / name / SHARDED / "step_00000010", tmp_path / SHARDED / "step_00000010")
    run = RunConfig.from_dict(st.parallel_run_config(steps=steps, model_type=model_type)).replace(
        train={"out_dir": str(tmp_path)})
    trainer = Trainer(run, resume=True, progress=False, data=st.RaggedTargets())
    assert not trainer.env.is_distributed and trainer.step == 10
    assert [{k: v for k, v in h.items() if k not in ("elapsed_s", "tokens_per_s")} for h in trainer.history] \
        == two["history"][:10]
    assert trainer.scheduler.last_epoch == 10
    logs = [trainer.train_step() for _ in range(extra_steps)]
    for key in LOSS_KEYS:
        torch.testing.assert_close(_series(logs, key), _series(two["history"], key, slice(10, 10 + extra_steps)),
                                   atol=TOL, rtol=0)
    if 10 + extra_steps == steps:
        assert _max_diff(full_state(trainer.model), two["params"]) < TOL


def test_synthe_parallel_checkpoints_are_sharded_and_kept(two_ranks):
    folder = two_ranks["root"] / "synthe-fsdp" / SHARDED
    assert sorted(p.name for p in folder.glob("step_*")) == ["step_00000010", "step_00000020"]
    assert (folder / "latest").read_text().strip() == "step_00000020"
    meta = json.loads((folder / "step_00000020" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["extra"]["step"] == 20 and len(meta["extra"]["history"]) == 20
    assert not (two_ranks["root"] / "synthe-fsdp" / "checkpoint.pt").exists()
    metrics = [json.loads(line) for line in (two_ranks["root"] / "synthe-fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21)) and all(m["tokens_per_s"] > 0 for m in metrics)


@pytest.mark.parametrize("name", list(st.NONFINITE_RUNS))
def test_synthe_parallel_nonfinite_loss_on_one_rank_stops_every_rank(two_ranks, name):
    """Rank 1's loss is NaN at step 3: both ranks raise the same error at once (a rank left alone in
    a collective would fail the spawn: the peer is gone, or the 60 s timeout), nothing of step 3 is
    applied and the last checkpoint is step 2's."""
    r0, r1 = two_ranks["rank0"]["nonfinite"][name], two_ranks["rank1"]["nonfinite"][name]
    assert r0["error"] is not None and r0["error"] == r1["error"]
    assert r0["error"]["ranks"] == [1] and r0["error"]["step"] == 3
    message = r0["error"]["message"]
    assert message.startswith("non-finite loss (NaN or inf) at step 3 on rank(s) [1] of 2; nothing was applied")
    assert all(flag in message for flag in ("--lr", "--dtype float64", "--grad_clip"))
    assert r0["step"] == r1["step"] == 2 and r0["latest"] == r1["latest"] == "step_00000002"
    out_dir = two_ranks["root"] / "nonfinite" / name
    resumed = Trainer(RunConfig.from_dict(st.nonfinite_run_config(name)).replace(train={"out_dir": str(out_dir)}),
                      resume=True, progress=False, data=st.RaggedTargets())
    assert resumed.step == 2 and _max_diff(full_state(resumed.model), r0["params"]) == 0.0  # step 3 not applied
    assert all(torch.isfinite(p).all() for p in r0["params"].values())


def test_synthe_parallel_cli_train_stops_on_a_nonfinite_loss(tmp_path, capsys):
    """One process, lr 1e30: step 1 blows the weights up, step 2's loss is not finite -> exit 1, the
    message on stderr, and the checkpoint stays at step 1."""
    config = tmp_path / "run.yaml"
    RunConfig.from_dict(st.parallel_run_config(steps=4, checkpoint_interval=1)).to_yaml(config)
    assert main(["train", "--config", str(config), "--lr", "1e30", "--out_dir", str(tmp_path / "r"),
                 "--no_progress", "--sample_tokens", "0"]) == 1
    err = capsys.readouterr().err
    assert "error: non-finite loss (NaN or inf) at step 2; nothing was applied or checkpointed" in err
    assert torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)["step"] == 1  # the last finite step's


def test_synthe_parallel_probe_report_reads_a_sharded_fsdp_run_in_one_process(two_ranks, tmp_path, capsys):
    """The 2-rank FSDP run left only sharded checkpoints; one process loads them for inference and
    gets the weights the two ranks held (gathered at step 20) and DCP's own one-file conversion."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    run_dir = tmp_path / "run"
    shutil.copytree(two_ranks["root"] / "synthe-fsdp", run_dir)
    assert not (run_dir / CHECKPOINT).exists()
    step20 = run_dir / SHARDED / "step_00000020"
    dcp_to_torch_save(step20, tmp_path / "oracle.pt")
    oracle = torch.load(tmp_path / "oracle.pt", weights_only=True)["model"]
    for path in (run_dir, run_dir / SHARDED, step20):
        trainer = load_trained(path, device="cpu")
        assert not trainer.env.is_distributed and trainer.step == 20 and len(trainer.history) == 20
        state = trainer.model.state_dict()
        assert _max_diff(state, two_ranks["rank0"]["synthe-fsdp"]["params"]) == 0.0
        assert _max_diff(state, {k: oracle[k] for k in state}) == 0.0
    assert load_trained(run_dir / SHARDED / "step_00000010").step == 10

    report_dir = tmp_path / "report"
    assert main(["probe-report", "--checkpoint", str(run_dir), "--device", "cpu", "--report_dir", str(report_dir)]) == 0
    assert "confidence: mean" in capsys.readouterr().out
    sweep = json.loads((report_dir / "probe_report.json").read_text())["probe_sweep"]
    assert [r["threshold"] for r in sweep][:2] == [0.0, 0.1] and (report_dir / "probe_confidence.png").exists()


def test_synthe_parallel_find_checkpoint_picks_the_newer_kind(two_ranks, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(two_ranks["root"] / "synthe-fsdp" / SHARDED, run_dir / SHARDED)
    assert find_checkpoint(run_dir) == find_checkpoint(run_dir / SHARDED) == run_dir / SHARDED / "step_00000020"
    newest_sharded = run_dir / SHARDED / "step_00000020"
    for step, newer in ((30, run_dir / CHECKPOINT), (20, run_dir / CHECKPOINT), (5, newest_sharded)):
        torch.save({"step": step}, run_dir / CHECKPOINT)
        assert find_checkpoint(run_dir) == newer  # a tie goes to the one-process file, as --resume does
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*empty: expected checkpoint.pt"):
        find_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trained(tmp_path / "missing")


# --- one process: accumulation, activation checkpointing, normalisation -------------------------
def test_synthe_parallel_grad_accumulation_equals_full_batch():
    full, g_full = _gradients(_trainer())
    accum, g_accum = _gradients(_trainer(grad_accum=4))
    assert _max_diff(g_full, g_accum) < 1e-6 and g_full.keys() == g_accum.keys()
    assert accum["loss"] == pytest.approx(full["loss"], abs=1e-6)
    assert accum["lm_loss"] == pytest.approx(full["lm_loss"], abs=1e-6)
    # the full-batch value is the model's own loss; averaging the micro-batch means instead would be wrong
    trainer = _trainer()
    x, y = trainer.data.batch("train", 8, st_batch_generator(0))
    with torch.no_grad():
        out = trainer.model(x, targets=y, early_exit=False, scored_logits=True)  # the trainer's head path
        naive = sum(float(trainer.model(a, targets=b, early_exit=False)["losses"]["lm"].nan_to_num())
                    for a, b in zip(x.chunk(4), y.chunk(4))) / 4
    assert full["loss"] == pytest.approx(float(out["loss"]), abs=1e-7)
    assert abs(naive - full["lm_loss"]) > 1e-4  # 100x the tolerance above: the test tells the two apart


def st_batch_generator(index: int) -> torch.Generator:
    from synthfuse.synthe.train import batch_generator

    return batch_generator(3, "train", index)


def test_synthe_parallel_activation_checkpointing_equals_plain():
    plain_trainer, ac_trainer = _trainer(), _trainer(activation_checkpointing=True)
    plain, g_plain = _gradients(plain_trainer)
    ac, g_ac = _gradients(ac_trainer)
    assert ac["loss"] == pytest.approx(plain["loss"], abs=1e-6)
    assert _max_diff(g_plain, {k.replace("._checkpoint_wrapped_module", ""): v for k, v in g_ac.items()}) < 1e-6
    assert ac_trainer.model.state_dict().keys() == plain_trainer.model.state_dict().keys()  # checkpoints interchange
    assert any("checkpoint" in type(b).__name__.lower() for b in ac_trainer.model.blocks)


@pytest.mark.slow
def test_synthe_parallel_compiled_blocks_train_like_eager():
    eager, compiled = _trainer(), _trainer(compile=True, activation_checkpointing=True)
    losses = [[t.train_step()["loss"] for _ in range(2)] for t in (eager, compiled)]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=TOL, rtol=0)


def test_synthe_parallel_loss_weights_and_rows():
    assert par.loss_weights(torch.tensor([7, 2]), torch.tensor([7, 2]), 1) == (1.0, 1.0)
    assert par.loss_weights(torch.tensor([3, 0]), torch.tensor([12, 4]), 2) == (0.5, 0.0)
    assert par.rank_rows(8, 2, 1, grad_accum=2) == slice(4, 8)
    with pytest.raises(ValueError, match="multiple of world_size \\* grad_accum = 2 \\* 3"):
        par.rank_rows(8, 2, 0, grad_accum=3)
    y = torch.tensor([[-100, 1, 2, -100, 4], [-100, -100, -100, -100, -100]])
    assert par.scored_counts(y, 2).tolist() == [3, 2]  # columns 0, 2, 4: targets 2 and 4


def test_synthe_parallel_metrics_log_tokens_per_second_and_mfu(tmp_path):
    trainer = _trainer(steps=2, peak_flops=1e12, out_dir=str(tmp_path), eval_batches=1)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["tokens_per_s"] > 0
        assert r["mfu"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 1e12)
        # masked targets: the heads ran on fewer rows than the dense count assumes
        assert r["flops_per_token"] < model_flops_per_token(trainer.model, trainer.run.data.seq_len)
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / SHARDED).exists()


# --- FLOPs and MFU ------------------------------------------------------------------------------
def test_synthe_parallel_flops_hand_computed_case():
    """d=4, H=2 (d_h=2), 2 layers, chunk 2, conv 2, Kalman n=4, one probe (w=2), no hub, one exit, V=10, T=4."""
    cfg = SyntheConfig(vocab_size=10, d_model=4, n_layers=2, n_heads=2, chunk_size=2, conv_size=2, probe_layers=[1],
                       probe_window=2, hub=False, exit_layers=[0], router_aux_weight=0.5, router_aux_stride=2)
    t = 4
    momentum = 2 * 4 * 4 * 14 + 2 * 4 * 16 + 4 * 4 * 4 * 2 + 4 * 4 * 2 * 4  # in_proj, out_proj, state, intra-chunk
    delta = 2 * 4 * 4 * 20 + 2 * 4 * 16 + 2 * 4 * 12 * 2 + 10 * 4 * 2 * 4 + 6 * 4 * 4 * 2 + 2 * 2 * 2 * 2 * 3 / 3
    kalman = 8 * 4 * 4 * 4
    probe = 8 * 4 * 16 + 4 * 2 * 2 * 3 * 4  # projections + 2 blocks of 2 queries x 3 keys
    heads = 2 * 4 * 5 + 2 * 4 * 4 * 10 + 2 * 2 * 4 * 10  # router head, LM head, aux head on 2 of 4 positions
    expected = 2 * (momentum + delta + kalman) + probe + heads
    assert synthe_forward_flops(cfg, t) == expected
    assert model_flops_per_token(Synthe(cfg), t) == 3 * expected / t


@pytest.mark.parametrize("overrides, seq_len", [
    ({}, 40),  # hub, aux, padding to whole chunks and probe blocks
    ({"hub": False, "router_aux_weight": 0.0, "delta": False}, 32),
])
def test_synthe_parallel_flops_match_torch_flop_counter(small_config, overrides, seq_len):
    cfg = small_config(probe_threshold=2.0, **overrides)  # every probe fires
    model = Synthe(cfg).train()
    x = torch.randint(0, cfg.vocab_size, (1, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(x, targets=x, early_exit=False)
    assert synthe_forward_flops(cfg, seq_len) == counter.get_total_flops()


@pytest.mark.parametrize("overrides, seq_len", [({}, 40), ({"router_aux_weight": 0.0, "hub": False}, 32)])
def test_synthe_parallel_flops_at_scored_rows_match_torch_flop_counter(small_config, overrides, seq_len):
    """Training runs the heads at scored rows only: FlopCount.step is 3x what torch counts then."""
    cfg = small_config(probe_threshold=2.0, **overrides)  # every probe fires
    model = Synthe(cfg).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (2, seq_len), generator=g)
    y = torch.where(torch.rand(2, seq_len, generator=g) < 0.3, x, torch.full_like(x, -100))
    n, n_aux = par.scored_counts(y, cfg.router_aux_stride).tolist()
    with FlopCounterMode(display=False) as counter:
        model(x, targets=y, early_exit=False, scored_logits=True)
    count = model_flops(model, seq_len)
    assert count.step(2, n, n_aux) == 3 * counter.get_total_flops()
    assert 0 < n < 2 * seq_len and count.per_token(2, n, n_aux) < model_flops_per_token(model, seq_len)


def test_synthe_parallel_transformer_flops_at_scored_rows():
    baseline = _trainer(model_type="transformer").model
    c, t = baseline.config, 16
    dense = model_flops_per_token(baseline, t)
    assert model_flops(baseline, t).per_token(4, 4 * t) == pytest.approx(dense)  # every row scored
    skipped = 4 * t - 10  # rows without a target: no head there (2 d V forward each, 3x in training)
    saved = 3 * skipped * 2 * c.d_model * c.vocab_size / (4 * t)
    assert model_flops(baseline, t).per_token(4, 10) == pytest.approx(dense - saved)


def test_synthe_parallel_mfu_and_peak_table():
    assert mfu(6e9, 1000.0, 1e13, world_size=2) == pytest.approx(0.3)
    assert mfu(6e9, 1000.0, None) is None
    assert peak_flops(torch.device("cpu")) is None and peak_flops(torch.device("cpu"), 2e12) == 2e12
    assert PEAK_FLOPS["H100 SXM"] == 989e12 and PEAK_FLOPS["A100"] == 312e12
    baseline = _trainer(model_type="transformer").model
    n = sum(p.numel() for p in baseline.parameters())
    c = baseline.config
    assert model_flops_per_token(baseline, 16) == 6 * n + 12 * c.n_layers * c.d_model * 16  # PaLM: 6N + 12 L d T


# --- configuration, CLI, process checks ---------------------------------------------------------
def test_synthe_parallel_config_options_and_errors():
    t = TrainConfig.from_dict({"parallel": "fsdp", "grad_accum": 2, "autocast": "off",
                               "activation_checkpointing": True, "compile": False, "peak_flops": 1e12})
    assert (t.parallel, t.grad_accum, t.autocast, t.activation_checkpointing, t.peak_flops) == \
        ("fsdp", 2, "off", True, 1e12)
    errors = [({"parallel": "zero3"}, "TrainConfig.parallel"), ({"autocast": "fp16"}, "TrainConfig.autocast"),
              ({"grad_accum": 0}, "grad_accum must be >= 1"),
              ({"batch_size": 6, "grad_accum": 4}, "multiple of grad_accum"), ({"peak_flops": -1.0}, "peak_flops"),
              ({"shard": True}, r"unknown TrainConfig key\(s\) \['shard'\]"),
              ({"dtype": "float16"}, "TrainConfig.dtype"), ({"dtype": "float64", "autocast": "bf16"}, "needs dtype float32")]
    for values, message in errors:
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_dict(values)
    cpu = torch.device("cpu")
    assert par.autocast_dtype("auto", cpu) is None and par.autocast_dtype("off", cpu) is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        par.autocast_dtype("bf16", cpu)


def test_synthe_parallel_cli_flags_reach_the_config():
    args = build_parser().parse_args(["train", "--data", "copy", "--parallel", "ddp", "--grad_accum", "4", "--autocast",
                                      "off", "--activation_checkpointing", "--compile", "--peak_flops", "3e12"])
    t = run_config_from_args(args).train
    assert (t.parallel, t.grad_accum, t.autocast, t.activation_checkpointing, t.compile, t.peak_flops) == \
        ("ddp", 4, "off", True, True, 3e12)
    assert run_config_from_args(build_parser().parse_args(["train", "--data", "copy"])).train.activation_checkpointing is False


def test_synthe_parallel_refuses_one_process_settings_in_a_group():
    with fake_process_group(2):
        with pytest.raises(ValueError, match="parallel is 'none' but the job has 2 processes"):
            _trainer()
        with pytest.raises(ValueError, match="names one GPU"):
            par.join(TrainConfig(parallel="ddp", device="cuda:1"), torch.device("cpu"))


@pytest.mark.slow
def test_synthe_parallel_torchrun_cli_trains_and_resumes(tmp_path):
    """``torchrun --nproc_per_node 2 -m synthfuse.synthe.train``: 4 FSDP steps, then 2 more resumed."""
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
            "synthfuse.synthe.train", "--data", "copy", "--seq_len", "16", "--vocab_size", "12", "--batch_size", "8",
            "--eval_batches", "1", "--checkpoint_interval", "2", "--parallel", "fsdp", "--device", "cpu",
            "--out_dir", str(tmp_path), "--no_progress", "--config"]
    config = tmp_path / "run.yaml"
    RunConfig.from_dict(st.parallel_run_config()).to_yaml(config)
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run([*base, str(config), "--max_steps", "4"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 processes (fsdp, gloo)" in first.stdout
    again = subprocess.run([*base, str(config), "--max_steps", "6", "--resume"], capture_output=True, text=True, env=env,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]


@pytest.mark.cuda
def test_synthe_parallel_bf16_autocast_on_cuda():
    fp32 = _trainer(device="cuda", autocast="off")
    bf16 = _trainer(device="cuda", autocast="auto")
    assert bf16.amp_dtype == torch.bfloat16 and fp32.amp_dtype is None
    x, y = bf16.data.batch("train", 8, st_batch_generator(0))
    with par.autocast(bf16.amp_dtype, bf16.device):
        assert bf16.model(x.cuda(), targets=y.cuda(), early_exit=False)["logits"].dtype == torch.bfloat16
    low, high = bf16.backward_step(0), fp32.backward_step(0)
    assert low["loss"] == pytest.approx(high["loss"], abs=5e-2)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 weights, bf16 compute
    assert all(torch.isfinite(p.grad).all() for p in bf16.model.parameters() if p.grad is not None)
