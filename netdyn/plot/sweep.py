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


def plot_sweep(result: xr.Dataset, threshold: float = 0.01, linthresh: float | None = 0.01, fig: Any = None) -> Any:
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
    per curve), and the median time to target over seeds (bars: seed range;
    never-reached points left out).  The edge of chaos (mean over seeds, shaded
    +-std) is a dashed vertical line (``gid="edge"``), the fastest learning rate a
    dotted one (``gid="fastest"``).
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
        top.errorbar(lrs, mean, yerr=err, color=color, marker="o", ms=4, capsize=2,
                     label=(f"{label}: " if label else "") + r"$\lambda_{\max}$, mean $\pm$ std over seeds")
        edge, spread = float(edges["edge_lr_mean"].sel(curve=curve)), float(edges["edge_lr_std"].sel(curve=curve))
        if np.isfinite(edge):
            top.axvline(edge, color=color, ls="--", lw=1, gid="edge", label=f"edge of chaos, lr = {edge:.3g}")
            if spread > 0:
                top.axvspan(edge - spread, edge + spread, color=color, alpha=0.12, lw=0,
                            label=f"edge $\\pm$ std over seeds ({spread:.2g})")
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
        bottom.errorbar(lrs[shown], median.values[shown], yerr=[low[shown], high[shown]], color=color, marker="s",
                        ms=4, capsize=2, label="median over seeds (bars: range)")
        best = float(fastest["fastest_lr"].sel(curve=curve))
        if np.isfinite(best):
            bottom.axvline(best, color=color, ls=":", lw=1.5, gid="fastest")
            bottom.plot([best], [float(fastest["fastest_time"].sel(curve=curve))], marker="*", ms=12, color=color,
                        ls="none", label=f"fastest, lr = {best:.3g}")
    top.axhline(0.0, color="0.4", lw=0.8)
    if threshold != 0.0:
        top.axhline(threshold, color="0.4", lw=0.8, ls="-.", label=f"chaos threshold {threshold:g} / step")
    top.set_xscale("log")
    if linthresh is not None:
        top.set_yscale("symlog", linthresh=linthresh)
    top.set_ylabel(r"$\lambda_{\max}$ (1/step)")
    top.tick_params(labelbottom=False)
    top.legend(fontsize="x-small", loc="upper left")
    bottom.legend(fontsize="x-small", loc="upper right")
    top.set_title(_finding(stacked, edges, fastest), fontsize="medium")
    strip.set_yticks([])
    strip.set_ylabel("class", rotation=0, ha="right", va="center")
    strip.tick_params(labelbottom=False)
    present = {c for c in np.unique(stacked["orbit_class"].values)} if "orbit_class" in stacked else set()
    handles = [Patch(color=c, label=n.replace("_", " ")) for n, c in CLASS_COLORS.items() if n in present]
    if handles:
        strip.legend(handles=handles, fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5),
                     frameon=False)
    target = result.attrs.get("target_accuracy")
    bottom.set_ylabel("steps to target" + (f"\n(test acc >= {target:g})" if target is not None else ""))
    bottom.set_xlabel("learning rate")
    bottom.set_xlim(bounds[0], bounds[-1])
    return fig


def _finding(stacked: xr.Dataset, edges: xr.Dataset, fastest: xr.Dataset) -> str:
    """The title: what the figure shows, for the first curve (all curves when several)."""
    parts = []
    for curve in stacked["curve"].values:
        edge = float(edges["edge_lr_mean"].sel(curve=curve))
        best = float(fastest["fastest_lr"].sel(curve=curve))
        name = _label(curve, [d for d in stacked["curve"].attrs.get("names", [])]) if stacked.sizes["curve"] > 1 else ""
        if np.isfinite(edge) and np.isfinite(best):
            where = "above" if best > edge else "below"
            parts.append(f"{name + ': ' if name else ''}fastest lr {best:.3g} is {best / edge:.2f}x the edge of chaos "
                         f"{edge:.3g} ({where} it)")
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
