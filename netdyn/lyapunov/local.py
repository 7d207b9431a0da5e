"""Time-local exponents of a non-stationary map: finite-time exponents over consecutive windows.

A learning-rate schedule (or simply training itself) makes the map non-autonomous, so
one exponent for the whole run averages over regimes.  :func:`windowed_lyapunov` cuts
the local rates of one Benettin run (:func:`netdyn.lyapunov.maximal.max_lyapunov`, the one
engine) into consecutive windows and reports, for each, the finite-time exponent with a
block-average error bar (:func:`netdyn._core.stats.block_stderr`), the learning rate the
schedule gave it and, on request, the (preconditioned) sharpness against the optimiser's
stability threshold at that rate (:func:`netdyn.sharpness.hessian.track_sharpness`).

"Chaos is an early transient" becomes a first-class result: the windows in which the
exponent is positive by more than its error bar.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from netdyn._core.stats import block_stderr
from netdyn._core.validation import check_int
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.sharpness.hessian import track_sharpness

__all__ = ["windowed_lyapunov", "rate_at"]


def rate_at(map_: Any, t: int) -> float:
    """The learning rate of step ``t``.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map; a scheduled map defines ``lr_at(t)``, a constant-rate one ``lr``.
    t : int
        Map time (step index).

    Returns
    -------
    float
        ``map_.lr_at(t)`` for a scheduled map, else ``map_.lr``; NaN for a map
        without a learning rate.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.lyapunov.local import rate_at
    >>> rate_at(nd.QuadraticGD([1.0], lr=0.3), 7)
    0.3
    >>> rate_at(nd.HenonMap(), 7)
    nan
    """
    if hasattr(map_, "lr_at"):
        return float(map_.lr_at(int(t)))
    lr = getattr(map_, "lr", None)
    return math.nan if lr is None else float(lr)


def windowed_lyapunov(
    map_: Any,
    x0: Tensor | np.ndarray,
    steps: int,
    *,
    window: int,
    method: str = "tangent",
    t0: int = 0,
    transient: int = 0,
    renorm_every: int = 1,
    d0: float | None = None,
    seed: int = 0,
    params_only: bool = True,
    n_blocks: int = 5,
    sharpness_every: int | None = None,
    sharpness_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Maximal Lyapunov exponent over consecutive windows of one run, with error bars and the rate.

    Parameters
    ----------
    map_ : DiscreteMap
        e.g. a :class:`~netdyn.maps.training.TrainingMap` with a ``schedule``; ``step_jvp`` for
        ``method="tangent"``.
    x0 : tensor ``(dim,)``
        state at map time ``t0``.
    steps : int
        counted steps after the transient, a multiple of ``window``.
    window : int
        steps per window, a multiple of ``renorm_every``.
    method, transient, renorm_every, d0, seed, params_only
        as in :func:`netdyn.lyapunov.maximal.max_lyapunov` (one run of it over all windows; the
        separation is carried across window boundaries, so each window starts aligned);
        ``d0=None`` is max_lyapunov's default-d0 rule
        (:func:`netdyn._core.perturbation.default_d0`).
    t0 : int, default 0
        map time of ``x0`` (the schedule's clock).
    n_blocks : int, default 5
        blocks per window for the standard error (:func:`block_stderr`).
    sharpness_every : int or None
        also track the sharpness (preconditioned for adaptive optimisers, as
        :func:`netdyn.sharpness.hessian.track_sharpness` decides) every ``sharpness_every`` steps
        (``<= window``, so every window has a measurement); the map needs ``loss``.
    sharpness_options : dict, optional
        passed to :func:`track_sharpness` (``k``, ``method``, ``tol`` ...).
    progress : bool or None, default None
        a tqdm bar over the steps (None: only on a terminal).

    Returns
    -------
    xarray.Dataset with dims ``window`` and ``step``:

    ``lyapunov (window)``
        finite-time exponent of the window, per step: the mean of its local rates;
    ``lyapunov_stderr (window)``
        block-average standard error of the window's local rates (NaN when fewer than
        two renormalisations fit, see :func:`block_stderr`);
    ``lr (window)``
        mean learning rate over the window's steps (NaN for a map without one);
    ``complete (window)``
        False for windows reached after the separation could no longer be resolved
        (their exponent is +inf when that happened inside them, NaN after;
        ``max_lyapunov`` warns);
    ``local_rate (step)``, ``lr_step (step)``
        the local rates and each step's rate;
    ``window_start``, ``window_stop`` (coords on ``window``)
        map times: the window covers steps ``window_start <= t < window_stop``;
    ``lyapunov_total``, ``lyapunov_total_stderr`` (scalars)
        the whole run's estimate from the same rates;
    ``unresolved``, ``diverged``, ``diverged_step``, ``divergence_reason`` (scalars)
        the verdicts of :func:`netdyn.max_lyapunov` (the training divergence rule only
        flags: windows after a divergence are still estimated while finite).

    With ``sharpness_every``: ``sharpness (window)`` (mean of the top eigenvalue measured in
    the window), ``threshold (window)`` (mean of the optimiser's stability threshold at
    each measured step's rate, e.g. ``38 / lr(t)`` for Adam) and ``sharpness_over_threshold
    (window)`` (mean of the ratios; 1 is the edge of stability), and the raw measurements
    on a ``measured_step`` dim.

    attrs: those of :func:`max_lyapunov` plus ``window``, ``n_blocks`` (and
    ``sharpness_preconditioned``, ``sharpness_every``).

    Raises
    ------
    ValueError
        on counts that are not integers in range, ``steps`` not a multiple of
        ``window`` or ``window`` not a multiple of ``renorm_every``, a batch ``x0``,
        and whatever :func:`netdyn.max_lyapunov` refuses.

    Notes
    -----
    With local rates ``r_t = ln(|delta_{t+m}| / |delta_t|) / m`` of the aligned separation,
    the window ``[a, a + W)`` has exponent ``(1 / W) sum r_t`` = the finite-time exponent
    ``ln(|delta_{a+W}| / |delta_a|) / W``.  For gradient descent on a quadratic with a
    schedule it is the mean of ``ln|1 - lr(t) h_max|`` over the window when the top
    curvature direction dominates.  The threshold at step ``t`` is
    ``stability_threshold(map_, t=t)``, at that step's rate (e.g. ``38 / lr(t)`` for Adam).

    Examples
    --------
    >>> import math, netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 3.0], lr=0.6)
    >>> res = nd.windowed_lyapunov(m, m.initial_state(), 40, window=10, transient=40)
    >>> [round(float(v), 4) for v in res["lyapunov"]]  # ln|1 - 0.6 * 1| in every window
    [-0.2231, -0.2231, -0.2231, -0.2231]
    """
    caller = "windowed_lyapunov"
    steps = check_int(steps, "steps", caller, minimum=1)
    window = check_int(window, "window", caller, minimum=1)
    renorm_every = check_int(renorm_every, "renorm_every", caller, minimum=1)
    if window % renorm_every:
        raise ValueError(f"{caller}: expected window to be a multiple of renorm_every={renorm_every}, got {window}")
    if steps % window:
        raise ValueError(f"{caller}: expected steps to be a multiple of window={window}, got {steps}")
    if sharpness_every is not None:
        sharpness_every = check_int(sharpness_every, "sharpness_every", caller, minimum=1, maximum=window)
    shape = tuple(torch.as_tensor(x0).shape)
    if len(shape) != 1:
        raise ValueError(f"{caller}: expected one initial state x0 of shape ({map_.dim},), got {shape}")

    run = max_lyapunov(map_, x0, steps, method=method, transient=transient, renorm_every=renorm_every, d0=d0,
                       seed=seed, params_only=params_only, n_blocks=n_blocks, t0=t0, progress=progress)
    rates = run["local_rate"].values  # (steps // m,)
    per_window = window // renorm_every
    n_windows = steps // window
    blocks = rates.reshape(n_windows, per_window)
    start = int(t0) + int(transient) + window * np.arange(n_windows, dtype=np.int64)
    counted = int(t0) + int(transient) + np.arange(steps, dtype=np.int64)
    lr_step = np.array([rate_at(map_, t) for t in counted])

    complete = np.isfinite(blocks).all(axis=1)
    exponent = np.where(complete, blocks.mean(axis=1), np.nan)
    if bool(run["unresolved"]):  # the window in which the separation was lost has an unresolvable rate
        hit = (int(run["unresolved_step"]) - 1 - int(start[0])) // window
        exponent[int(np.clip(hit, 0, n_windows - 1))] = np.inf
    stderr = np.where(complete, block_stderr(np.where(complete[:, None], blocks, 0.0), n_blocks), np.nan)
    ds = xr.Dataset(
        {
            "lyapunov": (("window",), exponent),
            "lyapunov_stderr": (("window",), stderr),
            "lr": (("window",), lr_step.reshape(n_windows, window).mean(axis=1)),
            "complete": (("window",), complete),
            "local_rate": (("step",), rates),
            "lr_step": (("counted_step",), lr_step),
            "lyapunov_total": ((), float(run["lyapunov"])),
            "lyapunov_total_stderr": ((), float(run["lyapunov_stderr"])),
            "unresolved": ((), bool(run["unresolved"])),
            "diverged": ((), bool(run["diverged"])),
            "diverged_step": ((), int(run["diverged_step"])),
            "divergence_reason": ((), str(run["divergence_reason"].values)),
        },
        coords={
            "window": np.arange(n_windows),
            "window_start": (("window",), start),
            "window_stop": (("window",), start + window),
            "step": run["step"].values,
            "counted_step": counted,
        },
        attrs={**run.attrs, "window": int(window), "n_blocks": int(n_blocks)},
    )
    ds["lyapunov"].attrs["units"] = "1/step"
    if sharpness_every is not None:
        part = _windowed_sharpness(map_, x0, t0, transient, steps, window, start, int(sharpness_every),
                                   dict(sharpness_options or {}))
        ds = ds.merge(part, combine_attrs="override")
        ds.attrs.update(part.attrs)
    return ds


def _windowed_sharpness(
    map_: Any, x0: Tensor | np.ndarray, t0: int, transient: int, steps: int, window: int, start: np.ndarray,
    every: int, options: dict[str, Any],
) -> xr.Dataset:
    """Sharpness measured along the same orbit, its threshold at each measured step's rate, window means."""
    x = torch.as_tensor(x0).clone()
    for t in range(int(t0), int(t0) + int(transient)):  # the uncounted steps: reach the first window's state
        x = map_.step(x, t)
    track = track_sharpness(map_, x, steps, every=every, t0=int(t0) + int(transient), **options)
    measured = track["step"].values
    top = track["sharpness"].isel(eig=0).values
    threshold = track["threshold"].values  # at each measured step's rate (NaN when none applies)
    index = (measured - start[0]) // window
    n = len(start)
    means = {name: np.full(n, np.nan) for name in ("sharpness", "threshold", "sharpness_over_threshold")}
    for w in range(n):
        pick = index == w
        if pick.any():
            means["sharpness"][w] = top[pick].mean()
            means["threshold"][w] = threshold[pick].mean()
            means["sharpness_over_threshold"][w] = (top[pick] / threshold[pick]).mean()
    out = xr.Dataset(
        {name: (("window",), value) for name, value in means.items()},
        coords={"window": np.arange(n)},
    )
    out["sharpness_measured"] = (("measured_step",), top)
    out["threshold_measured"] = (("measured_step",), threshold)
    out = out.assign_coords(measured_step=measured)
    out.attrs = {"sharpness_preconditioned": int(track.attrs["preconditioned"]), "sharpness_every": int(every)}
    return out
