"""synthfuse.koda: Program synthesis with complexity proofs."""

from synthfuse.koda.__about__ import __version__

__all__ = ["__version__"]
