"""Cross- and joint-recurrence plots and their RQA, between two trajectories (a run and its twin, two seeds, two optimisers).

With ``X_i`` (N points) and ``Y_j`` (M points) from
:func:`netdyn.series.recurrence.recurrence_points` (series, delay embeddings or state
trajectories):

* cross recurrence (Zbilut et al. 1998; Marwan & Kurths 2002), ``N x M``:
  ``CR_ij = 1  if  ||X_i - Y_j|| < eps``.  X and Y must live in the same space
  (same dimension after embedding; e.g. the same observable of two runs).
  Its diagonal lines are stretches where the two trajectories run alongside
  each other (up to a time shift ``j - i``); the main diagonal is the *line of
  synchronisation*, not a trivial line, so it is counted.
* joint recurrence (Romano et al. 2004), ``N x N`` (``N = min`` of the lengths):
  ``JR_ij = 1  if  ||X_i - X_j|| < eps_x  and  ||Y_i - Y_j|| < eps_y``,
  each system in its own space with its own threshold: the two runs recur at
  the same times.  Symmetric, with the conventions of :func:`netdyn.rqa`
  (``theiler=w`` removes ``|i - j| < w``; ``theiler=0``: the line of identity
  counts in RR and in vertical lines but is never a diagonal line, as in
  pyunicorn).

Thresholds are given or chosen for a recurrence rate (neither given: the rate
0.05 of :data:`netdyn.series.recurrence.DEFAULT_RECURRENCE_RATE`, as for
:func:`netdyn.rqa`; the settings go through the one recurrence front door,
:func:`netdyn.series.recurrence.recurrence_spec`): cross recurrence by the
rank rule of :func:`netdyn.series.recurrence.recurrence_threshold` applied to the
``N M`` cross distances (``eps`` = the distance of rank ``int(rate (N M - 1))``,
pyunicorn's ``threshold_from_recurrence_rate``); joint recurrence by
:func:`recurrence_threshold` on each system separately (``rate_theiler=0`` is
pyunicorn's rule).

RQA measures as in :mod:`netdyn.series.recurrence` (RR, DET, L, Lmax, DIV, ENTR, LAM,
TT, Vmax; the measures are computed from the line histograms by the same
function).  Vertical lines are runs down the columns ``j`` (for a cross plot:
times of Y during which one state of Y stays near a stretch of X).  pyunicorn
computes only RR (and the balance) for cross-recurrence plots; its
JointRecurrencePlot computes all of them.

Implementation: netdyn's streaming line kernels (:mod:`netdyn.series.recurrence`,
:mod:`netdyn.series._rqa_kernels`) take one point set and one threshold and walk the
upper triangle of a symmetric matrix, so they cannot count an ``N x M`` cross
plot or an AND of two matrices; here the matrix is formed in row blocks
(``cdist``) as a dense bool array (``N M`` bytes: 25 MB at N = M = 5000) and
its lines are counted by a vectorised numpy pass: vertical runs from the
differences down each column, diagonal runs the same way after shearing the
matrix so that each diagonal becomes a column.

References
----------
N. Marwan, J. Kurths, "Nonlinear analysis of bivariate data with cross
recurrence plots", Phys. Lett. A 302, 299 (2002).
M. C. Romano, M. Thiel, J. Kurths, W. von Bloh, "Multivariate recurrence plots",
Phys. Lett. A 330, 214 (2004).
N. Marwan et al., Phys. Rep. 438, 237 (2007).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist

from netdyn._core.validation import check_int
from netdyn.series.recurrence import RecurrenceSpec, line_measures, pairs_outside, recurrence_spec, recurrence_threshold

__all__ = ["cross_recurrence_matrix", "joint_recurrence_matrix", "line_histograms", "crqa", "jrqa"]

_ROWS = 1 << 22  # matrix entries per cdist block


def _blocks(a: np.ndarray, b: np.ndarray, metric: str) -> Any:
    rows = max(1, _ROWS // max(1, b.shape[0]))
    for i0 in range(0, a.shape[0], rows):
        yield i0, cdist(a[i0 : i0 + rows], b, metric=metric)


def _cross_threshold(a: np.ndarray, b: np.ndarray, rate: float, metric: str) -> float:
    dist = np.concatenate([d.ravel() for _, d in _blocks(a, b, metric)])
    rank = int(rate * (dist.size - 1))
    return float(np.partition(dist, rank)[rank])


def cross_recurrence_matrix(
    x: Any,
    y: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
) -> tuple[np.ndarray, float]:
    """The cross-recurrence matrix ``CR`` (N, M) bool and its threshold ``eps``.

    Parameters
    ----------
    x, y : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        The two trajectories (:func:`netdyn.series.recurrence.recurrence_points`; both
        embedded with the same ``emb_dim``, ``lag`` and ``observable``).
    threshold, recurrence_rate, metric, emb_dim, lag, observable
        As :func:`netdyn.rqa` (at most one of the first two; neither: rate
        0.05); the rate rule ranks the ``N M`` cross distances (module docstring).
        A cross plot has no line of identity, so no Theiler window.

    Returns
    -------
    (numpy.ndarray, float)
        ``CR`` bool (N, M) and ``eps``.

    Raises
    ------
    ValueError
        For invalid settings or ``x`` and ``y`` of different dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> cr, eps = nd.cross_recurrence_matrix(np.arange(4.0), np.arange(3.0) + 0.1, threshold=0.5)
    >>> cr.astype(int)
    array([[1, 0, 0],
           [0, 1, 0],
           [0, 0, 1],
           [0, 0, 0]])
    """
    caller = "cross_recurrence_matrix"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=0,
                           emb_dim=emb_dim, lag=lag, observable=observable)
    a, b = spec.points(x), spec.points(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{caller}: expected x and y in the same space, got dimensions {a.shape[1]} and {b.shape[1]}")
    eps = _cross_threshold(a, b, spec.recurrence_rate, spec.cdist_metric) if spec.threshold is None else spec.threshold
    if not eps > 0:
        raise ValueError(f"{caller}: expected a threshold > 0, got {eps}")
    out = np.empty((a.shape[0], b.shape[0]), dtype=bool)
    for i0, dist in _blocks(a, b, spec.cdist_metric):
        np.less(dist, eps, out=out[i0 : i0 + dist.shape[0]])
    return out, eps


def _pair(value: Any, caller: str, what: str) -> tuple[Any, Any]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{caller}: expected {what} as one value or a pair, got {value!r}")
        return value[0], value[1]
    return value, value


def joint_recurrence_matrix(
    x: Any,
    y: Any,
    *,
    threshold: float | tuple[float, float] | None = None,
    recurrence_rate: float | tuple[float, float] | None = None,
    metric: str | tuple[str, str] = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int | tuple[int, int] = 1,
    lag: int | tuple[int, int] = 1,
    observable: str | tuple[str | None, str | None] | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """The joint-recurrence matrix ``JR`` (N, N) bool and the thresholds ``(eps_x, eps_y)``.

    Parameters
    ----------
    x, y : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        The two trajectories, each in its own space; both are cut to the shorter.
    threshold, recurrence_rate, metric, emb_dim, lag, observable
        As :func:`netdyn.rqa`, each one value for both systems or a pair
        ``(for x, for y)``; at most one of threshold / recurrence_rate
        (neither: rate 0.05 for each).
    theiler : int, default 1
        Removes ``|i - j| < theiler`` (0 keeps the line of identity).
    rate_theiler : int, optional
        Theiler window of the rate rule (default ``theiler``; 0 is pyunicorn's).

    Returns
    -------
    (numpy.ndarray, (float, float))
        ``JR`` bool (N, N) and ``(eps_x, eps_y)``.

    Raises
    ------
    ValueError
        For invalid settings or a zero threshold.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.sin(0.3 * np.arange(100))
    >>> jr, eps = nd.joint_recurrence_matrix(x, x, recurrence_rate=0.1)
    >>> bool((jr == nd.recurrence_matrix(x, recurrence_rate=0.1)).all())
    True
    """
    caller = "joint_recurrence_matrix"
    settings = [_pair(v, caller, what) for v, what in ((threshold, "threshold"), (recurrence_rate, "recurrence_rate"),
                (metric, "metric"), (emb_dim, "emb_dim"), (lag, "lag"), (observable, "observable"))]
    specs = [
        recurrence_spec(caller, threshold=t, recurrence_rate=r, metric=m, theiler=theiler, emb_dim=e, lag=lg, observable=o)
        for t, r, m, e, lg, o in zip(*settings)
    ]
    rule = specs[0].theiler if rate_theiler is None else check_int(rate_theiler, "rate_theiler", caller, minimum=0)
    pts = [spec.points(s) for spec, s in zip(specs, (x, y))]
    n = min(p.shape[0] for p in pts)
    pts = [p[:n] for p in pts]
    eps = tuple(_threshold(p, spec, rule) for p, spec in zip(pts, specs))
    if not min(eps) > 0:
        raise ValueError(f"{caller}: expected thresholds > 0, got {eps}")
    out = np.empty((n, n), dtype=bool)
    blocks = zip(_blocks(pts[0], pts[0], specs[0].cdist_metric), _blocks(pts[1], pts[1], specs[1].cdist_metric))
    for (i0, dx), (_, dy) in blocks:
        out[i0 : i0 + dx.shape[0]] = (dx < eps[0]) & (dy < eps[1])
    for k in range(1 - specs[0].theiler, specs[0].theiler):  # the Theiler band |i - j| < theiler
        i = np.arange(max(0, -k), min(n, n - k))
        out[i, i + k] = False
    return out, (float(eps[0]), float(eps[1]))


def _threshold(pts: np.ndarray, spec: RecurrenceSpec, rate_theiler: int) -> float:
    """``spec``'s threshold, or the one of its recurrence rate on ``pts`` (Theiler window ``rate_theiler``)."""
    if spec.threshold is not None:
        return spec.threshold
    return recurrence_threshold(pts, recurrence_rate=spec.recurrence_rate, metric=spec.metric, theiler=rate_theiler)


def _column_runs(m: np.ndarray, size: int) -> np.ndarray:
    """Histogram (size + 1,) of the lengths of the runs of True down the columns of the bool matrix ``m``."""
    padded = np.zeros((m.shape[0] + 2, m.shape[1]), dtype=np.int8)
    padded[1:-1] = m
    step = np.diff(padded, axis=0).T  # (columns, rows + 1): +1 where a run starts, -1 after it ends
    _, start = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)
    return np.bincount(stop - start, minlength=size + 1)


def line_histograms(matrix: np.ndarray, *, skip_main: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and vertical line-length histograms of a bool matrix (N, M).

    Returns ``(diag, vert)``, each of length ``max(N, M) + 1``: ``diag[l]`` the
    number of diagonal lines (along ``j - i = const``) of length exactly ``l``
    over all diagonals (the main one left out when ``skip_main``), ``vert[v]``
    the number of vertical runs down the columns; index 0 is unused (0).
    Vectorised: the matrix is sheared, row ``i`` shifted by ``i``, so that
    diagonal ``k = j - i`` becomes column ``k + N - 1`` of an
    ``(N, N + M - 1)`` matrix, whose column runs are its diagonal lines.

    Parameters
    ----------
    matrix : numpy.ndarray of bool, shape (N, M)
        Any recurrence matrix.
    skip_main : bool, default False
        Leave out the main diagonal (the line of identity of a symmetric matrix).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(diag, vert)``, int, each of shape ``(max(N, M) + 1,)``.

    Raises
    ------
    ValueError
        For an empty or non-2-D matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.cross_recurrence import line_histograms
    >>> diag, vert = line_histograms(np.eye(3, dtype=bool))
    >>> diag.tolist(), vert.tolist()
    ([0, 0, 0, 1], [0, 3, 0, 0])
    """
    m = np.asarray(matrix, dtype=bool)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"line_histograms: expected a non-empty 2-D matrix, got shape {m.shape}")
    n, mm = m.shape
    size = max(n, mm)
    vert = _column_runs(m, size)
    sheared = np.zeros((n, n + mm - 1), dtype=bool)
    rows = np.repeat(np.arange(n), mm)
    cols = (np.arange(mm)[None, :] - np.arange(n)[:, None] + n - 1).ravel()
    sheared[rows, cols] = m.ravel()
    if skip_main:
        sheared[:, n - 1] = False
    diag = _column_runs(sheared, size)
    diag[0] = vert[0] = 0
    return diag, vert


def _measures(matrix: np.ndarray, pairs: int, skip_main: bool, l_min: int, v_min: int, caller: str) -> dict[str, Any]:
    l_min = check_int(l_min, "l_min", caller, minimum=1)
    v_min = check_int(v_min, "v_min", caller, minimum=1)
    diag, vert = line_histograms(matrix, skip_main=skip_main)
    det, mean_l, lmax, entr = line_measures(diag, l_min=l_min)
    lam, tt, vmax, _ = line_measures(vert, l_min=v_min)
    return {
        "RR": int(matrix.sum()) / pairs,
        "DET": det,
        "L": mean_l,
        "Lmax": lmax,
        "DIV": 1.0 / lmax if lmax > 0 else float("nan"),
        "ENTR": entr,
        "LAM": lam,
        "TT": tt,
        "Vmax": vmax,
        "diag_hist": diag,
        "vert_hist": vert,
    }


def _dataset(values: dict[str, Any], attrs: dict[str, Any]) -> xr.Dataset:
    data = {k: ((), v) for k, v in values.items() if not k.endswith("hist")}
    data["diag_hist"] = ("length", values["diag_hist"])
    data["vert_hist"] = ("length", values["vert_hist"])
    return xr.Dataset(data, coords={"length": np.arange(values["diag_hist"].size)}, attrs=attrs)


def crqa(
    x: Any,
    y: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    l_min: int = 2,
    v_min: int = 2,
) -> xr.Dataset:
    """Cross-recurrence quantification of two trajectories (module docstring).

    Parameters
    ----------
    x, y, threshold, recurrence_rate, metric, emb_dim, lag, observable
        As :func:`cross_recurrence_matrix`.
    l_min, v_min : int, default 2
        Shortest diagonal / vertical line counted (steps).

    Returns
    -------
    xarray.Dataset
        RR (recurrences / (N M)), DET, L, Lmax, DIV, ENTR (diagonal lines,
        the line of synchronisation included), LAM, TT, Vmax (vertical lines,
        down the columns = times of ``y``), ``diag_hist`` / ``vert_hist`` over
        ``length``; attrs: ``threshold``, ``metric``, ``l_min``, ``v_min``,
        ``emb_dim``, ``lag``, ``n_x``, ``n_y``, ``kind="cross"``.  Undefined
        ratios (no lines) are NaN, as in :func:`netdyn.rqa`.

    Raises
    ------
    ValueError
        As :func:`cross_recurrence_matrix`, or for ``l_min`` / ``v_min`` below 1.

    References
    ----------
    N. Marwan, J. Kurths, Phys. Lett. A 302, 299 (2002).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> t = np.arange(200)
    >>> out = nd.crqa(np.sin(2 * np.pi * t / 20), np.sin(2 * np.pi * t / 20 + 0.5), recurrence_rate=0.1, emb_dim=2)
    >>> round(float(out["RR"]), 2), round(float(out["DET"]), 2)
    (0.1, 0.92)
    """
    cr, eps = cross_recurrence_matrix(
        x, y, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, emb_dim=emb_dim, lag=lag, observable=observable
    )
    values = _measures(cr, cr.size, False, l_min, v_min, "crqa")
    attrs = dict(kind="cross", threshold=eps, metric=metric, l_min=l_min, v_min=v_min, emb_dim=emb_dim, lag=lag, n_x=cr.shape[0], n_y=cr.shape[1])
    return _dataset(values, attrs)


def jrqa(
    x: Any,
    y: Any,
    *,
    threshold: float | tuple[float, float] | None = None,
    recurrence_rate: float | tuple[float, float] | None = None,
    metric: str | tuple[str, str] = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int | tuple[int, int] = 1,
    lag: int | tuple[int, int] = 1,
    observable: str | tuple[str | None, str | None] | None = None,
    l_min: int = 2,
    v_min: int = 2,
) -> xr.Dataset:
    """Joint-recurrence quantification of two trajectories (module docstring).

    With ``y = x`` and equal settings this is :func:`netdyn.rqa` of ``x``.

    Parameters
    ----------
    x, y, threshold, recurrence_rate, metric, theiler, rate_theiler, emb_dim, lag, observable
        As :func:`joint_recurrence_matrix`.
    l_min, v_min : int, default 2
        Shortest diagonal / vertical line counted (steps).

    Returns
    -------
    xarray.Dataset
        As :func:`crqa`, RR over the pairs outside the Theiler window; attrs
        ``threshold_x``, ``threshold_y``, ``theiler``, ``kind="joint"``.

    Raises
    ------
    ValueError
        As :func:`joint_recurrence_matrix`, for ``theiler >= N`` or ``l_min`` / ``v_min`` below 1.

    References
    ----------
    M. C. Romano, M. Thiel, J. Kurths, W. von Bloh, Phys. Lett. A 330, 214 (2004).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.sin(0.3 * np.arange(200))
    >>> float(nd.jrqa(x, x, recurrence_rate=0.1)["DET"]) == nd.rqa(x, recurrence_rate=0.1).DET
    True
    """
    jr, eps = joint_recurrence_matrix(
        x, y, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
        rate_theiler=rate_theiler, emb_dim=emb_dim, lag=lag, observable=observable,
    )
    n = jr.shape[0]
    if pairs_outside(n, theiler=theiler) == 0:
        raise ValueError(f"jrqa: expected theiler < N = {n}, got {theiler}")
    values = _measures(jr, pairs_outside(n, theiler=theiler), True, l_min, v_min, "jrqa")
    attrs = dict(
        kind="joint", threshold_x=eps[0], threshold_y=eps[1], metric=str(metric), theiler=theiler,
        l_min=l_min, v_min=v_min, emb_dim=str(emb_dim), lag=str(lag), n_points=n,
    )
    return _dataset(values, attrs)
