"""Delay embedding and the default choices of its parameters.

Shared by the data-driven exponents (:mod:`netdyn.series.datadriven`) and recurrence
analysis (:mod:`netdyn.series.recurrence`): a series ``x`` of shape ``(N,)`` or a
multivariate series ``(N, d)`` is turned into the orbit of delay vectors

    X_i = [x_i, x_{i+lag}, ..., x_{i+(m-1) lag}],   i = 0 .. N - (m-1) lag - 1

(each ``x_i`` a row of ``d`` numbers, so ``X_i`` has ``m d`` entries), and the
three parameters ``lag``, ``m = emb_dim`` and the Theiler window are chosen from
the data when the user does not give them:

* :func:`choose_lag` -- the smaller of the first minimum of the auto mutual
  information (Fraser & Swinney 1986) and the first lag where the
  autocorrelation falls below 1/e;
* :func:`false_nearest_neighbours` -- the smallest ``emb_dim`` whose fraction
  of false nearest neighbours is below 1 % (Kennel, Brown & Abarbanel 1992);
* :func:`mean_period` -- the Theiler window / ``min_tsep`` as the mean period
  ``1 / f_mean`` of the power spectrum, exactly as ``nolds.lyap_r`` does.

References
----------
A. M. Fraser, H. L. Swinney, "Independent coordinates for strange attractors
from mutual information", Phys. Rev. A 33, 1134 (1986).
M. B. Kennel, R. Brown, H. D. I. Abarbanel, "Determining embedding dimension
for phase-space reconstruction using a geometrical construction", Phys. Rev. A
45, 3403 (1992).
J. Theiler, "Spurious dimension from correlation algorithms applied to limited
time-series data", Phys. Rev. A 34, 2427 (1986).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.spatial import cKDTree

from netdyn._core.validation import check_float, check_int

__all__ = [
    "delay_embed",
    "autocorrelation",
    "auto_mutual_information",
    "choose_lag",
    "mean_period",
    "false_nearest_neighbours",
    "nearest_outside_window",
]


def _as_2d(x: np.ndarray, caller: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{caller}: expected a series of shape (N,) or (N, d), got shape {arr.shape}")
    return arr


def _finite_rescaled(x: np.ndarray, caller: str) -> np.ndarray:
    """``x`` as float64 divided by the power of two nearest above ``max |x|``, after a finiteness check.

    The heuristics below are scale-invariant (correlations, histograms over the
    range, mean frequency, ratios of distances), so this changes none of their
    answers; dividing by a power of two is exact, and it keeps squares and power
    spectra of a series that grew to ~1e304 (a diverging loss) from overflowing.
    """
    arr = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.argmin(finite.reshape(arr.shape[0], -1).all(axis=1)))
        value = arr[bad] if arr.ndim == 1 else arr[bad].tolist()
        raise ValueError(f"{caller}: expected finite values, got {value} at index {bad}")
    peak = float(np.max(np.abs(arr))) if arr.size else 0.0
    if peak == 0.0:
        return arr
    return np.ldexp(arr, -math.frexp(peak)[1])


def delay_embed(x: np.ndarray, *, emb_dim: int, lag: int = 1) -> np.ndarray:
    """Delay vectors of a scalar or multivariate series.

    Parameters
    ----------
    x : array (N,) or (N, d)
        The series (one row per time step).
    emb_dim : int
        Number of delayed copies ``m`` (>= 1).
    lag : int, default 1
        Delay between copies, in steps (>= 1).

    Returns
    -------
    array (N - (m-1) lag, m d)
        Row ``i`` is ``[x_i, x_{i+lag}, ..., x_{i+(m-1) lag}]`` flattened; for a
        scalar series this is exactly ``nolds.delay_embedding(x, m, lag)``.

    Raises
    ------
    ValueError
        For ``emb_dim`` or ``lag`` below 1, or a series too short for them.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import delay_embed
    >>> delay_embed(np.arange(5.0), emb_dim=2, lag=2)
    array([[0., 2.],
           [1., 3.],
           [2., 4.]])
    """
    arr = _as_2d(x, "delay_embed")
    emb_dim = check_int(emb_dim, "emb_dim", "delay_embed", minimum=1)
    lag = check_int(lag, "lag", "delay_embed", minimum=1)
    n_vec = arr.shape[0] - (emb_dim - 1) * lag
    if n_vec < 1:
        raise ValueError(
            f"delay_embed: a series of length {arr.shape[0]} is too short for emb_dim={emb_dim}, "
            f"lag={lag}; expected at least {(emb_dim - 1) * lag + 1} points"
        )
    return np.concatenate([arr[c * lag : c * lag + n_vec] for c in range(emb_dim)], axis=1)


def autocorrelation(x: np.ndarray, *, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation ``C(tau)`` for ``tau = 0 .. max_lag`` (``C(0) = 1``).

    Computed by FFT (Wiener-Khinchin) of the mean-removed scalar series ``x`` (N,).

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        Scalar series.
    max_lag : int
        Largest lag, in steps (>= 0).

    Returns
    -------
    numpy.ndarray, shape (max_lag + 1,)

    Raises
    ------
    ValueError
        For a non-finite or constant series.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import autocorrelation
    >>> autocorrelation(np.array([1.0, -1.0] * 50), max_lag=2).round(2)
    array([ 1.  , -0.99,  0.98])
    """
    max_lag = check_int(max_lag, "max_lag", "autocorrelation", minimum=0)
    arr = _finite_rescaled(x, "autocorrelation")
    arr = arr - arr.mean()
    n = arr.size
    spec = np.fft.rfft(arr, 2 * n)
    acov = np.fft.irfft(spec * np.conj(spec))[: max_lag + 1]
    if acov[0] <= 0:
        raise ValueError("autocorrelation: expected a non-constant series, got zero variance")
    return acov / acov[0]


def auto_mutual_information(x: np.ndarray, *, max_lag: int, bins: int | None = None) -> np.ndarray:
    """Auto mutual information ``I(tau)`` in nats for ``tau = 0 .. max_lag``.

    ``I(tau) = sum_ab p_ab(tau) ln(p_ab(tau) / (p_a p_b))`` from a 2-D histogram of
    ``(x_t, x_{t+tau})`` with ``bins`` equal-width bins over the range of ``x``
    (default ``max(4, min(64, sqrt(N / 5)))``, so a bin holds ~5 pairs on
    average per row and column).

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        Scalar series.
    max_lag : int
        Largest lag, in steps (>= 0).
    bins : int, optional
        Histogram bins per axis (>= 1).

    Returns
    -------
    numpy.ndarray, shape (max_lag + 1,)
        In nats.

    Raises
    ------
    ValueError
        For a non-finite or constant series.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import auto_mutual_information
    >>> ami = auto_mutual_information(np.sin(0.1 * np.arange(2000)), max_lag=20)
    >>> bool(ami[0] > ami[15])
    True
    """
    caller = "auto_mutual_information"
    max_lag = check_int(max_lag, "max_lag", caller, minimum=0)
    arr = _finite_rescaled(x, caller)
    n = arr.size
    if bins is None:
        bins = int(max(4, min(64, math.sqrt(n / 5.0))))
    bins = check_int(bins, "bins", caller, minimum=1)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        raise ValueError("auto_mutual_information: expected a non-constant series, got a constant one")
    codes = np.minimum(((arr - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    out = np.empty(max_lag + 1)
    for tau in range(max_lag + 1):
        joint = np.bincount(codes[: n - tau] * bins + codes[tau:], minlength=bins * bins).reshape(bins, bins)
        p_ab = joint / joint.sum()
        p_a, p_b = p_ab.sum(axis=1), p_ab.sum(axis=0)
        nz = p_ab > 0
        out[tau] = float(np.sum(p_ab[nz] * np.log(p_ab[nz] / np.outer(p_a, p_b)[nz])))
    return out


def choose_lag(x: np.ndarray, *, max_lag: int | None = None) -> int:
    """Default embedding lag of a scalar series (N,).

    ``lag = min(tau_AMI, tau_ACF)`` where ``tau_ACF`` is the first ``tau >= 1``
    with autocorrelation below ``1/e`` and ``tau_AMI`` the first local minimum of
    the auto mutual information (searched only up to ``tau_ACF``, since a later
    one is never chosen; the histogram estimate is smoothed by a 5-lag running
    mean first, so that its sampling noise does not create early minima).  For maps whose consecutive values are already
    decorrelated (logistic r=4, Hénon) this gives 1; for finely sampled flows it
    gives the usual quarter-period-like delay.  ``max_lag`` defaults to
    ``max(1, min(200, N // 10))``; when neither criterion is met below it, a
    warning is issued and ``max_lag`` is returned.

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        Scalar series.
    max_lag : int, optional
        Largest lag considered, steps (>= 1).

    Returns
    -------
    int
        The lag, in steps.

    Raises
    ------
    ValueError
        For a non-finite or constant series.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import choose_lag
    >>> choose_lag(np.sin(0.1 * np.arange(2000)))
    12
    """
    arr = _finite_rescaled(x, "choose_lag")
    if max_lag is None:
        max_lag = max(1, min(200, arr.size // 10))
    max_lag = check_int(max_lag, "max_lag", "choose_lag", minimum=1)
    acf = autocorrelation(arr, max_lag=max_lag)
    below = np.nonzero(acf[1:] < 1.0 / math.e)[0]
    tau_acf = int(below[0]) + 1 if below.size else max_lag
    ami = auto_mutual_information(arr, max_lag=min(max_lag, tau_acf + 3))
    smooth = np.convolve(ami, np.ones(5) / 5, mode="valid")  # smooth[t - 2] is centred on lag t
    minima = [t + 2 for t in range(1, smooth.size - 1) if smooth[t] <= smooth[t - 1] and smooth[t] < smooth[t + 1]]
    tau = min([tau_acf] + minima[:1])
    if not below.size and not minima:
        warnings.warn(
            f"choose_lag: neither the autocorrelation fell below 1/e nor the mutual information had a "
            f"minimum within max_lag={max_lag}; using lag={max_lag}",
            RuntimeWarning,
            stacklevel=2,
        )
    return int(tau)


def mean_period(x: np.ndarray, *, max_fraction: float = 0.25) -> int:
    """Mean period ``ceil(1 / f_mean)`` of a scalar series (N,), in steps.

    ``f_mean`` is the power-weighted mean frequency of the zero-padded FFT
    (the DC bin excluded), exactly the ``min_tsep`` default of
    ``nolds.lyap_r``; capped (with a warning) at ``max_fraction * N``.
    Used as the Theiler window: neighbours closer in time than one mean period
    are excluded because they are correlated by continuity of the orbit, not by
    recurrence.

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        Scalar series.
    max_fraction : float, default 0.25
        Cap on the period as a fraction of ``N``, in (0, 1].

    Returns
    -------
    int
        The period, in steps.

    Raises
    ------
    ValueError
        For a non-finite series or one without power outside DC.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import mean_period
    >>> mean_period(np.sin(2 * np.pi * np.arange(1000) / 50))  # 50 up to the rounding up of the zero-padded spectrum
    51
    """
    max_fraction = check_float(max_fraction, "max_fraction", "mean_period", minimum=0, maximum=1)
    arr = _finite_rescaled(x, "mean_period")
    n = arr.size
    spec = np.fft.rfft(arr, n * 2 - 1)
    freqs = np.fft.rfftfreq(n * 2 - 1)
    psd = np.abs(spec) ** 2
    total = np.sum(psd[1:])
    if total <= 0:
        raise ValueError("mean_period: expected a series with non-zero power, got none")
    period = int(np.ceil(total / np.sum(freqs[1:] * psd[1:])))
    cap = int(max_fraction * n)
    if period > cap:
        warnings.warn(f"mean_period: very low mean frequency, capping the period at {cap}", RuntimeWarning, stacklevel=2)
        period = cap
    return period


def false_nearest_neighbours(
    x: np.ndarray,
    *,
    lag: int = 1,
    max_dim: int = 10,
    rtol: float = 15.0,
    atol: float = 2.0,
    threshold: float = 0.01,
    theiler: int = 0,
) -> tuple[int, np.ndarray]:
    """Embedding dimension by the false-nearest-neighbour test of Kennel et al.

    Parameters
    ----------
    x : array (N,)
        Scalar series.
    lag : int, default 1
        Embedding lag.
    max_dim : int, default 10
        Largest dimension tried.
    rtol, atol : float, defaults 15 and 2
        A nearest neighbour ``j`` of ``i`` in dimension ``m`` is *false* when the
        next coordinate separates them: ``|x_{i+m lag} - x_{j+m lag}| > rtol R_m``
        (``R_m`` the distance in dimension ``m``) or the distance in ``m + 1``
        exceeds ``atol`` times the standard deviation of ``x`` (Kennel's two tests).
    threshold : float, default 0.01
        The first ``m`` with a false fraction below it is returned.
    theiler : int, default 0
        Neighbours with ``|i - j| <= theiler`` are not considered.

    Returns
    -------
    (emb_dim, fractions)
        ``fractions[m-1]`` is the false fraction in dimension ``m``; ``emb_dim``
        is ``max_dim`` (with a warning) when no dimension passes.

    Raises
    ------
    ValueError
        For a non-finite or constant series, or invalid settings.

    References
    ----------
    Kennel, Brown & Abarbanel, Phys. Rev. A 45, 3403 (1992).

    Examples
    --------
    Hénon's x needs two dimensions:

    >>> import numpy as np
    >>> from netdyn.series.embedding import false_nearest_neighbours
    >>> xy = np.empty((2000, 2)); xy[0] = 0.1
    >>> for i in range(1999): xy[i + 1] = 1 - 1.4 * xy[i, 0] ** 2 + xy[i, 1], 0.3 * xy[i, 0]
    >>> false_nearest_neighbours(xy[100:, 0])[0]
    2
    """
    caller = "false_nearest_neighbours"
    lag = check_int(lag, "lag", caller, minimum=1)
    max_dim = check_int(max_dim, "max_dim", caller, minimum=1)
    theiler = check_int(theiler, "theiler", caller, minimum=0)
    arr = _finite_rescaled(x, caller)
    sd = float(arr.std())
    if sd == 0:
        raise ValueError("false_nearest_neighbours: expected a non-constant series, got a constant one")
    fractions = []
    for m in range(1, max_dim + 1):
        n_vec = arr.size - m * lag
        if n_vec < 2 * theiler + 3:
            break
        orbit = delay_embed(arr[: n_vec + (m - 1) * lag], emb_dim=m, lag=lag)
        dist, nb = nearest_outside_window(orbit, theiler=theiler, p=2.0)
        extra = np.abs(arr[np.arange(n_vec) + m * lag] - arr[nb + m * lag])
        with np.errstate(divide="ignore", invalid="ignore"):
            false = (extra > rtol * dist) | (np.sqrt(dist**2 + extra**2) > atol * sd)
        fractions.append(float(np.mean(false)))
        if fractions[-1] < threshold:
            return m, np.asarray(fractions)
    warnings.warn(
        f"false_nearest_neighbours: no dimension up to {len(fractions)} has fewer than "
        f"{threshold:.0%} false neighbours; using {len(fractions)}",
        RuntimeWarning,
        stacklevel=2,
    )
    return max(1, len(fractions)), np.asarray(fractions)


def nearest_outside_window(orbit: np.ndarray, *, theiler: int, p: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour ``j`` of each row ``i`` with ``|i - j| > theiler``.

    A k-d tree is queried for ``k`` neighbours, doubling ``k`` for the rows whose
    answer is not settled yet.  A row is settled when it has a valid candidate
    and the farthest returned candidate is strictly farther than the best valid
    one, so exact ties are resolved like ``numpy.argmin`` (lowest index).
    ``k = 2 theiler + 2`` always contains a valid candidate, so memory stays
    ``O(rows * k)`` and no distance matrix is formed.

    Parameters
    ----------
    orbit : numpy.ndarray, shape (rows, D)
        Points, one per step.
    theiler : int
        Neighbours need ``|i - j| > theiler`` (steps).
    p : float, default 2.0
        Minkowski norm of the distances.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(distance, index)``, both shaped ``(rows,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.embedding import nearest_outside_window
    >>> nearest_outside_window(np.array([[0.0], [1.0], [0.1], [5.0]]), theiler=1)[1]
    array([2, 3, 0, 1])
    """
    n = orbit.shape[0]
    tree = cKDTree(orbit)
    best_d = np.full(n, np.inf)
    best_j = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    k = min(n, 8)
    while todo.size:
        d, j = tree.query(orbit[todo], k=k, p=p)
        d, j = d.reshape(todo.size, k), j.reshape(todo.size, k)
        valid = np.abs(j - todo[:, None]) > theiler
        dv = np.where(valid, d, np.inf)
        dmin = dv.min(axis=1)
        jv = np.where(valid & (dv == dmin[:, None]), j, n)
        settled = (k == n) | (np.isfinite(dmin) & (d[:, -1] > dmin))
        best_d[todo[settled]] = dmin[settled]
        best_j[todo[settled]] = jv[settled].min(axis=1)
        todo = todo[~settled]
        k = min(n, 2 * k)
    return best_d, best_j
