"""Figures for recurrence analysis and data-driven exponents.

matplotlib is imported inside the functions, so importing this module is cheap
and safe under the ``Agg`` backend.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from netdyn.series.datadriven import DivergenceCurve
from netdyn.series.recurrence import recurrence_image, with_recurrence_doc

__all__ = ["plot_recurrence", "plot_divergence"]


@with_recurrence_doc
def plot_recurrence(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    size: int = 1000,
    steps: np.ndarray | None = None,
    ax: Any = None,
) -> Any:
    """Recurrence plot of a series or state trajectory.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        The points (see :func:`netdyn.series.recurrence.recurrence_points`).
    {recurrence_parameters}
    size : int, default 1000
        Largest side of the drawn image: for ``N > size`` blocks of
        ``ceil(N / size)`` steps are merged by logical OR
        (:func:`netdyn.series.recurrence.recurrence_image`), so no dense ``N x N`` array
        is formed and a recurrence anywhere in a block stays visible.
    steps : numpy.ndarray, shape (N,), optional
        Axis labels (e.g. the trajectory's ``step`` coordinate); default indices.
    ax : matplotlib.axes.Axes, optional
        Drawn into; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        As :func:`netdyn.series.recurrence.recurrence_image`.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from netdyn.plot.recurrence import plot_recurrence
    >>> fig = plot_recurrence(np.sin(0.3 * np.arange(200)), recurrence_rate=0.1)
    >>> fig.axes[0].get_title()
    'recurrence plot'
    """
    import matplotlib.pyplot as plt

    image, factor = recurrence_image(
        x, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler, emb_dim=emb_dim,
        lag=lag, observable=observable, size=size,
    )
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    else:
        fig = ax.figure
    n = image.shape[0] * factor
    lo, hi = (0, n) if steps is None else (float(steps[0]), float(steps[0]) + (float(steps[-1]) - float(steps[0])) * n / max(len(steps) - 1, 1))
    ax.imshow(image, cmap="binary", origin="lower", interpolation="nearest", extent=(lo, hi, lo, hi))
    label = "step" if steps is not None else "index"
    ax.set_xlabel(label)
    ax.set_ylabel(label)
    title = "recurrence plot"
    if factor > 1:
        title += f" (blocks of {factor} merged)"
    ax.set_title(title)
    return fig


def plot_divergence(curve: DivergenceCurve, *, ax: Any = None) -> Any:
    """Mean log divergence against ``k`` with the fitted line and its fit range shaded.

    Parameters
    ----------
    curve : DivergenceCurve
        From :func:`netdyn.series.datadriven.rosenstein` or ``nolds_lyap_r``.
    ax : matplotlib.axes.Axes, optional
        Drawn into; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> import netdyn as nd
    >>> from netdyn.plot.recurrence import plot_divergence
    >>> x = np.empty(1000); x[0] = 0.3
    >>> for i in range(999): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> fig = plot_divergence(nd.rosenstein(x, emb_dim=1, lag=1, theiler=10, trajectory_len=15))
    >>> fig.axes[0].get_xlabel()
    'k (steps)'
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    ax.plot(curve.k, curve.log_divergence, "o", ms=4, label=r"$\langle \ln d_i(k) \rangle$")
    lo, hi = curve.fit_range
    ks = np.arange(lo, max(hi, lo + 1))
    ax.plot(ks, curve.intercept + curve.exponent * curve.tau * ks, "-", label=rf"fit: $\lambda$ = {curve.exponent:.4g}")
    ax.axvspan(lo - 0.5, hi - 0.5, color="0.9", zorder=0, label=f"fit range [{lo}, {hi})")
    ax.set_xlabel("k (steps)")
    ax.set_ylabel("mean log distance")
    ax.set_title(f"{curve.method} on {curve.observable} (m={curve.emb_dim}, lag={curve.lag}, w={curve.theiler})")
    ax.legend(loc="lower right")
    return fig
