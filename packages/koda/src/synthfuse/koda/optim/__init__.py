"""Optimizers for KODA: the K-FAC preconditioner (:class:`KFAC`), its data-parallel form
(:class:`DistributedKFAC`) and counter-based sampling for the sampled Fisher (:mod:`.sampling`)."""

from synthfuse.koda.optim.kfac import KFAC, sampled_nll_categorical, sampled_nll_gaussian
from synthfuse.koda.optim.kfac_dist import DistributedKFAC
from synthfuse.koda.optim.sampling import counter_uniform, keyed_categorical

__all__ = ["DistributedKFAC", "KFAC", "counter_uniform", "keyed_categorical", "sampled_nll_categorical",
           "sampled_nll_gaussian"]
