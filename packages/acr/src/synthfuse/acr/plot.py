"""Pictures of a fitted mixture on a 2-D slice: its regions, its complexity map Ω, its prediction."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["plot_slice"]


def plot_slice(
    model,
    dims: tuple[int, int] = (0, 1),
    *,
    feature_names: Sequence[str] | None = None,
    X: np.ndarray | None = None,
    resolution: int = 160,
    span: float = 2.5,
):
    """Plot the first partition's regions, :math:`\\Omega(x)` and the prediction on a 2-D slice.

    The two features ``dims`` vary over their training mean :math:`\\pm` ``span`` standard
    deviations; every other feature is held at its training mean.

    Parameters
    ----------
    model : MixtureOfSVRExperts
        A fitted model.
    dims : (int, int)
        Indices of the two features spanning the slice.
    feature_names : sequence of str, optional
        Axis labels (default ``x0, x1, ...``).
    X : ndarray of shape (n_samples, n_features), optional
        Points to overlay (e.g. the training inputs); only their ``dims`` coordinates are drawn.
    resolution : int
        Grid points per axis.
    span : float
        Half-width of the slice in training standard deviations.

    Returns
    -------
    matplotlib.figure.Figure
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'synthfuse-acr[plot]'") from exc
    n_feat = model.n_features_in_
    i, j = (int(d) for d in dims)
    if not (0 <= i < n_feat and 0 <= j < n_feat and i != j):
        raise ValueError(f"dims must be two different feature indices in [0, {n_feat}), got {dims!r}.")
    names = list(feature_names) if feature_names is not None else [f"x{k}" for k in range(n_feat)]
    mean, scale = model.poly_.x_mean, model.poly_.x_scale
    u = np.linspace(mean[i] - span * scale[i], mean[i] + span * scale[i], resolution)
    v = np.linspace(mean[j] - span * scale[j], mean[j] + span * scale[j], resolution)
    U, V = np.meshgrid(u, v)
    grid = np.tile(mean, (U.size, 1))
    grid[:, i], grid[:, j] = U.ravel(), V.ravel()

    panels = [
        ("regions (partition 1)", model.apply(grid)[:, 0], "tab20"),
        ("complexity map Ω", model.complexity_map(grid), "viridis"),
        ("prediction", model.predict(grid), "coolwarm"),
    ]
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    extent = (u[0], u[-1], v[0], v[-1])
    for ax, (title, values, cmap) in zip(axes, panels):
        img = values.reshape(U.shape)
        im = ax.imshow(img, origin="lower", extent=extent, aspect="auto", cmap=cmap,
                       interpolation="nearest")
        regions = panels[0][1].reshape(U.shape)
        ax.contour(U, V, regions, levels=np.unique(regions) + 0.5, colors="k", linewidths=0.4)
        if X is not None:
            ax.scatter(X[:, i], X[:, j], s=2, c="k", alpha=0.25, linewidths=0)
            ax.set_xlim(u[0], u[-1])
            ax.set_ylim(v[0], v[-1])
        ax.set_title(title)
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        if title != panels[0][0]:
            fig.colorbar(im, ax=ax)
    others = [names[k] for k in range(n_feat) if k not in (i, j)]
    if others:
        fig.suptitle(f"slice at the training mean of {', '.join(others)}", fontsize=10)
    return fig
