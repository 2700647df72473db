"""The retraining methods, registered by name.

=========  ==========================================================================
``wsft``   :class:`~synthfuse.retrain.methods.wsft.WSFT`: fine-tune θ* with an initial velocity toward θ†
``kdt``    :class:`~synthfuse.retrain.methods.kdt.KDT`: distill θ† (or an ensemble) into θ*'s architecture
``otwi``   :class:`~synthfuse.retrain.methods.otwi.OTWI`: align θ† to θ*, interpolate, pick, fine-tune
``frr``    :class:`~synthfuse.retrain.methods.frr.FRR`: reset toward θ† under an NTK function-space penalty
=========  ==========================================================================

A new method subclasses :class:`RetrainMethod` and is decorated with :func:`register`.
"""

from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective,
)
from synthfuse.retrain.methods._registry import available_methods, get_method, register
from synthfuse.retrain.methods.frr import FRR
from synthfuse.retrain.methods.kdt import KDT
from synthfuse.retrain.methods.otwi import OTWI
from synthfuse.retrain.methods.wsft import WSFT

__all__ = [
    "FRR", "KDT", "OTWI", "WSFT",
    "BestSnapshot", "Context", "FocalOptions", "MethodOutput", "RetrainMethod", "SuperiorDistillOptions",
    "UpgradeObjective",
    "available_methods", "get_method", "register",
]
