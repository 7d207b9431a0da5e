"""The papers' perturbation-growth protocol: un-renormalised twin copies.

:func:`perturbation_growth` follows Danovski et al. (2024) and Jiménez-González
et al. (2025): copies of the initial state are shifted by ``U(-d0, d0)`` on the
parameters, all copies are run with the *same* map (same ``t``, same batches), and
the distance ``d(t)`` of each copy to the reference run is recorded without
renormalisation; the exponent is the slope of ``mean ln d(t)`` on its linear part.
:func:`growth_fit_window` is the automatic choice of that part.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from netdyn._core.devices import SYNC_EVERY, host_block
from netdyn._core.progress import progress_bar
from netdyn._core.validation import check_choice, check_float, check_int
from netdyn.maps.base import as_states, batch_step, is_batch_first, map_attrs, param_dim_of
from netdyn.maps.batching import BatchStepper
from netdyn.series.linear_region import flat_linear_flat

__all__ = ["perturbation_growth", "growth_fit_window"]


def growth_fit_window(log_distance: np.ndarray, *, min_points: int = 3, max_candidates: int = 200) -> tuple[int, int]:
    """Automatic fit window ``(start, stop)`` (``stop`` exclusive) of a log-distance curve.

    Parameters
    ----------
    log_distance : array ``(T,)`` — ``mean ln d(t)`` at ``t = 0 .. T-1``; non-finite
        values end the usable part.
    min_points : int, default 3 — smallest window.
    max_candidates : int, default 200 — break points searched on a grid of at most
        this many values (all integers for short curves).

    Returns
    -------
    tuple of int
        ``(start, stop)`` indices into the curve.

    Notes
    -----
    The rule is :func:`netdyn.series.linear_region.flat_linear_flat` (a continuous
    flat - linear - flat least-squares fit; see there), the model of a twin
    perturbation: alignment, exponential growth, saturation.  It is robust to the
    step-to-step scatter of a single orbit's finite-time growth; Rosenstein's
    averaged curves use :func:`netdyn.series.linear_region.linear_region` instead.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.lyapunov.growth import growth_fit_window
    >>> curve = np.concatenate([np.zeros(10), 0.5 * np.arange(1, 21), np.full(10, 10.0)])
    >>> growth_fit_window(curve)  # the kink at 9 (value 0) starts the rise
    (9, 30)
    """
    region = flat_linear_flat(log_distance, min_points=min_points, max_candidates=max_candidates)
    return region.start, region.stop


def perturbation_growth(
    map_: Any,
    x0: Tensor | np.ndarray,
    steps: int,
    *,
    n_copies: int = 5,
    d0: float = 1e-8,
    norm: str = "l1",
    seed: int = 0,
    fit_window: tuple[int, int] | None = None,
    vectorize: bool | None = None,
    t0: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Growth of un-renormalised parameter perturbations and its exponent.

    Parameters
    ----------
    map_ : DiscreteMap (only ``step`` is used).
    x0 : tensor ``(dim,)`` or ``(n_init, dim)`` — reference initial state(s); a batch
        adds a dim ``init`` (all copies of all inits are stepped in one batch).
    steps : int — steps to run.
    n_copies : int, default 5 — perturbed copies per reference.
    d0 : float, default 1e-8 — perturbation size: each parameter entry (first
        ``map.param_dim`` entries) of a copy is shifted by ``U(-d0, d0)``; buffers
        are not shifted (was ``eps``).
    norm : {"l1", "l2"}, default "l1" — distance over the parameters.
    seed : int, default 0 — seed of the shifts (``torch.Generator``).
    fit_window : (start, stop) or None — steps ``start <= t < stop`` used for the
        slope; None chooses it per init with :func:`growth_fit_window`.
    vectorize : bool or None — batching of the copies: a ``batch_first`` map (see
        :mod:`netdyn.maps.base`) steps all copies of all inits in one call; other maps go
        through :class:`netdyn.maps.batching.BatchStepper` (vmap, else a loop); ``False``
        forces the BatchStepper loop (the reference path).
    t0 : int, default 0 — map time of ``x0`` (e.g. ``ds.final_step`` of a saved run);
        the ``step`` coordinate counts from it, while ``fit_window``, ``fit_start``
        and ``fit_stop`` stay positions along it (steps after ``x0``).
    progress : bool or None, default None — a tqdm bar over the steps (None: only
        on a terminal).

    Returns
    -------
    xarray.Dataset, coords ``step`` (0 .. steps), ``copy``, and ``init`` for a batch:
    ``distance (init, copy, step)`` ``d(t)``; ``log_distance (init, step)`` mean over
    copies of ``ln d(t)``; ``lyapunov (init)`` the fitted slope, per step;
    ``lyapunov_stderr (init)`` its least-squares standard error; ``fit_start``,
    ``fit_stop (init)``; ``diverged (init)``.  attrs ``d0``, ``norm``, ``n_copies``,
    ``perturbation_seed``, ``fit_rule`` ("auto" or "given"), the map's ``describe()``.

    Raises
    ------
    ValueError
        on a bad ``x0``, ``steps < 2``, ``n_copies < 1``, an unknown ``norm``,
        ``d0 <= 0`` or a ``fit_window`` outside the curve.

    Notes
    -----
    ``d_c(t) = ||theta_c(t) - theta_ref(t)||`` (L1 or L2 over parameters);
    ``lambda`` = least-squares slope of ``<ln d_c(t)>_c`` over the window.  Without
    renormalisation ``d`` saturates at the attractor scale, hence the window.
    Unlike :func:`netdyn.lyapunov.maximal.max_lyapunov` this is a finite-time exponent of a
    finite perturbation; it agrees with the maximal exponent while ``d`` stays small.

    Failure policy: a non-finite reference or copy makes ``d`` non-finite from that
    step on; the fit uses the finite part (``diverged`` True, with a warning).

    Defaults: ``d0 = 1e-8``, five copies and the L1 norm are the protocol of
    Jiménez-González et al. (2025); the window rule is documented in
    :func:`growth_fit_window`.

    References
    ----------
    Danovski, Soriano & Lacasa, arXiv:2404.05782; Jiménez-González, Soriano &
    Lacasa, arXiv:2506.08523.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.LinearMap([[1.5, 0.0], [0.0, 0.5]])
    >>> res = nd.perturbation_growth(m, m.initial_state(), 40, fit_window=(10, 41))
    >>> round(float(res["lyapunov"]), 3)  # ln 1.5 = 0.4055
    0.405
    """
    caller = "perturbation_growth"
    xs, batched = as_states(map_, x0, caller)
    if getattr(map_, "members", None) is not None:
        raise ValueError(f"{caller}: expected a map with scalar parameters, got a parameter batch of {map_.members} "
                         "members (the copies of a member need its parameters: use map_.member(i))")
    steps = check_int(steps, "steps", caller, minimum=2)
    n_copies = check_int(n_copies, "n_copies", caller, minimum=1)
    norm = check_choice(norm, "norm", caller, ("l1", "l2"))
    d0 = check_float(d0, "d0", caller, minimum=0.0, exclusive=True)
    t0 = check_int(t0, "t0", caller, minimum=0)
    if fit_window is not None and not 0 <= fit_window[0] < fit_window[1] - 1 <= steps:
        raise ValueError(f"{caller}: expected fit_window (start, stop) with 0 <= start < stop - 1 <= {steps}, "
                         f"got {fit_window}")
    n, p = xs.shape[0], param_dim_of(map_)
    gen = torch.Generator().manual_seed(int(seed))
    shift = torch.zeros(n, n_copies, map_.dim, dtype=xs.dtype, device=xs.device)
    draw = d0 * (2 * torch.rand(n, n_copies, p, generator=gen, dtype=torch.float64) - 1)
    shift[..., :p] = draw.to(device=xs.device, dtype=xs.dtype)  # CPU draw, moved once
    batch = torch.cat((xs[:, None], xs[:, None] + shift), dim=1).reshape(n * (n_copies + 1), map_.dim)
    order = 1 if norm == "l1" else 2
    stepper = None if is_batch_first(map_) and vectorize is not False else BatchStepper(map_, vectorize)
    dist = np.full((n, n_copies, steps + 1), np.nan)
    pending: list[Tensor] = []  # distances (n, n_copies) per step, on the device; to the host once per block
    with progress_bar(steps, progress=progress, desc=caller) as bar:
        for t in range(steps + 1):
            if t:
                batch = batch_step(map_, batch, t0 + t - 1, stepper)
                bar.update(1)
            theta = batch.reshape(n, n_copies + 1, map_.dim)[..., :p]
            pending.append(torch.linalg.vector_norm(theta[:, 1:] - theta[:, :1], ord=order, dim=-1).double())
            if len(pending) == SYNC_EVERY or t == steps:
                block = host_block(pending)
                first = t + 1 - len(pending)
                pending.clear()
                dead = ~np.isfinite(block).any(axis=(1, 2))  # every distance non-finite: the loop stops there
                end = first + (int(np.argmax(dead)) + 1 if dead.any() else len(block))
                dist[..., first:end] = np.moveaxis(block[: end - first], 0, -1)
                if dead.any():
                    break
    with np.errstate(divide="ignore", invalid="ignore"):
        logd = np.log(dist).mean(axis=1)
    diverged = ~np.isfinite(dist).all(axis=(1, 2))
    if diverged.any():
        warnings.warn(f"{caller}: {int(diverged.sum())} of {n} reference(s) or their copies became non-finite; "
                      "the slope uses the finite part", RuntimeWarning, stacklevel=2)
    windows = [fit_window or growth_fit_window(row) for row in logd]
    slope, stderr = np.array([_slope(row, w) for row, w in zip(logd, windows)]).T
    ds = xr.Dataset(
        {
            "distance": (("init", "copy", "step"), dist),
            "log_distance": (("init", "step"), logd),
            "lyapunov": (("init",), slope),
            "lyapunov_stderr": (("init",), stderr),
            "fit_start": (("init",), np.array([w[0] for w in windows], dtype=np.int64)),
            "fit_stop": (("init",), np.array([w[1] for w in windows], dtype=np.int64)),
            "diverged": (("init",), diverged),
        },
        coords={"step": t0 + np.arange(steps + 1, dtype=np.int64), "copy": np.arange(n_copies), "init": np.arange(n)},
        attrs={**map_attrs(map_), "d0": float(d0), "norm": norm, "n_copies": int(n_copies),
               "perturbation_seed": int(seed), "fit_rule": "auto" if fit_window is None else "given", "t0": int(t0),
               "units": "per step"},
    )
    return ds if batched else ds.isel(init=0, drop=True)


def _slope(m: np.ndarray, window: tuple[int, int]) -> tuple[float, float]:
    t = np.arange(window[0], window[1], dtype=np.float64)
    y = m[window[0] : window[1]]
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return np.nan, np.nan
    t, y = t[ok], y[ok]
    tc = t - t.mean()
    slope = float((tc * (y - y.mean())).sum() / (tc * tc).sum())
    resid = y - y.mean() - slope * tc
    stderr = float(np.sqrt((resid @ resid) / max(len(t) - 2, 1) / (tc * tc).sum())) if len(t) > 2 else np.nan
    return slope, stderr
