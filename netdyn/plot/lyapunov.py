"""Figures for exponent estimates: convergence, perturbation growth, sharpness.

Each function takes the Dataset returned by the estimator, draws on ``ax`` (a new
figure when None) and returns the ``matplotlib.figure.Figure``.  matplotlib is
imported lazily, so importing netdyn never needs it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_convergence", "plot_perturbation_growth", "plot_sharpness"]


def _axes(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    return fig, ax


def plot_convergence(result: xr.Dataset, *, ax: Any = None) -> Any:
    """Running estimate ``lambda(t)`` with the final value ± its standard error.

    ``result``: from :func:`netdyn.lyapunov.maximal.max_lyapunov` (one line per ``init``) or
    :func:`netdyn.lyapunov.spectrum.lyapunov_spectrum` (one line per ``exponent``).

    Parameters
    ----------
    result : xarray.Dataset
        With ``lyapunov_running`` over ``step`` (1/step) and ``lyapunov``/``lyapunov_stderr``.
    ax : matplotlib Axes, optional
        Drawn into; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When ``result`` has no ``lyapunov_running``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import netdyn as nd
    >>> from netdyn.plot.lyapunov import plot_convergence
    >>> m = nd.LogisticMap(4.0)
    >>> fig = plot_convergence(nd.max_lyapunov(m, m.initial_state(), 50))
    >>> len(fig.axes)
    1
    """
    if "lyapunov_running" not in result:
        raise ValueError(f"plot_convergence: expected a Dataset with 'lyapunov_running', got {list(result.data_vars)}")
    fig, ax = _axes(ax)
    running = result["lyapunov_running"]
    extra = [d for d in running.dims if d != "step"]
    lines = running.transpose("step", *extra).values.reshape(running.sizes["step"], -1)
    finals = np.atleast_1d(result["lyapunov"].values).ravel()
    errors = np.atleast_1d(result["lyapunov_stderr"].values).ravel()
    steps = result["step"].values
    for i in range(lines.shape[1]):
        (line,) = ax.plot(steps, lines[:, i], lw=1)
        if np.isfinite(finals[i]) and np.isfinite(errors[i]):
            ax.axhspan(finals[i] - errors[i], finals[i] + errors[i], color=line.get_color(), alpha=0.15)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("running exponent (1/step)")
    ax.set_title(f"{result.attrs.get('method', '')} estimate, {result.attrs.get('map', '')}")
    return fig


def plot_perturbation_growth(result: xr.Dataset, *, ax: Any = None) -> Any:
    """``ln d(t)`` of every copy, their mean, and the fitted line over the fit window
    (``result`` from :func:`netdyn.lyapunov.growth.perturbation_growth`, one ``init``).

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`netdyn.perturbation_growth` (``ln d`` per copy and step).
    ax : matplotlib Axes, optional
        Drawn into; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import netdyn as nd
    >>> from netdyn.plot.lyapunov import plot_perturbation_growth
    >>> m = nd.LogisticMap(4.0)
    >>> fig = plot_perturbation_growth(nd.perturbation_growth(m, m.initial_state(), 20))
    >>> len(fig.axes)
    1
    """
    if "init" in result.dims:
        raise ValueError("plot_perturbation_growth: expected one reference, got a Dataset with dim 'init'; "
                         "select one with .isel(init=i)")
    fig, ax = _axes(ax)
    steps = result["step"].values
    with np.errstate(divide="ignore"):
        ax.plot(steps, np.log(result["distance"].values.T), color="0.7", lw=0.7)
    ax.plot(steps, result["log_distance"].values, color="C0", lw=2, label="mean ln d(t)")
    start, stop = int(result["fit_start"]), int(result["fit_stop"])
    t = steps[start:stop]
    mean = result["log_distance"].values[start:stop]
    slope = float(result["lyapunov"])
    ax.plot(t, mean.mean() + slope * (t - t.mean()), "C3--", label=f"slope {slope:.3g} / step")
    ax.set_xlabel("step")
    ax.set_ylabel("ln distance")
    ax.legend()
    return fig


def plot_sharpness(result: xr.Dataset, *, ax: Any = None) -> Any:
    """Top Hessian eigenvalue(s) along training with the optimiser's stability line
    (``result`` from :func:`netdyn.sharpness.hessian.sharpness_along` or
    :func:`netdyn.sharpness.hessian.track_sharpness`): ``2 / lr`` for plain GD, the
    preconditioned threshold (38 / lr for Adam) for ``P^-1 H``.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`netdyn.sharpness_along` or :func:`netdyn.track_sharpness`.
    ax : matplotlib Axes, optional
        Drawn into; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import netdyn as nd
    >>> from netdyn.plot.lyapunov import plot_sharpness
    >>> m = nd.QuadraticGD([1.0, 4.0], lr=0.1)
    >>> orbit = nd.run(m, None, 5)
    >>> fig = plot_sharpness(nd.sharpness_along(m, orbit, method="exact"))  # doctest: +SKIP
    """
    fig, ax = _axes(ax)
    preconditioned = bool(result.attrs.get("preconditioned", 0))
    label = "top eigenvalue of P^-1 H" if preconditioned else "top Hessian eigenvalue"
    ax.plot(result["step"].values, result["sharpness"].values, lw=1, label=label)
    threshold = result.attrs.get("threshold", result.attrs.get("two_over_lr", np.nan))
    if np.isfinite(threshold):
        ax.axhline(threshold, color="k", ls="--", label=f"stability threshold {threshold:.4g}")
    ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    return fig
