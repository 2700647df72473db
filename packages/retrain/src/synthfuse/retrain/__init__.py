"""synthfuse.retrain: upgrade a deployed model without breaking what it got right.

Given the incumbent θ* and a more accurate θ† of the same architecture, build θ‡ that
dominates θ†: at least as accurate, fewer negative flips against θ*, same inference cost.

Public API
----------
- :func:`retrain` → :class:`RetrainResult`; methods ``"wsft"``, ``"kdt"``, ``"otwi"``, ``"frr"`` and the
  stochastic ``"til"``, ``"dbsd"``, ``"fdd"``, ``"sb"``, ``"auto"`` (selector)
  (:mod:`synthfuse.retrain.methods`: :func:`get_method`, :func:`available_methods`, :func:`register`).
- :func:`negative_flip_rate`, :func:`evaluate`, :class:`Metrics` (:mod:`synthfuse.retrain.metrics`).
- :func:`dominates` → :class:`Verdict`, :func:`mcnemar_exact`, :func:`paired_bootstrap_ci`.
- :mod:`synthfuse.retrain.fisher`: :func:`diagonal_fisher`, :func:`kfac_fisher`, :func:`fisher_merge`.
- :mod:`synthfuse.retrain.alignment`: :func:`align`, :class:`AlignmentError`;
  :mod:`synthfuse.retrain.path`: :func:`interpolate_models`, :func:`loss_barrier`.
- :mod:`synthfuse.retrain.sde`: :func:`~synthfuse.retrain.sde.integrate` (seeded SDE engine);
  :mod:`synthfuse.retrain.bridge`: closed-form Gaussian Schrödinger bridge, Sinkhorn coupling.
- :func:`train_classifier`, :class:`MLP`, :class:`ConvNet`, :func:`build_architecture`.
"""

from synthfuse.retrain.__about__ import __version__
from synthfuse.retrain.alignment import AlignmentError, AlignmentResult, align
from synthfuse.retrain.api import RetrainResult, retrain
from synthfuse.retrain.architectures import MLP, ConvNet, build_architecture
from synthfuse.retrain.data import Dataset, as_dataset
from synthfuse.retrain.fisher import KFACBlock, diagonal_fisher, fisher_merge, kfac_fisher
from synthfuse.retrain.methods import available_methods, get_method, register
from synthfuse.retrain.metrics import Metrics, evaluate, negative_flip_rate
from synthfuse.retrain.path import BarrierResult, interpolate_models, loss_barrier
from synthfuse.retrain.training import train_classifier
from synthfuse.retrain.verdict import Verdict, dominates, mcnemar_exact, paired_bootstrap_ci

__all__ = [
    "__version__",
    "AlignmentError", "AlignmentResult", "BarrierResult", "ConvNet", "Dataset", "KFACBlock", "MLP",
    "Metrics", "RetrainResult", "Verdict",
    "align", "as_dataset", "available_methods", "build_architecture", "diagonal_fisher", "dominates",
    "evaluate", "fisher_merge", "get_method", "interpolate_models", "kfac_fisher", "loss_barrier",
    "mcnemar_exact", "negative_flip_rate", "paired_bootstrap_ci", "register", "retrain",
    "train_classifier",
]
