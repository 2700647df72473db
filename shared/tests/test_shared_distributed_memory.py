"""Model-state memory: ZeRO's closed forms, exact counts on one process, FSDP2 shards for W = 8 (fake group)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from synthfuse.shared.distributed import (  # noqa: E402
    count_parameters, measure_memory, optimizer_states_per_param, zero_memory,
)
from synthfuse.shared.distributed import testing as dt  # noqa: E402


def test_shared_distributed_zero_memory_matches_the_zero_paper_example():
    """Rajbhandari et al. (2020), Fig. 1: 7.5B parameters, 64 GPUs, mixed-precision Adam
    (2 + 2 bytes for fp16 weights and gradients, K = 12 bytes of fp32 optimizer state)."""
    gb = [zero_memory(7_500_000_000, 64, stage=s, optimizer_states=6, bytes_per_value=2).total / 1e9
          for s in (0, 1, 2, 3)]
    assert gb == pytest.approx([120.0, 31.40625, 16.640625, 1.875])  # paper: 120, 31.4, 16.6, 1.9 GB


def test_shared_distributed_zero_memory_stages_split_what_they_shard():
    z = {s: zero_memory(1000, 4, stage=s, optimizer_states=2) for s in range(4)}
    assert (z[0].params, z[0].grads, z[0].optimizer) == (4000, 4000, 8000)
    assert (z[1].params, z[1].grads, z[1].optimizer) == (4000, 4000, 2000)
    assert (z[2].params, z[2].grads, z[2].optimizer) == (4000, 1000, 2000)
    assert (z[3].params, z[3].grads, z[3].optimizer) == (1000, 1000, 2000)
    assert z[3].as_dict(unit=1000) == {"params": 1, "grads": 1, "optimizer": 2, "total": 4}
    with pytest.raises(ValueError, match="stage"):
        zero_memory(10, 2, stage=4)
    with pytest.raises(ValueError, match="world_size"):
        zero_memory(10, 0)


def test_shared_distributed_measure_memory_counts_every_byte_on_one_process():
    model = dt.make_model(width=16, depth=2)
    n_params, n_tensors = count_parameters(model), len(list(model.parameters()))
    assert n_params == 8 * 16 + 16 + 2 * (16 * 16 + 16 + 2 * 16) + 16 + 1
    opt = torch.optim.Adam(model.parameters())
    before = measure_memory(model, opt)
    assert (before.params, before.grads, before.optimizer) == (4 * n_params, 0, 0)
    X, Y = dt.make_regression_data(d_in=8)
    dt.train_steps(model, opt, X, Y, 1)
    after = measure_memory(model, opt)
    # two float32 moments per parameter + one float32 step counter per tensor
    assert (after.grads, after.optimizer) == (4 * n_params, 8 * n_params + 4 * n_tensors)
    assert after.total == after.params + after.grads + after.optimizer
    model = model.double()
    assert measure_memory(model).params == 8 * n_params


def test_shared_distributed_optimizer_states_per_param():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert optimizer_states_per_param(torch.optim.Adam(p)) == 2
    assert optimizer_states_per_param(torch.optim.AdamW(p, amsgrad=True)) == 3
    assert optimizer_states_per_param(torch.optim.SGD(p, lr=0.1)) == 0
    assert optimizer_states_per_param(torch.optim.SGD(p, lr=0.1, momentum=0.9)) == 1
    assert optimizer_states_per_param(torch.optim.RMSprop(p, momentum=0.9, centered=True)) == 3
    with pytest.raises(TypeError, match="optimizer_states="):
        optimizer_states_per_param(torch.optim.LBFGS(p))


@pytest.mark.parametrize("rank", [0, 7])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_shared_distributed_fsdp_memory_is_zero3_for_eight_fake_ranks(rank, optimizer):
    with dt.fake_process_group(8, rank=rank) as env:
        report = dt.memory_scenario(env, "fsdp", optimizer, width=64, depth=4)
    assert torch.distributed.is_initialized() is False
    measured, predicted = report["measured"], report["predicted"]
    for part in ("params", "grads", "optimizer", "total"):
        assert measured[part] == pytest.approx(predicted[part], rel=0.01), part
    assert measured["params"] == 4 * report["num_params"] / 8  # every dim divides by 8: exact
    assert measured["params"] == measured["grads"]
