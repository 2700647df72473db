"""Process-group setup, backend choice, seeding, rank logging, apply_fsdp/apply_ddp checks, lazy import."""

from __future__ import annotations

import datetime
import logging
import random
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import synthfuse.shared as shared  # noqa: E402
from synthfuse.shared.distributed import (  # noqa: E402
    DistributedEnv, all_reduce_mean, all_reduce_sum, apply_ddp, apply_fsdp, choose_backend, init_distributed,
    rank_logger, rank_seed, seed_everything, spawn_local,
)
from synthfuse.shared.distributed import testing as dt  # noqa: E402
from synthfuse.shared.testing import run_python  # noqa: E402

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for name in _TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    if dist.is_initialized():
        dist.destroy_process_group()


def test_shared_distributed_choose_backend():
    assert choose_backend("cpu") == "gloo"
    if dist.is_nccl_available():
        assert choose_backend("cuda:0") == "nccl"
    else:
        with pytest.raises(RuntimeError, match="NCCL"):
            choose_backend("cuda")
    with pytest.raises(ValueError, match="'meta'"):
        choose_backend("meta")


def test_shared_distributed_init_without_launcher_is_one_plain_process(clean_env):
    env = init_distributed(device="cpu")
    assert env == DistributedEnv(0, 1, 0, None, torch.device("cpu"))
    assert not env.is_distributed and env.is_main and not dist.is_initialized()
    assert torch.equal(all_reduce_mean(torch.tensor([2.0, 4.0])), torch.tensor([2.0, 4.0]))


def test_shared_distributed_init_reads_torchrun_environment(clean_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        clean_env.setenv(name, value)
    env = init_distributed(device="cpu")
    assert (env.rank, env.world_size, env.backend, env.is_distributed) == (0, 1, "gloo", True)
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert init_distributed(device="cpu") == env  # a second call describes the same group


@pytest.mark.parametrize("env_vars, match", [
    ({"RANK": "0"}, "both rank and world_size"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, r"rank must lie in \[0, world_size\)"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT"),
    ({"RANK": "zero", "WORLD_SIZE": "2"}, "RANK='zero' is not an integer"),
])
def test_shared_distributed_init_rejects_incomplete_environment(clean_env, env_vars, match):
    for name, value in env_vars.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        init_distributed(device="cpu")
    assert not dist.is_initialized()


def test_shared_distributed_seed_everything_same_or_per_rank():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(3)
    a = draws()
    assert seed_everything(3, rank=0) == rank_seed(3, 0)
    assert draws() == a
    seed_everything(3, rank=1)
    b = draws()
    assert all(x != y for x, y in zip(a, b))
    seeds = {rank_seed(s, r) for s in range(40) for r in range(25)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)  # no collisions, int64-safe
    assert rank_seed(0, 1) != rank_seed(1, 0)  # unlike seed + rank
    # per-step streams: a function of (seed, rank, step) only, distinct from the step-free one
    assert seed_everything(3, 1, step=7) == rank_seed(3, 1, step=7) != rank_seed(3, 1, step=8)
    c = draws()
    seed_everything(3, 1, step=7)
    assert draws() == c and rank_seed(3, 1, step=0) != rank_seed(3, 1)
    assert len({rank_seed(0, r, step=s) for r in range(8) for s in range(100)}) == 800
    with pytest.raises(ValueError, match="step"):
        rank_seed(0, 0, step=-1)
    with pytest.raises(ValueError, match="rank"):
        rank_seed(0, -1)
    with pytest.raises(ValueError, match="seed"):
        seed_everything(1.5)
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)


def test_shared_distributed_rank_logger_speaks_on_rank_zero(capsys):
    rank_logger("sf.test.a", 0, 2).info("hello %d", 5)
    one = rank_logger("sf.test.a", 1, 2)
    one.info("not shown")
    one.warning("shown")
    rank_logger("sf.test.b", 1, 2, all_ranks=True).info("also shown")
    err = capsys.readouterr().err
    assert "[rank 0/2] INFO hello 5" in err and "[rank 1/2] WARNING shown" in err
    assert "not shown" not in err and "[rank 1/2] INFO also shown" in err
    assert len(logging.getLogger("sf.test.a.rank0").handlers) == 1
    rank_logger("sf.test.a", 0, 2)
    assert len(logging.getLogger("sf.test.a.rank0").handlers) == 1  # no duplicate lines


def test_shared_distributed_parallelism_needs_a_process_group(clean_env):
    with pytest.raises(RuntimeError, match="init_distributed"):
        apply_fsdp(dt.make_model(), dt.Block)
    with pytest.raises(RuntimeError, match="init_distributed"):
        apply_ddp(dt.make_model())


def test_shared_distributed_apply_fsdp_shards_blocks_inner_first(clean_env):
    fsdp = pytest.importorskip("torch.distributed.fsdp")
    with dt.fake_process_group(4):
        model = dt.make_model(width=8, depth=2)
        with pytest.raises(ValueError, match="no submodule of type LSTM"):
            apply_fsdp(model, torch.nn.LSTM)
        with pytest.raises(ValueError, match="not a proper submodule"):
            apply_fsdp(model, [dt.make_model().blocks[0]])
        with pytest.raises(TypeError, match="wrap a single module in a list"):
            apply_fsdp(model, model.head)
        # nested units: every Linear inside the blocks and the blocks themselves
        apply_fsdp(model, (dt.Block, torch.nn.Linear))
        units = [m for m in model.modules() if isinstance(m, fsdp.FSDPModule)]
        assert model in units and all(b in units for b in model.blocks) and model.blocks[0].fc in units
        assert len(units) == 1 + 2 + 4  # root, 2 blocks, inp/head/2 fc
        w = model.blocks[0].fc.weight
        assert type(w).__name__ == "DTensor" and w.to_local().shape == (2, 8) and w.shape == (8, 8)
        with pytest.raises(ValueError, match="already sharded"):
            apply_fsdp(model, dt.Block)
        listed = dt.make_model(width=8, depth=2)
        apply_fsdp(listed, listed.blocks)  # a ModuleList of blocks works as well
        assert isinstance(listed.blocks[1], fsdp.FSDPModule)


def test_shared_distributed_apply_fsdp_keeps_only_the_root_gathered_for_backward(clean_env):
    """Blocks free their gathered parameters after forward (ZeRO-3); the root unit keeps its own
    until backward, whatever the model returns (torch 2.11 did not regather a root freed after
    forward when the output was a dataclass)."""
    pytest.importorskip("torch.distributed.fsdp")
    with dt.fake_process_group(2):
        model = apply_fsdp(dt.make_model(width=8, depth=2), dt.Block, reshard_after_forward=True)
        model(torch.randn(4, 8)).sum()
        assert type(model.blocks[0].fc.weight).__name__ == "DTensor"  # resharded after its forward
        assert type(model.head.weight).__name__ != "DTensor" and model.head.weight.shape == (1, 8)


def test_shared_distributed_spawn_local_checks_arguments():
    with pytest.raises(ValueError, match="world_size"):
        spawn_local(dt.run_parity, 0)
    with pytest.raises(ValueError, match="device"):
        spawn_local(dt.run_parity, 1, device="tpu")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        spawn_local(dt.run_parity, 1, timeout_s=0)


def test_shared_distributed_names_are_lazy_and_say_which_extra():
    assert shared.apply_fsdp.__module__ == "synthfuse.shared.distributed._parallel"
    assert shared.ResumableSampler.__module__ == "synthfuse.shared.distributed._sampler"
    proc = run_python(
        "import sys; sys.modules['torch'] = None\n"
        "import synthfuse.shared as s\n"
        "try:\n    s.init_distributed\nexcept ImportError as e:\n    print(e)\n"
    )
    assert "pip install 'synthfuse-shared[torch]'" in proc.stdout, proc.stdout + proc.stderr


def test_shared_distributed_torchrun_agent_store_gets_a_prefix_per_restart(clean_env):
    """Restarted workers must not read the previous attempt's keys from torchrun's shared store."""
    from synthfuse.shared.distributed import _runtime

    assert _runtime._elastic_agent_store(2, 5.0) is None  # not under torchelastic
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = dist.TCPStore("127.0.0.1", port, 1, is_master=True, wait_for_workers=False,
                           timeout=datetime.timedelta(seconds=10))
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True",
                        "TORCHELASTIC_RESTART_COUNT": "3", "RANK": "0", "WORLD_SIZE": "1"}.items():
        clean_env.setenv(name, value)
    _runtime._elastic_agent_store(1, 5.0).set("key", "v3")
    assert server.check(["synthfuse/attempt_3/key"]) and not server.check(["key"])
    assert server.get("synthfuse/attempt_3/key") == b"v3"
    env = init_distributed(device="cpu")  # the group itself rendezvous under the prefix
    assert env.is_distributed and env.world_size == 1
    assert float(all_reduce_sum(torch.ones(1))) == 1.0


def test_shared_distributed_all_reduce_sum_and_mean_copy_on_one_process(clean_env):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    for reduce in (all_reduce_sum, all_reduce_mean):
        out = reduce(x)
        assert torch.equal(out, x.detach()) and out is not x and not out.requires_grad
    with dt.fake_process_group(2):  # collectives run (and change nothing) on a fake group
        assert torch.equal(all_reduce_sum(torch.ones(3)), torch.ones(3))


def test_shared_distributed_apply_fsdp_balanced_gives_every_rank_an_equal_share(clean_env):
    for rank in (0, 7):
        with dt.fake_process_group(8, rank=rank):
            plain = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.Linear(4, 16))
            plain[0].register_parameter("experts", torch.nn.Parameter(torch.zeros(4, 3, 24)))
            apply_fsdp(plain, [plain[0]], balanced=True)
            local = {name: tuple(p.to_local().shape) for name, p in plain.named_parameters()}
            # (4,) has no dimension 8 divides: its largest (only) one is split, 1 value on ranks 0-3
            assert local == {"0.weight": (4, 2), "0.bias": (1,) if rank < 4 else (0,), "0.experts": (4, 3, 3),
                             "1.weight": (2, 4), "1.bias": (2,)}, (rank, local)
            legacy = torch.nn.Sequential(torch.nn.Linear(16, 4))
            apply_fsdp(legacy, [legacy[0]])  # dim 0 always: rank 0 holds 1 of 4 rows, rank 7 none
            assert tuple(legacy[0].weight.to_local().shape) == ((1, 16) if rank == 0 else (0, 16))
