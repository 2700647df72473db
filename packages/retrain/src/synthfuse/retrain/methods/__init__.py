"""The retraining methods, registered by name.

=========  ==========================================================================
``wsft``   :class:`~synthfuse.retrain.methods.wsft.WSFT`: fine-tune θ* with an initial velocity toward θ†
``kdt``    :class:`~synthfuse.retrain.methods.kdt.KDT`: distill θ† (or an ensemble) into θ*'s architecture
``otwi``   :class:`~synthfuse.retrain.methods.otwi.OTWI`: align θ† to θ*, interpolate, pick, fine-tune
``auto``   :class:`~synthfuse.retrain.methods.auto.Auto`: run several methods, keep the best dominating θ‡
``dbsd``   :class:`~synthfuse.retrain.methods.dbsd.DBSD`: Brownian bridge θ* → θ† plus the objective gradient
``fdd``    :class:`~synthfuse.retrain.methods.fdd.FDD`: geodesic Langevin walk on the layer spheres toward θ†'s function (NTK metric)
``frr``    :class:`~synthfuse.retrain.methods.frr.FRR`: reset toward θ† under an NTK function-space penalty
``sb``     :class:`~synthfuse.retrain.methods.sb.SB`: Schrödinger bridge between populations around θ* and θ†
``til``    :class:`~synthfuse.retrain.methods.til.TIL`: Langevin dynamics (SGLD) pulled toward θ†, tail-averaged
=========  ==========================================================================

A new method subclasses :class:`RetrainMethod` and is decorated with :func:`register`.
"""

from synthfuse.retrain.methods._base import (
    BestSnapshot, Context, FocalOptions, MethodOutput, RetrainMethod, SuperiorDistillOptions, UpgradeObjective,
)
from synthfuse.retrain.methods._registry import available_methods, get_method, register
from synthfuse.retrain.methods.auto import Auto
from synthfuse.retrain.methods.dbsd import DBSD
from synthfuse.retrain.methods.fdd import FDD
from synthfuse.retrain.methods.frr import FRR
from synthfuse.retrain.methods.kdt import KDT
from synthfuse.retrain.methods.otwi import OTWI
from synthfuse.retrain.methods.sb import SB
from synthfuse.retrain.methods.til import TIL
from synthfuse.retrain.methods.wsft import WSFT

__all__ = [
    "Auto", "DBSD", "FDD", "FRR", "KDT", "OTWI", "SB", "TIL", "WSFT",
    "BestSnapshot", "Context", "FocalOptions", "MethodOutput", "RetrainMethod", "SuperiorDistillOptions",
    "UpgradeObjective",
    "available_methods", "get_method", "register",
]
