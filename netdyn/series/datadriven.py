"""Largest Lyapunov exponents from recorded series alone (no map needed).

Three estimators share one front door -- a series, a ``DataArray`` or a
trajectory ``Dataset`` plus the name of an *observable*:

* :func:`rosenstein` -- our own Rosenstein et al. (1993) estimator: the same
  numbers as ``nolds.lyap_r(..., fit="poly")`` but with a k-d-tree neighbour
  search (no ``N x N`` distance matrix) and multivariate input;
* :func:`nolds_lyap_r` -- a thin wrapper over ``nolds.lyap_r`` (reference);
* :func:`nolds_lyap_e` -- a thin wrapper over ``nolds.lyap_e`` (Eckmann et al.
  1986), which estimates ``matrix_dim`` exponents.

Observables (``observable=``)
-----------------------------
For a trajectory ``Dataset`` (see the data model in the design notes):

``"loss"`` (default), ``"grad_norm"`` or any other 1-D data variable
    that variable over ``step``;
``"param:<i>"``
    one recorded parameter, ``state[:, i]`` (``i`` a position along ``param``);
``"norm"``
    ``||state_t||_2``;
``"update_norm"``
    ``||state_{t+1} - state_t||_2`` (one value fewer);
``"projection"`` / ``"projection:pca"``
    the state projected on its first principal component (sign fixed so the
    largest loading is positive);
``"projection:random"``
    the state projected on a random unit vector drawn from ``seed``;
``"state"``
    the whole ``(step, param)`` state (multivariate; only :func:`rosenstein`).

A ``DataArray`` or numpy array of shape ``(N,)`` is used as it is; one of shape
``(N, d)`` is a state, to which the state observables above apply (default
``"state"``).  A series that becomes non-finite (a diverged run) is cut to its
finite leading part with a warning.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from netdyn.series.state_observables import state_observable
from netdyn.series.embedding import _nearest_outside_window, choose_lag, delay_embed, false_nearest_neighbours, mean_period
from netdyn.series.linear_region import LinearRegion, linear_region

__all__ = [
    "DivergenceCurve",
    "EckmannSpectrum",
    "observable_series",
    "embedding_parameters",
    "auto_fit_range",
    "rosenstein",
    "nolds_lyap_r",
    "nolds_lyap_e",
    "analyze_dataset",
]

_STATE_OBSERVABLES = ("norm", "update_norm", "projection", "projection:pca", "projection:random", "state")


@dataclass(frozen=True, eq=False)
class DivergenceCurve:
    """A Rosenstein estimate: exponent, divergence curve and fit range.

    Attributes
    ----------
    exponent : float
        Slope of the fitted line divided by ``tau`` (per unit of time; per step
        when ``tau = 1``).
    k : array (K,)
        Steps after which distances were measured (only those with a finite mean).
    log_divergence : array (K,)
        ``<ln d_i(k)>`` averaged over reference points ``i`` (zero distances skipped).
    fit_range : (int, int)
        The line was fitted on ``fit_range[0] <= k < fit_range[1]``.
    intercept : float
        Intercept of the fitted line (at ``k = 0``).
    emb_dim, lag, min_tsep, trajectory_len : int
        Embedding and neighbour-search parameters actually used.
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
    """

    exponent: float
    k: np.ndarray
    log_divergence: np.ndarray
    fit_range: tuple[int, int]
    intercept: float
    emb_dim: int
    lag: int
    min_tsep: int
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

    def to_dataset(self) -> xr.Dataset:
        """The curve and its fit as an ``xarray.Dataset`` over ``k``."""
        fitted = self.intercept + self.exponent * self.tau * self.k
        in_fit = (self.k >= self.fit_range[0]) & (self.k < self.fit_range[1])
        return xr.Dataset(
            {
                "log_divergence": ("k", self.log_divergence),
                "fitted": ("k", fitted),
                "in_fit": ("k", in_fit),
                "exponent": ((), self.exponent),
            },
            coords={"k": self.k},
            attrs={
                "method": self.method,
                "observable": self.observable,
                "fit_start": self.fit_range[0],
                "fit_stop": self.fit_range[1],
                "intercept": self.intercept,
                "emb_dim": self.emb_dim,
                "lag": self.lag,
                "min_tsep": self.min_tsep,
                "trajectory_len": self.trajectory_len,
                "tau": self.tau,
                "n_points": self.n_points,
                "reliable": int(self.reliable),
                "reason": self.reason,
                "fit_r2": self.fit_r2,
                "fit_points": self.fit_points,
                "exponent_stderr": self.exponent_stderr,
            },
        )


@dataclass(frozen=True, eq=False)
class EckmannSpectrum:
    """An Eckmann et al. estimate of ``matrix_dim`` exponents (descending).

    ``per_step`` holds the per-reference-point estimates (``(M, matrix_dim)``,
    nolds' debug data) whose mean gives ``exponents``; ``stderr`` is their
    standard error ``std / sqrt(M)`` (treating the M steps as independent, so a
    lower bound).  ``reliable`` is False (``reason`` says why, the exponents are
    kept) when an exponent is not finite or when the exponents sum to more than
    ``3`` standard errors above 0: a bounded (dissipative or conservative)
    attractor has a sum <= 0, so a positive sum means spurious exponents -- e.g.
    the multiples ``2 ln 2, 3 ln 2`` that noise-free data of a 1-D map produce
    (Sauer, Tempkin & Yorke 1998).
    """

    exponents: np.ndarray
    per_step: np.ndarray
    emb_dim: int
    matrix_dim: int
    min_nb: int
    min_tsep: int
    tau: float
    n_points: int
    observable: str
    stderr: np.ndarray | None = None
    reliable: bool = True
    reason: str = ""

    def to_dataset(self) -> xr.Dataset:
        """The exponents (and their standard errors) as an ``xarray.Dataset`` over ``exponent``."""
        stderr = np.full(self.exponents.size, np.nan) if self.stderr is None else self.stderr
        return xr.Dataset(
            {"eckmann_exponents": ("exponent", self.exponents), "eckmann_stderr": ("exponent", stderr)},
            coords={"exponent": np.arange(self.exponents.size)},
            attrs={
                "method": "nolds.lyap_e",
                "observable": self.observable,
                "emb_dim": self.emb_dim,
                "matrix_dim": self.matrix_dim,
                "min_nb": self.min_nb,
                "min_tsep": self.min_tsep,
                "tau": self.tau,
                "n_points": self.n_points,
                "reliable": int(self.reliable),
                "reason": self.reason,
            },
        )


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


def _finite_leading(arr: np.ndarray, caller: str, what: str) -> np.ndarray:
    """Cut ``arr`` (N,) or (N, d) before its first non-finite row, with a warning."""
    finite = np.isfinite(arr) if arr.ndim == 1 else np.all(np.isfinite(arr), axis=1)
    if finite.all():
        return arr
    first_bad = int(np.argmin(finite))
    if first_bad == 0:
        raise ValueError(f"{caller}: expected finite values in {what}, got a non-finite value at index 0")
    warnings.warn(
        f"{caller}: {what} becomes non-finite at index {first_bad} (diverged run); "
        f"analysing the finite leading part of length {first_bad}",
        RuntimeWarning,
        stacklevel=3,
    )
    return arr[:first_bad]


def _state_observable(state: np.ndarray, name: str, seed: int, caller: str) -> np.ndarray:
    """A state observable of an in-memory state ``(N, d)``: the state itself, or the scalar
    series of :func:`netdyn.series.state_observables.state_observable` (one implementation)."""
    if name == "state":
        return state
    return state_observable(xr.DataArray(state, dims=("step", "param")), name, seed=seed, caller=caller)


def observable_series(data: Any, observable: str | None = None, seed: int = 0) -> np.ndarray:
    """The series an estimator analyses, as float64, cut before any non-finite value.

    Parameters
    ----------
    data : numpy array (N,) / (N, d), ``DataArray`` or trajectory ``Dataset``
    observable : str, optional
        One of the names in the module docstring.  Default: ``"loss"`` for a
        ``Dataset``; the series itself for 1-D input; ``"state"`` for 2-D input.
    seed : int, default 0
        Seed of the random projection / the power-iteration start vector.

    Returns
    -------
    array (N,) or (N, d) (``"state"`` only)
    """
    caller = "observable_series"
    if isinstance(data, xr.Dataset):
        name = "loss" if observable is None else observable
        if name.startswith("param:") or name in _STATE_OBSERVABLES:
            if "state" not in data:
                raise ValueError(f"{caller}: observable {name!r} needs a 'state' variable, got {list(data.data_vars)}")
            if name != "state":  # scalar observables stream over the steps: memory ~ one block, not the file
                return state_observable(data["state"], name, seed=seed, caller=caller)
            state = data["state"].transpose("step", ...).values.astype(np.float64)
            return observable_series(state, name, seed)
        if name not in data.data_vars or data[name].ndim != 1:
            known = [v for v in data.data_vars if data[v].ndim == 1] + ["param:<i>", *_STATE_OBSERVABLES]
            raise ValueError(f"{caller}: expected an observable in {known}, got {name!r}")
        return _finite_leading(data[name].values.astype(np.float64), caller, f"variable {name!r}")
    arr = np.asarray(data.values if isinstance(data, xr.DataArray) else data, dtype=np.float64)
    if arr.ndim == 1:
        if observable not in (None, "series"):
            raise ValueError(f"{caller}: a 1-D series has no observable {observable!r}; expected None")
        return _finite_leading(arr, caller, "the series")
    if arr.ndim != 2:
        raise ValueError(f"{caller}: expected an array of shape (N,) or (N, d), got shape {arr.shape}")
    name = "state" if observable is None else observable
    if name.startswith("param:"):
        try:
            index = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"{caller}: expected 'param:<integer>', got {name!r}") from None
        if not -arr.shape[1] <= index < arr.shape[1]:
            raise ValueError(f"{caller}: expected a parameter index in [0, {arr.shape[1]}), got {index}")
        return _finite_leading(arr[:, index], caller, f"parameter {index}")
    if name not in _STATE_OBSERVABLES:
        raise ValueError(f"{caller}: expected an observable in {['param:<i>', *_STATE_OBSERVABLES]}, got {name!r}")
    state = _finite_leading(arr, caller, "the state")
    return _state_observable(state, name, seed, caller)


def _checked(x: np.ndarray, caller: str) -> np.ndarray:
    if x.shape[0] < 10:
        raise ValueError(f"{caller}: expected a series of at least 10 points, got {x.shape[0]}")
    if np.all(np.ptp(x, axis=0) == 0):
        raise ValueError(f"{caller}: expected a non-constant series, got a constant one")
    return x


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
    x: np.ndarray, emb_dim: int | None = None, lag: int | None = None, min_tsep: int | None = None
) -> tuple[int, int, int]:
    """Fill in ``(emb_dim, lag, min_tsep)`` for a series (N,) or state (N, d).

    Defaults (each only when ``None``), computed on the series itself or, for a
    state, on its first principal component:

    * ``lag`` -- :func:`netdyn.series.embedding.choose_lag` (min of the first minimum of
      the auto mutual information and the 1/e decorrelation time);
    * ``min_tsep`` (Theiler window) -- :func:`netdyn.series.embedding.mean_period`, the
      mean period of the power spectrum, as ``nolds.lyap_r``;
    * ``emb_dim`` -- for a scalar series the false-nearest-neighbour dimension
      (:func:`netdyn.series.embedding.false_nearest_neighbours`, Kennel et al. 1992);
      for a state, 1 (the state already is a phase-space point).
    """
    x = _checked(np.asarray(x, dtype=np.float64), "embedding_parameters")
    scalar = x if x.ndim == 1 else _state_observable(x, "projection", 0, "embedding_parameters")
    if lag is None:
        lag = choose_lag(scalar)
    if min_tsep is None:
        min_tsep = mean_period(scalar)
    if emb_dim is None:
        emb_dim = 1 if x.ndim == 2 else _fnn_dimension(scalar, lag, min_tsep)
    return int(emb_dim), int(lag), int(min_tsep)


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
    data: Any,
    observable: str | None = None,
    emb_dim: int | None = None,
    lag: int | None = None,
    min_tsep: int | None = None,
    trajectory_len: int = 20,
    fit_range: tuple[int, int] | str | None = "auto",
    tau: float = 1.0,
    seed: int = 0,
) -> DivergenceCurve:
    """Largest Lyapunov exponent by Rosenstein's method, with a k-d-tree neighbour search.

    Parameters
    ----------
    data : array (N,) / (N, d), ``DataArray`` or trajectory ``Dataset``
        See :func:`observable_series`; multivariate input is embedded row-wise.
    observable : str, optional
        Which series to analyse (module docstring); ``"state"`` gives the full state.
    emb_dim, lag, min_tsep : int, optional
        Embedding dimension, delay (steps) and Theiler window (steps); defaults from
        :func:`embedding_parameters`.  Neighbours need ``|i - j| > min_tsep``.
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

    Maths
    -----
    Delay vectors ``X_i`` (:func:`netdyn.series.embedding.delay_embed`) for
    ``i < M_traj = M - trajectory_len + 1``; for each the Euclidean nearest
    neighbour ``j(i)`` among the same ``M_traj`` vectors with ``|i - j| > min_tsep``
    (ties to the lowest index); ``y(k) = < ln ||X_{i+k} - X_{j(i)+k}|| >_i``
    with zero distances left out of the mean (``y(k)`` dropped if all are zero);
    the exponent is the least-squares slope of ``y(k)`` against ``k``.  This is
    ``nolds.lyap_r(..., fit="poly")`` step for step; only the neighbour search
    differs -- a cKDTree query of ``k`` candidates, doubled until the Theiler window
    is escaped -- so memory is ``O(N)`` instead of ``O(N^2)``.

    References
    ----------
    Rosenstein, Collins, De Luca, Physica D 65, 117 (1993).
    """
    caller = "rosenstein"
    x, log_scale = _rescaled(_checked(observable_series(data, observable, seed), caller))
    emb_dim, lag, min_tsep = embedding_parameters(x, emb_dim, lag, min_tsep)
    orbit = delay_embed(x, emb_dim, lag)
    ntraj = orbit.shape[0] - trajectory_len + 1
    if ntraj < 2 * min_tsep + 2:
        need = (emb_dim - 1) * lag + trajectory_len - 1 + 2 * min_tsep + 2
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, lag={lag}, min_tsep={min_tsep}, "
            f"trajectory_len={trajectory_len}: expected at least {need} points, got {x.shape[0]}"
        )
    _, nb = _nearest_outside_window(orbit[:ntraj], min_tsep)
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
    settings = dict(emb_dim=emb_dim, lag=lag, min_tsep=min_tsep, trajectory_len=trajectory_len, tau=tau)
    return _fitted_curve(ks[finite], curve[finite], fit_range, caller, settings, int(x.shape[0]), "rosenstein",
                         _observable_label(data, observable), blocks[:, finite])


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


def _observable_label(data: Any, observable: str | None) -> str:
    if observable is not None:
        return observable
    if isinstance(data, xr.Dataset):
        return "loss"
    return "series" if np.ndim(data) == 1 else "state"


def _scalar(data: Any, observable: str | None, seed: int, caller: str) -> np.ndarray:
    x = _checked(observable_series(data, observable, seed), caller)
    if x.ndim != 1:
        raise ValueError(
            f"{caller}: nolds needs a scalar series; got a state of shape {x.shape}; "
            "pass observable='norm', 'param:<i>', 'projection', ... or use rosenstein()"
        )
    return x


def nolds_lyap_r(
    data: Any,
    observable: str | None = None,
    emb_dim: int | None = None,
    lag: int | None = None,
    min_tsep: int | None = None,
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
    The defaults for ``lag`` / ``min_tsep`` / ``emb_dim`` are netdyn's
    (:func:`embedding_parameters`), passed explicitly, not nolds' own.
    """
    import nolds

    caller = "nolds_lyap_r"
    x = _scalar(data, observable, seed, caller)
    emb_dim, lag, min_tsep = embedding_parameters(x, emb_dim, lag, min_tsep)
    need = nolds.lyap_r_len(emb_dim=emb_dim, lag=lag, trajectory_len=trajectory_len, min_tsep=min_tsep)
    if x.size < need:
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, lag={lag}, min_tsep={min_tsep}, "
            f"trajectory_len={trajectory_len}: expected at least {need} points, got {x.size}"
        )
    scaled, log_scale = _rescaled(x)
    _, (ks, curve, _) = nolds.lyap_r(
        scaled, emb_dim=emb_dim, lag=lag, min_tsep=min_tsep, trajectory_len=trajectory_len, fit="poly", debug_data=True
    )
    curve = np.asarray(curve) + log_scale if log_scale else curve
    settings = dict(emb_dim=emb_dim, lag=lag, min_tsep=min_tsep, trajectory_len=trajectory_len, tau=tau)
    return _fitted_curve(np.asarray(ks), np.asarray(curve), fit_range, caller, settings, int(x.size), "nolds.lyap_r",
                         _observable_label(data, observable))


def nolds_lyap_e(
    data: Any,
    observable: str | None = None,
    emb_dim: int = 10,
    matrix_dim: int = 4,
    min_nb: int | None = None,
    min_tsep: int = 0,
    tau: float = 1.0,
    seed: int = 0,
) -> EckmannSpectrum:
    """Lyapunov exponents by ``nolds.lyap_e`` (Eckmann et al. 1986).

    Parameters
    ----------
    data, observable, seed
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
    min_tsep : int, default 0
        Theiler window for the neighbours.
    tau : float, default 1.0
        Time between samples.

    Returns
    -------
    EckmannSpectrum
        Exponents in nolds' order (descending for well-separated spectra).

    Maths
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
    """
    import nolds

    caller = "nolds_lyap_e"
    x = _scalar(data, observable, seed, caller)
    if matrix_dim < 2 or (emb_dim - 1) % (matrix_dim - 1) != 0:
        raise ValueError(
            f"{caller}: expected matrix_dim >= 2 with emb_dim - 1 divisible by matrix_dim - 1, "
            f"got emb_dim={emb_dim}, matrix_dim={matrix_dim}"
        )
    nb = min(2 * matrix_dim, matrix_dim + 4) if min_nb is None else int(min_nb)
    need = nolds.lyap_e_len(emb_dim=emb_dim, matrix_dim=matrix_dim, min_nb=nb, min_tsep=min_tsep)
    if x.size < need:
        raise ValueError(
            f"{caller}: series too short for emb_dim={emb_dim}, matrix_dim={matrix_dim}, min_nb={nb}, "
            f"min_tsep={min_tsep}: expected at least {need} points, got {x.size}"
        )
    exps, per_step = nolds.lyap_e(
        _rescaled(x)[0], emb_dim=emb_dim, matrix_dim=matrix_dim, min_nb=nb, min_tsep=min_tsep, tau=tau,
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
        min_tsep=min_tsep,
        tau=tau,
        n_points=int(x.size),
        observable=_observable_label(data, observable),
    )


def analyze_dataset(
    ds: xr.Dataset,
    observable: str = "loss",
    emb_dim: int | None = None,
    lag: int | None = None,
    min_tsep: int | None = None,
    trajectory_len: int = 20,
    recurrence_rate: float = 0.05,
    theiler: int = 1,
    max_eckmann: int = 5000,
    seed: int = 0,
) -> xr.Dataset:
    """Data-driven summary of one trajectory: Rosenstein exponent, Eckmann spectrum, RQA.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory (netdyn data model).
    observable : str, default "loss"
        Series analysed (:func:`observable_series`); ``"state"`` analyses the
        whole state (Eckmann is then skipped, it needs a scalar).
    emb_dim, lag, min_tsep, trajectory_len
        For :func:`rosenstein` (defaults from :func:`embedding_parameters`).
    recurrence_rate : float, default 0.05
        RQA at this fixed recurrence rate (supremum metric) on the same observable.
    theiler : int, default 1
        Theiler window of the RQA.
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
    """
    from netdyn.series.recurrence import rqa

    series = observable_series(ds, observable, seed)
    curve = rosenstein(series, None, emb_dim, lag, min_tsep, trajectory_len, tau=1.0)
    out = curve.to_dataset().rename({"exponent": "lyap_rosenstein"})
    out.attrs = {f"rosenstein_{key}": value for key, value in out.attrs.items() if key not in ("method", "observable")}
    if series.ndim == 1 and series.size <= max_eckmann:
        spectrum = nolds_lyap_e(series)
        out["eckmann_exponents"] = ("exponent", spectrum.exponents)
        out["eckmann_stderr"] = ("exponent", spectrum.stderr)
        out.attrs.update({"eckmann_emb_dim": spectrum.emb_dim, "eckmann_matrix_dim": spectrum.matrix_dim,
                          "eckmann_reliable": int(spectrum.reliable), "eckmann_reason": spectrum.reason})
    measures = rqa(series, recurrence_rate=recurrence_rate, theiler=theiler)
    for name in ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax"):
        out[f"rqa_{name}"] = ((), getattr(measures, name))
    out.attrs.update(
        {
            "observable": observable,
            "n_points": int(series.shape[0]),
            "rqa_threshold": measures.threshold,
            "rqa_recurrence_rate": recurrence_rate,
            "rqa_metric": measures.metric,
            "rqa_theiler": theiler,
            "rqa_l_min": measures.l_min,
            "rqa_v_min": measures.v_min,
            "source_map": str(ds.attrs.get("map", "")),
        }
    )
    return out
