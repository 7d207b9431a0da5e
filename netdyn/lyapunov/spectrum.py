"""Several Lyapunov exponents from exact tangents: spectrum, FTLE, covariant vectors.

All functions need ``map.step_jvp`` and evolve ``k`` tangent vectors together (one
batched ``step_jvp`` call per step), re-orthonormalised by a QR factorisation
every step.  The low-level routine :func:`qr_tangent_steps` yields the factors
step by step for users who want their own loop.

Ensembles: every function takes one initial state ``(dim,)`` or ``n`` of them
``(n, dim)`` (many initial conditions, basins).  A batch advances in one call per
step — ``torch.func.vmap`` over the map's ``step_jvp`` when it allows it (see
:class:`netdyn.maps.batching.BatchStepper`), one batched QR — and the results gain a
leading dimension ``init``.

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

from netdyn._core.devices import SYNC_EVERY, host_block, host_reads_are_free
from netdyn._core.progress import progress_bar
from netdyn._core.stats import block_stderr
from netdyn._core.validation import check_int
from netdyn.lyapunov.small_qr import positive_qr
from netdyn.maps.base import as_states, is_batch_first, map_attrs, param_dim_of, require_jacobian
from netdyn.maps.batching import BatchStepper
from netdyn.maps.divergence import DivergenceRule, EnsembleDivergence, parameter_norms, parameter_norms_on_device

__all__ = ["qr_tangent_steps", "lyapunov_spectrum", "ftle", "clv", "lyapunov_sum_from_jacobian"]


def qr_tangent_steps(
    map_: Any, x0: Tensor, steps: int, *, k: int | None = None, seed: int = 0, t0: int = 0,
    vectorize: bool | None = None, check_every: int = 1,
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Yield ``(t, x_{t+1}, Q_{t+1}, R_{t+1})`` for ``t = 0 .. steps-1``.

    Parameters
    ----------
    map_ : map with ``step_jvp``; x0 : ``(dim,)`` or a batch ``(n, dim)``; steps : int;
    k : int or None, default None — number of tangent vectors, 1..dim (None: dim);
    seed : int, default 0 — seed of the random initial orthonormal basis (the same
        basis for every member of a batch);
    t0 : int, default 0 — map time of ``x0`` (the map is called at ``t0 + t``);
    vectorize : bool or None, default None — how a batch is stepped
        (:class:`netdyn.maps.batching.BatchStepper`).
    check_every : int, default 1 — steps between the checks whether every member
        became non-finite (each check reads one bool back from the state's device:
        a host sync).  With ``check_every > 1`` the iteration may go on yielding up
        to ``check_every - 1`` factors after that (meaningless, to be masked like
        those of a single lost member).

    Returns
    -------
    iterator; ``Q (dim, k)`` has orthonormal columns, ``R (k, k)`` is upper triangular
    with a positive diagonal, and ``J(x_t) Q_t = Q_{t+1} R_{t+1}``; for a batch,
    ``x (n, dim)``, ``Q (n, dim, k)``, ``R (n, k, k)``.  Stops after yielding a
    non-finite ``x`` or ``R`` (the caller records the divergence); in a batch, a member
    that became non-finite is held at its last finite state and basis (its later
    factors are meaningless: mask them from its first non-finite step), and the
    iteration stops once every member has.

    Raises
    ------
    ValueError
        on a bad ``x0``, ``steps`` or ``k``.
    TypeError
        for a map without ``step_jvp``.

    Notes
    -----
    The columns of ``Q_t`` span the image of ``k`` generic vectors under the tangent
    dynamics (the backward Lyapunov vectors after a transient); ``ln R_ii`` is the
    growth of the ``i``-th Gram-Schmidt direction, whose time average is the
    ``i``-th exponent.
    Signs are fixed so that ``diag R > 0`` (a unique QR).

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.lyapunov.spectrum import qr_tangent_steps
    >>> m = nd.LinearMap([[2.0, 0.0], [0.0, 0.5]])
    >>> for t, x, q, r in qr_tangent_steps(m, m.initial_state(), 20, k=2):
    ...     pass
    >>> [round(float(v), 3) for v in r.diagonal()]  # |eigenvalues| once aligned
    [2.0, 0.5]
    """
    caller = "qr_tangent_steps"
    require_jacobian(map_, caller)
    xs, batched = as_states(map_, x0, caller)
    steps = check_int(steps, "steps", caller, minimum=1)
    k = map_.dim if k is None else check_int(k, "k", caller, minimum=1, maximum=map_.dim)
    for t, x_next, q_next, r, _ in _qr_steps(map_, xs, steps, k, seed, t0, vectorize, check_every):
        yield (t, x_next, q_next, r) if batched else (t, x_next[0], q_next[0], r[0])


def _qr_steps(
    map_: Any, xs: Tensor, steps: int, k: int, seed: int, t0: int, vectorize: bool | None, check_every: int
) -> Iterator[tuple[int, Tensor, Tensor, Tensor, Tensor]]:
    """The loop of :func:`qr_tangent_steps` on checked states ``xs (n, dim)``; also yields
    ``dead (n,)``: whether a member's state or ``R`` has been non-finite at any step so far
    (its later steps repeat its last sound state and basis)."""
    gen = torch.Generator().manual_seed(int(seed))
    basis = torch.linalg.qr(torch.randn(map_.dim, k, generator=gen, dtype=torch.float64))[0]
    q = basis.to(device=xs.device, dtype=xs.dtype).expand(xs.shape[0], map_.dim, k)  # CPU draw, moved once
    # a batch_first map steps the whole batch itself (one call, no vmap); others go through BatchStepper
    step_jvp = map_.step_jvp if is_batch_first(map_) and vectorize is not False else BatchStepper(map_, vectorize).step_jvp
    dead = torch.zeros(xs.shape[0], dtype=torch.bool, device=xs.device)
    reads_free = host_reads_are_free(xs.device)
    for t in range(steps):
        x_next, w = step_jvp(xs, q.transpose(1, 2), t0 + t)
        q_next, r = positive_qr(w.transpose(1, 2))
        # one sum is finite exactly when all its terms are (or a finite sum overflowed: then the exact test)
        if not (reads_free and bool(torch.isfinite(x_next.sum() + r.sum()))):
            dead = dead | ~(torch.isfinite(x_next).all(dim=1) & torch.isfinite(r).flatten(1).all(dim=1))
        yield t, x_next, q_next, r, dead
        if (t + 1) % check_every == 0 and bool(dead.all()):  # a host sync every check_every steps
            return
        if reads_free and not bool(dead.any()):  # skip the masking while every member is sound
            xs, q = x_next, q_next
        else:
            xs, q = torch.where(dead[:, None], xs, x_next), torch.where(dead[:, None, None], q, q_next)

def _check(
    map_: Any, x0: Tensor, steps: int, k: int | None, transient: int, caller: str
) -> tuple[Tensor, bool, int, int, int]:
    """``(states (n, dim), batched, steps, k, transient)`` after validating the arguments (``k=None``: dim)."""
    require_jacobian(map_, caller)
    xs, batched = as_states(map_, x0, caller)
    k = map_.dim if k is None else check_int(k, "k", caller, minimum=1, maximum=map_.dim)
    steps = check_int(steps, "steps", caller, minimum=1)
    transient = check_int(transient, "transient", caller, minimum=0)
    return xs, batched, steps, k, transient


def _log_diagonals(
    map_: Any, xs: Tensor, steps: int, k: int, transient: int, seed: int, t0: int, caller: str,
    progress: bool | None, *, running_sums: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, EnsembleDivergence]:
    """``ln diag R`` for the counted steps, time-major ``(steps, n, k)``; with ``running_sums``
    their cumulative sums over the steps (the same sequential sums as ``np.cumsum`` along
    axis 0, taken block by block while the block is in cache), else None; each member's step
    where its numbers were lost ``(n,)`` (-1 if never; NaN rates from there on), and the orbits'
    divergence verdict (the rule of :mod:`netdyn.maps.divergence` on the parameter norm,
    which flags a member without stopping it, as in :func:`netdyn.max_lyapunov`)."""
    n, p = xs.shape[0], param_dim_of(map_)
    logs = np.empty((steps, n, k))  # time-major: each step writes one contiguous block
    sums = np.empty_like(logs) if running_sums else None
    counted = 0  # rows of logs written (all of them unless every orbit was lost early)
    lost = np.full(n, -1, dtype=np.int64)
    verdict = EnsembleDivergence(n, DivergenceRule())
    verdict.update(parameter_norms(xs, p), t0)
    pending: list[tuple[int, Tensor, Tensor, Tensor]] = []  # per step, on the device; to the host once per block

    def replay() -> None:
        nonlocal counted
        if not pending:
            return
        bads, norms, diagonals = (host_block([row[i] for row in pending]) for i in (1, 2, 3))
        with np.errstate(divide="ignore", invalid="ignore"):  # ln 0 = -inf and ln NaN: the member is lost there
            rates = np.log(diagonals)
        first, last = pending[0][0], pending[-1][0]
        start, counted = counted, max(last + 1 - transient, 0)
        if first >= transient and verdict.settles(norms) and not bads.any() and not (lost >= 0).any():
            logs[first - transient : last - transient + 1] = rates  # a quiet block: one copy, same values
        else:
            for j, (t, *_) in enumerate(pending):
                verdict.update(norms[j], t0 + t + 1, lost < 0)
                lost[bads[j] & (lost < 0)] = t + 1
                if t >= transient:
                    logs[t - transient] = rates[j]
                    logs[t - transient, lost >= 0] = np.nan
        if sums is not None and counted > start:
            block = sums[start:counted]
            block[:] = logs[start:counted]
            if start:
                block[0] += sums[start - 1]
            np.cumsum(block, axis=0, out=block)
        pending.clear()

    with progress_bar(transient + steps, progress=progress, desc=caller) as bar:
        for t, x_next, _, r, dead in _qr_steps(map_, xs, transient + steps, k, seed, t0, None, SYNC_EVERY):
            bar.update(1)
            norm = parameter_norms_on_device(x_next, p)
            pending.append((t, dead, norm, torch.diagonal(r, dim1=1, dim2=2).to(torch.float64)))
            if len(pending) == SYNC_EVERY:
                replay()
    replay()
    logs[counted:] = np.nan  # the steps not run: every orbit was lost before them
    if sums is not None:
        sums[counted:] = np.nan
    return logs, sums, lost, verdict


def _warn_lost(caller: str, lost: np.ndarray) -> None:
    if (lost >= 0).any():
        warnings.warn(
            f"{caller}: the orbit or its tangents became non-finite at step {int(lost[lost >= 0].min())} "
            f"({int((lost >= 0).sum())} of {lost.size} orbit(s)); estimates use the steps before it",
            RuntimeWarning,
            stacklevel=3,
        )


def _verdict_variables(lost: np.ndarray, verdict: EnsembleDivergence, t0: int) -> dict[str, Any]:
    """``unresolved``/``unresolved_step`` (numbers lost) and the divergence verdict, over ``init``."""
    return {
        "unresolved": (("init",), lost >= 0),
        "unresolved_step": (("init",), np.where(lost >= 0, lost + t0, -1)),
        **verdict.variables(),
    }


def _unbatched(ds: xr.Dataset, batched: bool) -> xr.Dataset:
    return ds if batched else ds.isel(init=0, drop=True)


def lyapunov_spectrum(
    map_: Any,
    x0: Tensor,
    steps: int,
    *,
    k: int | None = None,
    transient: int = 0,
    seed: int = 0,
    n_blocks: int = 10,
    t0: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Top-``k`` Lyapunov exponents (per step) by repeated QR re-orthonormalisation.

    Parameters
    ----------
    map_ : map with ``step_jvp`` (``v`` batch ``(k, dim)``).
    x0 : tensor ``(dim,)``, or ``(n, dim)`` for ``n`` orbits at once (the result
        gains the leading dimension ``init``).
    steps : int — counted steps after the transient.
    k : int or None, default None (= ``map.dim``) — number of exponents.
    transient : int, default 0 — steps run first (tangents aligned, not counted).
    seed : int, default 0 — seed of the initial orthonormal basis.
    t0 : int, default 0 — map time of ``x0`` (e.g. ``ds.final_step`` of a saved run);
        the ``step`` coordinate counts from it.
    n_blocks : int, default 10 — blocks for the standard errors.
    progress : bool or None, default None — a tqdm bar over the steps (None: only
        on a terminal).

    Returns
    -------
    xarray.Dataset, coords ``step`` (global step index), ``exponent`` (0 .. k-1):
    ``lyapunov (exponent)`` final spectrum, descending, per step;
    ``lyapunov_stderr (exponent)`` block-average standard errors;
    ``lyapunov_running (step, exponent)`` running estimates;
    ``local_rate (step, exponent)`` ``ln R_ii`` of each step;
    ``unresolved ()``, ``unresolved_step ()`` (-1 if none): the orbit or its tangents
    became non-finite and the estimate stopped there; ``diverged ()``,
    ``diverged_step ()``, ``divergence_reason ()``: the orbit broke the training
    divergence rule (:mod:`netdyn.maps.divergence`; flagged, the estimate goes on).
    A batch adds the leading dimension ``init`` to each.

    Raises
    ------
    ValueError
        on a bad ``x0``, counts that are not integers in range, or ``k`` outside
        ``[1, dim]``.
    TypeError
        for a map without ``step_jvp``.

    Notes
    -----
    ``lambda_i = (1/N) sum_t ln R_ii(t)`` with ``J(x_t) Q_t = Q_{t+1} R_{t+1}``
    (:func:`qr_tangent_steps`).  For ``k = dim``, ``sum_i ln R_ii = ln|det J|``
    exactly, so the sum of the spectrum is exact to rounding at every step.

    Failure policy: a non-finite orbit or tangent stops the estimate; the spectrum
    is averaged over the steps before it, ``unresolved`` is True, with a warning.
    The exponents of a linear map do not depend on the state, so an orbit that
    grows (but stays finite) does not stop the estimate.

    Defaults: ``k = dim``; the random basis is almost surely generic.

    References
    ----------
    Benettin et al., Meccanica 15 (1980); Shimada & Nagashima, Prog. Theor. Phys. 61
    (1979); ChaosTools.jl ``lyapunovspectrum``.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 3.0], lr=0.6)
    >>> res = nd.lyapunov_spectrum(m, m.initial_state(), 20, transient=40)
    >>> [round(float(v), 4) for v in res["lyapunov"]]  # ln|1 - 0.6 h|: ln 0.8, ln 0.4
    [-0.2231, -0.9163]
    """
    caller = "lyapunov_spectrum"
    xs, batched, steps, k, transient = _check(map_, x0, steps, k, transient, caller)
    n_blocks = check_int(n_blocks, "n_blocks", caller, minimum=1)
    t0 = check_int(t0, "t0", caller, minimum=0)
    logs, running, lost, verdict = _log_diagonals(
        map_, xs, steps, k, transient, seed, t0, caller, progress, running_sums=True
    )
    _warn_lost(caller, lost)
    verdict.warn(caller)
    # running means in place (the Dataset holds (init, step, exponent) views of the time-major
    # arrays); a sum is finite exactly when every rate before it is
    every_rate_finite = bool(np.isfinite(running[-1]).all())
    n_valid = np.full(xs.shape[0], steps) if every_rate_finite else np.isfinite(logs).all(axis=2).sum(axis=0)
    running = np.divide(running, np.arange(1, steps + 1)[:, None, None], out=running).transpose(1, 0, 2)
    logs = logs.transpose(1, 0, 2)
    if every_rate_finite:  # the usual case, in one call for the whole ensemble
        final, stderr = running[:, -1], block_stderr(logs.transpose(0, 2, 1), n_blocks)
    else:
        final = np.stack([running[i, m - 1] if m else np.full(k, np.nan) for i, m in enumerate(n_valid)])
        stderr = np.stack([block_stderr(logs[i, :m].T, n_blocks) for i, m in enumerate(n_valid)])
    ds = xr.Dataset(
        {
            "lyapunov": (("init", "exponent"), final),
            "lyapunov_stderr": (("init", "exponent"), stderr),
            "lyapunov_running": (("init", "step", "exponent"), running),
            "local_rate": (("init", "step", "exponent"), logs),
            **_verdict_variables(lost, verdict, t0),
        },
        coords={"step": t0 + transient + np.arange(1, steps + 1, dtype=np.int64), "exponent": np.arange(k),
                "init": np.arange(xs.shape[0])},
        attrs={**map_attrs(map_), "method": "qr", "transient": int(transient), "steps": int(steps),
               "basis_seed": int(seed), "units": "per step"},
    )
    return _unbatched(ds, batched)


def ftle(
    map_: Any,
    x0: Tensor,
    steps: int,
    *,
    window: int,
    k: int | None = None,
    transient: int = 0,
    seed: int = 0,
    t0: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Finite-time Lyapunov exponents over consecutive windows of ``window`` steps.

    Parameters
    ----------
    map_ : map with ``step_jvp``.
    x0 : Tensor ``(dim,)`` or a batch ``(n, dim)``.
    steps : int — counted steps, a multiple of ``window``.
    window : int — steps per window.
    k : int or None, default None — number of exponents (None: ``dim``).
    transient : int, default 0 — steps run before the first window.
    seed : int, default 0 — seed of the random initial basis.
    t0 : int, default 0 — map time of ``x0``; the ``step`` coordinate counts from it.
    progress : bool or None, default None — a tqdm bar over the steps (None: only
        on a terminal).

    Returns
    -------
    xarray.Dataset with ``ftle (step, exponent)``, ``step`` = the global step index at
    the *end* of each window; ``unresolved``, ``diverged`` and their steps and reason
    as in :func:`lyapunov_spectrum`; attrs ``window``, ``transient``.  A batch adds the
    leading dimension ``init``.
    Windows after the numbers were lost are NaN (with a warning).

    Raises
    ------
    ValueError
        on a bad ``x0``, counts out of range, or a ``window`` that does not divide
        ``steps``.
    TypeError
        for a map without ``step_jvp``.

    Notes
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

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 3.0], lr=0.6)
    >>> res = nd.ftle(m, m.initial_state(), 20, window=5, k=1, transient=20)
    >>> [round(float(v), 4) for v in res["ftle"].sel(exponent=0)]
    [-0.2231, -0.2231, -0.2231, -0.2231]
    """
    caller = "ftle"
    xs, batched, steps, k, transient = _check(map_, x0, steps, k, transient, caller)
    t0 = check_int(t0, "t0", caller, minimum=0)
    window = check_int(window, "window", caller, minimum=1)
    if steps % window:
        raise ValueError(f"ftle: expected an integer window >= 1 dividing steps={steps}, got {window}")
    logs, _, lost, verdict = _log_diagonals(map_, xs, steps, k, transient, seed, t0, caller, progress)
    _warn_lost(caller, lost)
    verdict.warn(caller)
    values = logs.reshape(steps // window, window, xs.shape[0], k).mean(axis=1).transpose(1, 0, 2)
    ds = xr.Dataset(
        {"ftle": (("init", "step", "exponent"), values), **_verdict_variables(lost, verdict, t0)},
        coords={"step": t0 + transient + window * np.arange(1, steps // window + 1, dtype=np.int64),
                "exponent": np.arange(k), "init": np.arange(xs.shape[0])},
        attrs={**map_attrs(map_), "window": int(window), "transient": int(transient), "units": "per step"},
    )
    return _unbatched(ds, batched)


def clv(
    map_: Any,
    x0: Tensor,
    steps: int,
    *,
    k: int | None = None,
    transient: int = 100,
    window: tuple[int, int] | None = None,
    seed: int = 0,
    t0: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Covariant Lyapunov vectors by Ginelli's method, with the angles between them.

    Parameters
    ----------
    map_ : map with ``step_jvp``.
    x0 : Tensor ``(dim,)`` or a batch ``(n, dim)`` (the result gains the leading
        dimension ``init``).
    steps : int — steps run after the forward transient.
    k : int or None, default None — number of leading vectors (None: ``dim``).
    transient : int, default 100 — forward transient (QR basis converges to the
        backward Lyapunov vectors) *and* the number of steps after the returned
        window that the backward pass uses to converge.
    window : (start, stop) or None — steps (counted after the forward transient,
        ``stop`` exclusive) for which vectors are returned; ``stop <= steps -
        transient``.  Default ``(0, steps - transient)``.
    seed : int, default 0 — seeds the initial basis and the random triangular ``C``.
    t0 : int, default 0 — map time of ``x0`` (e.g. ``ds.final_step`` of a saved run);
        the ``step`` coordinate counts from it.
    progress : bool or None, default None — a tqdm bar over the forward steps (None:
        only on a terminal).

    Returns
    -------
    xarray.Dataset, coords ``step`` (global index ``t`` of the state ``x_t``),
    ``exponent``, ``param``, ``pair``:
    ``clv (step, exponent, param)`` unit vectors (sign arbitrary);
    ``angle (step, pair)`` angle in ``[0, pi/2]`` between CLV ``i`` and ``i + 1``;
    ``lyapunov (exponent)`` the QR spectrum over the forward run (a by-product).

    Raises
    ------
    ValueError
        on a bad ``x0``, counts out of range, ``transient < 1`` or a ``window``
        outside ``[0, steps - transient]``.
    TypeError
        for a map without ``step_jvp``.

    Notes
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

    Examples
    --------
    >>> import numpy as np, netdyn as nd
    >>> m = nd.LinearMap([[1.2, 0.5], [0.0, 0.5]])
    >>> res = nd.clv(m, m.initial_state(), 60, k=2, transient=30)
    >>> v = res["clv"].isel(step=0, exponent=1).values  # the eigenvector of 0.5
    >>> np.round(np.abs(v / np.linalg.norm(v)), 3)
    array([0.581, 0.814])
    """
    caller = "clv"
    xs, batched, steps, k, transient = _check(map_, x0, steps, k, transient, caller)
    t0 = check_int(t0, "t0", caller, minimum=0)
    if transient < 1:
        raise ValueError(f"clv: expected transient >= 1 (forward and backward convergence), got {transient}")
    start, stop = (0, steps - transient) if window is None else window
    if not 0 <= start < stop <= steps - transient:
        raise ValueError(
            f"clv: expected window (start, stop) with 0 <= start < stop <= steps - transient = "
            f"{steps - transient}, got {(start, stop)}"
        )
    n = xs.shape[0]
    qs, rs = [], []
    logs = torch.zeros((n, k), dtype=torch.float64, device=xs.device)  # kept on the device: no sync per step
    lost = torch.full((n,), -1, dtype=torch.int64, device=xs.device)
    with progress_bar(transient + steps, progress=progress, desc=caller) as bar:
        for t, x_next, q, r, dead in _qr_steps(map_, xs, transient + steps, k, seed, t0, None, SYNC_EVERY):
            bar.update(1)
            lost = torch.where(dead & (lost < 0), t + 1, lost)
            logs += torch.log(torch.diagonal(r, dim1=1, dim2=2)).to(torch.float64)
            s = t + 1 - transient  # Q_{t+1} is the basis at the counted step s
            if start <= s < stop:
                qs.append(q.to(torch.float64))
            if s > start:
                rs.append(r.to(torch.float64))  # R_{s}, s = start+1 .. steps
    first = t0 + transient + start
    logs, lost = logs.cpu().numpy(), lost.cpu().numpy()
    if (lost >= 0).any():
        warnings.warn(f"clv: {int((lost >= 0).sum())} of {n} orbit(s) became non-finite (first at step "
                      f"{int(lost[lost >= 0].min())}); no vectors for them", RuntimeWarning, 2)
    if (lost >= 0).all():
        ds = _clv_dataset(map_, np.full((n, stop - start, k, map_.dim), np.nan), np.full((n, k), np.nan), first,
                          transient, np.ones(n, dtype=bool))
        return _unbatched(ds, batched)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    c = torch.triu(torch.rand(k, k, generator=gen, dtype=torch.float64) + 0.1)
    c = (c / c.norm(dim=0)).to(xs.device).expand(n, k, k)  # CPU draw, moved once
    vectors = []
    for s in range(steps, start, -1):  # C_{s-1} = R_s^{-1} C_s
        c = torch.linalg.solve_triangular(rs[s - start - 1], c, upper=True)
        c = c / c.norm(dim=1, keepdim=True)
        if s - 1 < stop:
            vectors.append((qs[s - 1 - start] @ c).transpose(1, 2))
    clvs = torch.stack(vectors[::-1], dim=1).cpu().numpy()
    spectrum = logs / (transient + steps)
    clvs[lost >= 0], spectrum[lost >= 0] = np.nan, np.nan
    return _unbatched(_clv_dataset(map_, clvs, spectrum, first, transient, lost >= 0), batched)


def _clv_dataset(
    map_: Any, clvs: np.ndarray, spectrum: np.ndarray, first: int, transient: int, unresolved: np.ndarray
) -> xr.Dataset:
    """``clvs (init, step, exponent, param)``, ``spectrum (init, exponent)``, ``unresolved (init)``."""
    n, steps, k, dim = clvs.shape
    cos = np.abs(np.einsum("nsip,nsip->nsi", clvs[:, :, :-1], clvs[:, :, 1:]))
    return xr.Dataset(
        {
            "clv": (("init", "step", "exponent", "param"), clvs),
            "angle": (("init", "step", "pair"), np.arccos(np.clip(cos, 0.0, 1.0))),
            "lyapunov": (("init", "exponent"), spectrum),
            "unresolved": (("init",), unresolved),
        },
        coords={"step": first + np.arange(steps, dtype=np.int64), "exponent": np.arange(k),
                "param": np.arange(dim), "pair": np.arange(k - 1), "init": np.arange(n)},
        attrs={**map_attrs(map_), "method": "ginelli", "transient": int(transient)},
    )


def lyapunov_sum_from_jacobian(
    map_: Any, x0: Tensor, steps: int, *, transient: int = 0, n_blocks: int = 10, progress: bool | None = None
) -> xr.Dataset:
    """Sum of all Lyapunov exponents as the orbit mean of ``ln|det J(x_t)|``.

    Parameters
    ----------
    map_ : map with ``step_jvp``.
    x0 : Tensor ``(dim,)`` — one start state.
    steps : int — counted steps.
    transient : int, default 0 — steps run before counting.
    n_blocks : int, default 10 — blocks of the standard error (:func:`netdyn._core.stats.block_stderr`).
    progress : bool or None, default None — a tqdm bar over the steps (None: only on a terminal).

    Returns
    -------
    xarray.Dataset: ``log_abs_det (step)``, ``lyapunov_sum ()`` (per step),
    ``lyapunov_sum_stderr ()``, ``diverged ()``.

    Raises
    ------
    ValueError
        on a batch ``x0`` or counts out of range.
    TypeError
        for a map without ``step_jvp``.

    Notes
    -----
    ``sum_i lambda_i = lim (1/N) sum_t ln|det J(x_t)|`` (Oseledets).  ``J`` is built
    from one batched ``step_jvp`` with the identity (``dim`` tangents), so the cost is
    ``dim`` tangents plus an ``O(dim^3)`` determinant per step: meant for small maps.
    A singular ``J`` gives ``-inf``.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.HenonMap()
    >>> res = nd.lyapunov_sum_from_jacobian(m, m.initial_state(), 50)
    >>> round(float(res["lyapunov_sum"]), 4)  # ln 0.3, exact at every step
    -1.204
    """
    caller = "lyapunov_sum_from_jacobian"
    xs, batched, steps, _, transient = _check(map_, x0, steps, None, transient, caller)
    n_blocks = check_int(n_blocks, "n_blocks", caller, minimum=1)
    if batched:
        raise ValueError(f"{caller}: expected one initial state of shape ({map_.dim},), got {tuple(xs.shape)}")
    x = xs[0]
    eye = torch.eye(map_.dim, dtype=x.dtype, device=x.device)
    logdet = np.full(steps, np.nan)
    at = -1
    pending: list[tuple[int, Tensor]] = []  # (t, [finite, ln|det J|]) on the device, read back once per block
    with progress_bar(transient + steps, progress=progress, desc=caller) as bar:
        for t in range(transient + steps):
            bar.update(1)
            x_next, jt = map_.step_jvp(x, eye, t)  # rows J e_i: J transposed
            finite = torch.isfinite(x_next).all() & torch.isfinite(jt).all()
            value = torch.linalg.slogdet(torch.where(finite, jt, 0.0).to(torch.float64))[1]  # no NaN into the LU
            pending.append((t, torch.stack((finite.to(torch.float64), value))))
            x = x_next
            if len(pending) == SYNC_EVERY or t == transient + steps - 1:
                block = host_block([v for _, v in pending])
                for (t_j, _), (ok, log_abs_det) in zip(pending, block):
                    if not ok:
                        at = t_j + 1
                        break
                    if t_j >= transient:
                        logdet[t_j - transient] = log_abs_det
                pending.clear()
                if at >= 0:
                    _warn_lost(caller, np.array([at]))
                    break
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
