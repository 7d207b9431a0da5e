"""Largest Lyapunov exponents from recorded series alone (no map needed).

Three estimators share one front door -- a series, a ``DataArray`` or a
trajectory ``Dataset`` plus the name of an *observable*:

* :func:`rosenstein` -- our own Rosenstein et al. (1993) estimator: the same
  numbers as ``nolds.lyap_r(..., fit="poly")`` but with a k-d-tree neighbour
  search (no ``N x N`` distance matrix) and multivariate input;
* :func:`nolds_lyap_r` -- a thin wrapper over ``nolds.lyap_r`` (reference);
* :func:`nolds_lyap_e` -- a thin wrapper over ``nolds.lyap_e`` (Eckmann et al.
  1986), which estimates ``matrix_dim`` exponents.

Observables (``observable=``) are read by
:func:`netdyn.series.observables.observable_series` (names listed there).

The divergence curve
--------------------
Every Rosenstein estimate returns a :class:`DivergenceCurve`: the mean log
distance ``<ln d_i(k)>`` of initially nearest neighbours after ``k`` steps and
the range of ``k`` on which the straight line was fitted, so that the linear
region can be inspected (``DivergenceCurve.to_dataset()`` or the plot in
:mod:`netdyn.plot.recurrence`).

With ``fit_range="auto"`` (the default) the line is fitted on the longest
stretch of constant slope (:func:`netdyn.series.linear_region.linear_region`) and the
estimate is *judged*: it is NaN, with ``reliable=False``, a ``reason`` and a
``RuntimeWarning``, when that stretch has fewer than ``MIN_FIT_POINTS`` points,
falls, rises by less than ``MIN_RISE`` in ``ln d`` (too little to be told from
the initial transient -- for sampled flows neighbours first separate about twice
as fast as ``lambda_1`` for ~0.5 time units), or when its slope differs between
``N_BLOCKS`` contiguous blocks of reference points by a relative standard error
above ``MAX_REL_STDERR``.  Validated (tests/test_rosenstein_validation.py):
logistic -1 %, Hénon x -4 %, Lorenz x -4 .. -6 % where reliable; short windows,
short series, noise, periodic orbits refused; Rössler x -9.5 % with a 4-d
embedding (lag 8, Theiler 200), -10.5 % with m = 3 — Rosenstein's low bias on
that flat attractor, which no rule on the curve can see (it is straight).

References
----------
M. T. Rosenstein, J. J. Collins, C. J. De Luca, "A practical method for
calculating largest Lyapunov exponents from small data sets", Physica D 65,
117 (1993).
J.-P. Eckmann, S. O. Kamphorst, D. Ruelle, S. Ciliberto, "Liapunov exponents
from time series", Phys. Rev. A 34, 4971 (1986).
C. Schölzel, nolds (https://github.com/CSchoel/nolds), version 0.6.2.
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from netdyn._core.results import DatasetResult
from netdyn._core.validation import check_float, check_int
from netdyn.series.embedding import choose_lag, delay_embed, false_nearest_neighbours, mean_period, nearest_outside_window
from netdyn.series.linear_region import LinearRegion, linear_region
from netdyn.series.observables import array_observable, checked_series, observable_label, observable_series, scalar_series
from netdyn.series.recurrence import DEFAULT_RECURRENCE_RATE, rqa

__all__ = [
    "DivergenceCurve",
    "EckmannSpectrum",
    "embedding_parameters",
    "auto_fit_range",
    "rosenstein",
    "nolds_lyap_r",
    "nolds_lyap_e",
    "analyze_dataset",
]

@dataclass(frozen=True, eq=False, repr=False)
class DivergenceCurve(DatasetResult):
    """A Rosenstein estimate: exponent, divergence curve and fit range.

    Attributes
    ----------
    exponent : float
        Slope of the fitted line divided by ``tau`` (per unit of time; per step
        when ``tau = 1``).
    k : numpy.ndarray, shape (K,)
        Steps after which distances were measured (only those with a finite mean).
    log_divergence : numpy.ndarray, shape (K,)
        ``<ln d_i(k)>`` averaged over reference points ``i`` (zero distances skipped).
    fit_range : (int, int)
        The line was fitted on ``fit_range[0] <= k < fit_range[1]``.
    intercept : float
        Intercept of the fitted line (at ``k = 0``).
    emb_dim, lag, theiler, trajectory_len : int
        Embedding and neighbour-search parameters actually used (``theiler``:
        neighbours need ``|i - j| > theiler``, in steps).
    tau : float
        Time between samples.
    n_points : int
        Length of the (finite part of the) series analysed.
    method : str
        ``"rosenstein"`` (ours) or ``"nolds.lyap_r"``.
    observable : str
        Which observable was analysed.
    reliable : bool
        False when ``fit_range="auto"`` found no trustworthy linear region; the
        exponent is then NaN and ``reason`` says why.  Given ranges are not judged.
    reason : str
        Why the estimate is unreliable ("" when reliable).
    fit_r2 : float
        R² of the fitted line on the fit range.
    fit_points : int
        Number of curve points in the fit range.
    exponent_stderr : float
        Standard error of the exponent from its spread over blocks of reference
        points (:func:`rosenstein` only; NaN otherwise).

    Notes
    -----
    ``to_dataset()`` holds every field (the curve over ``k``) plus, for
    plotting, ``fitted`` (the line) and ``in_fit`` (the fit range) over ``k``;
    ``DivergenceCurve.from_dataset`` inverts it, also after ``to_netcdf``.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(1500); x[0] = 0.3
    >>> for i in range(1499): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> curve = nd.rosenstein(x, emb_dim=1, lag=1, theiler=10, trajectory_len=15)
    >>> ds = curve.to_dataset()
    >>> round(float(ds["exponent"]), 1), sorted(ds["in_fit"].dims)
    (0.7, ['k'])
    """

    exponent: float
    k: np.ndarray = field(metadata={"dims": ("k",)})
    log_divergence: np.ndarray = field(metadata={"dims": ("k",)})
    fit_range: tuple[int, int]
    intercept: float
    emb_dim: int
    lag: int
    theiler: int
    trajectory_len: int
    tau: float
    n_points: int
    method: str
    observable: str
    reliable: bool = True
    reason: str = ""
    fit_r2: float = float("nan")
    fit_points: int = 0
    exponent_stderr: float = float("nan")

    def _derived_variables(self) -> dict[str, Any]:
        """The fitted line and the fit-range mask over ``k`` (for plots)."""
        fitted = self.intercept + self.exponent * self.tau * self.k
        in_fit = (self.k >= self.fit_range[0]) & (self.k < self.fit_range[1])
        return {"fitted": ("k", fitted), "in_fit": ("k", in_fit)}


@dataclass(frozen=True, eq=False, repr=False)
class EckmannSpectrum(DatasetResult):
    """An Eckmann et al. estimate of ``matrix_dim`` exponents (descending).

    Attributes
    ----------
    exponents : numpy.ndarray, shape (matrix_dim,)
        The exponents, per unit of time (``tau``).
    per_step : numpy.ndarray, shape (M, matrix_dim)
        The per-reference-point estimates (nolds' debug data) whose mean gives ``exponents``.
    emb_dim, matrix_dim, min_nb, theiler : int
        Settings used (``theiler``: Theiler window of the neighbours, steps).
    tau : float
        Time between samples.
    n_points : int
        Length of the series analysed.
    observable : str
        Which observable was analysed.
    stderr : numpy.ndarray, shape (matrix_dim,), optional
        ``std / sqrt(M)`` of ``per_step`` (treating the M steps as independent, so a lower bound).
    reliable : bool
        False (``reason`` says why, the exponents are kept) when an exponent is
        not finite or when the exponents sum to more than ``3`` standard errors
        above 0: a bounded (dissipative or conservative) attractor has a sum
        <= 0, so a positive sum means spurious exponents -- e.g. the multiples
        ``2 ln 2, 3 ln 2`` that noise-free data of a 1-D map produce (Sauer,
        Tempkin & Yorke 1998).
    reason : str
        Why the exponents are unreliable ("" when reliable).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(400); x[0] = 0.3
    >>> for i in range(399): x[i + 1] = 3.9 * x[i] * (1 - x[i])
    >>> x += 1e-4 * np.random.default_rng(0).standard_normal(400)
    >>> spec = nd.nolds_lyap_e(x, emb_dim=3, matrix_dim=3)
    >>> spec.to_dataset()["exponents"].dims
    ('exponent',)
    """

    exponents: np.ndarray = field(metadata={"dims": ("exponent",)})
    per_step: np.ndarray = field(metadata={"dims": ("reference", "exponent")})
    emb_dim: int
    matrix_dim: int
    min_nb: int
    theiler: int
    tau: float
    n_points: int
    observable: str
    stderr: np.ndarray | None = field(default=None, metadata={"dims": ("exponent",)})
    reliable: bool = True
    reason: str = ""


def _eckmann_judgement(exponents: np.ndarray, per_step: np.ndarray) -> tuple[np.ndarray, str]:
    """Standard errors of the Eckmann exponents and why they cannot be trusted ("" if they can)."""
    m = max(per_step.shape[0], 1)
    stderr = per_step.std(axis=0) / np.sqrt(m) if per_step.ndim == 2 else np.full(exponents.size, np.nan)
    if not np.all(np.isfinite(exponents)):
        return stderr, "nolds returned non-finite exponents (degenerate neighbourhoods)"
    sum_se = float(per_step.sum(axis=1).std() / np.sqrt(m)) if per_step.ndim == 2 else 0.0
    total = float(exponents.sum())
    if total > 3 * sum_se:
        return stderr, (f"exponents sum to {total:+.3g} > 0 (3 standard errors: {3 * sum_se:.2g}), impossible on a "
                        "bounded attractor: spurious exponents of a curved reconstruction; add a little noise "
                        "or lower matrix_dim")
    return stderr, ""


#: series larger than this in magnitude are rescaled before distances are squared (2^500 ~ 3e150)
_HUGE = 2.0**500


def _rescaled(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``(x / 2^p, p ln 2)``: a series that grew past ``_HUGE`` (a loss at 1e304) divided by a power of two.

    Distances are squared, so such a series would overflow; dividing by ``2^p``
    is exact and shifts every ``ln d`` by ``-p ln 2`` -- the slope, i.e. the
    exponent, is unchanged, and callers add ``p ln 2`` back to the curve so it
    stays in the series' units.  Series below ``_HUGE`` are returned as they are
    (so results stay bit-for-bit equal to nolds).
    """
    peak = float(np.max(np.abs(x)))
    if peak <= _HUGE:
        return x, 0.0
    p = math.frexp(peak)[1]
    return np.ldexp(x, -p), p * math.log(2.0)


def embedding_parameters(
    x: np.ndarray, *, emb_dim: int | None = None, lag: int | None = None, theiler: int | None = None
) -> tuple[int, int, int]:
    """Fill in ``(emb_dim, lag, theiler)`` for a series (N,) or state (N, d).

    Defaults (each only when ``None``), computed on the series itself or, for a
    state, on its first principal component:

    * ``lag`` -- :func:`netdyn.series.embedding.choose_lag` (min of the first minimum of
      the auto mutual information and the 1/e decorrelation time);
    * ``theiler`` (Theiler window, steps) -- :func:`netdyn.series.embedding.mean_period`,
      the mean period of the power spectrum, as ``nolds.lyap_r``'s ``min_tsep``;
    * ``emb_dim`` -- for a scalar series the false-nearest-neighbour dimension
      (:func:`netdyn.series.embedding.false_nearest_neighbours`, Kennel et al. 1992);
      for a state, 1 (the state already is a phase-space point).

    Parameters
    ----------
    x : numpy.ndarray, shape (N,) or (N, d)
        The series or state, one row per step.
    emb_dim, lag, theiler : int, optional
        Values to keep as they are (checked: ``emb_dim, lag >= 1``, ``theiler >= 0``).

    Returns
    -------
    (int, int, int)
        ``(emb_dim, lag, theiler)``.

    Raises
    ------
    ValueError
        For fewer than 10 points, a constant series or an invalid given value.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.datadriven import embedding_parameters
    >>> x = np.sin(0.3 * np.arange(300))
    >>> embedding_parameters(x, emb_dim=2)
    (2, 4, 21)
    """
    caller = "embedding_parameters"
    x = checked_series(np.asarray(x, dtype=np.float64), caller=caller)
    scalar = x if x.ndim == 1 else array_observable(x, observable="projection", seed=0, caller=caller)
    lag = choose_lag(scalar) if lag is None else check_int(lag, "lag", caller, minimum=1)
    theiler = mean_period(scalar) if theiler is None else check_int(theiler, "theiler", caller, minimum=0)
    if emb_dim is None:
        emb_dim = 1 if x.ndim == 2 else _fnn_dimension(scalar, lag, theiler)
    return check_int(emb_dim, "emb_dim", caller, minimum=1), int(lag), int(theiler)


def _outside_netdyn() -> int:
    """``stacklevel`` (for a ``warnings.warn`` in the caller) of the first frame outside the netdyn package."""
    package = str(Path(__file__).parent)
    frame, level = inspect.currentframe(), 0
    while frame is not None and (level == 0 or frame.f_code.co_filename.startswith(package)):
        frame, level = frame.f_back, level + 1
    return level


def _fnn_dimension(x: np.ndarray, lag: int, theiler: int) -> int:
    """:func:`false_nearest_neighbours` dimension, its "no dimension passes" warning said in the user's terms."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb_dim, fractions = false_nearest_neighbours(x, lag=lag, theiler=theiler)
    for w in caught:
        if "false_nearest_neighbours: no dimension" in str(w.message):
            warnings.warn(
                f"embedding_parameters: no embedding dimension up to {emb_dim} leaves fewer than 1 % false "
                f"nearest neighbours (lowest {min(fractions, default=float('nan')):.1%}): noise, drift or too "
                f"short a series; using emb_dim={emb_dim} (pass emb_dim= to choose)",
                RuntimeWarning,
                stacklevel=_outside_netdyn(),
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return emb_dim


#: a linear region must hold at least this many points of the divergence curve
MIN_FIT_POINTS = 5
#: ... and rise by at least this much (natural-log units): less cannot be told from the initial transient
MIN_RISE = 2.0
#: ... and its slope must agree over blocks of reference points to this relative standard error
MAX_REL_STDERR = 0.05
#: contiguous blocks of reference points whose separate curves give the standard error
N_BLOCKS = 4


def auto_fit_range(ks: np.ndarray, curve: np.ndarray) -> tuple[int, int]:
    """The linear region of a divergence curve: its longest stretch of constant slope.

    Parameters
    ----------
    ks : array (K,)
        Steps ``k`` of the curve (increasing).
    curve : array (K,)
        ``<ln d(k)>``.

    Returns
    -------
    (lo, hi)
        The range ``lo <= k < hi`` of :func:`netdyn.series.linear_region.linear_region`
        (local slopes within 15 %; see there); all of ``ks`` for fewer than 3 points.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.datadriven import auto_fit_range
    >>> ks = np.arange(14)
    >>> auto_fit_range(ks, np.minimum(-8 + 0.7 * ks, -1.0))
    (0, 11)
    """
    if ks.size == 0:
        return 0, 0
    region = linear_region(curve)
    return int(ks[region.start]), int(ks[region.stop - 1]) + 1


def _unreliable_reason(region: LinearRegion, n_curve: int, rel_stderr: float) -> str:
    """Why a Rosenstein fit on ``region`` cannot be trusted ("" if it can)."""
    if n_curve < MIN_FIT_POINTS:
        return f"too short: the divergence curve has only {n_curve} finite points (need {MIN_FIT_POINTS})"
    if region.n_points < MIN_FIT_POINTS:
        return (f"no linear region: only {region.n_points} points of constant slope "
                f"(need {MIN_FIT_POINTS}); the curve saturates at once or is noise")
    if not region.slope > 0:
        return f"curve falls: no divergence (slope {region.slope:+.3g} per step over the longest linear region)"
    if region.rise < MIN_RISE:
        return (f"no linear region: the straightest stretch rises only {region.rise:.2f} (< {MIN_RISE}) in ln d "
                "and cannot be told from the initial transient; use a longer trajectory_len or series")
    if rel_stderr > MAX_REL_STDERR:
        return (f"slope not stable: it differs between {N_BLOCKS} blocks of reference points (relative standard "
                f"error {rel_stderr:.0%} > {MAX_REL_STDERR:.0%}); a longer or stationary series is needed")
    return ""


def _fit(
    ks: np.ndarray, curve: np.ndarray, fit_range: tuple[int, int] | str | None, caller: str,
    block_curves: np.ndarray | None = None,
) -> dict[str, Any]:
    """Line through ``curve`` on ``fit_range`` ("auto", None = all ``ks``, or (lo, hi)), judged when "auto".

    Returns the ``DivergenceCurve`` fields ``exponent`` (slope per step here),
    ``intercept``, ``fit_range``, ``reliable``, ``reason``, ``fit_r2``,
    ``fit_points``, ``exponent_stderr``.  ``block_curves`` (B, K) are the curves
    of blocks of reference points, for the standard error.
    """
    auto = isinstance(fit_range, str)
    if auto and fit_range != "auto":
        raise ValueError(f"{caller}: expected fit_range 'auto', None or (lo, hi), got {fit_range!r}")
    if auto:
        region = linear_region(curve)
        sel = np.zeros(ks.size, dtype=bool)
        sel[region.start : region.stop] = True
        lo, hi = (int(ks[region.start]), int(ks[region.stop - 1]) + 1) if region.n_points else (0, 0)
    elif fit_range is None:
        lo, hi = (int(ks[0]), int(ks[-1]) + 1) if ks.size else (0, 0)
        sel = np.ones(ks.size, dtype=bool)
    else:
        lo, hi = int(fit_range[0]), int(fit_range[1])
        sel = (ks >= lo) & (ks < hi)
    n_sel = int(sel.sum())
    out: dict[str, Any] = dict(fit_range=(lo, hi), fit_points=n_sel, reliable=True, reason="",
                               exponent=float("nan"), intercept=float("nan"), fit_r2=float("nan"),
                               exponent_stderr=float("nan"))
    if n_sel < 2:
        out.update(reliable=False, reason=f"only {n_sel} finite points of the divergence curve in k in [{lo}, {hi})")
    else:
        slope, intercept = np.polyfit(ks[sel], curve[sel], 1)
        resid = curve[sel] - (intercept + slope * ks[sel])
        ss_tot = float(((curve[sel] - curve[sel].mean()) ** 2).sum())
        out.update(exponent=float(slope), intercept=float(intercept),
                   fit_r2=1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else float("nan"))
        if block_curves is not None and n_sel >= 2:
            slopes = [np.polyfit(ks[sel], b[sel], 1)[0] for b in block_curves if np.isfinite(b[sel]).all()]
            if len(slopes) >= 2:
                out["exponent_stderr"] = float(np.std(slopes, ddof=1) / np.sqrt(len(slopes)))
        if auto:
            rel = out["exponent_stderr"] / abs(slope) if slope != 0 and np.isfinite(out["exponent_stderr"]) else 0.0
            reason = _unreliable_reason(region, ks.size, rel)
            out.update(reliable=not reason, reason=reason)
    if not out["reliable"]:
        out["exponent"] = float("nan")
        warnings.warn(f"{caller}: no reliable exponent: {out['reason']}; exponent is NaN", RuntimeWarning,
                      stacklevel=_outside_netdyn())
    return out


def rosenstein(
    x: Any,
    *,
    observable: str | None = None,
    emb_dim: int | None = None,
    lag: int | None = None,
    theiler: int | None = None,
    trajectory_len: int = 20,
    fit_range: tuple[int, int] | str | None = "auto",
    tau: float = 1.0,
    seed: int = 0,
) -> DivergenceCurve:
    """Largest Lyapunov exponent by Rosenstein's method, with a k-d-tree neighbour search.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        See :func:`netdyn.series.observables.observable_series`; multivariate input is embedded row-wise.
    observable : str, optional
        Which series to analyse (:mod:`netdyn.series.observables`); ``"state"`` gives the full state.
    emb_dim, lag, theiler : int, optional
        Embedding dimension, delay (steps) and Theiler window (steps); defaults from
        :func:`embedding_parameters`.  Neighbours need ``|i - j| > theiler``
        (``nolds.lyap_r``'s ``min_tsep``).
    trajectory_len : int, default 20
        Number of steps ``k = 0 .. trajectory_len-1`` the neighbour pairs are followed.
    fit_range : (int, int), "auto" or None, default "auto"
        Fit the line on ``fit_range[0] <= k < fit_range[1]``.  ``"auto"``: the
        longest stretch of constant slope (:func:`auto_fit_range`), judged as in
        the module docstring (NaN + ``reliable=False`` + ``reason`` + warning when
        there is none to trust); ``None``: all finite points, as nolds does (which
        biases the slope low once the curve saturates).  Given ranges and ``None``
        are fitted as asked, not judged, bit-for-bit as ``nolds.lyap_r(fit="poly")``.
    tau : float, default 1.0
        Time between samples; the exponent is ``slope / tau``.
    seed : int, default 0
        For the projection observables.

    Returns
    -------
    DivergenceCurve
        With ``fit_r2``, ``fit_points``, ``exponent_stderr`` (spread of the slope
        over 4 blocks of reference points, per unit of time), ``reliable``, ``reason``.
        A series larger than ``2^500`` in magnitude (a diverging loss) is divided by
        a power of two first (exact; the exponent is unchanged and the curve is
        shifted back to the series' units).

    Raises
    ------
    ValueError
        For fewer than 10 points, a constant series, a series too short for the
        settings, or an invalid ``fit_range``.

    Notes
    -----
    Delay vectors ``X_i`` (:func:`netdyn.series.embedding.delay_embed`) for
    ``i < M_traj = M - trajectory_len + 1``; for each the Euclidean nearest
    neighbour ``j(i)`` among the same ``M_traj`` vectors with ``|i - j| > theiler``
    (ties to the lowest index); ``y(k) = < ln ||X_{i+k} - X_{j(i)+k}|| >_i``
    with zero distances left out of the mean (``y(k)`` dropped if all are zero);
    the exponent is the least-squares slope of ``y(k)`` against ``k``.  This is
    ``nolds.lyap_r(..., fit="poly")`` step for step; only the neighbour search
    differs -- a cKDTree query of ``k`` candidates, doubled until the Theiler window
    is escaped -- so memory is ``O(N)`` instead of ``O(N^2)``.

    References
    ----------
    Rosenstein, Collins, De Luca, Physica D 65, 117 (1993).

    Examples
    --------
    Logistic map at r = 4, whose exponent is ln 2 = 0.693:

    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(1500); x[0] = 0.3
    >>> for i in range(1499): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> res = nd.rosenstein(x, emb_dim=1, lag=1, theiler=10, trajectory_len=15)
    >>> round(res.exponent, 2), res.reliable
    (0.69, True)
    """
    caller = "rosenstein"
    trajectory_len = check_int(trajectory_len, "trajectory_len", caller, minimum=1)
    tau = check_float(tau, "tau", caller, minimum=0, exclusive=True)
    series, log_scale = _rescaled(checked_series(observable_series(x, observable=observable, seed=seed), caller=caller))
    emb_dim, lag, theiler = embedding_parameters(series, emb_dim=emb_dim, lag=lag, theiler=theiler)
    orbit = delay_embed(series, emb_dim=emb_dim, lag=lag)
    ntraj = orbit.shape[0] - trajectory_len + 1
    if ntraj < 2 * theiler + 2:
        need = (emb_dim - 1) * lag + trajectory_len - 1 + 2 * theiler + 2
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, lag={lag}, theiler={theiler}, "
            f"trajectory_len={trajectory_len}: expected at least {need} points, got {series.shape[0]}"
        )
    _, nb = nearest_outside_window(orbit[:ntraj], theiler=theiler)
    ref = np.arange(ntraj)
    curve = np.empty(trajectory_len)
    # contiguous blocks of reference points: their separate curves give the exponent's standard error
    block = np.minimum(ref * N_BLOCKS // ntraj, N_BLOCKS - 1)
    blocks = np.full((N_BLOCKS, trajectory_len), -np.inf)
    for k in range(trajectory_len):
        d = np.sqrt(np.sum((orbit[ref + k] - orbit[nb + k]) ** 2, axis=1))
        nonzero = d != 0
        log_d = np.log(d[nonzero])
        curve[k] = np.mean(log_d) if log_d.size else -np.inf
        counts = np.bincount(block[nonzero], minlength=N_BLOCKS)
        sums = np.bincount(block[nonzero], weights=log_d, minlength=N_BLOCKS)
        blocks[counts > 0, k] = sums[counts > 0] / counts[counts > 0]
    if log_scale:
        curve += log_scale
        blocks += log_scale
    ks = np.arange(trajectory_len)
    finite = np.isfinite(curve)
    settings = dict(emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len, tau=tau)
    return _fitted_curve(ks[finite], curve[finite], fit_range, caller, settings, int(series.shape[0]), "rosenstein",
                         observable_label(x, observable=observable), blocks[:, finite])


def _fitted_curve(
    ks: np.ndarray, curve: np.ndarray, fit_range: Any, caller: str, settings: dict[str, Any], n_points: int,
    method: str, observable: str, block_curves: np.ndarray | None = None,
) -> DivergenceCurve:
    """Fit the divergence curve's line and pack the result (shared by both Rosenstein front doors)."""
    fit = _fit(ks, curve, fit_range, caller, block_curves)
    tau = settings["tau"]
    fit["exponent"] /= tau
    fit["exponent_stderr"] /= tau
    return DivergenceCurve(k=ks, log_divergence=curve, n_points=n_points, method=method, observable=observable,
                           **fit, **settings)


def nolds_lyap_r(
    x: Any,
    *,
    observable: str | None = None,
    emb_dim: int | None = None,
    lag: int | None = None,
    theiler: int | None = None,
    trajectory_len: int = 20,
    fit_range: tuple[int, int] | str | None = "auto",
    tau: float = 1.0,
    seed: int = 0,
) -> DivergenceCurve:
    """Rosenstein exponent by ``nolds.lyap_r`` (the reference implementation).

    Same parameters, defaults and result as :func:`rosenstein`, for a scalar
    observable only.  ``nolds.lyap_r`` is called with ``fit="poly"`` and
    ``debug_data=True`` (its default RANSAC fit is unseeded, so not
    reproducible); the line is then refitted on ``fit_range`` and, for ``"auto"``,
    judged like :func:`rosenstein`'s (no ``exponent_stderr``: nolds returns only
    the mean curve).  nolds forms the
    full ``M x M`` distance matrix: ``8 M^2`` bytes, ~0.8 GB at ``M = 10^4``.
    The defaults for ``lag`` / ``theiler`` / ``emb_dim`` are netdyn's
    (:func:`embedding_parameters`), passed explicitly, not nolds' own
    (``theiler`` is passed as nolds' ``min_tsep``).

    Parameters
    ----------
    x, observable, emb_dim, lag, theiler, trajectory_len, fit_range, tau, seed
        As :func:`rosenstein`.

    Returns
    -------
    DivergenceCurve
        ``method="nolds.lyap_r"``; ``exponent_stderr`` is NaN.

    Raises
    ------
    ValueError
        As :func:`rosenstein`, and for a multivariate observable.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(600); x[0] = 0.3
    >>> for i in range(599): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> ref = nd.nolds_lyap_r(x, emb_dim=1, lag=1, theiler=10, trajectory_len=15, fit_range=None)
    >>> ours = nd.rosenstein(x, emb_dim=1, lag=1, theiler=10, trajectory_len=15, fit_range=None)
    >>> ref.exponent == ours.exponent
    True
    """
    import nolds

    caller = "nolds_lyap_r"
    trajectory_len = check_int(trajectory_len, "trajectory_len", caller, minimum=1)
    tau = check_float(tau, "tau", caller, minimum=0, exclusive=True)
    series = scalar_series(x, observable=observable, seed=seed, caller=caller)
    emb_dim, lag, theiler = embedding_parameters(series, emb_dim=emb_dim, lag=lag, theiler=theiler)
    need = nolds.lyap_r_len(emb_dim=emb_dim, lag=lag, trajectory_len=trajectory_len, min_tsep=theiler)
    if series.size < need:
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, lag={lag}, theiler={theiler}, "
            f"trajectory_len={trajectory_len}: expected at least {need} points, got {series.size}"
        )
    scaled, log_scale = _rescaled(series)
    _, (ks, curve, _) = nolds.lyap_r(
        scaled, emb_dim=emb_dim, lag=lag, min_tsep=theiler, trajectory_len=trajectory_len, fit="poly", debug_data=True
    )
    curve = np.asarray(curve) + log_scale if log_scale else curve
    settings = dict(emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len, tau=tau)
    return _fitted_curve(np.asarray(ks), np.asarray(curve), fit_range, caller, settings, int(series.size), "nolds.lyap_r",
                         observable_label(x, observable=observable))


def nolds_lyap_e(
    x: Any,
    *,
    observable: str | None = None,
    emb_dim: int = 10,
    matrix_dim: int = 4,
    min_nb: int | None = None,
    theiler: int = 0,
    tau: float = 1.0,
    seed: int = 0,
) -> EckmannSpectrum:
    """Lyapunov exponents by ``nolds.lyap_e`` (Eckmann et al. 1986).

    Parameters
    ----------
    x, observable, seed
        As :func:`rosenstein` (scalar observables only).
    emb_dim : int, default 10
        Embedding dimension (lag 1); ``emb_dim - 1`` must be divisible by ``matrix_dim - 1``.
    matrix_dim : int, default 4
        Size of the fitted local Jacobians = number of exponents returned.  The
        Jacobian acts over ``m = (emb_dim - 1) / (matrix_dim - 1)`` steps and
        nolds divides by ``m``.  For a map with ``D`` exponents take
        ``matrix_dim`` a little above ``D``; spurious extra exponents are negative.
    min_nb : int, optional
        Neighbours per point for the least-squares fit (nolds' default
        ``min(2 matrix_dim, matrix_dim + 4)``).
    theiler : int, default 0
        Theiler window for the neighbours, steps (nolds' ``min_tsep``).
    tau : float, default 1.0
        Time between samples.

    Returns
    -------
    EckmannSpectrum
        Exponents in nolds' order (descending for well-separated spectra).

    Raises
    ------
    ValueError
        For a multivariate observable, incompatible ``emb_dim`` / ``matrix_dim``
        or a series too short for the settings.

    Notes
    -----
    For each delay vector a local linear map ``T_i`` is fitted by least squares
    to the images of its ``min_nb`` nearest (Chebyshev) neighbours; the
    exponents are ``<ln |R_ii|> / (m tau)`` of the QR decompositions of the
    products ``T_i Q_{i-1}``.  Cost ``O(N^2)`` time, ``O(N)`` memory per row.

    Caveat: on noise-free data from a low-dimensional map the reconstructed
    attractor is curved, and the fit adds spurious exponents at multiples of the
    true ones (logistic r=4 with ``emb_dim = matrix_dim = 2`` gives
    ``[2 ln 2, ln 2]``; Sauer, Tempkin & Yorke, PRL 81, 4341 (1998)); a little
    measurement noise (1e-4 of the range) removes them (``[0.69, -0.63]``).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(500); x[0] = 0.3
    >>> for i in range(499): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> x += 1e-4 * np.random.default_rng(0).standard_normal(500)
    >>> spec = nd.nolds_lyap_e(x, emb_dim=2, matrix_dim=2)
    >>> spec.exponents.round(1)
    array([ 0.7, -0.5])
    """
    import nolds

    caller = "nolds_lyap_e"
    emb_dim = check_int(emb_dim, "emb_dim", caller, minimum=1)
    matrix_dim = check_int(matrix_dim, "matrix_dim", caller, minimum=1)
    theiler = check_int(theiler, "theiler", caller, minimum=0)
    tau = check_float(tau, "tau", caller, minimum=0, exclusive=True)
    series = scalar_series(x, observable=observable, seed=seed, caller=caller)
    if matrix_dim < 2 or (emb_dim - 1) % (matrix_dim - 1) != 0:
        raise ValueError(
            f"{caller}: expected matrix_dim >= 2 with emb_dim - 1 divisible by matrix_dim - 1, "
            f"got emb_dim={emb_dim}, matrix_dim={matrix_dim}"
        )
    nb = min(2 * matrix_dim, matrix_dim + 4) if min_nb is None else check_int(min_nb, "min_nb", caller, minimum=1)
    need = nolds.lyap_e_len(emb_dim=emb_dim, matrix_dim=matrix_dim, min_nb=nb, min_tsep=theiler)
    if series.size < need:
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, matrix_dim={matrix_dim}, min_nb={nb}, "
            f"theiler={theiler}: expected at least {need} points, got {series.size}"
        )
    exps, per_step = nolds.lyap_e(
        _rescaled(series)[0], emb_dim=emb_dim, matrix_dim=matrix_dim, min_nb=nb, min_tsep=theiler, tau=tau,
        debug_data=True,
    )
    exps, per_step = np.asarray(exps, dtype=np.float64), np.asarray(per_step, dtype=np.float64)
    stderr, reason = _eckmann_judgement(exps, per_step)
    if reason:
        warnings.warn(f"{caller}: unreliable exponents: {reason}", RuntimeWarning, stacklevel=_outside_netdyn())
    return EckmannSpectrum(
        exponents=exps,
        per_step=per_step,
        stderr=stderr,
        reliable=not reason,
        reason=reason,
        emb_dim=emb_dim,
        matrix_dim=matrix_dim,
        min_nb=nb,
        theiler=theiler,
        tau=tau,
        n_points=int(series.size),
        observable=observable_label(x, observable=observable),
    )


def analyze_dataset(
    ds: xr.Dataset,
    *,
    observable: str = "loss",
    emb_dim: int | None = None,
    lag: int | None = None,
    theiler: int | None = None,
    trajectory_len: int = 20,
    recurrence_rate: float = DEFAULT_RECURRENCE_RATE,
    max_eckmann: int = 5000,
    seed: int = 0,
) -> xr.Dataset:
    """Data-driven summary of one trajectory: Rosenstein exponent, Eckmann spectrum, RQA.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory (netdyn data model).
    observable : str, default "loss"
        Series analysed (:func:`netdyn.series.observables.observable_series`); ``"state"``
        analyses the whole state (Eckmann is then skipped, it needs a scalar).
    emb_dim, lag, trajectory_len
        For :func:`rosenstein` (defaults from :func:`embedding_parameters`).
    theiler : int, optional
        One Theiler window (steps) for all three estimators.  It is one concept
        -- pairs closer than this in time are not compared -- but each estimator
        has its own documented default, used when ``theiler`` is None:
        :func:`rosenstein` the mean period (:func:`embedding_parameters`),
        :func:`nolds_lyap_e` 0, :func:`netdyn.rqa` 1 (just the line of identity).
        The values used are in the attrs ``rosenstein_theiler``, ``eckmann_theiler``
        and ``rqa_theiler``.
    recurrence_rate : float, default 0.05
        RQA at this fixed recurrence rate (supremum metric) on the same observable.
    max_eckmann : int, default 5000
        :func:`nolds_lyap_e` (``O(N^2)`` time) runs only for series up to this length.
    seed : int, default 0
        For projection observables.

    Returns
    -------
    xarray.Dataset
        ``lyap_rosenstein`` with its divergence curve (``log_divergence``,
        ``fitted``, ``in_fit`` over ``k``; fit range and embedding in attrs
        ``rosenstein_*``), ``eckmann_exponents`` and ``eckmann_stderr`` over
        ``exponent`` when computed, and ``rqa_<measure>`` scalars (settings in
        attrs ``rqa_*``).

        Reliability (so a report can say when a number must not be read):
        ``rosenstein_reliable`` (0/1), ``rosenstein_reason`` (why not; ""),
        ``rosenstein_fit_r2``, ``rosenstein_fit_points``,
        ``rosenstein_exponent_stderr``; ``lyap_rosenstein`` is NaN when
        unreliable.  ``eckmann_reliable``, ``eckmann_reason`` likewise (the
        exponents are kept).  Each unreliable estimate also warns.

    Raises
    ------
    ValueError
        As the estimators it runs.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import netdyn as nd
    >>> x = np.empty(600); x[0] = 0.3
    >>> for i in range(599): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> ds = xr.Dataset({"loss": ("step", x)}, coords={"step": np.arange(600)})
    >>> out = nd.analyze_dataset(ds, emb_dim=1, lag=1, theiler=10, trajectory_len=15, max_eckmann=0)
    >>> round(float(out["lyap_rosenstein"]), 1), out.attrs["rqa_theiler"]
    (0.7, 10)
    """
    caller = "analyze_dataset"
    max_eckmann = check_int(max_eckmann, "max_eckmann", caller, minimum=0)
    if theiler is not None:
        theiler = check_int(theiler, "theiler", caller, minimum=0)
    series = observable_series(ds, observable=observable, seed=seed)
    curve = rosenstein(series, emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len, tau=1.0)
    fitted = curve.to_dataset()
    out = xr.Dataset(
        {name: fitted[name] for name in ("log_divergence", "fitted", "in_fit")} | {"lyap_rosenstein": ((), curve.exponent)},
        coords={"k": curve.k},
    )
    out.attrs = {f"rosenstein_{key}": value for key, value in _curve_attrs(curve).items()}
    if series.ndim == 1 and series.size <= max_eckmann:
        spectrum = nolds_lyap_e(series, theiler=0 if theiler is None else theiler)
        out["eckmann_exponents"] = ("exponent", spectrum.exponents)
        out["eckmann_stderr"] = ("exponent", spectrum.stderr)
        out.attrs.update({"eckmann_emb_dim": spectrum.emb_dim, "eckmann_matrix_dim": spectrum.matrix_dim,
                          "eckmann_theiler": spectrum.theiler,
                          "eckmann_reliable": int(spectrum.reliable), "eckmann_reason": spectrum.reason})
    measures = rqa(series, recurrence_rate=recurrence_rate, theiler=1 if theiler is None else theiler)
    for name in ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax"):
        out[f"rqa_{name}"] = ((), getattr(measures, name))
    out.attrs.update(
        {
            "observable": observable,
            "n_points": int(series.shape[0]),
            "rqa_threshold": measures.threshold,
            "rqa_recurrence_rate": recurrence_rate,
            "rqa_metric": measures.metric,
            "rqa_theiler": measures.theiler,
            "rqa_l_min": measures.l_min,
            "rqa_v_min": measures.v_min,
            "source_map": str(ds.attrs.get("map", "")),
        }
    )
    return out


def _curve_attrs(curve: DivergenceCurve) -> dict[str, Any]:
    """The settings and judgement of a divergence curve as netCDF-storable attributes (ints, floats, strings)."""
    return {
        "fit_start": curve.fit_range[0],
        "fit_stop": curve.fit_range[1],
        "intercept": curve.intercept,
        "emb_dim": curve.emb_dim,
        "lag": curve.lag,
        "theiler": curve.theiler,
        "trajectory_len": curve.trajectory_len,
        "tau": curve.tau,
        "n_points": curve.n_points,
        "reliable": int(curve.reliable),
        "reason": curve.reason,
        "fit_r2": curve.fit_r2,
        "fit_points": curve.fit_points,
        "exponent_stderr": curve.exponent_stderr,
    }
