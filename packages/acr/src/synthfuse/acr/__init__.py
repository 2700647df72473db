"""synthfuse.acr: Mixture of polynomial SVR experts with adaptive complexity regularization."""

from synthfuse.acr.__about__ import __version__
from synthfuse.acr._estimator import MixtureOfSVRExperts

__all__ = ["MixtureOfSVRExperts", "__version__"]
