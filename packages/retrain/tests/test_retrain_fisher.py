"""Fisher information: vmapped vs per-sample loops, closed forms, K-FAC exactness, Fisher merging."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from synthfuse.retrain import diagonal_fisher, fisher_merge, kfac_fisher
from synthfuse.retrain.fisher import KFACBlock, _reference_diagonal_fisher


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 5, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    return model, X, y


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_diagonal_fisher_matches_per_sample_loop(tiny, kind):
    model, X, y = tiny
    fast = diagonal_fisher(model, (X, y), kind=kind, batch_size=5)
    slow = _reference_diagonal_fisher(model, X, y, kind)
    assert fast.keys() == slow.keys()
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-7)


def test_true_fisher_of_softmax_regression_closed_form():
    # p = softmax(W x + b); d log p_y / d W_cj = (1[y=c] - p_c) x_j, so the true Fisher diagonal is
    # E_x sum_y p_y (1[y=c] - p_c)^2 x_j^2 = E_x p_c (1 - p_c) x_j^2 (and p_c (1 - p_c) for b_c)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(50, 4, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 3).double()
    fisher = diagonal_fisher(model, (X, torch.zeros(50, dtype=torch.long)), kind="true")
    p = F.softmax(model(X), dim=1).detach()
    v = p * (1 - p)  # (N, C)
    torch.testing.assert_close(fisher["weight"], (v[:, :, None] * X[:, None, :] ** 2).mean(0))
    torch.testing.assert_close(fisher["bias"], v.mean(0))


def _per_sample_grad(model, x, y):
    model.zero_grad()
    F.log_softmax(model(x[None]), dim=1)[0, y].backward()
    return model


def test_kfac_is_exact_for_one_sample_linear_layer():
    torch.manual_seed(3)
    layer = nn.Linear(4, 3).double()
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([2])
    block = kfac_fisher(layer, (x, y))[""]
    _per_sample_grad(layer, x[0], 2)
    g = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1).reshape(-1)  # row-major [W | b]
    torch.testing.assert_close(block.dense(), torch.outer(g, g))


def test_kfac_true_fisher_of_one_sample_is_exact_expectation():
    torch.manual_seed(4)
    layer = nn.Linear(3, 4, bias=False).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    block = kfac_fisher(layer, (x, torch.tensor([0])), kind="true")[""]
    p = F.softmax(layer(x), 1)[0].detach()
    expected = torch.zeros(12, 12, dtype=torch.float64)
    for c in range(4):
        _per_sample_grad(layer, x[0], c)
        g = layer.weight.grad.reshape(-1)
        expected += p[c] * torch.outer(g, g)
    torch.testing.assert_close(block.dense(), expected)


def test_kfac_conv_with_one_position_equals_linear():
    # a 3x3 convolution on 3x3 inputs without padding has one output position: it *is* a linear layer
    torch.manual_seed(5)
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten()).double()
    lin = nn.Linear(18, 3).double()
    with torch.no_grad():
        lin.weight.copy_(conv[0].weight.reshape(3, -1))
        lin.bias.copy_(conv[0].bias)
    X = torch.randn(7, 2, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    kc, kl = kfac_fisher(conv, (X, y))["0"], kfac_fisher(lin, (X.reshape(7, -1), y))[""]
    torch.testing.assert_close(kc.A, kl.A)
    torch.testing.assert_close(kc.G, kl.G)


def test_kfac_conv_factors_shapes_and_spatial_sums(problem):
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    X, y = torch.randn(9, 1, 4, 4), torch.randint(0, 3, (9,))
    blocks = kfac_fisher(net, (X, y))
    assert blocks["0"].A.shape == (10, 10) and blocks["0"].G.shape == (2, 2)
    # A averages over positions: the bias entry of A is exactly 1
    assert blocks["0"].A[-1, -1].item() == pytest.approx(1.0)
    # trace(G ⊗ A) >= 0 and G is the *sum* over positions of per-position gradient outer products
    assert torch.all(torch.linalg.eigvalsh(blocks["0"].G) > -1e-6)


def test_diagonal_fisher_merge_closed_form():
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(4.0)
    fa, fb = {"weight": torch.tensor([[3.0]])}, {"weight": torch.tensor([[1.0]])}
    merged = fisher_merge([a, b], [fa, fb], eps=0.0)
    assert merged.weight.item() == pytest.approx((3 * 1 + 1 * 4) / 4)
    merged = fisher_merge([a, b], [fa, fb], [1.0, 3.0], eps=0.0)
    assert merged.weight.item() == pytest.approx((3 * 1 + 3 * 4) / 6)
    # equal Fishers give the plain average
    assert fisher_merge([a, b], [fb, fb]).weight.item() == pytest.approx(2.5)


def test_kfac_merge_matches_dense_solve():
    torch.manual_seed(7)
    models = [nn.Linear(3, 2).double() for _ in range(2)]
    blocks = []
    for s in range(2):
        g = torch.Generator().manual_seed(10 + s)
        A = torch.randn(4, 4, generator=g, dtype=torch.float64)
        G = torch.randn(2, 2, generator=g, dtype=torch.float64)
        blocks.append({"": KFACBlock(A @ A.T + 0.1 * torch.eye(4, dtype=torch.float64), G @ G.T + 0.1 * torch.eye(2, dtype=torch.float64), True)})
    damping = 1e-3
    merged = fisher_merge(models, blocks, [0.3, 0.7], damping=damping)

    def damp(M):
        return M + damping * M.diagonal().mean() * torch.eye(len(M), dtype=M.dtype)

    lhs = sum(w * torch.kron(damp(b[""].G), damp(b[""].A)) for w, b in zip([0.3, 0.7], blocks))
    rhs = sum(w * torch.kron(damp(b[""].G), damp(b[""].A)) @ b[""].matrix(m).reshape(-1)
              for w, b, m in zip([0.3, 0.7], blocks, models))
    expected = torch.linalg.solve(lhs, rhs).reshape(2, 4)
    torch.testing.assert_close(blocks[0][""].matrix(merged), expected, rtol=1e-6, atol=1e-8)


def test_fisher_merge_errors(tiny):
    model, X, y = tiny
    f = diagonal_fisher(model, (X, y))
    with pytest.raises(ValueError, match="one Fisher per model"):
        fisher_merge([model, copy.deepcopy(model)], [f])
    with pytest.raises(ValueError, match="architecture"):
        fisher_merge([model, nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 3))], [f, f])
    with pytest.raises(ValueError, match="kind"):
        diagonal_fisher(model, (X, y), kind="fake")
