"""Counter-based random numbers: the same draw for the same key, however a batch is split or padded.

A stateful generator hands out numbers in call order, so the draw an example gets depends on
how many examples came before it on its process: split a batch over two ranks and every
example gets a different number than in the one-process run. A *counter-based* generator
(Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3") instead
computes each number as a fixed bijective hash of its key, here ``(seed, step, example id,
position, class)``. The hash is the SplitMix64 finalizer (Steele, Lea & Flood 2014):

.. math::
    z \\leftarrow x + \\varphi,\\quad z \\leftarrow (z \\oplus (z \\gg 30))\\,m_1,\\quad
    z \\leftarrow (z \\oplus (z \\gg 27))\\,m_2,\\quad z \\leftarrow z \\oplus (z \\gg 31)
    \\pmod{2^{64}},

chained over the key words as :math:`h_0 = f(\\text{seed})`, :math:`h_{i+1} = f(h_i \\oplus c_i)`;
the top 53 bits give :math:`u = (\\lfloor h/2^{11} \\rfloor + \\tfrac12)/2^{53} \\in (0, 1)`.
:func:`keyed_categorical` samples :math:`\\hat y \\sim \\operatorname{softmax}(\\ell)` by the
Gumbel-max trick, :math:`\\hat y = \\arg\\max_c (\\ell_c - \\log(-\\log u_c))` (Gumbel 1954;
Maddison, Tarlow & Minka 2014). K-FAC's sampled Fisher uses it so that a 2-rank run samples
exactly the targets of the 1-process run.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["counter_uniform", "keyed_categorical"]

_MASK64 = (1 << 64) - 1
_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _int64(c: int) -> int:
    """The two's-complement int64 with the bits of the 64-bit unsigned ``c``."""
    return c - (1 << 64) if c >= 1 << 63 else c


def _shift_right(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` on int64 copies the sign bit)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: Tensor) -> Tensor:
    """SplitMix64 finalizer of ``x + phi`` on int64 tensors (multiplication wraps modulo 2^64)."""
    x = x + _int64(_GOLDEN)
    x = (x ^ _shift_right(x, 30)) * _int64(_M1)
    x = (x ^ _shift_right(x, 27)) * _int64(_M2)
    return x ^ _shift_right(x, 31)


def _reference_counter_uniform(seed: int, *counters: int) -> float:
    """:func:`counter_uniform` for one key with Python's unbounded integers (testing only)."""
    def mix(x: int) -> int:
        x = (x + _GOLDEN) & _MASK64
        x = ((x ^ (x >> 30)) * _M1) & _MASK64
        x = ((x ^ (x >> 27)) * _M2) & _MASK64
        return x ^ (x >> 31)

    h = mix(seed & _MASK64)
    for c in counters:
        h = mix(h ^ (c & _MASK64))
    return ((h >> 11) + 0.5) / 2.0**53


def counter_uniform(seed: int, *counters: Tensor | int, device: torch.device | str | None = None) -> Tensor:
    """Uniform numbers in (0, 1), float64, one per element of the broadcast ``counters``.

    Parameters
    ----------
    seed : int
        Any integer (taken modulo :math:`2^{64}`).
    *counters : int64 tensors or ints
        The key words, broadcast together (e.g. step (), example ids (B, 1, 1), positions
        (1, T, 1), classes (1, 1, C)); negative values are allowed.
    device : optional
        Where to compute when every counter is a Python int.

    Returns
    -------
    Tensor
        float64 of the broadcast shape; the same key always gives the same number.
    """
    ref = next((c for c in counters if isinstance(c, Tensor)), None)
    dev = ref.device if ref is not None else device
    h = _mix(torch.tensor(_int64(int(seed) & _MASK64), dtype=torch.int64, device=dev))
    for c in counters:
        c = torch.as_tensor(c, device=dev)
        if c.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"counters must be integer tensors or ints, got {c.dtype}")
        h = _mix(h ^ c.to(torch.int64))
    return (_shift_right(h, 11).to(torch.float64) + 0.5) * 2.0**-53


def keyed_categorical(logits: Tensor, seed: int, *keys: Tensor | int) -> Tensor:
    """One sample of :math:`\\operatorname{softmax}(\\ell)` per row, drawn from the key ``(seed, *keys, class)``.

    Parameters
    ----------
    logits : Tensor, shape (..., C)
    seed : int
    *keys : int64 tensors or ints broadcastable to ``logits.shape[:-1]``
        E.g. ``step`` and ``example_ids[:, None]`` and ``positions[None, :]`` for (B, T, C)
        logits: rows with the same key get the same sample whatever batch they are in.

    Returns
    -------
    LongTensor, shape ``logits.shape[:-1]``
    """
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a non-empty class dimension, got shape {tuple(logits.shape)}")
    keys = [torch.as_tensor(k, device=logits.device) for k in keys]
    if torch.broadcast_shapes(*(k.shape for k in keys), ()) != logits.shape[:-1]:
        raise ValueError(f"keys broadcast to {tuple(torch.broadcast_shapes(*(k.shape for k in keys), ()))} but must "
                         f"give every row of logits {tuple(logits.shape[:-1])} its own key (rows would share draws)")
    classes = torch.arange(logits.shape[-1], device=logits.device)
    expanded = [k[..., None] for k in keys]  # class axis last
    u = counter_uniform(seed, *expanded, classes)
    gumbel = -torch.log(-torch.log(u))  # float64: u lies strictly inside (0, 1)
    with torch.no_grad():
        return (logits.detach().to(torch.float64) + gumbel).argmax(dim=-1)
