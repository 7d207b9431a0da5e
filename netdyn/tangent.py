"""Several Lyapunov exponents from exact tangents: spectrum, FTLE, covariant vectors.

All functions need ``map.step_jvp`` and evolve ``k`` tangent vectors together (one
batched ``step_jvp`` call per step), re-orthonormalised by a QR factorisation
every step.  The low-level routine :func:`qr_tangent_steps` yields the factors
step by step for users who want their own loop.

* :func:`lyapunov_spectrum` - top-``k`` exponents (Benettin / Shimada-Nagashima);
* :func:`ftle` - finite-time exponents over windows of ``w`` steps;
* :func:`clv` - covariant Lyapunov vectors (Ginelli et al.) and their angles;
* :func:`lyapunov_sum_from_jacobian` - the sum of all exponents as the mean
  ``ln|det J|`` (small maps).
"""
from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from .lyapunov import as_states, block_stderr, map_attrs
from .maps import require_jacobian

__all__ = ["qr_tangent_steps", "lyapunov_spectrum", "ftle", "clv", "lyapunov_sum_from_jacobian"]


def qr_tangent_steps(
    map_: Any, x0: Tensor, steps: int, k: int, seed: int = 0, t0: int = 0
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Yield ``(t, x_{t+1}, Q_{t+1}, R_{t+1})`` for ``t = 0 .. steps-1``.

    Parameters
    ----------
    map_ : map with ``step_jvp``; x0 : ``(dim,)``; steps : int; k : int (1..dim);
    seed : int, default 0 — seed of the random initial orthonormal basis;
    t0 : int, default 0 — map time of ``x0`` (the map is called at ``t0 + t``).

    Returns
    -------
    iterator; ``Q (dim, k)`` has orthonormal columns, ``R (k, k)`` is upper triangular
    with a positive diagonal, and ``J(x_t) Q_t = Q_{t+1} R_{t+1}``.  Stops early after
    yielding a non-finite ``x`` or ``R`` (the caller records the divergence).

    Maths
    -----
    The columns of ``Q_t`` span the image of ``k`` generic vectors under the tangent
    dynamics (the backward Lyapunov vectors after a transient); ``ln R_ii`` is the
    growth of the ``i``-th Gram-Schmidt direction, whose time average is the
    ``i``-th exponent.  Signs are fixed so that ``diag R > 0`` (a unique QR).
    """
    gen = torch.Generator().manual_seed(int(seed))
    basis = torch.linalg.qr(torch.randn(map_.dim, k, generator=gen, dtype=torch.float64))[0]
    q, x = basis.to(x0.dtype), x0
    for t in range(steps):
        x, w = map_.step_jvp(x, q.T.contiguous(), t0 + t)
        q, r = torch.linalg.qr(w.T)
        sign = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(r.dtype)
        q, r = q * sign, r * sign[:, None]
        yield t, x, q, r
        if not (torch.isfinite(x).all() and torch.isfinite(r).all()):
            return


def _check(map_: Any, x0: Tensor, steps: int, k: int, transient: int, caller: str) -> Tensor:
    require_jacobian(map_, caller)
    xs, batched = as_states(map_, x0, caller)
    if batched:
        raise ValueError(f"{caller}: expected one initial state of shape ({map_.dim},), got {tuple(xs.shape)}")
    if int(k) != k or not 1 <= k <= map_.dim:
        raise ValueError(f"{caller}: expected integer k in [1, {map_.dim}], got {k}")
    for name, value, low in (("steps", steps, 1), ("transient", transient, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{caller}: expected integer {name} >= {low}, got {value}")
    return xs[0]


def _log_diagonals(
    map_: Any, x: Tensor, steps: int, k: int, transient: int, seed: int, t0: int = 0
) -> tuple[np.ndarray, int]:
    """``ln diag R`` for the counted steps ``(steps, k)`` (NaN after a divergence) and
    the step of divergence (-1 if none)."""
    logs = np.full((steps, k), np.nan)
    for t, x_next, _, r in qr_tangent_steps(map_, x, transient + steps, k, seed, t0):
        if not (torch.isfinite(x_next).all() and torch.isfinite(r).all()):
            return logs, t + 1
        if t >= transient:
            logs[t - transient] = torch.log(torch.diagonal(r)).to(torch.float64).numpy()
    return logs, -1


def _warn_diverged(caller: str, at: int) -> None:
    warnings.warn(
        f"{caller}: the orbit or its tangents became non-finite at step {at}; estimates use the steps before it",
        RuntimeWarning,
        stacklevel=3,
    )


def lyapunov_spectrum(
    map_: Any,
    x0: Tensor,
    steps: int,
    k: int | None = None,
    transient: int = 0,
    seed: int = 0,
    n_blocks: int = 10,
    t0: int = 0,
) -> xr.Dataset:
    """Top-``k`` Lyapunov exponents (per step) by repeated QR re-orthonormalisation.

    Parameters
    ----------
    map_ : map with ``step_jvp`` (``v`` batch ``(k, dim)``).
    x0 : tensor ``(dim,)``.
    steps : int — counted steps after the transient.
    k : int or None, default None (= ``map.dim``) — number of exponents.
    transient : int, default 0 — steps run first (tangents aligned, not counted).
    seed : int, default 0 — seed of the initial orthonormal basis.
    t0 : int, default 0 — map time of ``x0`` (e.g. ``ds.final_step`` of a saved run);
        the ``step`` coordinate counts from it.
    n_blocks : int, default 10 — blocks for the standard errors.

    Returns
    -------
    xarray.Dataset, coords ``step`` (global step index), ``exponent`` (0 .. k-1):
    ``lyapunov (exponent)`` final spectrum, descending, per step;
    ``lyapunov_stderr (exponent)`` block-average standard errors;
    ``lyapunov_running (step, exponent)`` running estimates;
    ``local_rate (step, exponent)`` ``ln R_ii`` of each step;
    ``diverged ()`` and ``diverged_step ()`` (-1 if none).

    Maths
    -----
    ``lambda_i = (1/N) sum_t ln R_ii(t)`` with ``J(x_t) Q_t = Q_{t+1} R_{t+1}``
    (:func:`qr_tangent_steps`).  For ``k = dim``, ``sum_i ln R_ii = ln|det J|``
    exactly, so the sum of the spectrum is exact to rounding at every step.

    Failure policy: a non-finite orbit or tangent stops the estimate; the spectrum
    is averaged over the steps before it, ``diverged`` is True, with a warning.
    The exponents of a linear map do not depend on the state, so an orbit that
    grows (but stays finite) does not stop the estimate.

    Defaults: ``k = dim``; the random basis is almost surely generic.

    References
    ----------
    Benettin et al., Meccanica 15 (1980); Shimada & Nagashima, Prog. Theor. Phys. 61
    (1979); ChaosTools.jl ``lyapunovspectrum``.
    """
    caller = "lyapunov_spectrum"
    k = map_.dim if k is None else k
    x = _check(map_, x0, steps, k, transient, caller)
    logs, at = _log_diagonals(map_, x, steps, k, transient, seed, t0)
    valid = np.isfinite(logs).all(axis=1)
    n_valid = int(valid.sum())
    if at >= 0:
        _warn_diverged(caller, at)
    running = np.cumsum(logs, axis=0) / np.arange(1, steps + 1)[:, None]
    final = running[n_valid - 1] if n_valid else np.full(k, np.nan)
    return xr.Dataset(
        {
            "lyapunov": (("exponent",), final),
            "lyapunov_stderr": (("exponent",), block_stderr(logs[:n_valid].T, n_blocks)),
            "lyapunov_running": (("step", "exponent"), running),
            "local_rate": (("step", "exponent"), logs),
            "diverged": ((), at >= 0),
            "diverged_step": ((), at),
        },
        coords={"step": t0 + transient + np.arange(1, steps + 1, dtype=np.int64), "exponent": np.arange(k)},
        attrs={**map_attrs(map_), "method": "qr", "transient": int(transient), "steps": int(steps),
               "basis_seed": int(seed), "units": "per step"},
    )


def ftle(
    map_: Any, x0: Tensor, steps: int, k: int, window: int, transient: int = 0, seed: int = 0, t0: int = 0
) -> xr.Dataset:
    """Finite-time Lyapunov exponents over consecutive windows of ``window`` steps.

    Parameters
    ----------
    map_ : map with ``step_jvp``; x0 : ``(dim,)``.
    steps : int — counted steps, a multiple of ``window``.
    k : int — number of exponents; window : int — steps per window.
    transient : int, default 0; seed : int, default 0 (initial basis).
    t0 : int, default 0 — map time of ``x0``; the ``step`` coordinate counts from it.

    Returns
    -------
    xarray.Dataset with ``ftle (step, exponent)``, ``step`` = the global step index at
    the *end* of each window; ``diverged ()``; attrs ``window``, ``transient``.
    Windows after a divergence are NaN (with a warning).

    Maths
    -----
    ``lambda_i^w(t) = (1/w) sum_{s=t-w+1}^{t} ln R_ii(s)``: the growth rates of the
    tangent basis *carried over* from the previous window (the standard local
    exponents of the QR method, not the singular values of a fresh ``w``-step
    Jacobian product), so window averages are exactly the global estimate, and the
    distribution of ``lambda^w`` narrows around the exponents as ``w`` grows.

    References
    ----------
    Abarbanel, Brown & Kennel, J. Nonlinear Sci. 1 (1991); Sharafi, Martin &
    Hallerberg, Phys. Rev. E (2025) (FTLE of training dynamics).
    """
    caller = "ftle"
    x = _check(map_, x0, steps, k, transient, caller)
    if int(window) != window or window < 1 or steps % window:
        raise ValueError(f"ftle: expected an integer window >= 1 dividing steps={steps}, got {window}")
    logs, at = _log_diagonals(map_, x, steps, k, transient, seed, t0)
    if at >= 0:
        _warn_diverged(caller, at)
    values = logs.reshape(steps // window, window, k).mean(axis=1)
    return xr.Dataset(
        {"ftle": (("step", "exponent"), values), "diverged": ((), at >= 0)},
        coords={"step": t0 + transient + window * np.arange(1, steps // window + 1, dtype=np.int64),
                "exponent": np.arange(k)},
        attrs={**map_attrs(map_), "window": int(window), "transient": int(transient), "units": "per step"},
    )


def clv(
    map_: Any,
    x0: Tensor,
    steps: int,
    k: int,
    transient: int = 100,
    window: tuple[int, int] | None = None,
    seed: int = 0,
    t0: int = 0,
) -> xr.Dataset:
    """Covariant Lyapunov vectors by Ginelli's method, with the angles between them.

    Parameters
    ----------
    map_ : map with ``step_jvp``; x0 : ``(dim,)``.
    steps : int — steps run after the forward transient.
    k : int — number of leading vectors.
    transient : int, default 100 — forward transient (QR basis converges to the
        backward Lyapunov vectors) *and* the number of steps after the returned
        window that the backward pass uses to converge.
    window : (start, stop) or None — steps (counted after the forward transient,
        ``stop`` exclusive) for which vectors are returned; ``stop <= steps -
        transient``.  Default ``(0, steps - transient)``.
    seed : int, default 0 — seeds the initial basis and the random triangular ``C``.
    t0 : int, default 0 — map time of ``x0`` (e.g. ``ds.final_step`` of a saved run);
        the ``step`` coordinate counts from it.

    Returns
    -------
    xarray.Dataset, coords ``step`` (global index ``t`` of the state ``x_t``),
    ``exponent``, ``param``, ``pair``:
    ``clv (step, exponent, param)`` unit vectors (sign arbitrary);
    ``angle (step, pair)`` angle in ``[0, pi/2]`` between CLV ``i`` and ``i + 1``;
    ``lyapunov (exponent)`` the QR spectrum over the forward run (a by-product).

    Maths
    -----
    Forward: ``J(x_t) Q_t = Q_{t+1} R_{t+1}`` (store ``Q`` in the window, ``R`` from
    the window start on).  Backward: from a random upper-triangular ``C`` at the end,
    ``C_t = R_{t+1}^{-1} C_{t+1}`` with columns normalised; ``C`` converges to the
    coefficients of the CLVs in the basis ``Q_t``, and ``V_t = Q_t C_t``.  Since
    ``J(x_t) V_t = V_{t+1} diag(...)``, each CLV is mapped onto itself: for a
    linear map they are the eigenvectors.

    Defaults: a 100-step transient suits maps whose exponent gaps are O(0.1) per step
    (the error decays like ``exp(-gap * transient)``); increase it for near-degenerate
    spectra.

    References
    ----------
    Ginelli et al., Phys. Rev. Lett. 99, 130601 (2007); Kuptsov & Parlitz,
    J. Nonlinear Sci. 22 (2012).
    """
    caller = "clv"
    x = _check(map_, x0, steps, k, transient, caller)
    if transient < 1:
        raise ValueError(f"clv: expected transient >= 1 (forward and backward convergence), got {transient}")
    start, stop = (0, steps - transient) if window is None else window
    if not 0 <= start < stop <= steps - transient:
        raise ValueError(
            f"clv: expected window (start, stop) with 0 <= start < stop <= steps - transient = "
            f"{steps - transient}, got {(start, stop)}"
        )
    qs, rs = [], []
    logs = np.zeros(k)
    for t, x_next, q, r in qr_tangent_steps(map_, x, transient + steps, k, seed, t0):
        if not (torch.isfinite(x_next).all() and torch.isfinite(r).all()):
            warnings.warn(f"clv: the orbit became non-finite at step {t + 1}; no vectors", RuntimeWarning, 2)
            return _clv_dataset(map_, np.full((stop - start, k, map_.dim), np.nan), np.full(k, np.nan),
                                t0 + transient + start, transient, True)
        logs += torch.log(torch.diagonal(r)).to(torch.float64).numpy()
        s = t + 1 - transient  # Q_{t+1} is the basis at the counted step s
        if start <= s < stop:
            qs.append(q.to(torch.float64))
        if s > start:
            rs.append(r.to(torch.float64))  # R_{s}, s = start+1 .. steps
    gen = torch.Generator().manual_seed(int(seed) + 1)
    c = torch.triu(torch.rand(k, k, generator=gen, dtype=torch.float64) + 0.1)
    c = c / c.norm(dim=0)
    vectors = []
    for s in range(steps, start, -1):  # C_{s-1} = R_s^{-1} C_s
        c = torch.linalg.solve_triangular(rs[s - start - 1], c, upper=True)
        c = c / c.norm(dim=0)
        if s - 1 < stop:
            vectors.append((qs[s - 1 - start] @ c).T)
    clvs = torch.stack(vectors[::-1]).numpy()
    return _clv_dataset(map_, clvs, logs / (transient + steps), t0 + transient + start, transient, False)


def _clv_dataset(map_: Any, clvs: np.ndarray, spectrum: np.ndarray, first: int, transient: int, diverged: bool):
    n, k, dim = clvs.shape
    cos = np.abs(np.einsum("sip,sip->si", clvs[:, :-1], clvs[:, 1:]))
    return xr.Dataset(
        {
            "clv": (("step", "exponent", "param"), clvs),
            "angle": (("step", "pair"), np.arccos(np.clip(cos, 0.0, 1.0))),
            "lyapunov": (("exponent",), spectrum),
            "diverged": ((), diverged),
        },
        coords={"step": first + np.arange(n, dtype=np.int64), "exponent": np.arange(k),
                "param": np.arange(dim), "pair": np.arange(k - 1)},
        attrs={**map_attrs(map_), "method": "ginelli", "transient": int(transient)},
    )


def lyapunov_sum_from_jacobian(
    map_: Any, x0: Tensor, steps: int, transient: int = 0, n_blocks: int = 10
) -> xr.Dataset:
    """Sum of all Lyapunov exponents as the orbit mean of ``ln|det J(x_t)|``.

    Parameters
    ----------
    map_ : map with ``step_jvp``; x0 : ``(dim,)``; steps : int; transient : int,
    default 0; n_blocks : int, default 10 (standard error).

    Returns
    -------
    xarray.Dataset: ``log_abs_det (step)``, ``lyapunov_sum ()`` (per step),
    ``lyapunov_sum_stderr ()``, ``diverged ()``.

    Maths
    -----
    ``sum_i lambda_i = lim (1/N) sum_t ln|det J(x_t)|`` (Oseledets).  ``J`` is built
    from one batched ``step_jvp`` with the identity (``dim`` tangents), so the cost is
    ``dim`` tangents plus an ``O(dim^3)`` determinant per step: meant for small maps.
    A singular ``J`` gives ``-inf``.
    """
    caller = "lyapunov_sum_from_jacobian"
    x = _check(map_, x0, steps, map_.dim, transient, caller)
    eye = torch.eye(map_.dim, dtype=x.dtype)
    logdet = np.full(steps, np.nan)
    at = -1
    for t in range(transient + steps):
        x_next, jt = map_.step_jvp(x, eye, t)  # rows J e_i: J transposed
        if not (torch.isfinite(x_next).all() and torch.isfinite(jt).all()):
            at = t + 1
            _warn_diverged(caller, at)
            break
        if t >= transient:
            logdet[t - transient] = float(torch.linalg.slogdet(jt.to(torch.float64))[1])
        x = x_next
    valid = logdet[np.isfinite(logdet) | np.isneginf(logdet)]
    return xr.Dataset(
        {
            "log_abs_det": (("step",), logdet),
            "lyapunov_sum": ((), valid.mean() if valid.size else np.nan),
            "lyapunov_sum_stderr": ((), float(block_stderr(valid, n_blocks))),
            "diverged": ((), at >= 0),
        },
        coords={"step": transient + np.arange(1, steps + 1, dtype=np.int64)},
        attrs={**map_attrs(map_), "transient": int(transient), "units": "per step"},
    )
