"""Probe and router diagnostics of a trained SYNTHE model: where the online layers are unsure.

- the distribution of the per-token Kalman confidence ``c_t = exp(-IOR_t)`` over every block;
- the AttentionProbe threshold sweep: firing rate (fraction of running tokens with
  ``c_t < threshold``) and validation loss against the threshold;
- the early-exit sweep: exit rate and validation loss against the router threshold (CALM's
  quality / compute trade-off).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from synthfuse.shared.io import atomic_open
from synthfuse.synthe.model import Synthe
from synthfuse.synthe.testing import recording_scores


def _set_probe_threshold(model: Synthe, value: float) -> None:
    for block in model.blocks:
        if block.probe is not None:
            block.probe.threshold = value


@torch.no_grad()
def probe_report(model: Synthe, inputs: Tensor, targets: Tensor, thresholds: list[float] | None = None) -> dict:
    """Sweep probe and exit thresholds on one batch; the model's own thresholds are restored.

    Returns ``{"confidence": Tensor, "probe_sweep": rows, "exit_sweep": rows}``; sweeps are empty
    when the model has no probe / no exit point.
    """
    if not isinstance(model, Synthe):
        raise ValueError("probe-report needs a SYNTHE model (the Transformer has no probe or router)")
    thresholds = thresholds or [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    was_training = model.training
    model.eval()
    probes = [b.probe for b in model.blocks if b.probe is not None]
    saved = ([p.threshold for p in probes], model.router.threshold)
    try:
        with recording_scores(model) as sinks:
            model(inputs, targets=targets, early_exit=False)
        confidence = torch.cat(sinks["confidence"]).cpu()
        probe_rows, exit_rows = [], []
        for thr in thresholds if probes else []:
            _set_probe_threshold(model, thr)
            out = model(inputs, targets=targets, early_exit=False)
            probe_rows.append({"threshold": thr, "firing_rate": out["info"]["avg_probe_activation"],
                               "val_loss": out["info"]["lm_loss"]})
        for p, value in zip(probes, saved[0]):
            p.threshold = value
        for thr in thresholds if model.config.exit_layers else []:
            model.router.threshold = thr
            out = model(inputs, targets=targets, early_exit=True)
            routing = out["info"]["routing"]
            exit_rows.append({"threshold": thr, "early_exit_rate": routing["early_exit_rate"],
                              "blocks_per_token": routing["blocks_per_token"], "val_loss": out["info"]["lm_loss"]})
    finally:
        for p, value in zip(probes, saved[0]):
            p.threshold = value
        model.router.threshold = saved[1]
        model.train(was_training)
    return {"confidence": confidence, "probe_sweep": probe_rows, "exit_sweep": exit_rows}


def plot_probe_report(report: dict, out_dir: str | Path) -> list[Path]:
    """Write ``probe_confidence.png``, ``probe_sweep.png`` and ``early_exit.png`` (when swept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir, paths = Path(out_dir), []

    def save(fig, name):
        path = out_dir / f"{name}.png"
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(report["confidence"].float().numpy(), bins=50, range=(0, 1))
    ax.set(xlabel="Kalman confidence c_t", ylabel="tokens x blocks", title="Per-token confidence")
    save(fig, "probe_confidence")
    for key, rate, name, title in (("probe_sweep", "firing_rate", "probe_sweep", "AttentionProbe threshold sweep"),
                                   ("exit_sweep", "early_exit_rate", "early_exit", "Early exit: rate vs loss")):
        rows = report[key]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["threshold"] for r in rows], [r[rate] for r in rows], "o-", color="C0", label=rate)
        ax.set(xlabel="threshold", ylabel=rate, title=title)
        twin = ax.twinx()
        twin.plot([r["threshold"] for r in rows], [r["val_loss"] for r in rows], "s--", color="C1", label="val loss")
        twin.set_ylabel("val loss (nats)")
        fig.legend(loc="upper center", ncol=2, fontsize=8)
        save(fig, name)
    return paths
