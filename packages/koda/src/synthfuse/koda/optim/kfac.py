"""K-FAC: Kronecker-factored approximate curvature for ``nn.Linear`` layers (Martens & Grosse 2015).

For a linear layer :math:`s = W a` (``a`` gets a trailing 1 when the layer has a bias) the
per-example gradient is :math:`\\nabla_W \\ell = g a^\\top` with :math:`g = \\partial\\ell/\\partial s`,
and K-FAC approximates the layer's block of the Fisher by a Kronecker product

.. math::
    F = \\mathbb{E}\\big[(a a^\\top) \\otimes (g g^\\top)\\big]
      \\approx \\mathbb{E}[a a^\\top] \\otimes \\mathbb{E}[g g^\\top] = A \\otimes S,
    \\qquad F^{-1}\\operatorname{vec}(G) = \\operatorname{vec}(S^{-1} G A^{-1}).

For the *true* Fisher, ``g`` is back-propagated from targets sampled from the model's own
predictive distribution (:func:`sampled_nll_categorical`, :func:`sampled_nll_gaussian`), not
from the data's targets. Implementation choices, after the paper:

- running averages :math:`A \\leftarrow \\epsilon A + (1-\\epsilon)\\hat A` (same for ``S``);
- factored Tikhonov damping with the :math:`\\pi` correction (section 6.3):
  :math:`(A + \\pi\\sqrt{\\gamma} I)\\otimes(S + \\sqrt{\\gamma}/\\pi\\, I)`,
  :math:`\\pi = \\sqrt{(\\operatorname{tr}A/\\dim A)/(\\operatorname{tr}S/\\dim S)}`;
- the damped inverses are recomputed every ``inv_update_period`` steps;
- KL clipping (Ba, Grosse & Martens 2017): the preconditioned gradients are scaled by
  :math:`\\nu = \\min\\big(1, \\sqrt{\\kappa / (\\eta^2 \\sum_l \\langle \\Delta_l, G_l\\rangle)}\\big)`.

:class:`KFAC` only rewrites ``.grad`` of the layers it tracks, so any ``torch.optim``
optimizer (SGD, momentum, Adam...) then takes the step; parameters of other modules keep
their plain gradients.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["KFAC", "sampled_nll_categorical", "sampled_nll_gaussian"]


def sampled_nll_categorical(logits: Tensor, mask: Tensor | None = None,
                            generator: torch.Generator | None = None, *, targets: Tensor | None = None) -> Tensor:
    """:math:`\\sum_i -\\log p(\\hat y_i \\mid x_i)` with :math:`\\hat y_i \\sim \\operatorname{softmax}(\\text{logits}_i)`.

    ``logits`` (..., C); ``mask`` (...) selects the rows that count. The sum (not the mean)
    makes ``d loss / d s_i`` the per-example gradient that :meth:`KFAC.update_factors` needs.
    ``targets`` (...): samples :math:`\\hat y` drawn by the caller (e.g.
    :func:`~synthfuse.koda.optim.keyed_categorical`, the same draws however a batch is split
    over ranks) instead of ``torch.multinomial`` with ``generator``.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    if targets is not None:
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
        target = targets.reshape(-1)
    else:
        with torch.no_grad():
            target = torch.multinomial(torch.softmax(flat.float(), dim=-1), 1, generator=generator)[:, 0]
    nll = -torch.log_softmax(flat, dim=-1).gather(1, target[:, None])[:, 0]
    if mask is not None:
        nll = nll * mask.reshape(-1).to(nll.dtype)
    return nll.sum()


def sampled_nll_gaussian(mean: Tensor, sigma: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """:math:`\\sum_i \\|\\hat y_i - \\mu_i\\|^2 / (2\\sigma^2)` with :math:`\\hat y_i \\sim \\mathcal{N}(\\mu_i, \\sigma^2 I)`."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    with torch.no_grad():
        target = mean + sigma * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return 0.5 * ((target - mean) ** 2).sum() / sigma**2


def _reference_factors(inputs: Tensor, grads: Tensor, bias: bool) -> tuple[Tensor, Tensor]:
    """``A`` and ``S`` by an explicit loop over examples (testing only)."""
    a_sum = s_sum = 0.0
    for a, g in zip(inputs, grads):
        if bias:
            a = torch.cat([a, a.new_ones(1)])
        a_sum = a_sum + torch.outer(a, a)
        s_sum = s_sum + torch.outer(g, g)
    return a_sum / len(inputs), s_sum / len(inputs)


class _LayerState:
    """Captured activations and the running curvature factors of one linear layer."""

    def __init__(self, module: nn.Linear) -> None:
        self.module = module
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self.A: Tensor | None = None
        self.S: Tensor | None = None
        self.A_inv: Tensor | None = None
        self.S_inv: Tensor | None = None
        self.updates = 0


class KFAC:
    """K-FAC preconditioner for the ``nn.Linear`` layers of a model; pair it with any optimizer.

    Parameters
    ----------
    model : nn.Module
    lr : float
        The optimizer's learning rate :math:`\\eta` (used only by KL clipping; keep it in sync
        by assigning ``kfac.lr`` when a schedule changes it).
    damping : float
        Tikhonov damping :math:`\\gamma > 0`.
    ema_decay : float or None
        :math:`\\epsilon \\in [0, 1)` of the factor running averages; ``None`` keeps the exact
        mean of all updates so far.
    inv_update_period : int
        Recompute the damped inverses every this many :meth:`step` calls (>= 1).
    kl_clip : float or None
        :math:`\\kappa > 0`; ``None`` disables KL clipping.
    modules : iterable of nn.Linear, optional
        The layers to precondition (default: every ``nn.Linear`` in ``model``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> kfac = KFAC(net, lr=0.1)
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> with kfac.capture():
    ...     logits = net(x)
    >>> kfac.update_factors(sampled_nll_categorical(logits))
    >>> opt.zero_grad(); nn.functional.cross_entropy(logits, y).backward()
    >>> kfac.step(); opt.step()
    """

    def __init__(self, model: nn.Module, *, lr: float, damping: float = 1e-3, ema_decay: float | None = 0.95,
                 inv_update_period: int = 10, kl_clip: float | None = 1e-3,
                 modules: Iterable[nn.Linear] | None = None) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr}")
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) or be None, got {ema_decay}")
        if int(inv_update_period) != inv_update_period or inv_update_period < 1:
            raise ValueError(f"inv_update_period must be an integer >= 1, got {inv_update_period}")
        if kl_clip is not None and not kl_clip > 0:
            raise ValueError(f"kl_clip must be > 0 or None, got {kl_clip}")
        self.lr, self.damping, self.ema_decay = float(lr), float(damping), ema_decay
        self.inv_update_period, self.kl_clip = int(inv_update_period), kl_clip
        chosen = list(modules) if modules is not None else [m for m in model.modules() if isinstance(m, nn.Linear)]
        bad = [type(m).__name__ for m in chosen if not isinstance(m, nn.Linear)]
        if bad:
            raise TypeError(f"KFAC handles nn.Linear layers only; got {bad}")
        if not chosen:
            raise ValueError("KFAC found no nn.Linear layer to precondition")
        names = {m: n for n, m in model.named_modules()}
        missing = [m for m in chosen if m not in names]
        if missing:
            raise ValueError("every module passed to KFAC must belong to the model")
        self.layers: dict[str, _LayerState] = {names[m]: _LayerState(m) for m in chosen}
        self.steps = 0
        self._capturing = False
        self._handles = [st.module.register_forward_hook(self._hook(st)) for st in self.layers.values()]

    # --- capture -----------------------------------------------------------------------------
    def _hook(self, state: _LayerState):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if self._capturing:
                state.inputs.append(args[0].detach())
                state.outputs.append(output)
        return hook

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Record the inputs and outputs of the tracked layers for the forward passes inside."""
        for st in self.layers.values():
            st.inputs.clear()
            st.outputs.clear()
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False

    def remove(self) -> None:
        """Detach the forward hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # --- curvature ---------------------------------------------------------------------------
    def update_factors(self, sampled_loss: Tensor, mask: Tensor | None = None) -> None:
        """Update ``A`` and ``S`` from the last :meth:`capture` and a sampled-target loss.

        Parameters
        ----------
        sampled_loss : Tensor ()
            A *sum* over examples of :math:`-\\log p(\\hat y \\mid x)` with :math:`\\hat y` drawn
            from the model (true Fisher), e.g. :func:`sampled_nll_categorical`. Gradients are
            taken w.r.t. the layer outputs only (``retain_graph=True``), so ``.grad`` is untouched.
        mask : BoolTensor, optional
            Which rows count as examples, for layers whose input has leading shape
            ``mask.shape`` (padding in a batch of sequences); other layers use every row.
        """
        states = [st for st in self.layers.values() if st.outputs]
        if not states:
            raise RuntimeError("no captured forward pass: run the model inside `with kfac.capture():` first")
        if sampled_loss.dim() != 0 or not torch.isfinite(sampled_loss):
            raise ValueError("sampled_loss must be a finite scalar (the summed sampled NLL)")
        outputs = [o for st in states for o in st.outputs]
        grads = torch.autograd.grad(sampled_loss, outputs, retain_graph=True, allow_unused=True)
        it = iter(grads)
        sums = []
        for st in states:
            a_rows, g_rows = [], []
            for a, out in zip(st.inputs, st.outputs):
                g = next(it)
                if g is None:
                    g = torch.zeros_like(out)
                rows = mask.reshape(-1) if mask is not None and a.shape[:-1] == mask.shape else None
                a2, g2 = a.reshape(-1, a.shape[-1]), g.detach().reshape(-1, g.shape[-1])
                if rows is not None:
                    a2, g2 = a2[rows], g2[rows]
                a_rows.append(a2)
                g_rows.append(g2)
            a_all, g_all = torch.cat(a_rows), torch.cat(g_rows)
            if st.module.bias is not None:
                a_all = torch.cat([a_all, a_all.new_ones(a_all.shape[0], 1)], dim=1)
            sums.append((a_all.T @ a_all, g_all.T @ g_all, a_all.new_tensor(float(a_all.shape[0]))))
            st.inputs.clear()
            st.outputs.clear()
        for st, (aa, gg, n) in zip(states, self._reduce_moments(sums)):
            n = n.clamp_min(1.0)
            self._accumulate(st, aa / n, gg / n)  # A-hat = sum a a^T / n, S-hat = sum g g^T / n

    def _reduce_moments(self, sums: list[tuple[Tensor, Tensor, Tensor]]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``(sum a a^T, sum g g^T, n)`` per layer over all examples of the step (this process's here).

        :class:`~synthfuse.koda.optim.DistributedKFAC` sums them over the ranks.
        """
        return sums

    def _accumulate(self, st: _LayerState, a_new: Tensor, s_new: Tensor) -> None:
        if st.A is None:
            st.A, st.S = a_new, s_new
        elif self.ema_decay is None:
            k = st.updates
            st.A = (k * st.A + a_new) / (k + 1)
            st.S = (k * st.S + s_new) / (k + 1)
        else:
            e = self.ema_decay
            st.A = e * st.A + (1 - e) * a_new
            st.S = e * st.S + (1 - e) * s_new
        st.updates += 1

    def _invert(self, st: _LayerState) -> None:
        dim_a, dim_s = st.A.shape[0], st.S.shape[0]
        tr_a, tr_s = float(torch.trace(st.A)) / dim_a, float(torch.trace(st.S)) / dim_s
        pi = math.sqrt(tr_a / tr_s) if tr_a > 0 and tr_s > 0 else 1.0
        root = math.sqrt(self.damping)
        eye_a = torch.eye(dim_a, dtype=st.A.dtype, device=st.A.device)
        eye_s = torch.eye(dim_s, dtype=st.S.dtype, device=st.S.device)
        st.A_inv = torch.cholesky_inverse(torch.linalg.cholesky(st.A + pi * root * eye_a))
        st.S_inv = torch.cholesky_inverse(torch.linalg.cholesky(st.S + (root / pi) * eye_s))

    # --- preconditioning ---------------------------------------------------------------------
    def _full(self, t: Tensor) -> Tensor:
        """The whole tensor behind ``t`` (``t`` itself here; :class:`DistributedKFAC` gathers shards)."""
        return t

    def _write(self, param: nn.Parameter, value: Tensor) -> None:
        """Make ``value`` (full size) the gradient of ``param``."""
        if param.grad is None:
            param.grad = value.clone()
        else:
            param.grad.copy_(value)

    def _grad_matrix(self, st: _LayerState) -> Tensor | None:
        w, b = st.module.weight, st.module.bias
        if w.grad is None:
            return None
        if b is None:
            return self._full(w.grad)
        bias_grad = self._full(b.grad) if b.grad is not None else torch.zeros(b.shape, dtype=b.dtype, device=b.device)
        return torch.cat([self._full(w.grad), bias_grad[:, None]], dim=1)  # (out, in + 1)

    @torch.no_grad()
    def step(self) -> float:
        """Replace the tracked layers' ``.grad`` by the preconditioned gradient; return :math:`\\nu`.

        Call it after ``loss.backward()`` and before ``optimizer.step()``.
        """
        refresh = self.steps % self.inv_update_period == 0
        pairs = []
        for name, st in self.layers.items():
            grad = self._grad_matrix(st)
            if grad is None:
                continue
            if st.A is None:
                raise RuntimeError(f"layer {name!r} has no curvature factors yet: call update_factors first")
            if refresh or st.A_inv is None:
                self._invert(st)
            pairs.append((st, grad, st.S_inv @ grad @ st.A_inv))  # S^-1 G A^-1
        nu = 1.0
        if self.kl_clip is not None and pairs:
            vdot = sum(float((delta * grad).sum()) for _, grad, delta in pairs)
            if vdot > 0:
                nu = min(1.0, math.sqrt(self.kl_clip / (self.lr**2 * vdot)))
        for st, _, delta in pairs:
            delta = delta * nu
            w, b = st.module.weight, st.module.bias
            self._write(w, delta if b is None else delta[:, :-1])
            if b is not None:
                self._write(b, delta[:, -1])
        self.steps += 1
        return nu

    # --- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Factors, inverses and counters (tensors and ints only: loadable with ``weights_only``)."""
        layers = {}
        for name, st in self.layers.items():
            layers[name] = {k: getattr(st, k) for k in ("A", "S", "A_inv", "S_inv") if getattr(st, k) is not None}
            layers[name]["updates"] = st.updates
        return {"steps": self.steps, "layers": layers}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (same model layout)."""
        unknown = sorted(set(state["layers"]) - set(self.layers))
        if unknown:
            raise ValueError(f"K-FAC state has layers this model lacks: {unknown}")
        self.steps = int(state["steps"])
        for name, st in self.layers.items():
            saved = state["layers"].get(name, {})
            for key in ("A", "S", "A_inv", "S_inv"):
                setattr(st, key, saved.get(key))
            st.updates = int(saved.get("updates", 0))
