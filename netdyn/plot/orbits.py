"""Figures for orbits: the orbit (bifurcation) diagram and distance curves.

matplotlib is imported inside the functions, so importing this module never
selects a backend; both functions work under ``matplotlib.use("Agg")``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_orbit_diagram", "plot_distance_curves", "LABEL_COLORS"]

LABEL_COLORS = {
    "fixed_point": "tab:blue",
    "periodic": "tab:green",
    "quasi_periodic": "tab:purple",
    "chaotic": "tab:red",
    "divergent": "tab:gray",
}


def plot_orbit_diagram(
    diagram: xr.Dataset, *, ax: Any = None, markersize: float = 0.5, color_by_label: bool = True
) -> Any:
    """Scatter the tail of each orbit against the control value.

    Parameters
    ----------
    diagram
        the output of :func:`netdyn.orbits.bifurcation.orbit_diagram` (``orbit`` over
        ``(value, tail_step)``, ``label`` over ``value``).
    ax
        default ``None``: a new figure and axes.
    markersize
        default 0.5 (points).
    color_by_label
        default ``True``: colour each value's points by its orbital class
        (:data:`LABEL_COLORS`) with a legend; black otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import netdyn as nd
    >>> from netdyn.plot.orbits import plot_orbit_diagram
    >>> fig = plot_orbit_diagram(nd.orbit_diagram(nd.LogisticMap, [2.8, 3.2, 3.5], 100, tail=32, use_map=False))
    >>> len(fig.axes)
    1
    """
    if "orbit" not in diagram or diagram["orbit"].dims != ("value", "tail_step"):
        raise ValueError("plot_orbit_diagram: expected an orbit_diagram Dataset with orbit(value, tail_step), got "
                         f"variables {list(diagram.data_vars)}")
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    values = diagram["value"].values
    orbit = diagram["orbit"].values
    labels = diagram["label"].values if "label" in diagram and color_by_label else np.full(values.size, "")
    for label in dict.fromkeys(labels):
        rows = labels == label
        xs = np.repeat(values[rows], orbit.shape[1])
        ax.plot(xs, orbit[rows].ravel(), linestyle="none", marker=".", markersize=markersize,
                color=LABEL_COLORS.get(label, "black"), label=label.replace("_", " ") or None)
    ax.set_xlabel(diagram.attrs.get("control", "value"))
    ax.set_ylabel("observable on the tail")
    if color_by_label:
        ax.legend(markerscale=10 / max(markersize, 0.1), fontsize="small", loc="best")
    return fig


def plot_distance_curves(distances: xr.Dataset, *, axes: Any = None, logy: bool = True) -> Any:
    """The distance curves of :func:`netdyn.orbits.distances.trajectory_distances` against step.

    Parameters
    ----------
    distances
        Dataset over ``step`` with any of the state and graph measures.
    axes
        default ``None``: a new figure with one panel per group — successive
        distances, distances to the final state, graph distances (if present),
        rank correlations (if present); otherwise a sequence of that many axes.
    logy
        default ``True``: logarithmic y axis on the distance panels (zeros and
        NaN are not drawn).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> import netdyn as nd
    >>> from netdyn.plot.orbits import plot_distance_curves
    >>> fig = plot_distance_curves(nd.trajectory_distances(np.outer(np.arange(1.0, 6.0), [3.0, 4.0])))
    >>> len(fig.axes) >= 1
    True
    """
    groups = [
        ("successive states", ["euclidean", "l1", "cosine"], logy),
        ("to the final state", ["euclidean_to_final", "l1_to_final", "cosine_to_final"], logy),
        ("successive graphs", ["spectral", "in_strength_w1", "out_strength_w1"], logy),
        ("edge-weight ranks", ["spearman", "kendall"], False),
    ]
    groups = [(title, [n for n in names if n in distances], log) for title, names, log in groups]
    groups = [g for g in groups if g[1]]
    if not groups:
        raise ValueError(f"plot_distance_curves: expected distance variables, got {list(distances.data_vars)}")
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(len(groups), 1, figsize=(7, 2.2 * len(groups)), sharex=True, squeeze=False)
        axes = axes[:, 0]
    elif len(axes) != len(groups):
        raise ValueError(f"plot_distance_curves: expected {len(groups)} axes, got {len(axes)}")
    fig = axes[0].figure
    step = distances["step"].values
    for ax, (title, names, log) in zip(axes, groups):
        for name in names:
            y = distances[name].values.astype(float)
            if log:
                y = np.where(y > 0, y, np.nan)
            ax.plot(step, y, label=name, lw=1)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="small")
        ax.legend(fontsize="x-small", loc="best")
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    return fig
