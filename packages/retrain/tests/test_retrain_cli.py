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


def test_bench_summary_counts_the_diffuse_targets_and_midpoints():
    from synthfuse.retrain import bench

    def row(seed, model, acc, nfr, dom, seconds=None, **extra):
        return {"seed": seed, "model": model, "accuracy": acc, "nfr": nfr, "flips": 1, "nll": 0.5, "dominates": dom,
                "seconds": seconds, **extra}

    rows = [row(s, "θ† (superior)", 0.84, 0.05, False) for s in (0, 1)]
    rows += [row(0, "fdd", 0.85, 0.039, True, 10.0), row(1, "fdd", 0.85, 0.041, True, 20.0)]  # 22% and 18% less NFR
    rows += [row(0, "sb", 0.84, 0.05, False, 1.0, bridge_midpoint_nll=0.70, line_midpoint_nll=0.73),
             row(1, "sb", 0.84, 0.05, False, 3.0, bridge_midpoint_nll=0.75, line_midpoint_nll=0.74)]
    rows += [row(0, "til", 0.84, 0.04, True, 5.0), row(1, "til", 0.84, 0.05, False, 5.0)]
    table = {r["model"]: r for r in bench.summarize(rows)}
    assert table["fdd"]["target"].startswith("1/2") and table["fdd"]["time (s, under load)"] == "15.0 ± 7.1"
    assert table["til"]["target"].startswith("1/2") and table["sb"]["target"].startswith("1/2")
    assert table["sb"]["val loss at t = ½: path / line"] == "0.7250 / 0.7350 (≤ in 1/2)"
    assert table["fdd"]["val loss at t = ½: path / line"] == "" and table["θ† (superior)"]["time (s, under load)"] == ""
