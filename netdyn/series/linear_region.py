"""The linear region of a log-distance curve, where an exponent is read off as a slope.

Both exponent-from-a-curve estimators look at ``<ln d(k)>`` against ``k``:
:func:`netdyn.series.datadriven.rosenstein` (divergence of nearest neighbours) and
:func:`netdyn.lyapunov.growth.perturbation_growth` (growth of twin perturbations).  Both
curves have the same anatomy -- a transient, the exponential regime (a straight
line of slope ``lambda``) and saturation at the attractor size -- and the
exponent is the slope of the middle part only.  The two rules that find it live
here, side by side, because the transients differ:

* :func:`linear_region` -- the longest stretch of constant slope (local slopes
  within 15 %).  For Rosenstein curves: averages over thousands of pairs, smooth,
  and for a sampled flow the transient is a *steep burst* (neighbours separate
  faster than ``lambda`` for ~0.5 time units), which a flat-transient model
  mistakes for the line.
* :func:`flat_linear_flat` -- a continuous flat-linear-flat least-squares fit.
  For one orbit's perturbation growth: the transient is an alignment phase
  (roughly flat) and the step-to-step scatter of finite-time growth is too large
  for a slope band.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdyn._core.results import DatasetResult
from netdyn._core.validation import check_float, check_int

__all__ = ["LinearRegion", "linear_region", "line_fit", "local_slopes", "flat_linear_flat"]


@dataclass(frozen=True, eq=False, repr=False)
class LinearRegion(DatasetResult):
    """A straight-line fit on ``start <= k < stop`` of a curve.

    Attributes
    ----------
    start, stop : int
        Indices into the curve (``stop`` exclusive).
    slope, intercept : float
        Least-squares line ``intercept + slope * k`` on the region (NaN when the
        region has fewer than 2 points); per index step.
    r2 : float
        Coefficient of determination of that line on the region (NaN if undefined).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.linear_region import LinearRegion, line_fit
    >>> region = line_fit(2.0 * np.arange(10.0) + 1, start=2, stop=8)
    >>> region.slope, region.n_points, LinearRegion.from_dataset(region.to_dataset()).stop
    (2.0, 6, 8)
    """

    start: int
    stop: int
    slope: float
    intercept: float
    r2: float

    @property
    def n_points(self) -> int:
        """Number of curve points in the region."""
        return self.stop - self.start

    @property
    def rise(self) -> float:
        """Change of the fitted line across the region, ``slope * (n_points - 1)`` (log units)."""
        return self.slope * (self.n_points - 1)


def line_fit(y: np.ndarray, *, start: int, stop: int) -> LinearRegion:
    """Least-squares line through ``y[start:stop]`` against its index, with its R².

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        The curve at ``k = 0 .. n-1``.
    start, stop : int
        The region ``start <= k < stop``.

    Returns
    -------
    LinearRegion
        NaN slope, intercept and R² for fewer than 2 points.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.linear_region import line_fit
    >>> line_fit(np.array([0.0, 1.0, 2.0, 5.0]), start=0, stop=3).slope
    1.0
    """
    k = np.arange(start, stop, dtype=np.float64)
    seg = np.asarray(y[start:stop], dtype=np.float64)
    if k.size < 2:
        return LinearRegion(start, stop, float("nan"), float("nan"), float("nan"))
    kc = k - k.mean()
    slope = float(kc @ (seg - seg.mean()) / (kc @ kc))
    intercept = float(seg.mean() - slope * k.mean())
    ss_tot = float(((seg - seg.mean()) ** 2).sum())
    ss_res = float(((seg - intercept - slope * k) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return LinearRegion(start, stop, slope, intercept, r2)


def local_slopes(y: np.ndarray, *, window: int) -> np.ndarray:
    """Least-squares slopes of ``y`` (n,) over sliding windows of ``window`` (odd) points.

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        The curve.
    window : int
        Points per window (odd, >= 1).

    Returns
    -------
    numpy.ndarray, shape (n - window + 1,)
        Entry ``c`` is the slope on ``y[c : c + window]`` (centred on index ``c + window // 2``).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.linear_region import local_slopes
    >>> local_slopes(np.array([0.0, 1.0, 2.0, 2.0, 2.0]), window=3)
    array([1. , 0.5, 0. ])
    """
    window = check_int(window, "window", "local_slopes", minimum=1)
    h = window // 2
    offsets = np.arange(-h, h + 1, dtype=np.float64)
    # correlation with the centred index: sum_j offsets[j] * y[c + j]
    return np.correlate(np.asarray(y, dtype=np.float64), offsets, mode="valid") / float(offsets @ offsets)


def linear_region(
    y: np.ndarray, *, rel_tol: float = 0.15, window: int | None = None, min_points: int = 3
) -> LinearRegion:
    """The longest region of constant slope of a curve, and the line fitted on it.

    Parameters
    ----------
    y : array (n,)
        The curve at ``k = 0 .. n-1`` (e.g. ``<ln d(k)>``); a non-finite value
        ends the usable part.
    rel_tol : float, default 0.15
        Local slopes inside the region stay within ``rel_tol`` of their mid-range:
        ``max - min <= rel_tol * (|max| + |min|)`` (so +-15 % by default).
    window : int, optional
        Points per local-slope fit (made odd); default ``max(3, n // 10)``, which
        averages out step-to-step noise while keeping a kink sharp to ~n/20 points.
    min_points : int, default 3
        A curve with fewer usable points gives the whole usable part.

    Returns
    -------
    LinearRegion
        ``start, stop`` index the curve; slope per index step.

    Notes
    -----
    Local slopes ``s_c`` are least-squares slopes over ``window`` consecutive
    points.  Among all runs of consecutive windows whose slopes agree within
    ``rel_tol`` the longest is taken (ties: the earliest); the region is the union
    of its windows, i.e. every point that entered one of its slope fits.  A kink
    (end of a transient, onset of saturation) makes the local slope jump and ends
    a run, so the region is the stretch that one straight line explains.  A
    straight curve gives the whole range; a curve with no run longer than one
    window gives one window.  Whether that region is long and steep enough to
    trust is the caller's judgement (see :func:`netdyn.series.datadriven.rosenstein`).

    Examples
    --------
    A line that saturates at k = 16:

    >>> import numpy as np
    >>> from netdyn.series.linear_region import linear_region
    >>> region = linear_region(np.minimum(0.5 * np.arange(20.0), 8.0))
    >>> region.start, region.stop, round(region.slope, 3)
    (0, 17, 0.5)
    """
    rel_tol = check_float(rel_tol, "rel_tol", "linear_region", minimum=0)
    min_points = check_int(min_points, "min_points", "linear_region", minimum=1)
    m = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(m)
    n = int(np.argmin(finite)) if not finite.all() else m.size
    if n < max(min_points, 3):
        return line_fit(m, start=0, stop=n)
    w = max(3, n // 10) if window is None else int(window)
    w = min(w + (1 - w % 2), n if n % 2 else n - 1)
    s = local_slopes(m[:n], window=w)
    best_len, best_lo = 1, 0
    for lo in range(s.size - best_len):
        run_max = np.maximum.accumulate(s[lo:])
        run_min = np.minimum.accumulate(s[lo:])
        ok = run_max - run_min <= rel_tol * (np.abs(run_max) + np.abs(run_min))
        length = int(np.argmin(ok)) if not ok.all() else ok.size
        if length > best_len:
            best_len, best_lo = length, lo
    return line_fit(m, start=best_lo, stop=best_lo + best_len - 1 + w)


def flat_linear_flat(log_distance: np.ndarray, *, min_points: int = 3, max_candidates: int = 200) -> LinearRegion:
    """The linear part of a *flat - linear - flat* curve, by a continuous three-piece least-squares fit.

    Parameters
    ----------
    log_distance : array (T,)
        ``mean ln d(t)`` at ``t = 0 .. T-1``; non-finite values end the usable part.
    min_points : int, default 3
        Smallest window.
    max_candidates : int, default 200
        Break points searched on a grid of at most this many values (all integers
        for short curves).

    Returns
    -------
    LinearRegion
        ``start, stop`` index the curve; the line is refitted on the window.

    Notes
    -----
    The curve is modelled as ``m(t) ~ c + lambda * clip(t, a, b)``: an alignment
    phase before ``a`` (a random perturbation first loses its components along
    contracting directions), exponential growth (or decay) between ``a`` and
    ``b``, and saturation after ``b``.  For every pair ``a < b`` this is a
    two-parameter least-squares fit (closed form from cumulative sums); the window
    is the ``[a, b]`` with the least residual sum of squares.  Ties go to the
    longest window.  A curve with no bend gives the whole range.

    When to use which rule: this one for a single orbit's perturbation growth
    (:func:`netdyn.lyapunov.growth.perturbation_growth`), whose step-to-step finite-time
    scatter would break :func:`linear_region`'s slope band (on 20 Hénon orbits of
    40 steps the band rule gave +25 %, this one 0 %); :func:`linear_region` for
    Rosenstein curves, averages over thousands of pairs, whose transient for a
    sampled flow is a steep burst rather than flat (this model then gave
    +30 .. +180 % on Lorenz x).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.linear_region import flat_linear_flat
    >>> region = flat_linear_flat(0.5 * np.clip(np.arange(40.0), 10, 30))
    >>> region.start, region.stop, round(region.slope, 3)
    (10, 31, 0.5)
    """
    min_points = check_int(min_points, "min_points", "flat_linear_flat", minimum=2)
    max_candidates = check_int(max_candidates, "max_candidates", "flat_linear_flat", minimum=2)
    m = np.asarray(log_distance, dtype=np.float64)
    finite = np.isfinite(m)
    n = int(np.argmin(finite)) if not finite.all() else m.size
    if n < min_points:
        return line_fit(m, start=0, stop=n)
    m, t = m[:n], np.arange(n, dtype=np.float64)
    grid = np.unique(np.linspace(0, n - 1, min(n, max_candidates)).round().astype(np.int64))
    a, b = np.meshgrid(grid, grid, indexing="ij")
    keep = b - a >= min_points - 1
    a, b = a[keep], b[keep]
    # cumulative sums with a leading zero: S[i] = sum over t < i
    c = lambda v: np.concatenate(([0.0], np.cumsum(v)))  # noqa: E731
    s_m, s_t, s_tt, s_tm = c(m), c(t), c(t * t), c(t * m)
    lo, hi = a, n - 1 - b  # points clipped to a (t < a) and to b (t > b)
    sz = a * lo + (s_t[b + 1] - s_t[a]) + b * hi
    szz = a * a * lo + (s_tt[b + 1] - s_tt[a]) + b * b * hi
    szm = a * s_m[a] + (s_tm[b + 1] - s_tm[a]) + b * (s_m[n] - s_m[b + 1])
    smm = float((m * m).sum())
    sm = s_m[n]
    vzz = szz - sz * sz / n
    vzm = szm - sz * sm / n
    rss = (smm - sm * sm / n) - np.where(vzz > 0, vzm * vzm / np.where(vzz > 0, vzz, 1.0), 0.0)
    best = np.flatnonzero(rss <= rss.min() + 1e-12 * max(1.0, abs(rss.min())))
    pick = best[np.argmax(b[best] - a[best])]
    return line_fit(m, start=int(a[pick]), stop=int(b[pick]) + 1)
