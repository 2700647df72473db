"""A collective finiteness check: a NaN/inf loss on one rank stops every rank with the same error.

If the rank that sees a non-finite loss raised on its own, the others would wait for it in the
next collective (the backward pass's all-reduce, the next step's count) until the backend's
timeout. Instead every rank contributes a flag vector ``f`` of length ``W`` (the world size)
with :math:`f_r = 1` on rank ``r`` when one of its values is not finite, and 0 elsewhere; after
an all-reduce every rank holds

.. math:: F = \\sum_r f^{(r)}, \\qquad \\text{bad ranks} = \\{ r : F_r > 0 \\},

the same on every rank, so all of them raise :class:`NonFiniteError` together (or none does).
The vector can ride on an all-reduce the trainer makes anyway (concatenate it to the logged
losses; a mean instead of a sum keeps :math:`F_r > 0`): :func:`nonfinite_flags` then
:func:`raise_if_nonfinite`; or :func:`check_finite` does one small all-reduce of its own.
"""

from __future__ import annotations

from synthfuse.shared.backend import import_optional
from synthfuse.shared.distributed._runtime import all_reduce_sum

torch = import_optional("torch")
dist = import_optional("torch.distributed")

__all__ = ["NonFiniteError", "check_finite", "nonfinite_flags", "raise_if_nonfinite"]

#: What :class:`NonFiniteError` suggests when the caller names nothing more specific.
DEFAULT_HINT = "try a lower learning rate, higher precision or gradient-norm clipping"


class NonFiniteError(FloatingPointError):
    """A non-finite value on some rank(s); raised on every rank with the same message.

    Attributes
    ----------
    step : int
        The step the value belongs to.
    ranks : list of int
        The ranks that saw it.
    world_size : int
    """

    def __init__(self, step: int, ranks: list[int], world_size: int, what: str = "loss",
                 hint: str = DEFAULT_HINT) -> None:
        self.step, self.ranks, self.world_size = step, list(ranks), world_size
        where = f" on rank(s) {self.ranks} of {world_size}" if world_size > 1 else ""
        super().__init__(f"non-finite {what} (NaN or inf) at step {step}{where}; {hint}")


def _group() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def nonfinite_flags(*values: "torch.Tensor") -> "torch.Tensor":
    """This rank's flag vector: float64 of length ``W``, 1 at this rank's index when any entry of
    ``values`` is NaN or inf, 0 elsewhere.

    Tensor operations only (no host synchronisation), on the first value's device, so the vector
    can be appended to an all-reduce the caller makes anyway.

    Raises
    ------
    ValueError
        Without values.
    """
    if not values:
        raise ValueError("nonfinite_flags needs at least one tensor")
    rank, world_size = _group()
    device = values[0].device
    bad = torch.stack([~torch.isfinite(v.detach()).all().to(device) for v in values]).any()
    flags = torch.zeros(world_size, dtype=torch.float64, device=device)
    flags[rank] = bad.to(torch.float64)
    return flags


def raise_if_nonfinite(reduced: "torch.Tensor", step: int, *, what: str = "loss", hint: str = DEFAULT_HINT) -> None:
    """Raise :class:`NonFiniteError` when any rank flagged a value; ``reduced`` is the sum (or mean)
    over ranks of their :func:`nonfinite_flags` -- identical on every rank, so every rank raises.

    Raises
    ------
    ValueError
        When ``reduced`` is not a vector of length ``W``.
    """
    _, world_size = _group()
    if reduced.shape != (world_size,):
        raise ValueError(f"reduced flags must have shape ({world_size},) (one per rank), got {tuple(reduced.shape)}")
    ranks = torch.nonzero(reduced.detach().cpu() > 0).flatten().tolist()
    if ranks:
        raise NonFiniteError(step, ranks, world_size, what, hint)


def check_finite(*values: "torch.Tensor", step: int, what: str = "loss", hint: str = DEFAULT_HINT) -> None:
    """Collective: raise :class:`NonFiniteError` on every rank if ``values`` hold a NaN or inf on any rank.

    One all-reduce of ``W`` numbers (none without a process group). Call it at the same point
    of the step on every rank, before the backward pass or the optimizer step.
    """
    raise_if_nonfinite(all_reduce_sum(nonfinite_flags(*values)), step, what=what, hint=hint)
