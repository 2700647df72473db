"""The KODA model: a decoder-only transformer with RoPE, Switch MoE and a hyperbolic structure bias.

- :class:`KodaTransformer`, :class:`KodaModelConfig`, :class:`KodaOutput` (:mod:`.transformer`)
- :class:`RotaryEmbedding`, :func:`apply_rotary` (:mod:`.rope`)
- :class:`SwitchFeedForward`, :func:`gumbel_top1`, :func:`switch_balance_loss` (:mod:`.moe`)
- :class:`BallProjection`, :class:`StructuralBias`, :func:`pairwise_ball_distance`,
  :func:`structure_stress_loss` (:mod:`.hyperbolic`)
- :func:`orthogonal_`, :func:`marchenko_pastur_`, :func:`initialize_` and the Marchenko–Pastur
  law (:mod:`.isometry`)
- :class:`KVCache`, :class:`CacheEntries` -- incremental decoding (:mod:`.cache`)
- :class:`KLTokenizer` (:mod:`.tokenizer`); :func:`tree_distances`, :func:`token_owners`,
  :func:`ast_parents` (:mod:`.structure`)
"""

from synthfuse.koda.model.cache import CacheEntries, KVCache
from synthfuse.koda.model.hyperbolic import (
    BallProjection, StructuralBias, pairwise_ball_distance, structure_stress_loss,
)
from synthfuse.koda.model.isometry import (
    INIT_SCHEMES, gaussian_spectrum_law, initialize_, marchenko_pastur_, marchenko_pastur_pdf,
    marchenko_pastur_quantiles, marchenko_pastur_support, orthogonal_,
)
from synthfuse.koda.model.moe import SwitchFeedForward, gumbel_top1, switch_balance_loss
from synthfuse.koda.model.rope import RotaryEmbedding, apply_rotary
from synthfuse.koda.model.structure import ast_parents, token_owners, tree_distances
from synthfuse.koda.model.tokenizer import SPECIALS, KLTokenizer
from synthfuse.koda.model.transformer import KodaModelConfig, KodaOutput, KodaTransformer

__all__ = [
    "INIT_SCHEMES", "SPECIALS", "BallProjection", "CacheEntries", "KLTokenizer", "KVCache", "KodaModelConfig",
    "KodaOutput", "KodaTransformer", "RotaryEmbedding", "StructuralBias", "SwitchFeedForward", "apply_rotary",
    "ast_parents", "gaussian_spectrum_law", "gumbel_top1", "initialize_", "marchenko_pastur_", "marchenko_pastur_pdf",
    "marchenko_pastur_quantiles", "marchenko_pastur_support", "orthogonal_", "pairwise_ball_distance",
    "structure_stress_loss", "switch_balance_loss", "token_owners", "tree_distances",
]
