"""The figure of a learning-rate sweep: exponent, orbital class and training speed
against the learning rate (after Jiménez-González, Soriano & Lacasa 2025, Fig. 1)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_sweep", "CLASS_COLORS"]

CLASS_COLORS = {
    "fixed_point": "#4c72b0",
    "periodic": "#55a868",
    "quasi_periodic": "#ccb974",
    "chaotic": "#c44e52",
    "divergent": "#222222",
    "error": "#bbbbbb",
}


def plot_sweep(result: xr.Dataset, *, threshold: float = 0.01, linthresh: float | None = 0.01, fig: Any = None) -> Any:
    """Maximal exponent and time to target against the learning rate, on a shared log-x axis.

    Parameters
    ----------
    result : Dataset
        a :func:`netdyn.sweep.grid.run_sweep` result (``lyapunov``, ``time_to_target`` over
        ``lr, seed``; ``lyapunov_stderr`` and ``orbit_class`` used when present).
        Each ``(activation, optimizer)`` pair is one coloured curve.
    threshold : float, default 0.01
        the exponent level that defines the edge of chaos (see
        :func:`netdyn.sweep.grid.edge_of_chaos`); drawn as a horizontal line.
    fig : matplotlib Figure, optional
        drawn into (cleared); default a new 7 x 6 inch figure.

    Returns
    -------
    The Figure, with three axes sharing x: the exponent (seed mean, error bar =
    std over seeds, or the estimator's standard error for one seed; diverged
    points left out), a strip of the orbital class (most common over seeds; one row
    per curve, named on the y axis), and the median time to target over seeds (bars:
    seed range; never-reached points left out; a note when no run reached it).
    The title states the finding (the fastest learning rate relative to the edge of
    chaos); every line, band and marker has a legend entry.  The edge of chaos (mean over seeds, shaded
    +-std) is a dashed vertical line (``gid="edge"``), the fastest learning rate a
    dotted one (``gid="fastest"``).

    Raises
    ------
    ValueError
        When ``result`` has no ``lr`` and ``seed`` dimensions.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> from netdyn.plot.sweep import plot_sweep
    >>> lr = np.geomspace(0.1, 10, 5)
    >>> result = xr.Dataset({"lyapunov": (("lr", "seed"), 0.01 * np.log(lr)[:, None] + [[0.0, 0.001]]),
    ...                      "time_to_target": (("lr", "seed"), [[90, 95], [40, 42], [20, 25], [30, 31], [np.inf] * 2])},
    ...                     coords={"lr": lr, "seed": [0, 1]})
    >>> fig = plot_sweep(result, threshold=0.0)
    >>> "fastest" in fig.axes[0].get_title()
    True
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from netdyn.sweep.grid import edge_of_chaos, fastest_lr

    for dim in ("lr", "seed"):
        if dim not in result.dims:
            raise ValueError(f"plot_sweep: expected a sweep Dataset with dims lr and seed, got {tuple(result.dims)}")
    result = result.sortby("lr")
    extra = [d for d in result["lyapunov"].dims if d not in ("lr", "seed")]
    stacked = result.stack(curve=extra) if extra else result.expand_dims(curve=[""])
    edges = edge_of_chaos(stacked, threshold=threshold)
    fastest = fastest_lr(stacked)
    lrs = result["lr"].values
    if fig is None:
        fig = plt.figure(figsize=(7, 6))
    else:
        fig.clear()
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 0.25 * stacked.sizes["curve"] + 0.1, 2], hspace=0.08)
    top = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=top)
    bottom = fig.add_subplot(grid[2], sharex=top)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bounds = _cell_bounds(lrs)
    for k, curve in enumerate(stacked["curve"].values):
        one = stacked.sel(curve=curve)
        color = colors[k % len(colors)]
        label = _label(curve, extra)
        lam = one["lyapunov"].where(np.isfinite(one["lyapunov"]))
        mean = lam.mean("seed")
        if one.sizes["seed"] > 1:
            err = lam.std("seed")
        elif "lyapunov_stderr" in one:
            err = one["lyapunov_stderr"].squeeze("seed", drop=True)
        else:
            err = xr.zeros_like(mean)
        spread_words = (f"mean $\\pm$ std over {one.sizes['seed']} seeds" if one.sizes["seed"] > 1
                        else "$\\pm$ its standard error (1 seed)")
        top.errorbar(lrs, mean, yerr=err, color=color, marker="o", ms=4, capsize=2,
                     label=(f"{label}: " if label else "") + r"$\lambda_{\max}$, " + spread_words)
        edge, spread = float(edges["edge_lr_mean"].sel(curve=curve)), float(edges["edge_lr_std"].sel(curve=curve))
        if np.isfinite(edge):
            top.axvline(edge, color=color, ls="--", lw=1, gid="edge", label=f"edge of chaos, lr = {edge:.3g}")
            bottom.axvline(edge, color=color, ls="--", lw=1, label=f"edge of chaos, lr = {edge:.3g}")
            if spread > 0:
                top.axvspan(edge - spread, edge + spread, color=color, alpha=0.12, lw=0,
                            label=f"edge $\\pm$ std over seeds (lr $\\pm$ {spread:.2g})")
        if "orbit_class" in one:
            row = [_most_common(one["orbit_class"].sel(lr=lr).values, one["status"].sel(lr=lr).values
                                if "status" in one else None) for lr in lrs]
            for left, right, label_ in zip(bounds[:-1], bounds[1:], row):
                strip.axvspan(left, right, ymin=k / stacked.sizes["curve"], ymax=(k + 1) / stacked.sizes["curve"],
                              color=CLASS_COLORS.get(label_, "white"), lw=0)
        times = one["time_to_target"].where(np.isfinite(one["time_to_target"]))
        median = fastest["median_time"].sel(curve=curve)
        shown = np.isfinite(median.values)
        low = np.maximum(median - times.min("seed"), 0).values
        high = np.maximum(times.max("seed") - median, 0).values
        if shown.any():
            bottom.errorbar(lrs[shown], median.values[shown], yerr=[low[shown], high[shown]], color=color,
                            marker="s", ms=4, capsize=2,
                            label=(f"{label}: " if label else "") + "steps to target, median over seeds\n"
                            "(bars: range; lr that never reach it: not drawn)")
        best = float(fastest["fastest_lr"].sel(curve=curve))
        if np.isfinite(best):
            bottom.axvline(best, color=color, ls=":", lw=1.5, gid="fastest", label=f"fastest lr = {best:.3g}")
            bottom.plot([best], [float(fastest["fastest_time"].sel(curve=curve))], marker="*", ms=12, color=color,
                        ls="none", label="fastest training (fewest steps)")
    top.axhline(0.0, color="0.4", lw=0.8, label=r"$\lambda_{\max} = 0$")
    if threshold != 0.0:
        top.axhline(threshold, color="0.4", lw=0.8, ls="-.", label=f"chaos threshold {threshold:g} / step")
    top.set_xscale("log")
    if linthresh is not None:
        top.set_yscale("symlog", linthresh=linthresh)
    top.set_ylabel(r"$\lambda_{\max}$ (1/step)")
    top.tick_params(labelbottom=False)
    top.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    target = result.attrs.get("target_accuracy")
    reached = f"test accuracy >= {target:g}" if target is not None else "the target accuracy"
    if not np.isfinite(stacked["time_to_target"].values).any():
        bottom.text(0.5, 0.5, f"no run reached {reached}", transform=bottom.transAxes, ha="center", va="center",
                    fontsize="small", color="0.3")
        bottom.set_yticks([])
    bottom.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    top.set_title(_finding(stacked, edges, fastest, extra), fontsize="medium")
    n_curves = stacked.sizes["curve"]
    strip.set_ylim(0, 1)
    strip.set_yticks([(k + 0.5) / n_curves for k in range(n_curves)],
                     [_label(c, extra) or "orbital class" for c in stacked["curve"].values], fontsize="small")
    strip.tick_params(axis="y", length=0)
    if extra:
        strip.set_ylabel("orbital class\n(most common\nover seeds)", rotation=0, ha="right", va="center",
                         fontsize="small", labelpad=8)
    strip.tick_params(labelbottom=False)
    present = {c for c in np.unique(stacked["orbit_class"].values)} if "orbit_class" in stacked else set()
    handles = [Patch(color=c, label=n.replace("_", " ")) for n, c in CLASS_COLORS.items() if n in present]
    if handles:
        strip.legend(handles=handles, fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5),
                     frameon=False)
    bottom.set_ylabel("steps to target" + (f"\n(test acc >= {target:g})" if target is not None else ""))
    bottom.set_xlabel("learning rate")
    bottom.set_xlim(bounds[0], bounds[-1])
    return fig


def _finding(stacked: xr.Dataset, edges: xr.Dataset, fastest: xr.Dataset, extra: list[str]) -> str:
    """The title: what the figure shows, for the first curve (all curves when several)."""
    parts = []
    for curve in stacked["curve"].values:
        edge = float(edges["edge_lr_mean"].sel(curve=curve))
        best = float(fastest["fastest_lr"].sel(curve=curve))
        name = _label(curve, extra) if stacked.sizes["curve"] > 1 else ""
        if np.isfinite(edge) and np.isfinite(best):
            where = "above" if best > edge else "below"
            parts.append(f"{name + ': ' if name else ''}training is fastest at lr {best:.3g}, {best / edge:.2f}x the "
                         f"edge of chaos (lr {edge:.3g}): {where} the onset of chaos")
        elif np.isfinite(edge):
            parts.append(f"{name + ': ' if name else ''}edge of chaos at lr {edge:.3g}; no run reached the target")
        else:
            parts.append(f"{name + ': ' if name else ''}the exponent never crosses the threshold")
    return "\n".join(parts)


def _cell_bounds(lrs: np.ndarray) -> np.ndarray:
    """Cell edges around each learning rate: geometric midpoints, extended half a cell at each end."""
    log = np.log(lrs)
    if len(log) == 1:
        return np.exp(np.array([log[0] - 0.5, log[0] + 0.5]))
    mid = (log[1:] + log[:-1]) / 2
    return np.exp(np.concatenate([[2 * log[0] - mid[0]], mid, [2 * log[-1] - mid[-1]]]))


def _most_common(labels: np.ndarray, status: np.ndarray | None) -> str:
    if status is not None:
        labels = np.where(status == "error", "error", labels)
    return Counter(str(v) for v in labels.ravel()).most_common(1)[0][0]


def _label(curve: Any, extra: list[str]) -> str:
    if not extra:
        return ""
    values = curve if isinstance(curve, tuple) else (curve,)
    return ", ".join(str(v) for v in values)
