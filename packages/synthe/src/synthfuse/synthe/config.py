"""``SyntheConfig``: every size and switch of a SYNTHE model, validated up front, YAML round trip.

Presets (parameter counts at vocabulary 32,000, tied embeddings; checked by the tests):

================  =======  ========  =======  ============
preset            d_model  n_layers  n_heads  parameters
================  =======  ========  =======  ============
``tiny()``        256      8         4        ~16 M
``small_60m()``   512      14        8        ~74 M
``medium_125m()`` 768      22        12       ~216 M
``large_350m()``  1024     31        16       ~528 M
================  =======  ========  =======  ============
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthfuse.shared.config import YamlConfig

__all__ = ["SyntheConfig", "YamlConfig"]


@dataclass
class SyntheConfig(YamlConfig):
    """Configuration of :class:`synthfuse.synthe.Synthe`.

    ``None`` defaults are resolved in ``__post_init__`` from the other fields (so a config
    written with :meth:`to_yaml` states every value explicitly).

    Attributes
    ----------
    vocab_size, d_model, n_layers, n_heads : int
        Model size; head width ``d_model / n_heads``.
    conv_size : int
        Short convolution kernel of the delta layer.
    chunk_size : int
        Chunk length of the parallel forms (a power of two).
    kalman_dim : int
        Channels of each Kalman filter (default ``d_model``).
    probe_layers : list of int
        Blocks that end with an attention probe (default: every second block, 1, 3, 5, ...).
    probe_window, probe_threshold : int, float
        Probe window ``w`` and the confidence below which a token fires.
    delta : bool
        Whether each block has its DeltaLayer (False: the ablation "SYNTHE without DeltaLayer").
    delta_dt_range : (float, float)
        Range of the DeltaLayer's initial step sizes (its initial forgetting rate per token is
        ``exp(A) dt``, ``exp(A)`` in [1, 16]); the default is Mamba-2's.
    hub : bool
        Whether the Temporal Memory Hub runs (after block ``hub_layer``).
    hub_dim, hub_layer, sentence_len, discourse_len : int
        Hub width (default ``d_model / 4``), position and segment lengths.
    exit_layers : list of int
        Blocks after which a token may leave (default: after ``n/2`` and ``3n/4`` blocks).
        Each must lie after ``hub_layer`` and before the last block.
    exit_threshold : float
        A token leaves when its router score exceeds it (> 1 never exits).
    early_exit : bool
        Whether the router acts at inference (training always runs full depth unless the
        forward call asks for exits).
    router_aux_weight, router_aux_stride : float, int
        Weight of the auxiliary router objective and the stride of the positions it is computed on.
    tie_embeddings : bool
        Share the input embedding and the output projection.
    init_std : float
        Standard deviation of the normal initialisation of embeddings and projections.
    """

    vocab_size: int = 32000
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 4
    conv_size: int = 4
    chunk_size: int = 64
    kalman_dim: int | None = None
    probe_layers: list[int] | None = None
    probe_window: int = 64
    probe_threshold: float = 0.5
    delta: bool = True
    delta_dt_range: tuple[float, float] = (1e-3, 1e-1)
    hub: bool = True
    hub_dim: int | None = None
    hub_layer: int = 0
    sentence_len: int = 16
    discourse_len: int = 128
    exit_layers: list[int] | None = None
    exit_threshold: float = 0.9
    early_exit: bool = True
    router_aux_weight: float = 0.1
    router_aux_stride: int = 4
    tie_embeddings: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (YamlConfig)
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "conv_size", "chunk_size", "probe_window",
                     "sentence_len", "discourse_len", "router_aux_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"SyntheConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"SyntheConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.chunk_size & (self.chunk_size - 1):
            raise ValueError(f"SyntheConfig.chunk_size must be a power of two; got {self.chunk_size}")
        if self.discourse_len % self.sentence_len:
            raise ValueError("SyntheConfig.discourse_len must be a multiple of sentence_len")
        if not 0 <= self.hub_layer < self.n_layers:
            raise ValueError(f"SyntheConfig.hub_layer must be in [0, {self.n_layers}); got {self.hub_layer}")
        if not 0 < self.delta_dt_range[0] <= self.delta_dt_range[1]:
            raise ValueError(f"SyntheConfig.delta_dt_range must satisfy 0 < low <= high; got {self.delta_dt_range}")
        if self.router_aux_weight < 0 or self.init_std <= 0:
            raise ValueError("SyntheConfig.router_aux_weight must be >= 0 and init_std > 0")
        n = self.n_layers
        self.kalman_dim = self.d_model if self.kalman_dim is None else self.kalman_dim
        self.hub_dim = max(1, self.d_model // 4) if self.hub_dim is None else self.hub_dim
        if self.kalman_dim < 1 or self.hub_dim < 1:
            raise ValueError("SyntheConfig.kalman_dim and hub_dim must be >= 1")
        if self.probe_layers is None:
            self.probe_layers = list(range(1, n, 2))
        if self.exit_layers is None:
            first = self.hub_layer + 1 if self.hub else 0
            self.exit_layers = sorted({i for i in (n // 2 - 1, (3 * n) // 4 - 1) if first <= i < n - 1})
        self.probe_layers, self.exit_layers = sorted(set(self.probe_layers)), sorted(set(self.exit_layers))
        if any(not 0 <= i < n for i in self.probe_layers):
            raise ValueError(f"SyntheConfig.probe_layers must index blocks 0..{n - 1}; got {self.probe_layers}")
        first_exit = self.hub_layer + 1 if self.hub else 0
        if any(not first_exit <= i < n - 1 for i in self.exit_layers):
            raise ValueError(
                f"SyntheConfig.exit_layers must lie in [{first_exit}, {n - 2}] (after the hub, before the "
                f"last block); got {self.exit_layers}"
            )

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides: Any) -> "SyntheConfig":
        """~16 M parameters at vocabulary 32,000."""
        return cls(**{"d_model": 256, "n_layers": 8, "n_heads": 4, **overrides})

    @classmethod
    def small_60m(cls, **overrides: Any) -> "SyntheConfig":
        """~74 M parameters at vocabulary 32,000."""
        return cls(**{"d_model": 512, "n_layers": 14, "n_heads": 8, **overrides})

    @classmethod
    def medium_125m(cls, **overrides: Any) -> "SyntheConfig":
        """~216 M parameters at vocabulary 32,000."""
        return cls(**{"d_model": 768, "n_layers": 22, "n_heads": 12, **overrides})

    @classmethod
    def large_350m(cls, **overrides: Any) -> "SyntheConfig":
        """~528 M parameters at vocabulary 32,000."""
        return cls(**{"d_model": 1024, "n_layers": 31, "n_heads": 16, **overrides})

