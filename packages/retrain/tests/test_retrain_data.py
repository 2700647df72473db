"""Data handling and the API boundary: loaders, tensors, and clear errors."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from synthfuse.retrain import as_dataset, available_methods, retrain
from synthfuse.retrain.data import check_architectures
from synthfuse.retrain.datasets import load_data, split, synthetic_classification


def test_loader_and_pair_give_the_same_dataset(problem):
    train, _ = problem
    loader = DataLoader(TensorDataset(train.X, train.y), batch_size=50, shuffle=False)
    a, b = as_dataset(loader, "train"), as_dataset((train.X, train.y), "train")
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    c = as_dataset((train.X.numpy(), train.y.numpy()))
    assert torch.equal(c.X, b.X) and c.y.dtype == torch.long


@pytest.mark.parametrize(
    "data,error,match",
    [
        (None, ValueError, "train data is required"),
        ((torch.zeros(4, 2), torch.zeros(3, dtype=torch.long)), ValueError, "N = len"),
        ((torch.zeros(4, 2), torch.zeros(4)), TypeError, "integers"),
        ((torch.full((4, 2), float("nan")), torch.zeros(4, dtype=torch.long)), ValueError, "NaN"),
        ((torch.zeros(4, 2), -torch.ones(4, dtype=torch.long)), ValueError, ">= 0"),
        ((torch.zeros(4, 2),), ValueError, "pair"),
        ("digits.csv", TypeError, "DataLoader"),
        ((torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), ValueError, "empty"),
    ],
)
def test_bad_data_is_rejected_clearly(data, error, match):
    with pytest.raises(error, match=match):
        as_dataset(data, "train")


def test_loader_of_single_tensors_is_rejected():
    loader = DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2)
    with pytest.raises(TypeError, match=r"\(inputs, labels\) pair"):
        as_dataset(loader, "val")


def test_missing_data_and_mismatched_architectures(upgrade_pair, problem, make_mlp):
    inc, sup = upgrade_pair
    train, val = problem
    with pytest.raises(ValueError, match="val data is required"):
        retrain(inc, sup, train=(train.X, train.y), method="kdt")
    with pytest.raises(ValueError, match="train data is required"):
        retrain(inc, sup, val=(val.X, val.y), method="kdt")
    wider = make_mlp(3, hidden=(20, 12))
    with pytest.raises(ValueError, match=r"share one architecture: '0.weight' has shape"):
        retrain(inc, wider, train=(train.X, train.y), val=(val.X, val.y))
    with pytest.raises(ValueError, match="only in incumbent"):
        check_architectures(inc, make_mlp(3, hidden=(16,)))
    with pytest.raises(TypeError, match="nn.Module"):
        check_architectures(inc, "θ†.pt")


def test_models_and_labels_must_fit(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    with pytest.raises(ValueError, match="labels need 5"):
        retrain(inc, sup, train=(train.X, train.y), val=(val.X, torch.full_like(val.y, 4)), method="kdt")
    with pytest.raises(ValueError, match="cannot be evaluated"):
        retrain(inc, sup, train=(train.X[:, :5], train.y), val=(val.X[:, :5], val.y), method="kdt")


def test_unknown_method_and_options(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    assert available_methods() == ["auto", "dbsd", "fdd", "frr", "kdt", "otwi", "sb", "til", "wsft"]
    with pytest.raises(ValueError, match="unknown retraining method 'magic'"):
        retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="magic")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['temprature'\]"):
        retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="kdt", temprature=2.0)
    with pytest.raises(ValueError, match="reach"):
        retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="wsft", reach=-1.0)


def test_synthetic_data_is_seeded_and_standardized(tmp_path):
    a, b = synthetic_classification(300, seed=3), synthetic_classification(300, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert torch.allclose(a.X.mean(0), torch.zeros(20), atol=1e-5) and a.n_classes == 4
    parts = split(a, (0.5, 0.25), seed=0)
    assert [len(p) for p in parts] == [150, 75]
    torch.save({"X": a.X, "y": a.y}, tmp_path / "d.pt")
    assert torch.equal(load_data(tmp_path / "d.pt").X, a.X)
    with pytest.raises(FileNotFoundError, match="neither"):
        load_data(tmp_path / "missing.npz")


def test_device_argument_and_models_left_untouched(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, val = problem
    before = [p.clone() for p in list(inc.parameters()) + list(sup.parameters())]
    result = retrain(inc, sup, train=(train.X, train.y), val=(val.X, val.y), method="kdt", epochs=1, device="cpu")
    after = list(inc.parameters()) + list(sup.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert isinstance(result.model, nn.Module) and next(result.model.parameters()).device.type == "cpu"
