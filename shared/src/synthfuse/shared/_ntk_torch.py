r"""Tile algorithms behind :func:`synthfuse.shared.ntk.empirical_ntk` (torch; private).

A *tile function* maps two sample blocks ``(x1, x2)`` to the kernel block between them.

- :func:`jacobian_block`: per-sample Jacobians by ``vmap(jacrev)``, contracted with ``einsum``;
  with ``structured=True`` the parameters of plain ``nn.Linear`` layers are handled by the
  structured-derivative identity of Novak et al. (2022, sec. 4), never forming their Jacobian.
  For a layer :math:`y = W u + b` with per-sample input :math:`u(x) \in \mathbb{R}^{d_{in}}`
  and output cotangent :math:`G(x) = \partial f(x) / \partial y \in \mathbb{R}^{K \times d_{out}}`,
  :math:`\partial f_a / \partial W_{ij} = G_{ai} u_j`, hence

  .. math::

      \Theta^{(W,b)}(x, x')_{ab} = \big[G(x) G(x')^{\top}\big]_{ab}
                                   \big(u(x)^{\top} u(x') + 1\big),

  which costs :math:`O(K^2 d_{out} + d_{in})` per pair instead of
  :math:`O(K^2 d_{out} d_{in})`. :math:`G` is obtained as the Jacobian with respect to a zero
  probe added to the layer output, :math:`u` is recorded by a forward hook.
- :func:`ntk_vp_block`: NTK-vector products, :math:`J(X_1) (J(X_2)^{\top} v)` by one VJP and
  one JVP per cotangent basis vector :math:`v`, vmapped; no Jacobian is stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from synthfuse.shared.ntk import _CONTRACTIONS

Tile = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def as_model_input(x, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a tensor on ``like``'s device; floating inputs in ``like``'s dtype (ids stay ints)."""
    x = torch.as_tensor(x, device=like.device)
    return x.to(like.dtype) if x.is_floating_point() else x


class TorchNet:
    """A module seen as a per-sample function of its trainable parameters (all detached)."""

    def __init__(self, model: torch.nn.Module):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("model has no trainable parameters (requires_grad=True): its NTK is zero")
        for name, p in self.params.items():
            if not torch.isfinite(p).all():
                raise ValueError(f"model parameter {name!r} contains NaN or inf")
        self.frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {k: b.detach() for k, b in model.named_buffers()}

    @property
    def like(self) -> torch.Tensor:
        """A trainable parameter: inputs follow its device and floating dtype."""
        return next(iter(self.params.values()))

    def output_size(self, x: torch.Tensor) -> int:
        """K, from one sample; a shape error deep inside the model becomes a clear one."""
        try:
            return self(self.params, x[0]).numel()
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            raise ValueError(
                f"the model cannot be evaluated on samples of shape {tuple(x.shape[1:])} "
                f"(inputs are (n, *sample_shape)); check the feature count. Model error: {err}"
            ) from err

    def __call__(self, params: dict, x: torch.Tensor, hooks: dict | None = None) -> torch.Tensor:
        """f(params, x) for one sample ``x``: the flattened output, shape (K,)."""
        modules = dict(self.model.named_modules())
        handles = [modules[name].register_forward_hook(h) for name, h in (hooks or {}).items()]
        try:
            out = functional_call(self.model, ({**self.frozen, **params}, self.buffers), (x.unsqueeze(0),))
        finally:
            for h in handles:
                h.remove()
        return out.reshape(-1)  # (1, *out_shape) -> (K,)

    def linear_layers(self, x: torch.Tensor) -> dict[str, tuple[bool, int]]:
        """Linear layers eligible for structured derivatives, ``name -> (has_bias, d_out)``.

        Eligible: exactly ``torch.nn.Linear``, trainable weight, parameters used by no other
        module, called once per forward, on a vector per sample (input shape ``(1, d_in)``).
        """
        slots = Counter(
            id(p) for _, m in self.model.named_modules(remove_duplicate=False)
            for _, p in m.named_parameters(recurse=False, remove_duplicate=False)
        )
        candidates = {
            name: m for name, m in self.model.named_modules()
            if type(m) is torch.nn.Linear and f"{name}.weight" in self.params
            and all(slots[id(p)] == 1 for p in m.parameters(recurse=False))
        }
        seen: dict[str, list[tuple[int, ...]]] = {name: [] for name in candidates}

        def recorder(name):
            return lambda mod, inp, out: seen[name].append(tuple(inp[0].shape))

        self(self.params, x[0], {name: recorder(name) for name in candidates})
        return {
            name: (f"{name}.bias" in self.params, m.out_features)
            for name, m in candidates.items()
            if len(seen[name]) == 1 and seen[name][0] == (1, m.in_features)
        }


def jacobian_block(net: TorchNet, x_probe: torch.Tensor, kind: str, structured: bool) -> Tile:
    """Jacobian contraction, with structured derivatives for eligible Linear layers."""
    layers = net.linear_layers(x_probe) if structured else {}
    skip = {f"{n}.weight" for n in layers} | {f"{n}.bias" for n, (bias, _) in layers.items() if bias}
    fixed = {k: p for k, p in net.params.items() if k in skip}
    rest = {k: p for k, p in net.params.items() if k not in skip}
    like = net.like
    probes = {n: torch.zeros(d_out, dtype=like.dtype, device=like.device) for n, (_, d_out) in layers.items()}

    def f(p_rest: dict, eps: dict, x: torch.Tensor):
        inputs: dict[str, torch.Tensor] = {}

        def hook(name):
            def record_and_probe(mod, inp, out):
                inputs[name] = inp[0].reshape(-1)  # u(x): (d_in,)
                return out + eps[name]  # zero probe: d f / d eps = G(x)
            return record_and_probe

        out = net({**fixed, **p_rest}, x, {name: hook(name) for name in layers})
        return (out.sum() if kind == "logit_sum" else out), inputs

    # ((J_rest[name]: (n, K, *shape), G[layer]: (n, K, d_out)), u[layer]: (n, d_in)); no K for logit_sum
    jac = vmap(jacrev(f, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0))
    lead = 1 if kind == "logit_sum" else 2

    def block(x1: torch.Tensor, x2: torch.Tensor, same: bool) -> torch.Tensor:
        (j1, g1), u1 = jac(rest, probes, x1)
        (j2, g2), u2 = ((j1, g1), u1) if same else jac(rest, probes, x2)
        terms = [torch.einsum(_CONTRACTIONS[kind], j1[k].flatten(lead), j2[k].flatten(lead)) for k in rest]
        for name, (bias, _) in layers.items():
            coef = u1[name] @ u2[name].T + (1.0 if bias else 0.0)  # u(x)ᵀu(x') + 1: (n, m)
            gg = torch.einsum(_CONTRACTIONS[kind], g1[name], g2[name])  # G(x) G(x')ᵀ
            terms.append(gg * (coef[:, :, None, None] if kind == "full" else coef))
        return sum(terms)

    return block


def ntk_vp_block(net: TorchNet, kind: str, n_out: int) -> Tile:
    """NTK-vector products: columns J(X1) J(X2)ᵀ v for a cotangent basis, vmapped."""
    batched = vmap(net, in_dims=(None, 0))  # f(params, X): (n, K)
    params = net.params

    def block(x1: torch.Tensor, x2: torch.Tensor, same: bool) -> torch.Tensor:
        n, m = x1.shape[0], x2.shape[0]
        out2, pullback = vjp(lambda p: batched(p, x2), params)  # out2: (m, K)

        def column(v: torch.Tensor) -> torch.Tensor:  # v: (m, K) cotangent
            (tangent,) = pullback(v)  # J(X2)ᵀ v, shaped like params
            return jvp(lambda p: batched(p, x1), (params,), (tangent,))[1]  # (n, K)

        eye = torch.eye(m if kind == "logit_sum" else m * n_out, dtype=out2.dtype, device=out2.device)
        if kind == "logit_sum":
            # cotangent e_j ⊗ 1_K; summing the column over outputs gives Σ_ab Θ(x_i, x'_j)_ab
            cols = vmap(column)(eye[:, :, None].expand(m, m, n_out).contiguous())  # (j, i, a)
            return cols.sum(-1).T  # (n, m)
        cols = vmap(column)(eye.reshape(-1, m, n_out)).reshape(m, n_out, n, n_out)  # (j, b, i, a)
        full = cols.permute(2, 0, 3, 1)  # (i, j, a, b)
        return full if kind == "full" else full.diagonal(dim1=2, dim2=3).sum(-1)

    return block
