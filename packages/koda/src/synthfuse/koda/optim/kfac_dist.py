"""K-FAC across ranks: curvature factors summed over every rank's examples, FSDP2 shards gathered.

With data parallelism each rank sees ``B/W`` examples. The factors must be those of the whole
batch, so each rank's sums :math:`\\sum a a^\\top`, :math:`\\sum g g^\\top` and its example
count ``n`` are added over the ranks (one all-reduce of one flat buffer per step) before the
division:

.. math::
    \\hat A = \\frac{\\sum_r \\sum_{i \\in r} a_i a_i^\\top}{\\sum_r n_r}, \\qquad
    \\hat S = \\frac{\\sum_r \\sum_{i \\in r} g_i g_i^\\top}{\\sum_r n_r}

-- the single-process factors of the global batch (averaging the per-rank means instead
would weigh a rank's examples by ``1/n_r``, wrong when ranks hold different numbers of
unpadded tokens). Every rank then holds the same factors and inverses. Under FSDP2 the
parameters and gradients are ``DTensor`` shards: each layer's averaged gradient is gathered
(``full_tensor``), preconditioned, and each rank keeps its own shard of
:math:`S^{-1} G A^{-1}`, so the update equals the single-process one. (Spreading the
inversions over ranks, as KAISA does -- Pauloski et al. 2021 -- would save compute on large
models; here every rank inverts every factor.) Under DDP the gradients are already full and
averaged, and only the factor reduction applies.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

from synthfuse.koda.optim.kfac import KFAC
from synthfuse.shared.distributed import all_reduce_sum

__all__ = ["DistributedKFAC"]


class DistributedKFAC(KFAC):
    """:class:`~synthfuse.koda.optim.KFAC` for data-parallel training (FSDP2, DDP or one process).

    Same arguments and use as :class:`KFAC`; build it after the model is sharded. Without a
    process group it behaves exactly like :class:`KFAC`.
    """

    def _reduce_moments(self, sums: list[tuple[Tensor, Tensor, Tensor]]) -> list[tuple[Tensor, Tensor, Tensor]]:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return sums
        flat = torch.cat([t.reshape(-1) for triple in sums for t in triple])
        total = all_reduce_sum(flat)  # one collective for every layer's A, S and n
        out, offset = [], 0
        for triple in sums:
            parts = []
            for t in triple:
                parts.append(total[offset:offset + t.numel()].view(t.shape))
                offset += t.numel()
            out.append(tuple(parts))
        return out

    def _full(self, t: Tensor) -> Tensor:
        return t.full_tensor() if isinstance(t, DTensor) else t

    def _write(self, param: nn.Parameter, value: Tensor) -> None:
        if isinstance(param, DTensor):  # keep this rank's shard (same layout as the parameter)
            value = distribute_tensor(value.contiguous(), param.device_mesh, param.placements, src_data_rank=None)
        super()._write(param, value)
