"""synthfuse.synthe: Online-learning sequence models: layers, memory hub, depth router."""

from synthfuse.synthe.__about__ import __version__

__all__ = ["__version__"]
