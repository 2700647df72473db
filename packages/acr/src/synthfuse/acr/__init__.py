"""synthfuse.acr: Mixture of polynomial SVR experts with adaptive complexity regularization."""

from synthfuse.acr.__about__ import __version__

__all__ = ["__version__"]
