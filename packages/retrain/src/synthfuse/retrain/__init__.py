"""synthfuse.retrain: Upgrade a deployed model without breaking what it got right."""

from synthfuse.retrain.__about__ import __version__

__all__ = ["__version__"]
