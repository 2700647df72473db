"""synthfuse.shared: the thin toolkit the synthfuse libraries stand on.

Public API
----------
- :mod:`synthfuse.shared.io`: :func:`atomic_open`, :func:`atomic_write_bytes`,
  :func:`atomic_write_text`.
- :mod:`synthfuse.shared.cli`: the ``synthfuse`` command; :mod:`synthfuse.shared.demo`: the
  demo runner.
"""

from synthfuse.shared.__about__ import __version__
from synthfuse.shared.io import atomic_open, atomic_write_bytes, atomic_write_text

__all__ = ["__version__", "atomic_open", "atomic_write_bytes", "atomic_write_text"]
