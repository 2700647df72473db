"""Optimizers for KODA: the K-FAC preconditioner (:class:`KFAC`)."""

from synthfuse.koda.optim.kfac import KFAC, sampled_nll_categorical, sampled_nll_gaussian

__all__ = ["KFAC", "sampled_nll_categorical", "sampled_nll_gaussian"]
