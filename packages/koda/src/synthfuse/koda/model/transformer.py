"""The KODA decoder-only transformer (Vaswani et al. 2017), pre-norm, RoPE positions.

Each block is ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``; the feed-forward of every
``moe_every``-th block is a top-1 mixture of experts (:mod:`.moe`), the others dense. The
output of the first ``ball_layer`` blocks is mapped into the Poincaré ball
(:mod:`.hyperbolic`); the distances between those points bias the attention of the later
blocks and feed the structure loss during training. Conditioning is by prompt: the sequence
starts ``<bos> <theta:CLASS> [<sig> signature] <sep>`` (see :mod:`.tokenizer`).
:meth:`KodaTransformer.extend` runs only new tokens against a :class:`~.cache.KVCache` of
the earlier ones (incremental decoding, :mod:`synthfuse.koda.decode`).

Shapes: ``B`` batch, ``T`` time, ``d`` model width, ``H`` heads, ``hs = d / H``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.koda.model.cache import CacheEntries, KVCache
from synthfuse.koda.model.hyperbolic import BallProjection, StructuralBias, pairwise_ball_distance
from synthfuse.koda.model.isometry import INIT_SCHEMES, initialize_
from synthfuse.koda.model.moe import SwitchFeedForward
from synthfuse.koda.model.rope import RotaryEmbedding

__all__ = ["KodaModelConfig", "KodaOutput", "KodaTransformer"]


@dataclass
class KodaModelConfig:
    """Hyper-parameters of :class:`KodaTransformer` (validated on construction).

    Attributes
    ----------
    vocab_size : int
    d_model, n_layers, n_heads, d_ff : int
        Width, depth, heads (``d_model % n_heads == 0``, even head size) and hidden FFN width.
    n_experts : int
        Experts per MoE feed-forward; 1 makes every feed-forward dense.
    moe_every : int
        Blocks ``i`` with ``(i + 1) % moe_every == 0`` use the MoE feed-forward.
    router_temperature, capacity_factor : float
        Gumbel-softmax temperature (> 0) and Switch expert capacity factor.
    ball_dim : int
        Dimension of the Poincaré-ball token embedding.
    curvature : float
        :math:`c > 0`: the ball has curvature :math:`-c`.
    ball_layer : int
        The ball points are computed from the output of the first ``ball_layer`` blocks
        (0: from the token embeddings); blocks ``>= ball_layer`` get the structural bias.
    structural_bias : bool
        Add the hyperbolic attention bias (the ball points are computed either way).
    max_len : int
        Longest sequence (RoPE cache).
    rope_base : float
    init : {"orthogonal", "marchenko_pastur", "default"}
        Weight initialization (:mod:`.isometry`).
    """

    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 256
    n_experts: int = 4
    moe_every: int = 2
    router_temperature: float = 1.0
    capacity_factor: float = 1.25
    ball_dim: int = 8
    curvature: float = 1.0
    ball_layer: int = 1
    structural_bias: bool = True
    max_len: int = 256
    rope_base: float = 10000.0
    init: str = "orthogonal"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "n_experts", "moe_every",
                     "ball_dim", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"model.d_model ({self.d_model}) must be n_heads ({self.n_heads}) times an "
                             "even head size (RoPE rotates pairs)")
        if not 0 <= self.ball_layer <= self.n_layers:
            raise ValueError(f"model.ball_layer must lie in [0, n_layers={self.n_layers}], got {self.ball_layer}")
        if not (self.router_temperature > 0 and math.isfinite(self.router_temperature)):
            raise ValueError(f"model.router_temperature must be > 0, got {self.router_temperature}")
        if not self.curvature > 0:
            raise ValueError(f"model.curvature must be > 0, got {self.curvature}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"model.init must be one of {INIT_SCHEMES}, got {self.init!r}")

    def to_dict(self) -> dict:
        """Plain-dict form (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "KodaModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**data)


@dataclass
class KodaOutput:
    """What :meth:`KodaTransformer.forward` returns.

    Attributes
    ----------
    logits : Tensor (B, T, V)
    hidden : Tensor (B, T, d)
        Final hidden states (after the last layer norm): the sequence the WGAN critic sees.
    ball : Tensor (B, T, ball_dim)
        Poincaré-ball points of the tokens.
    ball_dist : Tensor (B, T, T)
        Their pairwise geodesic distances.
    balance_loss : Tensor ()
        Mean Switch load-balancing loss over the MoE blocks (0 without MoE).
    """

    logits: Tensor
    hidden: Tensor
    ball: Tensor
    ball_dist: Tensor
    balance_loss: Tensor


def _reference_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """Softmax attention written out, causal, with an optional additive bias (testing only)."""
    t = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    if bias is not None:
        scores = scores + bias
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE and an optional additive score bias."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor, rope: RotaryEmbedding, bias: Tensor | None = None) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q), rope(k)  # (B, H, T, hs)
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~causal, float("-inf")))
        return self.proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)

    def extend(self, x: Tensor, rope: RotaryEmbedding, positions: Tensor, past_k: Tensor, past_v: Tensor,
               allowed: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Attention of ``T`` new positions over ``L`` cached ones and themselves.

        ``past_k, past_v``: (B, H, L, hs); ``allowed``: (B, T, L + T) bool; ``bias``:
        (B, H, T, L + T) or None. The scores against the cache and against the new keys are
        computed apart and share one softmax, so the cache is never copied. Returns the
        output (B, T, d) and the new keys (after RoPE) and values (B, H, T, hs).
        """
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, positions), rope(k, positions)  # (B, H, T, hs)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.cat([q @ past_k.transpose(-1, -2), q @ k.transpose(-1, -2)], dim=-1) * scale  # (B, H, T, L+T)
        if bias is not None:
            scores = scores + bias
        probs = torch.softmax(scores.masked_fill(~allowed[:, None], float("-inf")), dim=-1)
        past = past_k.shape[2]
        y = probs[..., :past] @ past_v + probs[..., past:] @ v  # (B, H, T, hs)
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), k, v


class DenseFeedForward(nn.Module):
    """``Linear -> GELU -> Linear``; returns ``(y, 0)`` like :class:`SwitchFeedForward`."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, drop_tokens: bool = True) -> tuple[Tensor, Tensor]:
        return self.down(F.gelu(self.up(x))), x.new_zeros(())


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: KodaModelConfig, moe: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_heads)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ffn = (SwitchFeedForward(cfg.d_model, cfg.d_ff, cfg.n_experts, temperature=cfg.router_temperature,
                                      capacity_factor=cfg.capacity_factor)
                    if moe else DenseFeedForward(cfg.d_model, cfg.d_ff))

    def forward(self, x: Tensor, rope: RotaryEmbedding, mask: Tensor | None,
                bias: Tensor | None) -> tuple[Tensor, Tensor]:
        x = x + self.attn(self.norm1(x), rope, bias)
        y, balance = self.ffn(self.norm2(x), mask)[:2]
        return x + y, balance

    def extend(self, x: Tensor, rope: RotaryEmbedding, positions: Tensor, past: tuple[Tensor, Tensor],
               allowed: Tensor, bias: Tensor | None, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The block on new positions given the cached keys/values; every token reaches its expert."""
        y, k, v = self.attn.extend(self.norm1(x), rope, positions, *past, allowed, bias)
        x = x + y
        return x + self.ffn(self.norm2(x), valid, drop_tokens=False)[0], k, v


class KodaTransformer(nn.Module):
    """Decoder-only transformer with MoE feed-forwards and a hyperbolic structural bias.

    Parameters
    ----------
    config : KodaModelConfig
    device : torch.device or str, optional

    Examples
    --------
    >>> import torch
    >>> model = KodaTransformer(KodaModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2,
    ...                                          d_ff=64))
    >>> out = model(torch.randint(0, 50, (3, 10)))
    >>> tuple(out.logits.shape), tuple(out.ball_dist.shape)
    ((3, 10, 50), (3, 10, 10))
    """

    def __init__(self, config: KodaModelConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(cfg.d_model))
        self.rope = RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.max_len, cfg.rope_base)
        moe = cfg.n_experts > 1
        self.blocks = nn.ModuleList(Block(cfg, moe and (i + 1) % cfg.moe_every == 0) for i in range(cfg.n_layers))
        self.to_ball = BallProjection(cfg.d_model, cfg.ball_dim, cfg.curvature)
        self.struct_bias = nn.ModuleList(
            StructuralBias(cfg.n_heads) for _ in range(cfg.n_layers - cfg.ball_layer)
        ) if cfg.structural_bias else None
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        initialize_(self, cfg.init)
        if device is not None:
            self.to(device)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, tokens: Tensor | None = None, *, embeds: Tensor | None = None,
                soft_tokens: Tensor | None = None, mask: Tensor | None = None) -> KodaOutput:
        """Run the model on ``tokens`` (B, T), on input embeddings ``embeds`` (B, T, d) or on
        ``soft_tokens`` (B, T, V), distributions over the vocabulary embedded as ``soft_tokens @ E``.

        ``embeds`` and ``soft_tokens`` let a caller feed soft tokens and get gradients through
        them; with ``soft_tokens`` the embedding stays inside this call (needed when the
        parameters are sharded and only gathered during the forward pass). A one-hot row gives
        exactly the embedding of its token. ``mask`` (B, T) marks real tokens: padding is not
        routed to experts. Sequences must be right-padded (causal attention never looks ahead,
        so real tokens never attend to padding).
        """
        if sum(x is not None for x in (tokens, embeds, soft_tokens)) != 1:
            raise ValueError("pass exactly one of tokens (B, T), embeds (B, T, d_model) or soft_tokens (B, T, vocab)")
        if soft_tokens is not None:
            if soft_tokens.dim() != 3 or soft_tokens.shape[-1] != self.config.vocab_size:
                raise ValueError(f"soft_tokens must be (B, T, {self.config.vocab_size}), got {tuple(soft_tokens.shape)}")
            embeds = soft_tokens @ self.embed.weight  # (B, T, d)
        if tokens is not None:
            if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"tokens must be an integer tensor (B, T), got {tuple(tokens.shape)} {tokens.dtype}")
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
                raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
            x = self.embed(tokens)
        else:
            if embeds.dim() != 3 or embeds.shape[-1] != self.config.d_model:
                raise ValueError(f"embeds must be (B, T, {self.config.d_model}), got {tuple(embeds.shape)}")
            if not torch.isfinite(embeds).all():
                raise ValueError("embeds contain NaN or inf")
            x = embeds
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"mask must be (B, T) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        balances = []
        ball = dist = None
        for i, block in enumerate(self.blocks):
            if i == self.config.ball_layer:
                ball = self.to_ball(x)  # (B, T, ball_dim)
                dist = pairwise_ball_distance(self.to_ball.ball, ball)  # (B, T, T)
            bias = None
            if self.struct_bias is not None and i >= self.config.ball_layer:
                bias = self.struct_bias[i - self.config.ball_layer](dist)  # (B, H, T, T)
            x, balance = block(x, self.rope, mask, bias)
            if isinstance(block.ffn, SwitchFeedForward):
                balances.append(balance)
        if ball is None:  # ball_layer == n_layers
            ball = self.to_ball(x)
            dist = pairwise_ball_distance(self.to_ball.ball, ball)
        hidden = self.norm(x)
        balance_loss = torch.stack(balances).mean() if balances else hidden.new_zeros(())
        return KodaOutput(self.head(hidden), hidden, ball, dist, balance_loss)

    def extend(self, tokens: Tensor, cache: KVCache | None = None, *, valid: Tensor | None = None,
               siblings: bool = False) -> tuple[KodaOutput, CacheEntries]:
        """Run new tokens (B, T) after the ``cache.length`` cached positions (incremental decoding).

        The cache is not modified: append the returned entries with ``cache.append(entries)``
        (or, for siblings, the chosen one: ``cache.append(entries.take(choice))``). Without a
        cache this is a full forward pass. Semantics differ from :meth:`forward` in one point:
        no expert capacity limit (every token reaches its expert), so each row's output depends
        on that row alone. In eval mode (argmax routing) the result equals :meth:`forward`
        whenever :meth:`forward` drops no token.

        Parameters
        ----------
        tokens : LongTensor (B, T)
        cache : KVCache, optional
        valid : BoolTensor (B, T), optional
            False at (left-)padding positions: no real token attends to them.
        siblings : bool
            The ``T`` new tokens are alternatives for the *same* next position (the candidates
            of contrastive search): each attends to the cache and to itself only.

        Returns
        -------
        output : KodaOutput
            Logits, hidden states and ball points of the new positions; ``ball_dist`` is
            (B, T, L + T); ``balance_loss`` is 0.
        entries : CacheEntries
        """
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor (B, T), got {tuple(tokens.shape)} {tokens.dtype}")
        b, t = tokens.shape
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        if cache is None:
            cache = KVCache.allocate(self, b, capacity=1)  # empty: length 0
        elif cache.batch_size != b:
            raise ValueError(f"tokens have {b} rows but the cache has {cache.batch_size}")
        dev = tokens.device
        valid = torch.ones(b, t, dtype=torch.bool, device=dev) if valid is None else valid
        if valid.shape != (b, t):
            raise ValueError(f"valid must be (B, T) = {(b, t)}, got {tuple(valid.shape)}")
        past = cache.length
        positions = (torch.full((t,), past, device=dev) if siblings
                     else torch.arange(past, past + t, device=dev))
        eye = torch.eye(t, dtype=torch.bool, device=dev)
        among_new = eye if siblings else torch.ones(t, t, dtype=torch.bool, device=dev).tril()  # (T, T)
        key_valid = torch.cat([cache.valid[:, :past], valid], dim=1)  # (B, L+T)
        structure = torch.cat([torch.ones(t, past, dtype=torch.bool, device=dev), among_new], dim=1)  # (T, L+T)
        allowed = structure[None] & key_valid[:, None, :]
        allowed[:, :, past:] |= eye  # every position sees itself (padding rows stay finite)
        x = self.embed(tokens)
        keys, values = [], []
        ball = dist = None

        def ball_points(h: Tensor) -> tuple[Tensor, Tensor]:
            z = self.to_ball(h)  # (B, T, ball_dim)
            everything = torch.cat([cache.ball[:, :past], z], dim=1)  # (B, L+T, ball_dim)
            return z, self.to_ball.ball.dist(z[:, :, None, :], everything[:, None, :, :])  # (B, T, L+T)

        for i, block in enumerate(self.blocks):
            if i == self.config.ball_layer:
                ball, dist = ball_points(x)
            bias = None
            if self.struct_bias is not None and i >= self.config.ball_layer:
                bias = self.struct_bias[i - self.config.ball_layer](dist)  # (B, H, T, L+T)
            x, k, v = block.extend(x, self.rope, positions, cache.past(i), allowed, bias, valid)
            keys.append(k)
            values.append(v)
        if ball is None:  # ball_layer == n_layers
            ball, dist = ball_points(x)
        hidden = self.norm(x)
        out = KodaOutput(self.head(hidden), hidden, ball, dist, hidden.new_zeros(()))
        return out, CacheEntries(keys, values, ball, valid)
