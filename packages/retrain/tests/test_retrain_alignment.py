"""Unit alignment: function preserved, known permutations recovered, clear errors, invariance."""

import copy

import pytest
import torch
from torch import nn

from synthfuse.retrain import AlignmentError, align
from synthfuse.retrain.alignment import permutation_spec
from synthfuse.retrain.testing import permute_hidden_units


def _max_diff(a, b, X):
    with torch.no_grad():
        return float((a.eval()(X) - b.eval()(X)).abs().max())


def _convnet(seed, norm="bn"):
    torch.manual_seed(seed)
    norm1 = nn.BatchNorm2d(6) if norm == "bn" else nn.LayerNorm([6, 6, 6])
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), norm1, nn.ReLU(), nn.Conv2d(6, 5, 3, padding=0), nn.BatchNorm2d(5),
        nn.GELU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 2 * 2, 7), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, 3),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def test_manual_mlp_permutation_is_recovered_exactly(make_mlp, problem):
    train, _ = problem
    a = make_mlp(5)
    b = copy.deepcopy(a)
    p1, p2 = torch.randperm(16, generator=torch.Generator().manual_seed(0)), torch.randperm(12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # by hand: rows of layer 0, columns and rows of layer 2, columns of layer 4
        b[0].weight.copy_(a[0].weight[p1]); b[0].bias.copy_(a[0].bias[p1])
        b[2].weight.copy_(a[2].weight[p2][:, p1]); b[2].bias.copy_(a[2].bias[p2])
        b[4].weight.copy_(a[4].weight[:, p2])
    assert _max_diff(a, b, train.X) < 1e-5
    result = align(a, b, data=(train.X, train.y))
    for k, v in a.state_dict().items():
        assert torch.equal(result.model.state_dict()[k], v), k
    assert result.output_error < 1e-4


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_convnet_alignment_preserves_function_and_recovers_permutation(norm):
    X = torch.randn(16, 2, 6, 6)
    a = _convnet(0, norm)
    b, _ = permute_hidden_units(a, X[:2], seed=3)
    assert _max_diff(a, b, X) < 1e-4  # the spec's permutation is a symmetry
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    for matching in ("weights", "activations"):
        result = align(a, b, data=(X, torch.zeros(16, dtype=torch.long)), matching=matching)
        assert result.output_error < 1e-4
        for k, v in a.state_dict().items():
            torch.testing.assert_close(result.model.state_dict()[k], v, msg=f"{matching}: {k}")


def test_independent_models_align_with_same_outputs_and_rising_objective(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, _ = problem
    result = align(inc, sup, data=(train.X, train.y))
    assert result.output_error < 1e-4 and _max_diff(result.model, sup, train.X) < 1e-4
    obj = result.objective
    assert len(obj) >= 2 and all(b >= a - 1e-9 for a, b in zip(obj, obj[1:]))
    # matched weights are closer to θ* than the raw ones
    dist = lambda m: sum(float((p - q).detach().pow(2).sum()) for p, q in zip(inc.parameters(), m.parameters()))  # noqa: E731
    assert dist(result.model) < dist(sup)


def test_alignment_does_not_depend_on_unit_order(upgrade_pair, problem):
    inc, sup = upgrade_pair
    train, _ = problem
    shuffled, _ = permute_hidden_units(sup, train.X[:2], seed=11)
    a = align(inc, sup, data=(train.X, train.y)).model.state_dict()
    b = align(inc, shuffled, data=(train.X, train.y)).model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.out(h + torch.relu(self.hidden(h)))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.out = nn.MultiheadAttention(4, 1, batch_first=True), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.attn(x, x, x)[0].mean(1))


@pytest.mark.parametrize(
    "model,X,match",
    [
        (_Residual(), torch.randn(3, 4), "residual connection"),
        (_Attention(), torch.randn(3, 5, 4), "MultiheadAttention|branch"),
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)), torch.randn(3, 4, 3, 3), "grouped"),
        (nn.Sequential(nn.Linear(4, 6), nn.GroupNorm(2, 6), nn.Linear(6, 2)), torch.randn(3, 4), "GroupNorm"),
        (nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (2, 3)), nn.Flatten(), nn.Linear(6, 2)), torch.randn(3, 4), "Unflatten"),
    ],
)
def test_unalignable_architectures_raise_clear_errors(model, X, match):
    with pytest.raises(AlignmentError, match=match):
        permutation_spec(model, X)
    with pytest.raises(AlignmentError):
        align(model, copy.deepcopy(model), data=(X, torch.zeros(len(X), dtype=torch.long)))
