"""The collective finiteness check on one process: flags, the error and its message, bad input."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from synthfuse.shared.distributed import (  # noqa: E402
    NonFiniteError, check_finite, nonfinite_flags, raise_if_nonfinite,
)
from synthfuse.shared.distributed.testing import fake_process_group  # noqa: E402


@pytest.mark.parametrize("values, expected", [
    ((torch.tensor(1.5),), 0.0),
    ((torch.tensor(float("nan")),), 1.0),
    ((torch.tensor([1.0, float("-inf")]),), 1.0),
    ((torch.tensor(2.0), torch.tensor([0.0, float("inf")], dtype=torch.float64)), 1.0),
    ((torch.ones(3, requires_grad=True).sum(),), 0.0),  # a graph tensor: detached, not differentiated
])
def test_shared_distributed_nonfinite_flags_on_one_process(values, expected):
    flags = nonfinite_flags(*values)
    assert flags.dtype == torch.float64 and flags.tolist() == [expected]


def test_shared_distributed_check_finite_raises_with_step_and_hint():
    check_finite(torch.tensor([1.0, -2.0]), step=4)  # finite: nothing happens
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(NaN or inf\) at step 4; try a lower") as info:
        check_finite(torch.tensor(1.0), torch.tensor(float("nan")), step=4)
    assert info.value.ranks == [0] and info.value.step == 4 and info.value.world_size == 1
    assert isinstance(info.value, FloatingPointError)  # callers catching the builtin still do
    with pytest.raises(NonFiniteError, match="non-finite grad norm .* at step 9; use --lr 1e-4"):
        check_finite(torch.tensor(float("inf")), step=9, what="grad norm", hint="use --lr 1e-4")


def test_shared_distributed_nonfinite_flags_mark_this_ranks_slot():
    """Rank 2 of 4 (a fake group: collectives are no-ops) writes only its own slot."""
    with fake_process_group(4, rank=2):
        assert nonfinite_flags(torch.tensor(float("nan"))).tolist() == [0.0, 0.0, 1.0, 0.0]
        assert nonfinite_flags(torch.tensor(0.0)).tolist() == [0.0] * 4
        with pytest.raises(NonFiniteError, match=r"on rank\(s\) \[1, 3\] of 4"):
            raise_if_nonfinite(torch.tensor([0.0, 0.25, 0.0, 0.5]), 1)  # a mean over ranks works too


def test_shared_distributed_nonfinite_checks_refuse_bad_input():
    with pytest.raises(ValueError, match="at least one tensor"):
        nonfinite_flags()
    with pytest.raises(ValueError, match=r"shape \(1,\) \(one per rank\), got \(2,\)"):
        raise_if_nonfinite(torch.zeros(2), 1)
