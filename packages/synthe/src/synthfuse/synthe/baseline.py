"""A same-size causal Transformer baseline (nanoGPT-like, rotary positions, KV-cache decoding).

Pre-norm blocks ``h += Attn(LN(h)); h += MLP(LN(h))`` with causal softmax attention
(``F.scaled_dot_product_attention``), a 4x GELU MLP and tied embeddings; rotary position
embeddings (Su et al. 2021) so any context length works without extra parameters. Decoding keeps
keys and values of every past token (a preallocated cache), so its work and memory per new token
grow with the context - the contrast with :class:`synthfuse.synthe.Synthe`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthfuse.synthe.config import SyntheConfig
from synthfuse.synthe.head import head_and_loss
from synthfuse.synthe.sampling import decode


@dataclass
class TransformerConfig:
    """Size of :class:`TransformerBaseline`."""

    vocab_size: int = 32000
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.mlp_ratio) < 1:
            raise ValueError("TransformerConfig sizes must all be >= 1")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("TransformerConfig.d_model / n_heads must be an even integer (rotary embeddings)")

    @classmethod
    def matching(cls, config: SyntheConfig) -> "TransformerConfig":
        """Same width, vocabulary and heads as ``config``, depth chosen to match its parameter count."""
        from synthfuse.synthe.model import Synthe

        target = Synthe(config, device="meta").num_parameters()
        base = cls(vocab_size=config.vocab_size, d_model=config.d_model, n_layers=1, n_heads=config.n_heads)
        one = TransformerBaseline(base, device="meta").num_parameters()
        per_layer = TransformerBaseline(cls(**{**base.__dict__, "n_layers": 2}), device="meta").num_parameters() - one
        layers = max(1, round((target - one) / per_layer) + 1)
        return cls(vocab_size=config.vocab_size, d_model=config.d_model, n_layers=layers, n_heads=config.n_heads)


def _rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotary embedding of x (B, H, T, d) at integer ``positions`` (T,)."""
    d = x.shape[-1]
    freqs = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d)
    angles = positions.to(torch.float64).unsqueeze(-1) * freqs  # (T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.fc = nn.Linear(d, cfg.mlp_ratio * d, bias=False)
        self.fc_out = nn.Linear(cfg.mlp_ratio * d, d, bias=False)

    def forward(self, x: Tensor, positions: Tensor, cache: dict | None, layer: int) -> Tensor:
        b, t, d = x.shape
        h = self.cfg.n_heads
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, T, hd)
        q, k = _rotate(q, positions, self.cfg.rope_base), _rotate(k, positions, self.cfg.rope_base)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start = cache["length"]
            cache["keys"][layer, :, :, start : start + t] = k
            cache["values"][layer, :, :, start : start + t] = v
            k, v = cache["keys"][layer, :, :, : start + t], cache["values"][layer, :, :, : start + t]
            mask = None
            if t > 1:
                mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class TransformerBaseline(nn.Module):
    """Causal Transformer language model with the ``Synthe`` call convention.

    ``model(input_ids, targets=None, cache=None, return_cache=False)`` returns a dict with
    ``logits``, ``loss`` and ``cache``; :meth:`generate` decodes with a KV cache.
    """

    def __init__(self, config: TransformerConfig, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.embed = nn.Embedding(config.vocab_size, config.d_model)
            self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight
        if self.embed.weight.device.type != "meta":
            residual_std = config.init_std / math.sqrt(2 * config.n_layers)
            for name, module in self.named_modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    std = residual_std if name.endswith(("proj", "fc_out")) else config.init_std
                    nn.init.normal_(module.weight, 0.0, std)
        if dtype is not None:
            self.to(dtype)

    def init_cache(self, batch: int, capacity: int) -> dict:
        """An empty KV cache for up to ``capacity`` tokens."""
        c = self.config
        shape = (c.n_layers, batch, c.n_heads, capacity, c.d_model // c.n_heads)
        w = self.embed.weight
        return {"keys": w.new_zeros(shape), "values": w.new_zeros(shape), "length": 0}

    def forward(self, input_ids: Tensor, targets: Tensor | None = None, cache: dict | None = None,
                return_cache: bool = False, scored_logits: bool = False) -> dict:
        """Logits, loss (targets: -100 = not scored) and the KV cache (``return_cache``).

        ``scored_logits``: the LM head only at scored positions, logits ``(N, V)``
        (:func:`synthfuse.synthe.head.head_and_loss`), as in :meth:`Synthe.forward`.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, time); got {tuple(input_ids.shape)}")
        b, t = input_ids.shape
        start = 0 if cache is None else cache["length"]
        if cache is not None and start + t > cache["keys"].shape[3]:
            raise ValueError(f"KV cache full: {start} + {t} tokens > capacity {cache['keys'].shape[3]}")
        positions = torch.arange(start, start + t, device=input_ids.device)
        x = self.embed(input_ids)
        for i, block in enumerate(self.blocks):
            x = block(x, positions, cache, i)
        if cache is not None:
            cache["length"] = start + t
        logits, loss = head_and_loss(lambda z: self.lm_head(self.ln_f(z)), x, targets, scored_logits)
        return {"logits": logits, "loss": loss, "cache": cache if return_cache else None}

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt`` (B, T) by ``max_new_tokens`` tokens with a KV cache."""
        was_training = self.training
        self.eval()
        try:
            cache = self.init_cache(prompt.shape[0], prompt.shape[1] + max_new_tokens)
            first = self(prompt, cache=cache)["logits"][:, -1]
            step = lambda tokens: self(tokens, cache=cache)["logits"][:, -1]  # noqa: E731
            new = decode(first, step, max_new_tokens, temperature, top_k, top_p, generator)
        finally:
            self.train(was_training)
        return torch.cat([prompt, new.to(prompt.dtype)], dim=1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
