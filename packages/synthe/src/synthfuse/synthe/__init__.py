"""synthfuse.synthe: Online-learning sequence models: layers, memory hub, depth router.

Public API
----------
- :class:`Synthe`, :class:`SyntheConfig`: the model and its configuration (presets ``tiny``,
  ``small_60m``, ``medium_125m``, ``large_350m``; YAML round trip).
- :mod:`synthfuse.synthe.layers`: :class:`DeltaLayer`, :class:`MomentumLayer`,
  :class:`KalmanLayer`, :class:`AttentionProbe`.
- :class:`TemporalMemoryHub`, :class:`DepthRouter`, :class:`SyntheBlock`.
- :func:`head_and_loss`: the LM head and its loss, optionally only at scored targets.
- State helpers: :func:`save_state`, :func:`load_state`, :func:`detach_state`,
  :func:`state_nbytes`; sampling: :func:`sample_next`.
- :class:`TransformerBaseline`, :class:`TransformerConfig`: a same-size causal Transformer.
- :mod:`synthfuse.synthe.train` (imported on demand): the trainer, run configs, text data,
  Zoology tasks and probe diagnostics.
"""

from synthfuse.synthe.__about__ import __version__
from synthfuse.synthe.baseline import TransformerBaseline, TransformerConfig
from synthfuse.synthe.block import SyntheBlock
from synthfuse.synthe.config import SyntheConfig
from synthfuse.synthe.head import head_and_loss
from synthfuse.synthe.hub import TemporalMemoryHub
from synthfuse.synthe.layers import AttentionProbe, DeltaLayer, KalmanLayer, MomentumLayer
from synthfuse.synthe.model import Synthe
from synthfuse.synthe.router import DepthRouter
from synthfuse.synthe.sampling import sample_next
from synthfuse.synthe.state import detach_state, load_state, save_state, state_nbytes

__all__ = [
    "AttentionProbe",
    "DeltaLayer",
    "DepthRouter",
    "KalmanLayer",
    "MomentumLayer",
    "Synthe",
    "SyntheBlock",
    "SyntheConfig",
    "TemporalMemoryHub",
    "TransformerBaseline",
    "TransformerConfig",
    "__version__",
    "detach_state",
    "head_and_loss",
    "load_state",
    "sample_next",
    "save_state",
    "state_nbytes",
]
