"""DCP checkpoints in one process: round trip, atomicity under crashes, the latest pointer, pruning."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from torch.distributed.checkpoint.filesystem import FileSystemWriter  # noqa: E402

from synthfuse.shared.distributed import (  # noqa: E402
    checkpoint_info, latest_checkpoint, load_checkpoint, resume_point, save_checkpoint,
)
from synthfuse.shared.distributed import _checkpoint  # noqa: E402
from synthfuse.shared.distributed import testing as dt  # noqa: E402


def _trained(steps=3, seed=0):
    model = dt.make_model(seed=seed)
    opt = dt.make_optimizer("adam", model.parameters())
    X, Y = dt.make_regression_data()
    dt.train_steps(model, opt, X, Y, steps)
    return model, opt, X, Y


def _same(a, b) -> bool:
    sa, sb = dt.full_state(a), dt.full_state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_shared_distributed_checkpoint_round_trip_restores_model_and_adam(tmp_path):
    model, opt, X, Y = _trained()
    path = save_checkpoint(tmp_path, 3, model, opt, extra={"sampler": {"epoch": 1, "position": 4}})
    assert path == tmp_path / "step_00000003" and (tmp_path / "latest").read_text() == "step_00000003\n"
    meta = json.loads((path / "meta.json").read_text())
    assert meta["step"] == 3 and meta["world_size"] == 1 and meta["has_optimizer"]
    expected = dt.train_steps(model, opt, X, Y, 4)

    fresh, fresh_opt, _, _ = _trained(steps=1, seed=5)
    info = load_checkpoint(tmp_path, fresh, fresh_opt)
    assert (info.path, info.step, info.world_size) == (path, 3, 1)
    assert info.extra == {"sampler": {"epoch": 1, "position": 4}}
    assert dt.train_steps(fresh, fresh_opt, X, Y, 4) == expected  # moments and step counts restored
    assert _same(fresh, model)


def test_shared_distributed_checkpoint_two_optimizers_and_replicated_state(tmp_path):
    model, opt, X, Y = _trained()
    head_opt = torch.optim.SGD(model.head.parameters(), lr=0.1, momentum=0.9)  # a second optimizer
    body_opt = dt.make_optimizer("adam", [p for n, p in model.named_parameters() if not n.startswith("head")])
    for _ in range(2):
        loss = torch.nn.functional.mse_loss(model(X), Y)
        head_opt.zero_grad(), body_opt.zero_grad()
        loss.backward()
        head_opt.step(), body_opt.step()
    factors = {"A": torch.randn(3, 3), "steps": 7, "names": ["a", "b"]}
    save_checkpoint(tmp_path, 2, model, [body_opt, head_opt], replicated=factors)
    assert (tmp_path / "step_00000002" / "replicated.pt").is_file()

    fresh = dt.make_model(seed=8)
    fresh_head = torch.optim.SGD(fresh.head.parameters(), lr=0.1, momentum=0.9)
    fresh_body = dt.make_optimizer("adam", [p for n, p in fresh.named_parameters() if not n.startswith("head")])
    peek = checkpoint_info(tmp_path)  # meta and replicated state only: the model is untouched
    assert (peek.step, peek.world_size, peek.extra) == (2, 1, {}) and not _same(fresh, model)
    info = load_checkpoint(tmp_path, fresh, [fresh_body, fresh_head])
    assert _same(fresh, model) and info.replicated["steps"] == 7 and info.replicated["names"] == ["a", "b"]
    assert info.path == peek.path and torch.equal(peek.replicated["A"], factors["A"])
    assert torch.equal(info.replicated["A"], factors["A"])
    for new, old in ((fresh_head, head_opt), (fresh_body, body_opt)):
        for p_new, p_old in zip(new.param_groups[0]["params"], old.param_groups[0]["params"]):
            for key, value in old.state[p_old].items():
                assert torch.equal(new.state[p_new][key], value), key
    save_checkpoint(tmp_path, 3, model)
    assert load_checkpoint(tmp_path, fresh).replicated is None


def test_shared_distributed_checkpoint_model_only_and_wrong_requests(tmp_path):
    model, _, _, _ = _trained()
    save_checkpoint(tmp_path, 0, model)
    other = dt.make_model(seed=1)
    load_checkpoint(tmp_path / "step_00000000", other)
    assert _same(other, model)
    with pytest.raises(ValueError, match="without optimizer state"):
        load_checkpoint(tmp_path, other, dt.make_optimizer("adam", other.parameters()))
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "nothing", other)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint_info(tmp_path / "nothing")
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path, 1, model, extra={"x": torch.ones(1)})
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, model)
    with pytest.raises(RuntimeError, match="load from"):  # a model with other parameter names
        load_checkpoint(tmp_path, dt.make_model(depth=4))
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000000"


@pytest.mark.parametrize("where", ["writing shards", "before rename", "before latest"])
def test_shared_distributed_checkpoint_crash_during_save_keeps_previous(tmp_path, monkeypatch, where):
    """A save that dies at any point (here: raises, leaving disk exactly as a kill would) leaves
    the previous checkpoint loadable; the next save cleans up and succeeds."""
    model, opt, X, Y = _trained()
    save_checkpoint(tmp_path, 3, model, opt)
    saved = dt.full_state(model)
    dt.train_steps(model, opt, X, Y, 2)

    def crash(*args, **kwargs):
        raise OSError(f"simulated crash {where}")

    if where == "writing shards":
        original = FileSystemWriter.write_data

        def half_then_crash(self, plan, planner):  # some bytes reach disk first
            original(self, plan, planner).wait()
            raise OSError("simulated crash writing shards")

        monkeypatch.setattr(FileSystemWriter, "write_data", half_then_crash)
    elif where == "before rename":
        monkeypatch.setattr(_checkpoint, "_publish", crash)
    else:
        real_write = _checkpoint.atomic_write_text
        monkeypatch.setattr(_checkpoint, "atomic_write_text",
                            lambda p, t: crash() if p.name == "latest" else real_write(p, t))
    with pytest.raises((RuntimeError, OSError), match="simulated crash"):
        save_checkpoint(tmp_path, 5, model, opt)
    monkeypatch.undo()

    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000003"  # the pointer moves last
    if where == "before latest":
        assert (tmp_path / "step_00000005" / ".metadata").is_file()  # complete but not yet named
    else:
        assert (tmp_path / ".tmp-step_00000005").is_dir()  # the interrupted save is left as it was
    restored = dt.make_model(seed=9)
    info = load_checkpoint(tmp_path / "step_00000003", restored, dt.make_optimizer("adam", restored.parameters()))
    assert info.step == 3 and all(torch.equal(v, saved[k]) for k, v in dt.full_state(restored).items())

    save_checkpoint(tmp_path, 5, model, opt)
    assert not list(tmp_path.glob(".tmp-*")) and latest_checkpoint(tmp_path) == tmp_path / "step_00000005"


def test_shared_distributed_checkpoint_latest_pointer_fallback_resave_and_pruning(tmp_path):
    model, opt, X, Y = _trained()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt)
    (tmp_path / "latest").write_text("step_00000099\n")  # names a folder that is gone
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000003"
    (tmp_path / "latest").unlink()
    (tmp_path / "step_00000003" / ".metadata").unlink()  # incomplete: skipped
    assert latest_checkpoint(tmp_path) == tmp_path / "step_00000002"
    assert latest_checkpoint(tmp_path / "missing") is None

    dt.train_steps(model, opt, X, Y, 1)
    save_checkpoint(tmp_path, 2, model, opt, keep_last=2)  # re-save a step: replaced
    fresh = dt.make_model(seed=4)
    load_checkpoint(tmp_path, fresh)
    assert _same(fresh, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000002", "step_00000003"]
    save_checkpoint(tmp_path, 4, model, opt, keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000004"]
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, 5, model, opt, keep_last=0)


def test_shared_distributed_resume_point_picks_the_newer_and_refuses_one_process_files_in_a_group(tmp_path):
    single, root = tmp_path / "checkpoint.pt", tmp_path / "checkpoints"
    assert resume_point(None, single, root, world_size=1) is None  # nothing at all
    with pytest.raises(ValueError, match="one-process run"):  # only a one-process file, 2 ranks
        resume_point(4, single, root, world_size=2)
    assert resume_point(4, single, root, world_size=1) is None  # one process: resume from the file

    model, opt, _, _ = _trained()
    save_checkpoint(root, 6, model, opt)
    for world in (1, 2):
        assert resume_point(None, single, root, world_size=world).step == 6  # only the sharded one
        assert resume_point(4, single, root, world_size=world).step == 6  # the sharded one is newer
    assert resume_point(6, single, root, world_size=1) is None  # a tie: one process keeps its file
    assert resume_point(6, single, root, world_size=2).step == 6  # a group takes the shards
    assert resume_point(9, single, root, world_size=1) is None  # the file is newer
    with pytest.raises(ValueError, match=r"checkpoint.pt \(step 9\) of a one-process run; a 2-process run"):
        resume_point(9, single, root, world_size=2)
