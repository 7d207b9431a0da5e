"""The linear region of a log-distance curve: the longest stretch of constant slope.

One rule, used wherever an exponent is read off ``<ln d(k)>`` against ``k``:
:func:`netdyn.datadriven.rosenstein` (divergence of nearest neighbours) and
:func:`netdyn.twin.perturbation_growth` (growth of twin perturbations).  Both
curves have the same anatomy -- a transient (alignment with the unstable
direction; for sampled flows a faster-than-exponential burst), the exponential
regime (a straight line of slope ``lambda``) and saturation at the attractor
size -- and the exponent is the slope of the middle part only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearRegion", "linear_region", "local_slopes"]


@dataclass(frozen=True)
class LinearRegion:
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


def line_fit(y: np.ndarray, start: int, stop: int) -> LinearRegion:
    """Least-squares line through ``y[start:stop]`` against its index, with its R²."""
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


def local_slopes(y: np.ndarray, window: int) -> np.ndarray:
    """Least-squares slopes of ``y`` (n,) over sliding windows of ``window`` (odd) points.

    Returns an array ``(n - window + 1,)``; entry ``c`` is the slope on
    ``y[c : c + window]`` (centred on index ``c + window // 2``).
    """
    h = window // 2
    offsets = np.arange(-h, h + 1, dtype=np.float64)
    # correlation with the centred index: sum_j offsets[j] * y[c + j]
    return np.correlate(np.asarray(y, dtype=np.float64), offsets, mode="valid") / float(offsets @ offsets)


def linear_region(
    y: np.ndarray, rel_tol: float = 0.15, window: int | None = None, min_points: int = 3
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

    Maths (the rule)
    ----------------
    Local slopes ``s_c`` are least-squares slopes over ``window`` consecutive
    points.  Among all runs of consecutive windows whose slopes agree within
    ``rel_tol`` the longest is taken (ties: the earliest); the region is the union
    of its windows, i.e. every point that entered one of its slope fits.  A kink
    (end of a transient, onset of saturation) makes the local slope jump and ends
    a run, so the region is the stretch that one straight line explains.  A
    straight curve gives the whole range; a curve with no run longer than one
    window gives one window.  Whether that region is long and steep enough to
    trust is the caller's judgement (see :func:`netdyn.datadriven.rosenstein`).
    """
    m = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(m)
    n = int(np.argmin(finite)) if not finite.all() else m.size
    if n < max(min_points, 3):
        return line_fit(m, 0, n)
    w = max(3, n // 10) if window is None else int(window)
    w = min(w + (1 - w % 2), n if n % 2 else n - 1)
    s = local_slopes(m[:n], w)
    best_len, best_lo = 1, 0
    for lo in range(s.size - best_len):
        run_max = np.maximum.accumulate(s[lo:])
        run_min = np.minimum.accumulate(s[lo:])
        ok = run_max - run_min <= rel_tol * (np.abs(run_max) + np.abs(run_min))
        length = int(np.argmin(ok)) if not ok.all() else ok.size
        if length > best_len:
            best_len, best_lo = length, lo
    return line_fit(m, best_lo, best_lo + best_len - 1 + w)
