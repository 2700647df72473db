"""Loss curves of a training run as one PNG (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from synthfuse.shared.io import atomic_open

__all__ = ["plot_history"]

_PANELS = (
    ("cross-entropy", ("ce", "val_ce")),
    ("hyperbolic structure stress", ("structure",)),
    ("WGAN-GP", ("wdist", "gp", "adv")),
    ("Switch balance loss", ("balance",)),
)


def plot_history(history: Sequence[Mapping[str, float]], path: str | Path | None = None,
                 title: str = "KODA training", panels: Sequence[tuple[str, Sequence[str]]] = _PANELS):
    """Plot the logged terms of ``history`` (dicts with ``step`` and loss values).

    ``panels``: ``(title, keys)`` per subplot (default: the training losses).

    With ``path`` the PNG is written there (atomically) and the figure closed; the figure is
    returned either way.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("nothing to plot: the history is empty")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        drawn = False
        for key in keys:
            points = [(h["step"], h[key]) for h in history if h.get(key) is not None]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if len(points) < 30 else None, ms=3, label=key)
                drawn = True
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "term disabled", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        plt.close(fig)
    return fig
