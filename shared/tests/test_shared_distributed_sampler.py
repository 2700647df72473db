"""ResumableSampler: DistributedSampler's indices, exact resume, resume on another world size."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, DistributedSampler, TensorDataset  # noqa: E402

from synthfuse.shared.distributed import ResumableSampler  # noqa: E402


@pytest.mark.parametrize("n", [2, 7, 10, 16])
@pytest.mark.parametrize("world", [1, 3, 4])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shared_distributed_sampler_equals_distributed_sampler(n, world, shuffle, drop_last):
    data = list(range(n))
    for rank in range(world):
        ours = ResumableSampler(n, num_replicas=world, rank=rank, shuffle=shuffle, seed=5, drop_last=drop_last)
        ref = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=shuffle, seed=5, drop_last=drop_last)
        for epoch in (0, 1, 3):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)
            assert len(ours) == len(ref)
            assert ours.indices().tolist() == list(ref)


def _take(batches, k):
    return [next(batches).tolist() for _ in range(k)]


def test_shared_distributed_sampler_resumes_at_the_exact_next_batch():
    n, batch = 23, 4
    ref = ResumableSampler(n, num_replicas=2, rank=1, seed=3)
    uninterrupted = [b.tolist() for b in ref.batches(batch)]
    assert sum(map(len, uninterrupted)) == len(ref) == 12  # last batch short
    for k in range(len(uninterrupted) + 1):
        first = ResumableSampler(n, num_replicas=2, rank=1, seed=3)
        seen = _take(first.batches(batch), k)
        state = first.state_dict()
        resumed = ResumableSampler(n, num_replicas=2, rank=1, seed=3)
        resumed.load_state_dict(state)
        resumed.set_epoch(0)  # a restarted epoch loop calls this again: it must keep the position
        assert seen + [b.tolist() for b in resumed.batches(batch)] == uninterrupted
    # the next epoch starts from the beginning of a new permutation
    resumed.set_epoch(1)
    nxt = [b.tolist() for b in resumed.batches(batch)]
    assert resumed.state_dict()["position"] == 12 and nxt != uninterrupted


def test_shared_distributed_sampler_drop_last_batches_and_dataloader():
    s = ResumableSampler(10, num_replicas=1, rank=0, shuffle=False)
    assert [b.tolist() for b in s.batches(4, drop_last=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    ds = TensorDataset(torch.arange(10.0))
    s = ResumableSampler(ds, num_replicas=2, rank=0, seed=1)
    first = next(iter(DataLoader(ds, batch_size=2, sampler=s)))[0]
    assert s.position == 2  # num_workers=0: no read-ahead
    s2 = ResumableSampler(ds, num_replicas=2, rank=0, seed=1)
    s2.load_state_dict(s.state_dict())
    rest = torch.cat([b[0] for b in DataLoader(ds, batch_size=2, sampler=s2)])
    full = ResumableSampler(ds, num_replicas=2, rank=0, seed=1).indices().float()
    assert torch.equal(torch.cat([first, rest]), full)


@pytest.mark.parametrize("new_world", [1, 4])
def test_shared_distributed_sampler_state_moves_to_another_world_size(new_world):
    n, seed = 40, 9
    two = [ResumableSampler(n, num_replicas=2, rank=r, seed=seed) for r in range(2)]
    consumed = set()
    for s in two:
        consumed |= set(next(s.batches(8)).tolist())  # each rank trained on one batch of 8
    global_order = ResumableSampler(n, num_replicas=1, rank=0, seed=seed).indices().tolist()
    assert consumed == set(global_order[:16])
    rest = []
    for r in range(new_world):
        s = ResumableSampler(n, num_replicas=new_world, rank=r, seed=seed)
        s.load_state_dict(two[r % 2].state_dict())
        assert s.position == 16 // new_world
        rest += s.indices()[s.position:].tolist()
    assert sorted(rest) == sorted(global_order[16:])  # nothing lost, nothing repeated


def test_shared_distributed_sampler_finished_epoch_stays_finished_on_another_world_size():
    s = ResumableSampler(7, num_replicas=2, rank=0, seed=0)  # padded to 8
    list(s)
    one = ResumableSampler(7, num_replicas=1, rank=0, seed=0)
    one.load_state_dict(s.state_dict())
    assert one.position == len(one) == 7 and list(one) == []


def test_shared_distributed_sampler_rejects_bad_state_and_arguments():
    s = ResumableSampler(20, num_replicas=2, rank=0, seed=1)
    next(s.batches(3))
    state = s.state_dict()
    with pytest.raises(ValueError, match="seed=1"):
        ResumableSampler(20, num_replicas=2, rank=0, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="dataset_len=20"):
        ResumableSampler(21, num_replicas=2, rank=0, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="split evenly over 4 ranks"):
        ResumableSampler(20, num_replicas=4, rank=0, seed=1).load_state_dict(state)  # 6 consumed
    with pytest.raises(ValueError, match="lacks"):
        s.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="outside"):
        s.load_state_dict({**state, "position": 11})
    with pytest.raises(ValueError, match="rank < num_replicas"):
        ResumableSampler(5, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        next(s.batches(0))
    with pytest.raises(ValueError, match="epoch"):
        s.set_epoch(-1)
