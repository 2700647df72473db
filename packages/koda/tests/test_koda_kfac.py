"""K-FAC: factors vs a per-example loop, exact natural gradient on a single linear layer, KL clipping."""

import math

import pytest
import torch
from torch import nn

from synthfuse.koda.optim import KFAC, sampled_nll_categorical, sampled_nll_gaussian
from synthfuse.koda.optim.kfac import _reference_factors


def test_factors_match_per_example_reference():
    torch.manual_seed(0)
    l1, l2 = nn.Linear(5, 7), nn.Linear(7, 3, bias=False)
    net = nn.Sequential(l1, nn.Tanh(), l2)
    kfac = KFAC(net, lr=0.1, ema_decay=None)
    x, y = torch.randn(11, 5), torch.randint(0, 3, (11,))
    with kfac.capture():
        h1 = l1(x)
        z = torch.tanh(h1)
        out = l2(z)
    loss = nn.functional.cross_entropy(out, y, reduction="sum")
    g1, g2 = torch.autograd.grad(loss, [h1, out], retain_graph=True)
    kfac.update_factors(loss)
    a1, s1 = _reference_factors(x, g1, bias=True)
    a2, s2 = _reference_factors(z.detach(), g2, bias=False)
    st1, st2 = kfac.layers["0"], kfac.layers["2"]
    torch.testing.assert_close(st1.A, a1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st1.S, s1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st2.A, a2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st2.S, s2, atol=1e-6, rtol=1e-5)
    # A second update with ema_decay=None keeps the exact mean of both.
    with kfac.capture():
        out = net(2 * x)
    kfac.update_factors(nn.functional.cross_entropy(out, y, reduction="sum"))
    a1b, _ = _reference_factors(2 * x, g1, bias=True)
    torch.testing.assert_close(st1.A, (a1 + a1b) / 2, atol=1e-5, rtol=1e-5)


def test_update_equals_exact_natural_gradient_on_a_linear_layer():
    """For y ~ N(Wa + b, I), F = E[aa^T] (x) I exactly, so K-FAC with the true Fisher is exact."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    n, d_in, d_out = 4000, 3, 2
    mix = torch.tensor([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, -0.3, 0.2]])
    x = torch.randn(n, d_in, generator=gen) @ mix + torch.tensor([1.0, -0.5, 0.3])
    y = torch.randn(n, d_out, generator=gen)
    layer = nn.Linear(d_in, d_out).double()
    x, y = x.double(), y.double()
    kfac = KFAC(layer, lr=1.0, damping=1e-10, ema_decay=None, inv_update_period=1, kl_clip=None)
    for _ in range(40):  # Monte-Carlo estimate of S = E[g g^T] = I from sampled targets
        with kfac.capture():
            mean = layer(x)
        kfac.update_factors(sampled_nll_gaussian(mean, generator=gen))
    layer.zero_grad()
    (0.5 * ((layer(x) - y) ** 2).sum(dim=1).mean()).backward()
    grad = torch.cat([layer.weight.grad.T.reshape(-1), layer.bias.grad])  # theta = (vec W by input, b)

    # Exact Fisher built explicitly: F = mean_i J_i^T J_i with J_i = d s_i / d theta.
    def out_fn(theta):
        w = theta[: d_in * d_out].reshape(d_in, d_out).T
        return x @ w.T + theta[d_in * d_out:]

    theta0 = torch.cat([layer.weight.detach().T.reshape(-1), layer.bias.detach()])
    jac = torch.autograd.functional.jacobian(out_fn, theta0)  # (n, d_out, P)
    fisher = torch.einsum("nop,noq->pq", jac, jac) / n
    natural = torch.linalg.solve(fisher, grad)

    kfac.step()
    update = torch.cat([layer.weight.grad.T.reshape(-1), layer.bias.grad])
    rel = (update - natural).norm() / natural.norm()
    assert rel < 0.02, rel  # Monte-Carlo error of S only
    # Fisher = Hessian for this model: one natural-gradient step with lr = 1 solves least squares.
    with torch.no_grad():
        layer.weight -= layer.weight.grad
        layer.bias -= layer.bias.grad
    design = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution
    fitted = torch.cat([layer.weight.T, layer.bias[None]], dim=0)
    assert (fitted - solution).norm() / solution.norm() < 0.03


def test_kl_clip_bounds_the_step():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    kfac = KFAC(net, lr=0.5, kl_clip=1e-4, inv_update_period=1)
    x, y = torch.randn(32, 4) * 5, torch.randint(0, 3, (32,))
    with kfac.capture():
        logits = net(x)
    kfac.update_factors(sampled_nll_categorical(logits))
    nn.functional.cross_entropy(logits, y).backward()
    raw = torch.cat([net.weight.grad, net.bias.grad[:, None]], dim=1).clone()
    nu = kfac.step()
    delta = torch.cat([net.weight.grad, net.bias.grad[:, None]], dim=1)
    quad = 0.5**2 * float((delta / nu * raw).sum())  # lr^2 <Delta, G> before clipping
    assert nu < 1 and quad > 1e-4
    assert nu == pytest.approx(math.sqrt(1e-4 / quad), rel=1e-5)
    # The clipped step's quadratic KL estimate lr^2 <nu Delta, F nu Delta> (F Delta = G) is kappa.
    assert 0.5**2 * nu * float((delta * raw).sum()) == pytest.approx(1e-4, rel=1e-5)


def test_works_with_any_optimizer_and_state_round_trips():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 6))
    x = torch.randn(64, 6)
    losses = {}
    for name in ("sgd", "adam"):
        torch.manual_seed(1)
        for m in net:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if name == "sgd"
               else torch.optim.Adam(net.parameters(), lr=0.01))
        kfac = KFAC(net, lr=0.1, inv_update_period=5)
        first = None
        for _ in range(30):
            with kfac.capture():
                out = net(x)
            kfac.update_factors(sampled_nll_gaussian(out))
            opt.zero_grad()
            loss = ((out - x) ** 2).mean()
            loss.backward()
            kfac.step()
            opt.step()
            first = loss.item() if first is None else first
        losses[name] = (first, loss.item())
        kfac.remove()
    for first, last in losses.values():
        assert last < 0.5 * first
    state = kfac.state_dict()
    clone = KFAC(net, lr=0.1)
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.layers["0"].A, kfac.layers["0"].A)
    assert clone.steps == kfac.steps == 30


def test_bad_arguments():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="damping"):
        KFAC(net, lr=0.1, damping=0.0)
    with pytest.raises(ValueError, match="inv_update_period"):
        KFAC(net, lr=0.1, inv_update_period=0)
    with pytest.raises(TypeError, match="nn.Linear"):
        KFAC(net, lr=0.1, modules=[nn.Conv1d(1, 1, 1)])
    with pytest.raises(ValueError, match="no nn.Linear"):
        KFAC(nn.Sequential(nn.Tanh()), lr=0.1)
    kfac = KFAC(net, lr=0.1)
    with pytest.raises(RuntimeError, match="capture"):
        kfac.update_factors(torch.tensor(1.0))
    net(torch.randn(3, 2)).sum().backward()
    with pytest.raises(RuntimeError, match="update_factors first"):
        kfac.step()
