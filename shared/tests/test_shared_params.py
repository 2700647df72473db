"""Parameter-space helpers: flat vectors, per-layer tangent projection, interpolation."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from synthfuse.shared.params import (  # noqa: E402
    flatten,
    interpolate,
    project_layer_tangent,
    unflatten,
    unflatten_dict,
)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).double()
    with torch.no_grad():  # BatchNorm starts at weight 1, bias 0: make the two nets differ there too
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-1, 1)
    net[1].running_mean.uniform_(-1, 1)
    return net


def test_shared_flatten_unflatten_roundtrip_and_order():
    net = _net(0)
    vec = flatten(net)
    assert vec.shape == (sum(p.numel() for p in net.parameters()),)
    torch.testing.assert_close(vec, torch.cat([p.reshape(-1) for _, p in net.named_parameters()]))
    torch.testing.assert_close(vec, nn.utils.parameters_to_vector(net.parameters()))
    assert vec.requires_grad  # keeps the graph, like parameters_to_vector

    new = unflatten(2 * vec, like=net)
    assert new is not net
    torch.testing.assert_close(flatten(new), 2 * vec)
    torch.testing.assert_close(flatten(net), vec)  # the template is untouched
    torch.testing.assert_close(new[1].running_mean, net[1].running_mean)  # buffers copied
    same = unflatten(3 * vec, like=net, inplace=True)
    assert same is net
    torch.testing.assert_close(flatten(net), 3 * vec)


def test_shared_unflatten_dict_is_differentiable_for_functional_call():
    net = _net(1).eval()
    x = torch.randn(7, 3, dtype=torch.float64)
    vec = flatten(net).detach().requires_grad_()
    out = torch.func.functional_call(net, unflatten_dict(vec, net), (x,))
    torch.testing.assert_close(out, net(x))
    (grad,) = torch.autograd.grad(out.square().sum(), vec)
    net.zero_grad()
    net(x).square().sum().backward()
    torch.testing.assert_close(grad, torch.cat([p.grad.reshape(-1) for p in net.parameters()]))


def test_shared_flat_vector_errors_are_clear():
    net = _net(2)
    n = flatten(net).numel()
    with pytest.raises(ValueError, match=f"vector has {n - 1} entries but Sequential has {n} parameters"):
        unflatten(torch.zeros(n - 1, dtype=torch.float64), like=net)
    with pytest.raises(ValueError, match="1-D"):
        unflatten(torch.zeros(1, n), like=net)
    with pytest.raises(ValueError, match="no parameters"):
        flatten(nn.Tanh())
    mixed = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())
    with pytest.raises(ValueError, match="mixed dtype"):
        flatten(mixed)
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        flatten(torch.zeros(3))


def _reference_project_layer_tangent(direction: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """One layer at a time: d_l - <d_l, theta_l> / ||theta_l||^2 theta_l (zero layers unchanged)."""
    out, start = [], 0
    for p in module.parameters():
        theta = p.detach().reshape(-1)
        d = direction[..., start:start + theta.numel()]
        sq = theta @ theta
        out.append(d if sq == 0 else d - (d @ theta)[..., None] / sq * theta)
        start += theta.numel()
    return torch.cat(out, dim=-1)


def test_shared_project_layer_tangent_matches_the_per_layer_loop():
    net = _net(3)
    with torch.no_grad():
        net[3].bias.zero_()  # a zero-norm layer: left unchanged
    n = flatten(net).numel()
    d = torch.randn(4, n, dtype=torch.float64)  # a batch of directions
    got = project_layer_tangent(d, net)
    torch.testing.assert_close(got, _reference_project_layer_tangent(d, net))
    torch.testing.assert_close(got[1], project_layer_tangent(d[1], net))
    # orthogonal to every layer's parameters, and each layer norm is constant to first order
    start = 0
    for p in net.parameters():
        seg = slice(start, start + p.numel())
        torch.testing.assert_close(got[:, seg] @ p.detach().reshape(-1), torch.zeros(4, dtype=torch.float64))
        start += p.numel()
    theta = flatten(net).detach()
    for h in (1e-3, 1e-4):
        moved = unflatten(theta + h * got[0], like=net)
        for p, q in zip(net.parameters(), moved.parameters()):
            if p.count_nonzero() == 0:
                continue  # the zero layer moves freely by design
            assert abs(float(q.detach().norm() - p.detach().norm())) < 10 * h**2 * float(got[0].norm()) ** 2
    # an explicit point instead of the module's own parameters
    point = torch.randn(n, dtype=torch.float64)
    torch.testing.assert_close(project_layer_tangent(d, net, point=point),
                               _reference_project_layer_tangent(d, unflatten(point, like=net)))
    with pytest.raises(ValueError, match=rf"direction must have shape \(\.\.\., {n}\)"):
        project_layer_tangent(torch.zeros(n + 1), net)


def _reference_slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """((1 - t)|a| + t|b|) (sin((1 - t) W) a_hat + sin(t W) b_hat) / sin W, W = angle(a, b)."""
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.arccos(torch.clamp(ua.reshape(-1) @ ub.reshape(-1), -1, 1))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return ((1 - t) * na + t * nb) * direction


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
def test_shared_interpolate_linear_and_spherical(t):
    a, b = _net(4), _net(5)
    lin = interpolate(a, b, t, mode="linear")
    sph = interpolate(a, b, t, mode="spherical")
    layers = zip(a.named_parameters(), b.parameters(), lin.parameters(), sph.parameters())
    for (name, pa), pb, pl, ps in layers:
        torch.testing.assert_close(pl, (1 - t) * pa + t * pb, msg=name)
        torch.testing.assert_close(ps, _reference_slerp(pa.detach(), pb.detach(), t), msg=name)
        # the norm of every layer is exactly the linear interpolation of the two norms
        torch.testing.assert_close(ps.norm(), (1 - t) * pa.norm() + t * pb.norm(), msg=name)
    for m in (lin, sph):  # floating buffers linear, integer buffers from module_a
        torch.testing.assert_close(m[1].running_mean, torch.lerp(a[1].running_mean, b[1].running_mean, t))
        assert m[1].num_batches_tracked is not a[1].num_batches_tracked
        assert int(m[1].num_batches_tracked) == int(a[1].num_batches_tracked)
    torch.testing.assert_close(flatten(a), flatten(_net(4)))  # inputs untouched


def test_shared_interpolate_spherical_edge_cases():
    a, b = _net(6), _net(6)
    with torch.no_grad():
        b[0].weight.copy_(-a[0].weight)  # opposite directions: a documented great circle
        a[3].bias.zero_()  # zero norm on one side: linear
        b[0].bias.copy_(2.5 * a[0].bias)  # same direction: the norm alone changes
    mid = interpolate(a, b, 0.5, mode="spherical")
    w, wa = mid[0].weight.detach(), a[0].weight.detach()
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.norm(), wa.norm())
    assert abs(float((w.reshape(-1) @ wa.reshape(-1)) / wa.norm() ** 2)) < 1e-12  # a quarter turn
    torch.testing.assert_close(mid[3].bias, 0.5 * b[3].bias)
    torch.testing.assert_close(mid[0].bias, 1.75 * a[0].bias)
    end = interpolate(a, b, 1.0, mode="spherical")
    torch.testing.assert_close(end[0].weight, b[0].weight)


def test_shared_interpolate_architecture_mismatch_errors():
    a = _net(7)
    other_names = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.BatchNorm1d(5), nn.Linear(5, 2)).double()
    with pytest.raises(ValueError, match=r"different parameters.*only in module_a: \['1.bias', '1.weight'\]"):
        interpolate(a, other_names, 0.5)
    wider = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).double()
    with pytest.raises(ValueError, match=r"parameter shapes.*0.weight: \(5, 3\) vs \(6, 3\)"):
        interpolate(a, wider, 0.5)
    with pytest.raises(ValueError, match="mode must be"):
        interpolate(a, _net(8), 0.5, mode="geodesic")
    with pytest.raises(ValueError, match=r"in \[0, 1\] for mode='spherical'"):
        interpolate(a, _net(8), 1.5, mode="spherical")
    extrapolated = interpolate(a, _net(8), 1.5, mode="linear")
    torch.testing.assert_close(flatten(extrapolated), flatten(a) + 1.5 * (flatten(_net(8)) - flatten(a)))
    assert math.isfinite(float(flatten(extrapolated).detach().sum()))
