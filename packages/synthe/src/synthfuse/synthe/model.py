"""``Synthe``: embedding -> N blocks (memory hub after block ``hub_layer``, exits) -> LM head.

Every block is ``[Momentum -> Delta -> Kalman -> (Probe)]``; the Temporal Memory Hub adds
sentence- and discourse-level context; the Depth Router lets confident tokens leave early. The
whole model is causal and recurrent: :meth:`Synthe.forward` takes and returns a state, so feeding
a sequence in pieces gives the full-pass logits, and :meth:`Synthe.generate` spends O(1) work and
memory per new token.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

from synthfuse.synthe.block import SyntheBlock
from synthfuse.synthe.config import SyntheConfig
from synthfuse.synthe.head import head_and_loss
from synthfuse.synthe.hub import TemporalMemoryHub
from synthfuse.synthe.router import DepthRouter, router_aux_loss
from synthfuse.synthe.sampling import decode


class Synthe(nn.Module):
    """The SYNTHE language model.

    Parameters
    ----------
    config : SyntheConfig
    device, dtype : optional
        Where and in which precision to create the parameters (``torch.device("meta")`` builds
        a model without allocating memory, e.g. to count parameters).

    Examples
    --------
    >>> import torch
    >>> from synthfuse.synthe import Synthe, SyntheConfig
    >>> model = Synthe(SyntheConfig(vocab_size=100, d_model=32, n_layers=4, n_heads=2))
    >>> out = model(torch.randint(0, 100, (1, 10)), return_state=True)
    >>> out["logits"].shape
    torch.Size([1, 10, 100])
    """

    def __init__(self, config: SyntheConfig, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(config, SyntheConfig):
            raise TypeError(f"Synthe needs a SyntheConfig; got {type(config).__name__}")
        self.config = config
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.embed = nn.Embedding(config.vocab_size, config.d_model)
            self.blocks = nn.ModuleList(SyntheBlock(config, i in config.probe_layers) for i in range(config.n_layers))
            self.hub = (
                TemporalMemoryHub(config.d_model, config.hub_dim, config.sentence_len, config.discourse_len)
                if config.hub
                else None
            )
            self.router = DepthRouter(config.d_model, config.exit_layers, config.exit_threshold)
            self.norm_f = nn.RMSNorm(config.d_model, eps=1e-6)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if self.embed.weight.device.type != "meta":
            self._init_weights()
        if dtype is not None:
            self.to(dtype)

    def _init_weights(self) -> None:
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                is_residual_out = name.endswith(("out_proj", "hub.up"))
                nn.init.normal_(module.weight, 0.0, residual_std if is_residual_out else std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    # -- state ---------------------------------------------------------------------------------
    def init_state(self, batch: int, device=None, dtype=None) -> dict:
        """The state before the first token."""
        device = self.embed.weight.device if device is None else device
        dtype = self.embed.weight.dtype if dtype is None else dtype
        return {
            "position": torch.zeros((), dtype=torch.long),
            "hub": None if self.hub is None else self.hub.init_state(batch, device, dtype),
            "blocks": [block.init_state(batch, device, dtype) for block in self.blocks],
        }

    def _check_state(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != {"position", "hub", "blocks"}:
            raise ValueError("state must be the dict a previous call returned (keys position, hub, blocks)")
        if len(state["blocks"]) != len(self.blocks):
            raise ValueError(f"state has {len(state['blocks'])} blocks; this model has {len(self.blocks)}")
        if (state["hub"] is None) != (self.hub is None):
            raise ValueError("state and model disagree on whether the memory hub is present")

    def _check_ids(self, name: str, ids: Tensor, allow_ignore: bool = False) -> None:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"{name} must be an integer tensor of shape (batch, time); got {shape}")
        if ids.numel() == 0:
            raise ValueError(f"{name} is empty: give at least one token")
        low = -100 if allow_ignore else 0
        bad = (ids >= self.config.vocab_size) | ((ids < 0) & (ids != low))
        if bool(bad.any()):
            raise ValueError(
                f"{name} has ids outside [0, {self.config.vocab_size})"
                + (" (or -100 to ignore)" if allow_ignore else "")
                + f": found {ids[bad][0].item()}"
            )

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        targets: Tensor | None = None,
        state: dict | None = None,
        return_state: bool = False,
        early_exit: bool | None = None,
        scored_logits: bool = False,
    ) -> dict:
        """Run the model on ``input_ids`` (B, T), continuing from ``state``.

        Parameters
        ----------
        input_ids : Tensor of int, shape (B, T)
        targets : Tensor of int, shape (B, T), optional
            Next-token targets (-100 = ignore); gives ``loss``.
        state : dict, optional
            The state returned by a previous call (the sequence continues from it).
        return_state : bool
            Return the state after the last token.
        early_exit : bool, optional
            Let the router stop confident tokens early. Default: ``config.early_exit`` in eval
            mode, off in training mode.
        scored_logits : bool
            Compute the LM head (and, in training, the exit heads of the router objective) only
            at positions whose target is scored (``targets != -100``); ``logits`` is then
            ``(N, V)``, one row per scored position in row-major order. The losses are the same
            as with the full head (:mod:`synthfuse.synthe.head`); an MQAR training step at
            vocabulary 8192 (4 of 64 positions scored) is ~1.6x faster. Needs ``targets``.

        Returns
        -------
        dict
            ``logits`` (B, T, V); ``loss`` (scalar or None: language-model cross-entropy, plus
            ``router_aux_weight`` times the router objective in training mode); ``losses``: its
            terms as tensors, ``{"lm": ..., "router_aux": ...}`` (None where not computed; a
            trainer weights them separately across micro-batches and ranks); ``state`` (or
            None); ``info``: ``avg_kalman_confidence``, ``avg_probe_activation``, ``lm_loss``,
            ``router_aux_loss`` and ``routing`` = {``early_exit_rate``, ``blocks_per_token``,
            ``blocks_executed`` (B, T)}.
        """
        self._check_ids("input_ids", input_ids)
        if targets is not None:
            self._check_ids("targets", targets, allow_ignore=True)
            if targets.shape != input_ids.shape:
                raise ValueError(f"targets shape {tuple(targets.shape)} != input_ids shape {tuple(input_ids.shape)}")
        b, t = input_ids.shape
        cfg = self.config
        exits_on = (cfg.early_exit and not self.training) if early_exit is None else bool(early_exit)
        if state is None:  # each block builds its own initial state inside its forward pass
            state = {"position": torch.zeros((), dtype=torch.long), "blocks": [None] * len(self.blocks),
                     "hub": None if self.hub is None else self.hub.init_state(b, self.embed.weight.device,
                                                                              self.embed.weight.dtype)}
        else:
            self._check_state(state)
        position = int(state["position"])

        h = self.embed(input_ids)
        alive: Tensor | None = None  # None: every token still running
        blocks_executed = torch.full((b, t), cfg.n_layers, dtype=torch.long, device=h.device)
        conf_sum, conf_count, fire_sum, fire_count = h.new_zeros(()), 0.0, h.new_zeros(()), 0.0
        exit_hidden, exit_scores = [], []
        block_states, hub_state = [], state["hub"]
        for i, block in enumerate(self.blocks):
            out = block(h, state["blocks"][i], alive)
            h = out.hidden
            block_states.append(out.state)
            n_alive = float(b * t) if alive is None else float(alive.sum())
            live = 1.0 if alive is None else alive.to(h.dtype)
            conf_sum, conf_count = conf_sum + (out.confidence.detach() * live).sum(), conf_count + n_alive
            if out.fire is not None:
                fire_sum, fire_count = fire_sum + out.fire.sum(), fire_count + n_alive
            if self.hub is not None and i == cfg.hub_layer:
                h, hub_state = self.hub(h, hub_state, position)
            if i in cfg.exit_layers:
                score = self.router.score(cfg.exit_layers.index(i), h, out.confidence)
                exit_hidden.append(h)
                exit_scores.append(score)
                if exits_on:
                    leaving = self.router.exits(score) if alive is None else self.router.exits(score) & alive
                    blocks_executed = blocks_executed.masked_fill(leaving, i + 1)
                    alive = ~leaving if alive is None else alive & ~leaving

        logits, lm_loss = head_and_loss(self._head, h, targets, scored_logits)
        loss = lm_loss
        aux = None
        if targets is not None and self.training and cfg.router_aux_weight > 0 and exit_hidden:
            aux = self._router_aux(logits, targets, exit_hidden, exit_scores, scored_logits)
            loss = lm_loss + cfg.router_aux_weight * aux
        info = {
            "avg_kalman_confidence": float(conf_sum) / max(conf_count, 1.0),
            "avg_probe_activation": float(fire_sum) / fire_count if fire_count else 0.0,
            "lm_loss": None if lm_loss is None else float(lm_loss.detach()),
            "router_aux_loss": None if aux is None else float(aux.detach()),
            "routing": {
                "early_exit_rate": float((blocks_executed < cfg.n_layers).float().mean()),
                "blocks_per_token": float(blocks_executed.float().mean()),
                "blocks_executed": blocks_executed,
            },
        }
        new_state = None
        if return_state:
            new_state = {"position": torch.tensor(position + t, dtype=torch.long), "hub": hub_state, "blocks": block_states}
        return {"logits": logits, "loss": loss, "losses": {"lm": lm_loss, "router_aux": aux}, "state": new_state,
                "info": info}

    def _head(self, h: Tensor) -> Tensor:
        return self.lm_head(self.norm_f(h))

    def _router_aux(self, logits: Tensor, targets: Tensor, exit_hidden: list[Tensor], exit_scores: list[Tensor],
                    scored_only: bool) -> Tensor:
        """The router objective on every ``router_aux_stride``-th column (:func:`router_aux_loss`).

        ``scored_only``: ``logits`` holds the scored rows only (:func:`head_and_loss`), and the exit
        heads run on the scored rows of those columns only -- the same loss, since unscored rows
        add nothing to either of its terms.
        """
        s = self.config.router_aux_stride
        if not scored_only:
            early = [self._head(x[:, ::s]).flatten(0, 1) for x in exit_hidden]
            scores = [r[:, ::s].flatten() for r in exit_scores]
            return router_aux_loss(early, scores, logits[:, ::s].flatten(0, 1), targets[:, ::s].flatten())
        keep = targets != -100
        on_stride = torch.zeros_like(keep)
        on_stride[:, ::s] = True
        rows = keep & on_stride  # scored rows on the stride
        among_scored = on_stride[keep]  # which of the scored rows (logits' rows) lie on the stride
        early = [self._head(x[rows]) for x in exit_hidden]
        scores = [r[rows] for r in exit_scores]
        return router_aux_loss(early, scores, logits[among_scored], targets[rows])

    # -- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        state: dict | None = None,
        early_exit: bool | None = None,
    ) -> Tensor:
        """Continue ``prompt`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + max_new_tokens).

        The prompt is read once in parallel; every new token is then one recurrent step on the
        carried state (O(1) work and memory per token, whatever the context length).
        ``temperature=0`` is greedy; see :func:`synthfuse.synthe.sampling.sample_next`.
        """
        was_training = self.training
        self.eval()
        try:
            out = self(prompt, state=state, return_state=True, early_exit=early_exit)

            def step(tokens: Tensor) -> Tensor:
                nonlocal out
                out = self(tokens, state=out["state"], return_state=True, early_exit=early_exit)
                return out["logits"][:, -1]

            new = decode(out["logits"][:, -1], step, max_new_tokens, temperature, top_k, top_p, generator)
        finally:
            self.train(was_training)
        return torch.cat([prompt, new.to(prompt.dtype)], dim=1)

    def num_parameters(self) -> int:
        """Distinct parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())
