"""Decoding KL programs from a KODA model: greedy, sampling and contrastive search.

All three run batched over prompts with the model's key/value cache
(:meth:`~synthfuse.koda.model.KodaTransformer.extend`): the prompts are left-padded and
prefilled once, then each step feeds one new token per sequence. Decoding stops at
``<eos>`` (allowed only where a program can end, :mod:`.constraint`) or after
``max_new_tokens``. The model is run in eval mode (argmax expert routing) without gradients.

Contrastive search (Su et al., "A Contrastive Framework for Neural Text Generation",
NeurIPS 2022). With :math:`V^{(k)}` the ``k`` most probable next tokens,

.. math::
    x_t = \\arg\\max_{v \\in V^{(k)}} \\Bigl\\{ (1 - \\alpha)\\, p_\\theta(v \\mid x_{<t})
          - \\alpha \\max_{1 \\le j \\le t-1} \\cos\\bigl(h_v, h_{x_j}\\bigr) \\Bigr\\},

where :math:`h_{x_j}` are the last-layer hidden states of the context (prompt included) and
:math:`h_v` that of candidate ``v`` appended to it. The ``k`` candidates go through the model
in one forward pass as *siblings* (each attends to the cache and itself), and the chosen one's
keys and values are kept. ``alpha = 0`` or ``k = 1`` is greedy decoding (at temperature 0).

Seeded contrastive search (``temperature`` :math:`\\tau > 0`): :math:`V^{(k)}` is instead drawn,
``k`` tokens without replacement from :math:`\\operatorname{softmax}(\\ell / \\tau)` (optionally
restricted to its top-p nucleus), by the Gumbel-top-k trick (Kool, van Hoof & Welling, ICML
2019; :mod:`.gumbel`), and the choice among them is the same argmax. :math:`p_\\theta` in the
score stays the model's untempered distribution, as in the deterministic version: the
temperature only decides which tokens compete, not how they are scored. ``k = 1`` is then
ancestral sampling at temperature :math:`\\tau`, and :math:`\\tau \\to 0` gives back the
deterministic search (the draw becomes the top ``k``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from synthfuse.koda.decode.constraint import ProgramConstraint
from synthfuse.koda.decode.filtering import filter_logits, shared_top_k
from synthfuse.koda.decode.gumbel import gumbel_top_k
from synthfuse.koda.model.cache import CacheEntries, KVCache
from synthfuse.koda.model.tokenizer import KLTokenizer
from synthfuse.koda.model.transformer import KodaTransformer
from synthfuse.shared.sampling import check_sampling_args, sample_next

__all__ = ["Generation", "contrastive_search", "greedy", "sample"]


@dataclass
class Generation:
    """Decoded programs, one per prompt, in prompt order.

    Attributes
    ----------
    ids : list of list of int
        Program token ids, without ``<eos>``.
    finished : list of bool
        Whether the program ended with ``<eos>`` (else it hit the length limit).
    sources : list of str
        KL source text (:meth:`KLTokenizer.decode`).
    """

    ids: list[list[int]]
    finished: list[bool]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@contextlib.contextmanager
def _inference(model: KodaTransformer) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_common(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Sequence[int]],
                  max_new_tokens: int, batch_size: int) -> list[list[int]]:
    if not isinstance(model, KodaTransformer):
        raise TypeError(f"model must be a KodaTransformer, got {type(model).__name__}")
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}: use the tokenizer saved with the model")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    prompts = [list(p) for p in prompts]
    if not prompts:
        raise ValueError("no prompts given (build them with tokenizer.prompt(theta_class, signature))")
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty")
        if min(p) < 0 or max(p) >= len(tokenizer):
            raise ValueError(f"prompt {i} has token ids outside [0, {len(tokenizer)})")
        if len(p) >= model.config.max_len:
            raise ValueError(f"prompt {i} has {len(p)} tokens; the model's max_len is {model.config.max_len}")
    return prompts


class _Chunk:
    """Decoding state of one batch of prompts: cache, next-token logits, constraint, outputs.

    ``rows`` maps the active rows (those still in the cache) to the chunk's rows; finished
    rows are dropped from the cache once a quarter of the active rows have finished.
    """

    def __init__(self, model: KodaTransformer, tokenizer: KLTokenizer, prompts: list[list[int]],
                 max_new_tokens: int, constraint: ProgramConstraint | None, keep_hidden: bool) -> None:
        dev = model.embed.weight.device
        b, p = len(prompts), max(len(q) for q in prompts)
        self.steps = min(max_new_tokens, model.config.max_len - p)
        tokens = torch.full((b, p), tokenizer.pad_id, dtype=torch.long, device=dev)
        valid = torch.zeros(b, p, dtype=torch.bool, device=dev)
        for i, q in enumerate(prompts):  # left padding: every prompt ends at position p - 1
            tokens[i, p - len(q):] = torch.tensor(q, device=dev)
            valid[i, p - len(q):] = True
        self.model, self.eos_id, self.constraint = model, tokenizer.eos_id, constraint
        self.cache = KVCache.allocate(model, b, p + self.steps)
        out, entries = model.extend(tokens, self.cache, valid=valid)
        self.cache.append(entries)
        self.logits = out.logits[:, -1]  # (B, V): next-token logits of the active rows
        self.context = None
        if keep_hidden:  # unit-norm last-layer states, aligned with the cache positions
            self.context = out.hidden.new_zeros(b, self.cache.capacity, out.hidden.shape[-1])
            self.context[:, :p] = F.normalize(out.hidden, dim=-1)
        self.rows = torch.arange(b, device=dev)
        self.depth, self.last = constraint.start(b) if constraint is not None else (None, None)
        self.out = torch.full((b, max(1, self.steps)), self.eos_id, dtype=torch.long, device=dev)
        self.done = torch.zeros(b, dtype=torch.bool, device=dev)  # per active row
        self.finished = torch.zeros(b, dtype=torch.bool, device=dev)  # per chunk row
        self.step = 0

    def masked_logits(self) -> Tensor:
        """Next-token logits (B_active, V) with disallowed tokens at ``-inf``."""
        if self.constraint is None:
            return self.logits
        return self.logits.masked_fill(~self.constraint.allowed(self.depth, self.last), float("-inf"))

    def emit(self, tokens: Tensor, logits: Tensor, entries: CacheEntries, hidden: Tensor | None = None) -> None:
        """Record the chosen ``tokens`` (B_active,), whose cache entries, next logits and hidden states are given."""
        tokens = torch.where(self.done, self.eos_id, tokens)
        self.out[self.rows, self.step] = tokens
        if self.context is not None:
            self.context[:, self.cache.length] = F.normalize(hidden, dim=-1)
        self.cache.append(entries)
        self.logits = logits
        if self.constraint is not None:
            self.depth, self.last = self.constraint.advance(self.depth, self.last, tokens)
        ended = tokens == self.eos_id
        self.finished[self.rows[ended]] = True
        self.done |= ended
        self.step += 1
        if self.done.sum() * 4 >= len(self.done) and not self.done.all():
            keep = (~self.done).nonzero()[:, 0]
            self.cache, self.rows, self.logits = self.cache.select(keep), self.rows[keep], self.logits[keep]
            self.done = self.done[keep]
            if self.context is not None:
                self.context = self.context[keep]
            if self.constraint is not None:
                self.depth, self.last = self.depth[keep], self.last[keep]

    @property
    def active(self) -> bool:
        return self.step < self.steps and not bool(self.done.all())

    def results(self) -> tuple[list[list[int]], list[bool]]:
        ids = []
        for row, ended in zip(self.out.tolist(), self.finished.tolist()):
            ids.append(row[:row.index(self.eos_id)] if ended else row[:self.steps])
        return ids, self.finished.tolist()


def _run(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Sequence[int]], *,
         step: Callable[[_Chunk], None], max_new_tokens: int, batch_size: int, constrained: bool,
         keep_hidden: bool = False) -> Generation:
    prompts = _check_common(model, tokenizer, prompts, max_new_tokens, batch_size)
    constraint = ProgramConstraint(tokenizer, model.embed.weight.device) if constrained else None
    ids: list[list[int]] = []
    finished: list[bool] = []
    with _inference(model):
        for start in range(0, len(prompts), batch_size):
            chunk = _Chunk(model, tokenizer, prompts[start:start + batch_size], max_new_tokens, constraint,
                           keep_hidden)
            while chunk.active:
                step(chunk)
            chunk_ids, chunk_finished = chunk.results()
            ids += chunk_ids
            finished += chunk_finished
    return Generation(ids, finished, [tokenizer.decode(i) for i in ids])


def _extend_with(chunk: _Chunk, tokens: Tensor) -> None:
    out, entries = chunk.model.extend(tokens[:, None], chunk.cache)
    chunk.emit(tokens, out.logits[:, 0], entries, out.hidden[:, 0])


def greedy(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Sequence[int]], *,
           max_new_tokens: int = 200, constrained: bool = True, batch_size: int = 64) -> Generation:
    """Greedy decoding: :math:`x_t = \\arg\\max_v p_\\theta(v \\mid x_{<t})` among the allowed tokens.

    Parameters
    ----------
    model : KodaTransformer
    tokenizer : KLTokenizer
        The tokenizer the model was trained with.
    prompts : sequence of sequences of int
        Prompt token ids, e.g. ``tokenizer.prompt("n log n", "def sort(n: int)")``.
    max_new_tokens : int
        Longest program (also capped by the model's ``max_len`` minus the prompt).
    constrained : bool
        Emit only program tokens, and ``<eos>`` only where a program can end (:mod:`.constraint`).
    batch_size : int
        Prompts decoded together.

    Returns
    -------
    Generation
    """
    return _run(model, tokenizer, prompts, step=lambda c: _extend_with(c, c.masked_logits().argmax(dim=-1)),
                max_new_tokens=max_new_tokens, batch_size=batch_size, constrained=constrained)


def sample(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Sequence[int]], *,
           temperature: float = 1.0, top_k: int | None = 0, top_p: float | None = 1.0, seed: int = 0,
           generator: torch.Generator | None = None, max_new_tokens: int = 200, constrained: bool = True,
           batch_size: int = 64) -> Generation:
    """Ancestral sampling from :math:`\\operatorname{softmax}(\\ell/\\tau)` filtered by top-k and top-p.

    ``temperature > 0`` (:func:`greedy` is the limit 0); ``top_k = 0`` or ``None`` and
    ``top_p = 1`` or ``None`` switch those filters off. Deterministic for a fixed ``seed`` (a
    ``torch.Generator`` seeded with it drives every draw), prompts and ``batch_size``; pass
    ``generator`` to continue a stream instead. See :func:`greedy` for the other parameters
    and :mod:`synthfuse.shared.sampling` for the filters.
    """
    top_k = shared_top_k(top_k)
    check_sampling_args(temperature, top_k, top_p)
    if generator is None:
        device = model.embed.weight.device
        generator = torch.Generator(device=device).manual_seed(int(seed))

    def step(chunk: _Chunk) -> None:
        _extend_with(chunk, sample_next(chunk.masked_logits(), temperature, top_k, top_p, generator))

    return _run(model, tokenizer, prompts, step=step, max_new_tokens=max_new_tokens, batch_size=batch_size,
                constrained=constrained)


def contrastive_search(model: KodaTransformer, tokenizer: KLTokenizer, prompts: Sequence[Sequence[int]], *,
                       alpha: float = 0.4, top_k: int = 4, temperature: float = 0.0, top_p: float | None = 1.0,
                       seed: int = 0, generator: torch.Generator | None = None, max_new_tokens: int = 200,
                       constrained: bool = True, batch_size: int = 64) -> Generation:
    """Contrastive search (Su et al. 2022), deterministic or seeded (equations in the module docstring).

    Parameters
    ----------
    alpha : float
        Degeneration penalty weight in [0, 1]; 0 is greedy decoding (at temperature 0). The
        default 0.4 is below Su et al.'s 0.6 for text: programs must repeat tokens, and with the
        ``koda_tiny`` model α = 0.6 (k = 4) lost 27 points of Θ-match to greedy where α = 0.4
        lost none (koda README).
    top_k : int
        Candidates per step (>= 1); 1 is greedy decoding (at temperature 0). Candidates the
        constraint (or the nucleus) excludes are never chosen.
    temperature : float
        :math:`\\tau \\ge 0`. 0 (default): the candidates are the ``top_k`` most probable tokens
        and decoding is deterministic. :math:`\\tau > 0`: they are ``top_k`` tokens drawn without
        replacement from :math:`\\operatorname{softmax}(\\ell / \\tau)` (Gumbel-top-k), so a
        prompt can have many programs.
    top_p : float or None
        With :math:`\\tau > 0`, draw the candidates from the nucleus of mass ``top_p`` of
        :math:`\\operatorname{softmax}(\\ell / \\tau)` only (1 or ``None``: every allowed token;
        :mod:`synthfuse.shared.sampling`). Must be off at temperature 0.
    seed, generator
        With :math:`\\tau > 0`, as in :func:`sample`: a ``torch.Generator`` seeded with ``seed``
        drives every draw, so the programs are a function of ``seed``, the prompts and
        ``batch_size``; pass ``generator`` to continue a stream instead. Unused at temperature 0.

    See :func:`greedy` for the other parameters.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= model.config.vocab_size:
        raise ValueError(f"top_k must be an integer in [1, vocab_size={model.config.vocab_size}], got {top_k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: deterministic contrastive search), "
                         f"got {temperature!r}")
    if temperature > 0:
        check_sampling_args(temperature, None, top_p)
        if generator is None:
            generator = torch.Generator(device=model.embed.weight.device).manual_seed(int(seed))
    elif top_p is not None and top_p != 1:
        raise ValueError(f"top_p={top_p!r} needs temperature > 0 (at temperature 0 the candidates are the "
                         "top_k most probable tokens); pass top_p=1 or a temperature")

    def step(chunk: _Chunk) -> None:
        logits = chunk.masked_logits()
        probs = torch.softmax(logits, dim=-1)  # p_θ(v | x_<t), untempered
        if temperature > 0:
            tempered = filter_logits(logits, temperature, 0, top_p)  # ℓ/τ, -inf outside the nucleus
            cand = gumbel_top_k(tempered, top_k, generator=generator)  # (B, k): drawn without replacement
            drawable = torch.isfinite(tempered.gather(-1, cand))
            cand_p = probs.gather(-1, cand).masked_fill(~drawable, 0.0)
        else:
            cand_p, cand = probs.topk(top_k, dim=-1)  # (B, k)
        out, entries = model.extend(cand, chunk.cache, siblings=True)
        h = F.normalize(out.hidden, dim=-1)  # (B, k, d)
        length = chunk.cache.length
        sim = h @ chunk.context[:, :length].transpose(1, 2)  # (B, k, L): cos(h_v, h_j)
        penalty = sim.masked_fill(~chunk.cache.valid[:, None, :length], float("-inf")).amax(dim=-1)  # (B, k)
        score = ((1 - alpha) * cand_p - alpha * penalty).masked_fill(cand_p <= 0, float("-inf"))
        choice = score.argmax(dim=-1)  # (B,)
        rows = torch.arange(len(choice), device=choice.device)
        chunk.emit(cand[rows, choice], out.logits[rows, choice], entries.take(choice), out.hidden[rows, choice])

    return _run(model, tokenizer, prompts, step=step, max_new_tokens=max_new_tokens, batch_size=batch_size,
                constrained=constrained, keep_hidden=True)


def _reference_decode(model: KodaTransformer, tokenizer: KLTokenizer, prompt: Sequence[int], max_new_tokens: int,
                      alpha: float = 0.0, top_k: int = 1, temperature: float = 0.0, top_p: float | None = 1.0,
                      generator: torch.Generator | None = None) -> list[int]:
    """One prompt, no cache: every step re-runs :meth:`KodaTransformer.forward` on the whole sequence.

    ``top_k = 1`` is greedy decoding; otherwise each candidate is scored by its own full
    forward pass (contrastive search as written in Su et al. 2022). With ``temperature > 0``
    the candidates are drawn by :func:`gumbel_top_k` from ``generator``, one ``(1, V)`` draw a
    step like a batch of one prompt. Testing only; use a model whose ``capacity_factor >=
    n_experts`` so that ``forward`` drops no token.
    """
    constraint = ProgramConstraint(tokenizer)
    depth, last = constraint.start(1)
    seq, out = list(prompt), []
    with _inference(model):
        for _ in range(min(max_new_tokens, model.config.max_len - len(prompt))):
            result = model(torch.tensor([seq]))
            logits = result.logits[0, -1].masked_fill(~constraint.allowed(depth, last)[0], float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            if temperature > 0:
                tempered = filter_logits(logits, temperature, 0, top_p)
                cand = gumbel_top_k(tempered[None], top_k, generator=generator)[0].tolist()
                candidates = [(float(probs[v]) if tempered[v] > float("-inf") else 0.0, v) for v in cand]
            else:
                candidates = [(float(p), int(v)) for p, v in zip(*probs.topk(top_k))]
            context = F.normalize(result.hidden[0], dim=-1)  # (t, d)
            best, best_score = candidates[0][1], float("-inf")  # the batched argmax of all -inf is index 0
            for p, v in candidates:
                if p <= 0:
                    continue
                h = F.normalize(model(torch.tensor([seq + [v]])).hidden[0, -1], dim=-1)
                score = (1 - alpha) * p - alpha * float((context @ h).max())
                if score > best_score:
                    best, best_score = v, score
            if best == tokenizer.eos_id:
                break
            seq.append(best)
            out.append(best)
            depth, last = constraint.advance(depth, last, torch.tensor([best]))
    return out
