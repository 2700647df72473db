"""``synthfuse retrain train / run / bench`` end to end on a small data file."""

import json

import numpy as np
import pytest
import torch

from synthfuse.retrain import MLP
from synthfuse.retrain.cli import main
from synthfuse.retrain.datasets import synthetic_classification


@pytest.fixture
def data_file(tmp_path):
    ds = synthetic_classification(400, n_features=8, n_informative=6, n_classes=3, class_sep=2.0, seed=1)
    path = tmp_path / "data.npz"
    np.savez(path, X=ds.X.numpy(), y=ds.y.numpy())
    return path


def test_train_then_run(tmp_path, data_file, capsys):
    common = ["--data", str(data_file), "--hidden", "16"]
    assert main(["train", *common, "--fraction", "0.3", "--epochs", "5", "--seed", "1", "--out", str(tmp_path / "a.pt")]) == 0
    assert main(["train", *common, "--epochs", "5", "--seed", "2", "--out", str(tmp_path / "b.pt")]) == 0
    out = tmp_path / "c.pt"
    assert main(["run", *common, "--incumbent", str(tmp_path / "a.pt"), "--superior", str(tmp_path / "b.pt"),
                 "--method", "otwi", "--option", "finetune_epochs=2", "--option", "mode=spherical",
                 "--out", str(out), "--report", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "θ‡ otwi" in text and "dominates:" in text
    model = MLP(8, (16,), 3)
    model.load_state_dict(torch.load(out, weights_only=True))
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["metrics"]) == {"θ* incumbent", "θ† superior", "θ‡ otwi"}
    assert report["options"]["mode"] == "spherical" and "barrier_naive" in report["details"]


def test_run_rejects_checkpoint_of_another_architecture(tmp_path, data_file):
    torch.save(MLP(8, (32,), 3).state_dict(), tmp_path / "a.pt")
    with pytest.raises(SystemExit, match="does not fit --arch mlp"):
        main(["run", "--data", str(data_file), "--hidden", "16", "--incumbent", str(tmp_path / "a.pt"),
              "--superior", str(tmp_path / "a.pt"), "--out", str(tmp_path / "c.pt")])
    with pytest.raises(SystemExit, match="not found"):
        main(["run", "--data", str(data_file), "--incumbent", str(tmp_path / "nope.pt"),
              "--superior", str(tmp_path / "a.pt"), "--out", str(tmp_path / "c.pt")])


def test_convnet_checkpoints_on_square_inputs(tmp_path):
    ds = synthetic_classification(120, n_features=16, n_informative=6, n_classes=3, seed=2)
    path = tmp_path / "img.pt"
    torch.save({"X": ds.X, "y": ds.y}, path)
    assert main(["train", "--data", str(path), "--arch", "convnet", "--width", "4", "--epochs", "1",
                 "--out", str(tmp_path / "a.pt")]) == 0
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    assert state["0.weight"].shape == (4, 1, 3, 3)


def test_bench_quick_synthetic(tmp_path):
    pytest.importorskip("sklearn")
    from synthfuse.retrain import bench

    rows = bench.run_synthetic_seed(0, quick=True, methods=["otwi"])
    assert [r["model"] for r in rows][:2] == ["θ* (incumbent)", "θ† (superior)"] and rows[-1]["model"] == "otwi"
    table = bench.summarize(rows)
    assert table[-1]["target"].startswith(("0/1", "1/1"))
