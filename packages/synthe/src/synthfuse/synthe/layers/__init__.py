"""The four online-learning layers of SYNTHE; each is ``forward(x, state=None, mask=None) -> (y, state)``."""

from synthfuse.synthe.layers.delta import DeltaLayer, chunk_gated_delta_rule, gated_delta_rule_step
from synthfuse.synthe.layers.kalman import KalmanLayer, KalmanOutput, kalman_filter_scan, kalman_filter_step
from synthfuse.synthe.layers.momentum import MomentumLayer, chunk_decayed_linear_attention, decayed_linear_attention_step
from synthfuse.synthe.layers.probe import AttentionProbe

__all__ = [
    "AttentionProbe",
    "DeltaLayer",
    "KalmanLayer",
    "KalmanOutput",
    "MomentumLayer",
    "chunk_decayed_linear_attention",
    "chunk_gated_delta_rule",
    "decayed_linear_attention_step",
    "gated_delta_rule_step",
    "kalman_filter_scan",
    "kalman_filter_step",
]
