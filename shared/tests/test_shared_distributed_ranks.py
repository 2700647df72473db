"""Two real ranks (gloo, file store, 1 thread each) against one process: FSDP2/DDP parity,
DCP resume, a crashing save, the 2 -> 1 reshard and the per-rank memory of ZeRO-3.

All 2-rank work happens in one spawn (``two_rank_scenarios``); the tests below read its results.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from synthfuse.shared.distributed import DistributedEnv, load_checkpoint, spawn_local  # noqa: E402
from synthfuse.shared.distributed import testing as dt  # noqa: E402

STEPS = 20
TOL = 1e-5
RUNS = {"fsdp-sgd": ("sgd", None), "fsdp-adam": ("adam", 0.5), "ddp-adam": ("adam", 0.5)}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    results = spawn_local(dt.two_rank_scenarios, 2, str(root), STEPS)
    return {"rank0": results[0], "rank1": results[1], "root": root}


@pytest.fixture(scope="module")
def one_process():
    """The 1-process, full-batch references (no process group)."""
    env = DistributedEnv()
    return {name: dt.run_parity(env, "none", opt, STEPS, clip) for name, (opt, clip) in RUNS.items()}


def _max_param_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("run", list(RUNS))
def test_shared_distributed_two_rank_parity_with_one_process(two_ranks, one_process, run):
    ref = one_process[run]
    for rank in ("rank0", "rank1"):
        got = two_ranks[rank]["parity"][run]
        assert len(got["losses"]) == STEPS and got["local_batch"] == ref["local_batch"] // 2
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(ref["losses"]), atol=TOL, rtol=0)
        assert _max_param_diff(got["params"], ref["params"]) < TOL
    # the runs really trained (parity of a frozen model would prove nothing)
    assert ref["losses"][-1] < 0.5 * ref["losses"][0]
    assert _max_param_diff(ref["params"], dt.full_state(dt.make_model())) > 1e-2


def test_shared_distributed_fsdp_memory_is_zero3_over_two_ranks(two_ranks):
    for rank in ("rank0", "rank1"):
        for run, report in two_ranks[rank]["memory"].items():
            measured, predicted = report["measured"], report["predicted"]
            assert report["world_size"] == 2
            for part in ("params", "grads", "optimizer", "total"):
                assert measured[part] == pytest.approx(predicted[part], rel=0.01), (rank, run, part)
    fsdp, ddp = two_ranks["rank0"]["memory"]["fsdp-adam"], two_ranks["rank0"]["memory"]["ddp-adam"]
    # sharding halves every part; Adam keeps two moments per parameter
    assert fsdp["measured"]["params"] == 4 * fsdp["num_params"] / 2
    assert ddp["measured"]["params"] == 2 * fsdp["measured"]["params"]
    assert fsdp["measured"]["optimizer"] == pytest.approx(2 * fsdp["measured"]["params"], rel=0.01)


def test_shared_distributed_all_reduce_sum_over_two_ranks(two_ranks):
    assert two_ranks["rank0"]["rank_sum"] == two_ranks["rank1"]["rank_sum"] == 3.0


def test_shared_distributed_nonfinite_on_one_rank_raises_on_every_rank(two_ranks):
    r0, r1 = two_ranks["rank0"]["finite"], two_ranks["rank1"]["finite"]
    assert r0 == r1  # the same outcome and message on both ranks
    assert r0["clean"] == {"error": None}
    assert r0["nan_on_last"]["ranks"] == [1] and r0["nan_on_last"]["step"] == 2
    assert "non-finite loss (NaN or inf) at step 2 on rank(s) [1] of 2" in r0["nan_on_last"]["error"]
    assert r0["everywhere"]["ranks"] == [0, 1] and r0["everywhere"]["step"] == 3
    assert r0["ride_along"]["ranks"] == [1] and "non-finite critic loss" in r0["ride_along"]["error"]
    assert r0["ride_along_mean"] == 1.5  # the value the flags rode along with: mean of 1 and 2


def test_shared_distributed_dcp_resume_on_two_ranks_gives_identical_losses(two_ranks):
    for rank in ("rank0", "rank1"):
        r = two_ranks[rank]
        assert r["resumed_step"] == STEPS // 2 and r["resumed_extra"] == {"note": "half"}
        assert r["losses_after_resume"] == r["losses_after_save"]  # bit for bit
    assert two_ranks["rank0"]["losses_after_save"] == two_ranks["rank1"]["losses_after_save"]


def test_shared_distributed_crash_during_two_rank_save_keeps_previous(two_ranks):
    root = two_ranks["root"]
    for rank in ("rank0", "rank1"):
        # rank 1's writer failed: DCP's error, with rank 1's traceback, reaches both ranks
        crash = two_ranks[rank]["writer_crash"]
        assert crash.startswith("RuntimeError: checkpoint save to") and "simulated crash while writing" in crash
    assert two_ranks["rank0"]["commit_crash"] == "OSError: simulated crash before rename"
    assert two_ranks["rank1"]["commit_crash"].startswith("RuntimeError: checkpoint file operations failed on rank 0")
    for rank in ("rank0", "rank1"):
        assert two_ranks[rank]["latest_after_crash"] == str(root / f"step_{STEPS // 2:08d}")
    assert (root / "latest").read_text().strip() == f"step_{STEPS // 2:08d}"
    assert not (root / f"step_{STEPS:08d}").exists()


def test_shared_distributed_reshard_two_ranks_into_one_plain_model(two_ranks, one_process):
    """The 2-rank FSDP checkpoint loads into a plain model + Adam on one process, no process group."""
    r0 = two_ranks["rank0"]
    model = dt.make_model(seed=7)
    opt = dt.make_optimizer("adam", model.parameters())
    info = load_checkpoint(two_ranks["root"], model, opt)
    assert (info.step, info.world_size) == (STEPS // 2, 2)
    assert _max_param_diff(dt.full_state(model), r0["params_at_save"]) == 0.0
    assert all(float(s["step"]) == STEPS // 2 for s in opt.state.values())
    X, Y = dt.make_regression_data()
    losses = dt.train_steps(model, opt, X, Y, STEPS - STEPS // 2, clip=0.5)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(r0["losses_after_save"]), atol=TOL, rtol=0)
    # ... and the continued run lands where the uninterrupted 1-process run does
    assert _max_param_diff(dt.full_state(model), one_process["fsdp-adam"]["params"]) < TOL


@pytest.mark.cuda
def test_shared_distributed_fsdp_parity_on_cuda_nccl():
    n_gpu = torch.cuda.device_count()
    world = 2 if n_gpu >= 2 else 1
    got = spawn_local(dt.run_parity, world, "fsdp", "adam", STEPS, 0.5, device="cuda")[0]
    ref = dt.run_parity(DistributedEnv(device=torch.device("cuda", 0)), "none", "adam", STEPS, 0.5)
    torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(ref["losses"]), atol=TOL, rtol=0)
    assert _max_param_diff(got["params"], ref["params"]) < TOL


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_shared_distributed_two_rank_scenarios_on_two_gpus(tmp_path):
    r0, r1 = spawn_local(dt.two_rank_scenarios, 2, str(tmp_path), STEPS, device="cuda")
    ref = dt.run_parity(DistributedEnv(device=torch.device("cuda", 0)), "none", "adam", STEPS, 0.5)
    for r in (r0, r1):
        for run in ("fsdp-adam", "ddp-adam"):
            got = r["parity"][run]
            torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(ref["losses"]), atol=TOL, rtol=0)
        assert r["losses_after_resume"] == r["losses_after_save"]
        assert "simulated crash" in r["writer_crash"] and "simulated crash" in r["commit_crash"]
        for report in r["memory"].values():
            assert report["measured"]["total"] == pytest.approx(report["predicted"]["total"], rel=0.01)
    model = dt.make_model(seed=7)
    load_checkpoint(tmp_path, model)  # the GPU checkpoint, resharded into a CPU model
    assert _max_param_diff(dt.full_state(model), r0["params_at_save"]) == 0.0
