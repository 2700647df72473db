r"""A seeded SDE integrator over flat parameter vectors, for populations of particles.

Integrates the Itô SDE with additive (state-independent) noise

.. math:: d\theta_t = b(\theta_t, t)\,dt + \sigma(t)\,dW_t, \qquad \theta_t \in \mathbb{R}^P,

for :math:`K` particles at once (a ``(K, P)`` tensor), on the uniform grid
:math:`t_k = t_0 + k\,\Delta t`, with Gaussian increments :math:`\Delta W_k \sim N(0, \Delta t\, I)`
drawn from a ``torch.Generator`` seeded by ``seed`` (same seed, same path):

- Euler–Maruyama (``scheme="euler"``; Kloeden & Platen 1992, sec. 9.1):
  :math:`\theta_{k+1} = \theta_k + b(\theta_k, t_k)\,\Delta t + \sigma(t_k)\,\Delta W_k`;
- stochastic Heun (``scheme="heun"``, the trapezoidal predictor–corrector; strong order 1 for
  additive noise): :math:`\tilde\theta = \theta_k + b(\theta_k, t_k)\Delta t + \sigma(t_k)\Delta W_k`,
  :math:`\theta_{k+1} = \theta_k + \tfrac12\big(b(\theta_k, t_k) + b(\tilde\theta, t_{k+1})\big)\Delta t
  + \sigma(t_k)\,\Delta W_k`.

Tail averaging (Polyak & Juditsky 1992; SWA, Izmailov et al. 2018) returns, beside the last
state, :math:`\bar\theta = \frac{1}{|S|}\sum_{k \in S} \theta_k` over the last ``tail`` fraction
of the steps. A ``monitor`` records metrics along the path.

A drift that returns ``None`` (a missing gradient) or non-finite values raises: the integrator
never goes on injecting noise without a drift.

References
----------
Kloeden & Platen. Numerical Solution of Stochastic Differential Equations. Springer, 1992.
Polyak & Juditsky. Acceleration of stochastic approximation by averaging. SIAM J. Control
Optim. 30(4), 1992. Izmailov et al. Averaging Weights Leads to Wider Optima and Better
Generalization. UAI 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import torch

__all__ = ["DriftFn", "SDEPath", "integrate"]

DriftFn = Callable[[torch.Tensor, float, int], Union[torch.Tensor, None]]
"""``drift(theta, t, k)``: :math:`b` at the states ``theta`` ``(K, P)``, time ``t``, step ``k``."""

Diffusion = Union[float, Callable[[float], float]]


@dataclass
class SDEPath:
    """What :func:`integrate` returns.

    Attributes
    ----------
    final : tensor (K, P)
        :math:`\\theta` at the last time.
    average : tensor (K, P)
        The tail average :math:`\\bar\\theta` of each particle.
    times : tensor (n_steps + 1,)
    path : tensor (n_steps + 1, K, P) or None
        Every state, when ``keep_path=True``.
    trace : list of dict
        ``{"step", "t", **monitor(theta, t)}`` every ``trace_every`` steps (and at both ends).
    """

    final: torch.Tensor
    average: torch.Tensor
    times: torch.Tensor
    path: torch.Tensor | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)


def _diffusion_at(diffusion: Diffusion, t: float) -> float:
    s = float(diffusion(t) if callable(diffusion) else diffusion)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"the diffusion coefficient must be finite and >= 0, got {s} at t={t}")
    return s


def _checked_drift(drift: DriftFn, theta: torch.Tensor, t: float, k: int) -> torch.Tensor:
    b = drift(theta, t, k)
    if b is None:
        raise ValueError(f"the drift returned None at step {k} (t={t}): a missing gradient; "
                         "refusing to integrate pure noise")
    if not isinstance(b, torch.Tensor) or b.shape != theta.shape:
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"the drift must return a tensor of shape {tuple(theta.shape)}, got {shape}")
    if not bool(torch.isfinite(b).all()):
        raise FloatingPointError(f"the drift is not finite at step {k} (t={t}); lower the step size")
    return b


def integrate(
    drift: DriftFn,
    theta0: torch.Tensor,
    *,
    dt: float,
    n_steps: int,
    diffusion: Diffusion = 0.0,
    scheme: str = "euler",
    seed: int = 0,
    n_particles: int | None = None,
    t0: float = 0.0,
    tail: float = 0.5,
    keep_path: bool = False,
    monitor: Callable[[torch.Tensor, float], dict[str, Any]] | None = None,
    trace_every: int = 0,
    step_map: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> SDEPath:
    """Integrate :math:`d\\theta = b(\\theta, t)dt + \\sigma(t)dW` (module docstring: schemes).

    Parameters
    ----------
    drift : callable
        ``drift(theta (K, P), t, k) -> (K, P)``; ``None`` or non-finite values raise.
    theta0 : tensor (P,) or (K, P)
        Start; a 1-D start is copied to ``n_particles`` particles (default 1).
    dt : float
        Step :math:`\\Delta t > 0`.
    n_steps : int
        Number of steps (>= 1).
    diffusion : float or callable
        :math:`\\sigma` or :math:`\\sigma(t)` (>= 0; 0 gives the deterministic Euler / Heun method).
    scheme : {"euler", "heun"}
    seed : int
        Seeds the noise generator.
    tail : float
        Fraction in (0, 1] of the final steps averaged into ``average``.
    keep_path : bool
        Keep every state in ``path`` (memory ``(n_steps + 1) K P``).
    monitor : callable, optional
        ``monitor(theta, t) -> dict`` of metrics for the trace.
    trace_every : int
        Call ``monitor`` every this many steps (0: only at the start and the end).
    step_map : callable, optional
        ``step_map(theta, increment) -> new theta`` replaces :math:`\\theta + \\Delta\\theta` (e.g. a
        manifold's exponential map, for the geodesic random walk on a sphere); Heun's predictor
        and corrector both go through it.

    Raises
    ------
    ValueError
        Bad shapes or settings, a drift that returns ``None`` (missing gradient).
    FloatingPointError
        A non-finite drift or state.
    """
    if scheme not in ("euler", "heun"):
        raise ValueError(f"scheme must be 'euler' or 'heun', got {scheme!r}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number, got {dt}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must lie in (0, 1], got {tail}")
    if not isinstance(theta0, torch.Tensor) or theta0.ndim not in (1, 2) or not theta0.is_floating_point():
        raise ValueError("theta0 must be a floating-point tensor of shape (P,) or (K, P)")
    if not bool(torch.isfinite(theta0).all()):
        raise ValueError("theta0 holds NaN or inf")
    if theta0.ndim == 1:
        theta = theta0.detach().unsqueeze(0).repeat(n_particles or 1, 1)
    else:
        if n_particles is not None and n_particles != theta0.shape[0]:
            raise ValueError(f"n_particles={n_particles} but theta0 holds {theta0.shape[0]} particles")
        theta = theta0.detach().clone()
    generator = torch.Generator(device=theta.device).manual_seed(seed)
    first_tail = n_steps - max(1, round(tail * n_steps))  # average the states after steps first_tail+1..n_steps
    total = torch.zeros_like(theta)
    path = [theta.clone()] if keep_path else None
    trace: list[dict[str, Any]] = []
    sqrt_dt = math.sqrt(dt)

    def observe(k: int, t: float) -> None:
        if monitor is not None:
            trace.append({"step": k, "t": t, **monitor(theta, t)})

    observe(0, t0)
    for k in range(n_steps):
        t = t0 + k * dt
        sigma = _diffusion_at(diffusion, t)
        b = _checked_drift(drift, theta, t, k)
        noise = sigma * sqrt_dt * torch.randn(theta.shape, generator=generator, device=theta.device, dtype=theta.dtype)
        move = step_map or torch.add
        if scheme == "heun":
            predicted = move(theta, b * dt + noise)
            b = 0.5 * (b + _checked_drift(drift, predicted, t + dt, k))
        theta = move(theta, b * dt + noise)
        if not bool(torch.isfinite(theta).all()):
            raise FloatingPointError(f"the state became non-finite at step {k + 1}; lower dt")
        if k >= first_tail:
            total += theta
        if keep_path:
            path.append(theta.clone())
        if trace_every and (k + 1) % trace_every == 0 and k + 1 < n_steps:
            observe(k + 1, t + dt)
    observe(n_steps, t0 + n_steps * dt)
    times = t0 + dt * torch.arange(n_steps + 1, dtype=torch.float64)
    return SDEPath(final=theta, average=total / (n_steps - first_tail), times=times,
                   path=torch.stack(path) if keep_path else None, trace=trace)
