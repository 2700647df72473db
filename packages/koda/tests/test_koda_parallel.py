"""Distributed KODA training on torch.distributed.

One spawn of 2 gloo ranks (file store, 1 thread each; ``synthfuse.koda.testing.two_rank_scenarios``)
runs FSDP2 parity for SGD, AdamW and K-FAC, DDP with MoE + critic and an exact resume, a crashing
save and the ZeRO-3 memory; one process gives the references; ``torchrun`` restarts a killed
rank; a fake process group plays rank 0 and 7 of 8.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from synthfuse.koda import testing as kt
from synthfuse.koda.optim import counter_uniform, keyed_categorical
from synthfuse.koda.optim.sampling import _reference_counter_uniform
from synthfuse.koda.topology_model import AllReduceFit, NetworkModel
from synthfuse.koda.train import parallel as parallel_mod
from synthfuse.koda.train.config import ParallelConfig, load_config
from synthfuse.koda.train.data import ProgramCorpus, collate
from synthfuse.koda.train.parallel import FAULT_STEP_ENV, Parallelism, shard_rows
from synthfuse.koda.train.trainer import CHECKPOINT, SHARDED, KodaTrainer
from synthfuse.shared.distributed import spawn_local
from synthfuse.shared.distributed.testing import fake_process_group, full_state

STEPS = kt.STEPS
TOL = 1e-5
KEYS = ("total", "ce", "structure")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("koda2")
    results = spawn_local(kt.two_rank_scenarios, 2, str(root))
    return {"rank0": results[0], "rank1": results[1], "root": root}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("koda1")
    return {name: kt.train_run(None, kt.run_config(o), str(root / name)) for name, o in kt.PARITY_RUNS.items()}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _series(history: list[dict], key: str) -> torch.Tensor:
    return torch.tensor([h[key] for h in history], dtype=torch.float64)


@pytest.mark.parametrize("run", list(kt.PARITY_RUNS))
def test_koda_parallel_two_rank_fsdp_equals_one_process(two_ranks, one_process, run):
    ref = one_process[run]
    assert [h["step"] for h in ref["history"]] == list(range(1, STEPS + 1))
    for rank in ("rank0", "rank1"):
        got = two_ranks[rank]["parity"][run]
        for key in KEYS:
            torch.testing.assert_close(_series(got["history"], key), _series(ref["history"], key), atol=TOL, rtol=0)
        assert got["history"][-1]["val_ce"] == pytest.approx(ref["history"][-1]["val_ce"], abs=TOL)
        assert _max_diff(got["params"], ref["params"]) < TOL
    # it trained: a frozen model would match trivially
    assert ref["history"][-1]["ce"] < ref["history"][0]["ce"] - 0.5
    assert two_ranks["rank0"]["parity"][run]["history"] == two_ranks["rank1"]["parity"][run]["history"]


def test_koda_parallel_kfac_preconditions_differently_from_plain_sgd(one_process):
    kfac, sgd = one_process["fsdp-kfac"]["params"], one_process["fsdp-sgd"]["params"]
    assert _max_diff(kfac, sgd) > 1e-2


def test_koda_parallel_reshard_two_rank_checkpoint_into_one_process(two_ranks, tmp_path):
    """The 2-rank FSDP2 checkpoint of step 10 (AdamW state included) continues on one process
    exactly as the 2-rank run continued; the weights-only checkpoint.pt holds the final weights."""
    source = two_ranks["root"] / "fsdp-adamw"
    two = two_ranks["rank0"]["parity"]["fsdp-adamw"]
    exported = torch.load(source / CHECKPOINT, weights_only=True)
    assert exported["step"] == STEPS and "optimizer" not in exported
    assert _max_diff(exported["model"], two["params"]) == 0.0
    work = tmp_path / "one"
    shutil.copytree(source / SHARDED / "step_00000010", work / SHARDED / "step_00000010")
    trainer = KodaTrainer(load_config(kt.run_config(kt.PARITY_RUNS["fsdp-adamw"])), out_dir=work)
    assert not trainer.parallel.is_distributed and trainer.step == 10
    assert trainer.history == two["history"][:10]
    logs = [trainer.train_step() for _ in range(STEPS - 10)]
    for key in KEYS:
        torch.testing.assert_close(_series(logs, key), _series(two["history"][10:], key), atol=TOL, rtol=0)
    assert _max_diff(full_state(trainer.model), two["params"]) < TOL


def test_koda_parallel_ddp_moe_critic_resume_on_two_ranks_is_exact(two_ranks):
    for rank in ("rank0", "rank1"):
        r = two_ranks[rank]
        assert r["resumed_from"] == 10
        assert r["resumed"]["history"] == r["uninterrupted"]["history"]  # bit for bit, MoE and critic noise included
        assert _max_diff(r["resumed"]["params"], r["uninterrupted"]["params"]) == 0.0
        assert _max_diff(r["resumed"]["critic"], r["uninterrupted"]["critic"]) == 0.0
        assert {"wdist", "gp", "adv", "balance"} <= set(r["resumed"]["history"][-1])
    # the measured all-reduce fit planned the same DDP buckets on both ranks
    plans = [two_ranks[r]["uninterrupted"]["plan"] for r in ("rank0", "rank1")]
    assert plans[0] == plans[1] and plans[0]["world_size"] == 2 and plans[0]["allreduce_seconds"] > 0


def test_koda_parallel_crash_during_save_keeps_the_previous_checkpoint(two_ranks):
    resume_dir = two_ranks["root"] / "resume"
    for rank in ("rank0", "rank1"):
        crash = two_ranks[rank]["save_crash"]
        assert crash.startswith("RuntimeError: checkpoint save to") and "simulated crash" in crash
        assert two_ranks[rank]["latest_after_crash"] == str(resume_dir / SHARDED / "step_00000020")
    assert torch.load(resume_dir / CHECKPOINT, weights_only=True)["step"] == STEPS  # not replaced either
    assert (resume_dir / SHARDED / ".tmp-step_00000021").is_dir()


def test_koda_parallel_gloo_allreduce_times_feed_the_ring_model_fit(two_ranks):
    measured = [two_ranks[r]["allreduce"] for r in ("rank0", "rank1")]
    assert measured[0] == measured[1]  # the slowest rank's times, on every rank
    seconds = measured[0]["seconds"]
    assert len(seconds) == 4 and all(0 < t < 10 for t in seconds)
    fit = measured[0]
    assert all(map(math.isfinite, (fit["alpha"], fit["beta_byte"], fit["r2"]))) and fit["r2"] <= 1
    # the fitted model reproduces the measurements it came from (loose: a loaded CI machine is noisy)
    model = NetworkModel.from_fit(AllReduceFit(fit["alpha"], fit["beta_byte"], fit["r2"], 2))
    predicted = model.ring_allreduce_time(torch.tensor(fit["bytes"]).numpy(), 2)
    assert float(predicted.sum()) == pytest.approx(sum(seconds), rel=0.9)


def test_koda_parallel_fsdp_memory_is_zero3(two_ranks):
    for rank in ("rank0", "rank1"):
        report = two_ranks[rank]["memory"]
        assert report["world_size"] == 2
        for part in ("params", "grads", "optimizer", "total"):
            assert report["measured"][part] == pytest.approx(report["predicted"][part], rel=0.01), (rank, part)


TINY_SHAPE = {"d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 256, "n_experts": 4, "ball_dim": 8, "max_len": 64}


@pytest.mark.parametrize("rank", [0, 7])
def test_koda_parallel_fsdp_memory_is_zero3_for_eight_fake_ranks(rank):
    """The koda_tiny model on 8 ranks: every rank holds 1/8 of it only with balanced shards
    (4 experts cannot be split on their first dimension)."""
    with fake_process_group(8, rank=rank) as env:
        report = kt.memory_scenario(env, TINY_SHAPE)
        unbalanced = kt.memory_scenario(env, TINY_SHAPE, balanced=False)
    for part in ("params", "grads", "optimizer", "total"):
        assert report["measured"][part] == pytest.approx(report["predicted"][part], rel=0.01), part
    assert report["num_params"] > 900_000
    ratio = unbalanced["measured"]["total"] / unbalanced["predicted"]["total"]
    assert ratio > 1.5 if rank == 0 else ratio < 0.5  # dim-0 shards: whole experts on ranks 0-3, none on 4-7


def test_koda_parallel_torchrun_restarts_a_killed_rank(two_ranks, tmp_path):
    """torchrun --max-restarts 1: rank 1 dies (SIGKILL) after step 13; the job restarts, resumes from
    the step-10 checkpoint and ends with the history of the uninterrupted 2-rank run."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(kt.run_config(kt.PARITY_RUNS["fsdp-adamw"], train={"checkpoint_every": 5})))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", FAULT_STEP_ENV: "13"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--max-restarts", "1", "-m", "synthfuse.koda.train", "--config", str(config), "--out-dir", str(out),
           "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (out / ".fault-injected-step-13").is_file()  # a rank really died ...
    assert "resuming at step 10" in proc.stdout  # ... and the restarted job took the last checkpoint
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))  # no step lost or repeated
    reference = two_ranks["rank0"]["parity"]["fsdp-adamw"]["history"]
    assert history[-1]["total"] == reference[-1]["total"]
    for key in KEYS + ("val_ce",):
        assert [h.get(key) for h in history] == [h.get(key) for h in reference], key


# --- one process -------------------------------------------------------------------------------
def test_koda_parallel_counter_uniform_is_splitmix_and_uniform():
    keys = torch.tensor([0, 1, -3, 2**40, 2**62 + 7])
    got = counter_uniform(5, keys, 11)
    expected = [_reference_counter_uniform(5, int(k), 11) for k in keys]
    assert got.dtype == torch.float64 and got.tolist() == expected
    u = counter_uniform(1, torch.arange(100_000))
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.005) and float(u.var()) == pytest.approx(1 / 12, abs=0.002)
    assert float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1]) == pytest.approx(0.0, abs=0.01)
    assert counter_uniform(2, torch.arange(5)).tolist() != counter_uniform(1, torch.arange(5)).tolist()
    with pytest.raises(TypeError, match="integer"):
        counter_uniform(0, torch.ones(2))


def test_koda_parallel_keyed_categorical_samples_softmax_whatever_the_split():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    n = 40_000
    draws = keyed_categorical(logits.expand(n, 4), 3, torch.arange(n))
    freq = torch.bincount(draws, minlength=4).double() / n
    torch.testing.assert_close(freq, torch.softmax(logits.double(), 0), atol=0.01, rtol=0)
    # a (B, T, C) batch split in two halves (and padded differently) draws the same samples
    batch = torch.randn(6, 5, 7)
    ids, pos = torch.tensor([9, 4, 7, 1, 0, 3]), torch.arange(5)
    whole = keyed_categorical(batch, 0, 2, ids[:, None], pos[None, :])
    halves = [keyed_categorical(batch[r::2, :4 - r], 0, 2, ids[r::2, None], pos[None, :4 - r]) for r in (0, 1)]
    assert torch.equal(halves[0], whole[0::2, :4]) and torch.equal(halves[1], whole[1::2, :3])
    assert not torch.equal(keyed_categorical(batch, 0, 3, ids[:, None], pos[None, :]), whole)  # another step
    with pytest.raises(ValueError, match="own key"):
        keyed_categorical(batch, 0, 2, ids[:, None])


def test_koda_parallel_config_section_and_process_checks(tmp_path):
    cfg = load_config({"parallel": {"strategy": "ddp", "measure_comm": True}})
    assert cfg.parallel == ParallelConfig(strategy="ddp", measure_comm=True)
    for data, message in [({"parallel": {"strategy": "zero3"}}, "parallel.strategy"),
                          ({"parallel": {"backend": "mpi"}}, "parallel.backend"),
                          ({"parallel": {"keep_checkpoints": 0}}, "parallel.keep_checkpoints"),
                          ({"parallel": {"shard": True}}, r"parallel\.shard")]:
        with pytest.raises(ValueError, match=message):
            load_config(data)
    one = Parallelism(ParallelConfig(), "cpu")
    assert not one.is_distributed and one.local_batch_size(5) == 5
    total = torch.tensor(6.0)
    assert one.global_mean(total, 4).item() == 1.5 and one.mean_over_ranks({"a": total, "b": 2}) == {"a": 6.0, "b": 2.0}
    with fake_process_group(2):
        two = Parallelism(ParallelConfig(), "cpu")
        assert (two.rank, two.world_size, two.local_batch_size(4)) == (0, 2, 2)
        with pytest.raises(ValueError, match="multiple of the 2 processes"):
            two.local_batch_size(5)
        with pytest.raises(ValueError, match="strategy is 'none'"):
            Parallelism(ParallelConfig(strategy="none"), "cpu")
        with pytest.raises(ValueError, match="names one GPU"):
            Parallelism(ParallelConfig(), "cuda:1")


def test_koda_parallel_shard_rows_splits_validation_batches():
    corpus = ProgramCorpus(12, seed=3, max_len=160)
    batch = collate(corpus.train[:3], corpus.tokenizer.pad_id)
    parts = [shard_rows(batch, r, 2) for r in (0, 1)]
    assert torch.equal(parts[0].inputs, batch.inputs[[0, 2]]) and torch.equal(parts[1].inputs, batch.inputs[[1]])
    empty = shard_rows(batch, 3, 4)  # 3 rows, 4 ranks: rank 3 runs row 0 and scores nothing
    assert empty.inputs.shape[0] == 1 and not empty.loss_mask.any() and not empty.program.any()
    assert batch.loss_mask.any()  # the source batch is untouched


def test_koda_parallel_sharded_run_refuses_a_newer_one_process_checkpoint(tmp_path):
    cfg = load_config(kt.run_config())
    single = KodaTrainer(cfg, out_dir=tmp_path, resume=False)
    single.train_step()
    single.save()
    with fake_process_group(2):
        with pytest.raises(ValueError, match="one-process run"):
            KodaTrainer(cfg, out_dir=tmp_path)
    assert KodaTrainer(cfg, out_dir=tmp_path).step == 1  # one process resumes from it


def test_koda_parallel_fault_point_kills_the_chosen_rank_once(tmp_path, monkeypatch):
    kills = []
    monkeypatch.setattr(parallel_mod.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    par = Parallelism(ParallelConfig(), "cpu")
    par.fault_point(3, tmp_path)
    assert kills == []  # no variable: nothing happens
    monkeypatch.setenv(FAULT_STEP_ENV, "3")
    par.fault_point(2, tmp_path)
    assert kills == []
    par.fault_point(3, tmp_path)
    assert len(kills) == 1 and (tmp_path / ".fault-injected-step-3").is_file()
    par.fault_point(3, tmp_path)  # the restarted job passes step 3 again: the marker spares it
    assert len(kills) == 1


@pytest.mark.cuda
def test_koda_parallel_fsdp_on_cuda_matches_one_gpu(tmp_path):
    """FSDP2 over NCCL (2 GPUs, or 1) against one plain process on one GPU."""
    world = min(2, torch.cuda.device_count())
    config = kt.run_config(kt.PARITY_RUNS["fsdp-adamw"], train={"device": "cuda"})
    ref = kt.train_run(None, config, str(tmp_path / "one"))
    got = spawn_local(kt.train_run, world, config, str(tmp_path / "many"), device="cuda")
    for result in got:
        for key in KEYS:
            torch.testing.assert_close(_series(result["history"], key), _series(ref["history"], key),
                                       atol=1e-4, rtol=0)
        assert _max_diff(result["params"], ref["params"]) < 1e-4
