"""The training part of the ``koda`` demo section: a short run of the hybrid objective and its curves."""

from __future__ import annotations

from typing import Any

__all__ = ["training_demo"]


def training_demo(ctx: Any) -> dict:
    """Train a small KODA model (200 steps, ~20 s on a 2-core CPU; 800 steps with ``ctx.full``) and plot its losses.

    Writes ``train_losses`` (table) and ``train_curves.png`` through ``ctx``; returns headline
    numbers (parameters, first and last training cross-entropy, validation cross-entropy).
    """
    from synthfuse.koda.train.config import load_config
    from synthfuse.koda.train.curves import plot_history
    from synthfuse.koda.train.trainer import KodaTrainer

    steps = 800 if ctx.full else 200
    cfg = load_config({
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 128, "n_experts": 4, "ball_dim": 4},
        "data": {"n_programs": 4000 if ctx.full else 2000, "seed": ctx.seed},
        "optim": {"lr": 3e-3, "warmup_steps": 10},
        "train": {"steps": steps, "batch_size": 8, "log_every": 5, "eval_every": steps // 2,
                  "checkpoint_every": steps, "seed": ctx.seed, "progress": True},
    })
    trainer = KodaTrainer(cfg, out_dir=ctx.out_dir / "train_run", resume=False)
    history = trainer.fit()
    keys = ("step", "ce", "val_ce", "structure", "wdist", "gp", "balance")
    rows = [{k: (round(h[k], 4) if isinstance(h.get(k), float) else h.get(k)) for k in keys} for h in history]
    ctx.table("train_losses", rows, title="KODA training: hybrid objective (CE + structure + WGAN-GP)")
    ctx.savefig(plot_history(history), "train_curves")
    val = [h["val_ce"] for h in history if "val_ce" in h]
    return {"params": trainer.model.num_parameters(), "ce_first": history[0]["ce"], "ce_last": history[-1]["ce"],
            "val_ce": val[-1]}
