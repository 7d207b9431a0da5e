"""Orbital stability: what the tail of an orbit settles into.

:func:`orbital_stability` classifies the end of a recorded orbit as a
``"fixed_point"``, ``"periodic"`` orbit of period ``p``, ``"quasi_periodic"``,
``"chaotic"`` or ``"divergent"`` orbit and returns the evidence with the label
(an :class:`OrbitalStability`), in the spirit of the orbital-stability analysis
of training trajectories by Danovski, Soriano & Lacasa (2024).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from .maps import has_jacobian

__all__ = ["OrbitalStability", "orbital_stability", "LABELS"]

LABELS = ("fixed_point", "periodic", "quasi_periodic", "chaotic", "divergent")
_SHRINK = 0.5  # late/early ratio of a return distance that marks a contracting orbit (test 3)
_DRIFT = 0.5  # drift above which the tail is still travelling rather than stationary (test 3)


@dataclass(frozen=True)
class OrbitalStability:
    """The class of an orbit's tail and the evidence for it.

    Distances are relative to ``scale`` unless said otherwise.

    Attributes
    ----------
    label
        one of :data:`LABELS`.
    period
        1 for a fixed point, ``p`` for a periodic orbit, ``None`` otherwise.
    reason
        one sentence saying which test decided.
    tail
        number of states examined.
    scale
        ``max_t ||x_t||_2`` over the tail (absolute units of the state).
    tol
        relative tolerance used for "equal" states.
    mean_distance
        ``max_t ||x_t - mean(x)||_2 / scale``: the tail's spread about its mean.
    best_period
        the ``p <= max_period`` with the smallest return distance (for a periodic
        orbit the detected period).
    return_distance
        ``max_t ||x_{t+p} - x_t||_2 / scale`` at ``p = best_period``.
    converged
        True when the whole tail repeats within ``tol``; False when a period was
        found because the return distance decays (still converging) or none was found.
    recurrence_rate
        fraction of state pairs more than ``theiler`` steps apart that lie within
        ``recurrence_eps`` times the tail's spread (NaN for divergent orbits).
    exponent
        the maximal Lyapunov exponent (per step) used to separate quasi-periodic
        from chaotic orbits, NaN when not needed or not estimable.
    exponent_source
        ``"supplied"``, ``"map"`` (tangent or twin iteration), ``"orbit"``
        (nearest-neighbour divergence) or ``"none"``.
    growth
        max ``||x||`` over the last quarter of the tail / max over the first quarter.
    drift
        ``||mean of the last quarter - mean of the first quarter|| / max_t ||x_t - mean||``:
        near 0 for a stationary orbit, of order 1 for one still travelling.
    """

    label: str
    period: int | None
    reason: str
    tail: int
    scale: float
    tol: float
    mean_distance: float
    best_period: int
    return_distance: float
    converged: bool
    recurrence_rate: float
    exponent: float
    exponent_source: str
    growth: float
    drift: float


def orbital_stability(
    orbit: np.ndarray | torch.Tensor | xr.DataArray | xr.Dataset,
    *,
    tail: int | None = None,
    tol: float | None = None,
    max_period: int = 64,
    converge_ratio: float = 1e-2,
    growth_limit: float = 1e3,
    exponent: float | None = None,
    map: Any = None,
    exponent_tol: float = 0.01,
    exponent_steps: int = 500,
    theiler: int = 10,
    horizon: int = 5,
    n_ref: int = 500,
    recurrence_eps: float = 0.1,
    seed: int = 0,
) -> OrbitalStability:
    """Classify the tail of an orbit.

    Parameters
    ----------
    orbit
        states ``(T, d)`` or a scalar series ``(T,)``: a numpy array or tensor, a
        DataArray over ``(step, param)``, or a trajectory Dataset (its ``state``; a
        true ``diverged`` flag makes the orbit divergent).
    tail
        default ``None``: the last ``T // 2`` states (the first half is taken as
        transient); at least 16.
    tol
        relative tolerance for two states to count as equal, in units of ``scale``.
        Default ``None``: ``max(1e-6, 100 * eps)`` with ``eps`` the machine epsilon
        of the orbit's dtype (1e-6 in float64, 1.2e-5 in float32): far above
        rounding noise, far below any genuine cycle amplitude.
    max_period
        default 64: longest period searched, capped at ``tail // 4``.
    converge_ratio
        default 1e-2: a ``p``-return distance whose maximum over the last quarter of
        the tail is below ``converge_ratio`` times its maximum over the first quarter,
        and below ``sqrt(tol)``, marks an orbit still converging to a ``p``-cycle.
    growth_limit
        default 1e3: ``growth`` above this is divergence.
    exponent
        the orbit's maximal Lyapunov exponent per step, if known.
    map
        the map that produced the orbit (a :class:`~netdyn.maps.DiscreteMap` whose
        ``dim`` is ``d``); used when ``exponent`` is None to estimate it by
        ``exponent_steps`` tangent steps (``step_jvp``) or, without one, twin steps
        renormalised to a separation of ``1e-8 * max(scale, 1)``, from the last state
        at step index ``T`` (the Dataset's last step + 1) — or, for a trajectory
        Dataset whose ``final_state`` has the map's ``dim`` (a training map with
        optimiser buffers), from ``final_state`` at ``final_step``.
    exponent_tol
        default 0.01 per step: a bounded aperiodic orbit is chaotic when its
        exponent exceeds this, quasi-periodic otherwise.  Reference estimates on
        quasi-periodic orbits are ~1e-3 or less; the chaotic logistic and Hénon maps
        have 0.4 to 0.7.
    exponent_steps
        default 500: steps of the map-based estimate.
    theiler, horizon, n_ref
        defaults 10, 5, 500: nearest-neighbour estimate without a map or exponent —
        neighbours closer in time than ``theiler`` steps are excluded, the mean log
        separation is fitted over ``horizon`` steps, from at most ``n_ref``
        reference points (evenly spaced).  The same neighbour search gives
        ``recurrence_rate``.
    recurrence_eps
        default 0.1: near-return radius, relative to ``max_t ||x_t - mean||``.
    seed
        default 0: seeds the tangent / twin direction.

    Returns
    -------
    OrbitalStability

    The tests, in order
    -------------------
    1. **divergent** — a non-finite value anywhere in the orbit, the Dataset's
       ``diverged`` flag, or ``growth > growth_limit``.
    2. For ``p = 1, ..., max_period`` the return distances
       ``e_p(t) = ||x_{t+p} - x_t||``: the smallest ``p`` whose ``e_p`` stays within
       ``tol * scale`` over the tail, or decays as described for
       ``converge_ratio``, gives a **fixed_point** (``p = 1``) or **periodic** orbit.
       With ``scale = max ||x_t||`` the tolerance follows the orbit's magnitude, so
       float noise never hides a cycle and a cycle is never below the noise.
    3. Otherwise the orbit is bounded and not yet periodic; its maximal exponent
       ``lam`` is taken as supplied, from ``map``, or from the orbit by
       nearest-neighbour divergence (Rosenstein et al. 1993, on the full state, no
       embedding).  ``lam <= exponent_tol`` and some ``e_p`` whose maximum over the
       last quarter is at most half its maximum over the first: the orbit is
       *contracting* onto a cycle too slowly for test 2; its period is the first
       ``p`` whose ``e_p`` shrinks (in log) at least half as fast as the fastest —
       **fixed_point** or **periodic**, with ``converged=False`` (e_p of a
       quasi-periodic or chaotic orbit keeps its maximum, ratio ~1).  Likewise
       **fixed_point** (``converged=False``) for an orbit that still travels
       (``drift > 0.5``: the means of its first and last quarters are further apart
       than half its extent, where a stationary orbit's agree up to sampling noise)
       with shrinking steps — e.g. gradient descent still descending a valley.
       ``lam > exponent_tol``: **chaotic**; otherwise **quasi_periodic**.  Chaotic,
       with a warning, when no exponent can be estimated.

    Limitations: slow unbounded growth, e.g. weights growing like ``log t`` on
    separable data, is not divergent by test 1: with shrinking steps it reads as a
    converging fixed point, otherwise by its exponent.

    References
    ----------
    Danovski, Soriano & Lacasa, Front. Complex Syst. (2024);
    Rosenstein, Collins & De Luca, Physica D 65 (1993) 117.
    """
    states, dtype, flagged, t_next = _states(orbit)
    n_all = states.shape[0]
    n = n_all // 2 if tail is None else int(tail)
    if not 16 <= n <= n_all:
        raise ValueError(f"orbital_stability: expected 16 <= tail <= T={n_all}, got tail={n}")
    if tol is None:
        tol = max(1e-6, 100 * float(np.finfo(dtype).eps))
    if not 0 < tol < 1 or max_period < 1 or theiler < 0 or horizon < 1:
        raise ValueError(
            "orbital_stability: expected 0 < tol < 1, max_period >= 1, theiler >= 0, horizon >= 1, got "
            f"tol={tol}, max_period={max_period}, theiler={theiler}, horizon={horizon}"
        )
    x = states[n_all - n :]
    nan = float("nan")
    base = dict(tail=n, tol=float(tol), recurrence_rate=nan, exponent=nan, exponent_source="none")
    finite = bool(np.isfinite(states).all())
    norms = np.linalg.norm(x, axis=1)
    quarter = n // 4
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        growth = float(np.max(norms[-quarter:]) / np.max(norms[:quarter])) if finite else float("inf")
    if flagged or not finite or growth > growth_limit:
        why = (
            "the Dataset's diverged flag is set" if flagged
            else "the orbit has non-finite values" if not finite
            else f"the norm grew by {growth:.3g} > {growth_limit:g} across the tail"
        )
        scale = float(np.max(np.abs(norms))) if finite else float("inf")
        return OrbitalStability(
            label="divergent", period=None, reason=why, scale=scale, mean_distance=nan, best_period=0,
            return_distance=nan, converged=False, growth=growth, drift=nan, **base,
        )

    scale = float(norms.max())
    if scale == 0.0:
        return OrbitalStability(
            label="fixed_point", period=1, reason="the tail is identically zero", scale=0.0, mean_distance=0.0,
            best_period=1, return_distance=0.0, converged=True, growth=1.0, drift=0.0,
            **{**base, "recurrence_rate": 1.0},
        )
    spread = float(np.linalg.norm(x - x.mean(axis=0), axis=1).max())
    recurrence, neighbours = _recurrence(x, theiler, horizon, n_ref, recurrence_eps * spread)
    base["recurrence_rate"] = recurrence
    drift = float(np.linalg.norm(x[-quarter:].mean(axis=0) - x[:quarter].mean(axis=0)) / spread) if spread > 0 else 0.0
    common = dict(scale=scale, mean_distance=spread / scale, growth=growth, drift=drift)

    max_p = max(1, min(int(max_period), n // 4))
    best_p, best_e = 1, float("inf")
    log_decay = np.zeros(max_p + 1)  # log(late / early) of e_p, p = 1..max_p
    for p in range(1, max_p + 1):
        e = np.linalg.norm(x[p:] - x[:-p], axis=1) / scale
        worst = float(e.max())
        if worst < best_e:
            best_p, best_e = p, worst
        q = max(1, len(e) // 4)
        late, early = float(e[-q:].max()), float(e[:q].max())
        log_decay[p] = math.log(late / early) if late > 0 else -np.inf
        converged = worst <= tol
        if converged or (late <= converge_ratio * early and late <= math.sqrt(tol)):
            label = "fixed_point" if p == 1 else "periodic"
            how = f"within tol={tol:g}" if converged else f"decaying ({late:.2e} late vs {early:.2e} early)"
            return OrbitalStability(
                label=label, period=p, reason=f"x(t+{p}) returns to x(t): max |x(t+{p}) - x(t)| / scale {how}",
                best_period=p, return_distance=worst, converged=converged, **common, **base,
            )

    if exponent is not None:
        lam, source = float(exponent), "supplied"
    elif map is not None:
        start, t_start = _map_start(orbit, map, x[-1], t_next)
        lam, source = _map_exponent(map, start, t_start, exponent_steps, scale, seed), "map"
    else:
        lam, source = _orbit_exponent(x, neighbours, horizon), "orbit"
    base.update(exponent=lam, exponent_source=source)
    if lam <= exponent_tol and log_decay[1:].min() <= math.log(_SHRINK):
        # an attracting orbit not yet within tol: the first p whose return distance
        # shrinks at least half as fast (in log) as the fastest-shrinking one
        p = int(np.flatnonzero(log_decay[1:] <= 0.5 * log_decay[1:].min())[0]) + 1
        shrink = math.exp(log_decay[p])
        return OrbitalStability(
            label="fixed_point" if p == 1 else "periodic", period=p,
            reason=f"contracting: exponent {lam:.3g} <= {exponent_tol:g} ({source}) and max |x(t+{p}) - x(t)| "
            f"shrank by {shrink:.3g} across the tail",
            best_period=best_p, return_distance=best_e, converged=False, **common, **base,
        )
    if lam <= exponent_tol and drift > _DRIFT and log_decay[1] < 0:
        return OrbitalStability(
            label="fixed_point", period=1,
            reason=f"converging: the orbit travels (drift {drift:.3g} > {_DRIFT:g}) with shrinking steps "
            f"(max |x(t+1) - x(t)| late / early = {math.exp(log_decay[1]):.3g}) and exponent {lam:.3g} <= "
            f"{exponent_tol:g} ({source})",
            best_period=best_p, return_distance=best_e, converged=False, **common, **base,
        )
    if math.isnan(lam):
        warnings.warn(
            "orbital_stability: no exponent could be estimated; labelling the bounded aperiodic orbit chaotic",
            stacklevel=2,
        )
        label, why = "chaotic", "bounded and aperiodic; exponent not estimable"
    elif lam > exponent_tol:
        label, why = "chaotic", f"bounded, aperiodic, exponent {lam:.3g} > {exponent_tol:g} ({source})"
    else:
        label, why = "quasi_periodic", f"bounded, aperiodic, exponent {lam:.3g} <= {exponent_tol:g} ({source})"
    return OrbitalStability(
        label=label, period=None, reason=why, best_period=best_p, return_distance=best_e, converged=False,
        **common, **base,
    )


def _states(orbit: Any) -> tuple[np.ndarray, np.dtype, bool, int]:
    """(float64 states (T, d), original dtype, diverged flag, index of the step after the last)."""
    flagged = False
    t_next = None
    if isinstance(orbit, xr.Dataset):
        if "state" not in orbit:
            raise ValueError("orbital_stability: expected a Dataset with a 'state' variable, got none")
        flagged = bool(orbit["diverged"].values) if "diverged" in orbit else False
        orbit = orbit["state"]
    if isinstance(orbit, xr.DataArray):
        if "step" in orbit.coords and orbit.sizes.get("step", 0) > 0:
            t_next = int(orbit["step"].values[-1]) + 1
        orbit = orbit.values
    if isinstance(orbit, torch.Tensor):
        orbit = orbit.detach().cpu().numpy()
    arr = np.asarray(orbit)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise ValueError(
            f"orbital_stability: expected a real orbit of shape (T,) or (T, d), got {arr.dtype} {arr.shape}"
        )
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    return arr.astype(np.float64), dtype, flagged, arr.shape[0] if t_next is None else t_next


def _recurrence(
    x: np.ndarray, theiler: int, horizon: int, n_ref: int, radius: float
) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
    """Near-return fraction and nearest neighbours (ref index, neighbour index) usable for ``horizon`` steps."""
    n = x.shape[0]
    usable = n - horizon
    refs = np.unique(np.linspace(0, usable - 1, min(n_ref, usable)).astype(int)) if usable > 0 else np.array([], int)
    if refs.size == 0:
        return float("nan"), None
    cand = x[:usable]
    sq = np.einsum("ij,ij->i", cand, cand)
    d2 = np.maximum(sq[refs, None] + sq[None, :] - 2.0 * cand[refs] @ cand.T, 0.0)
    far = np.abs(refs[:, None] - np.arange(usable)[None, :]) > theiler
    if not far.any():
        return float("nan"), None
    rate = float(np.mean(d2[far] <= radius**2)) if radius > 0 else 1.0
    d2 = np.where(far & (d2 > 0), d2, np.inf)
    nearest = np.argmin(d2, axis=1)
    ok = np.isfinite(d2[np.arange(refs.size), nearest])
    return rate, (refs[ok], nearest[ok]) if ok.any() else None


def _orbit_exponent(x: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray] | None, horizon: int) -> float:
    """Slope of the mean log separation of nearest-neighbour pairs over ``horizon`` steps."""
    if neighbours is None:
        return float("nan")
    i, j = neighbours
    ks = np.arange(horizon + 1)
    with np.errstate(divide="ignore"):
        logs = np.array([np.log(np.linalg.norm(x[i + k] - x[j + k], axis=1)) for k in ks])
    good = np.isfinite(logs).all(axis=0)
    if not good.any():
        return float("nan")
    mean_log = logs[:, good].mean(axis=1)
    return float(np.polyfit(ks, mean_log, 1)[0])


def _map_start(orbit: Any, map_: Any, x_last: np.ndarray, t_next: int) -> tuple[np.ndarray, int]:
    """Where the map-based exponent starts: a trajectory Dataset's full ``final_state``
    (parameters *and* optimiser buffers) at ``final_step`` when it fits the map, else
    the last recorded state."""
    if isinstance(orbit, xr.Dataset) and "final_state" in orbit and "final_step" in orbit:
        final = np.asarray(orbit["final_state"].values, dtype=np.float64)
        if final.shape == (getattr(map_, "dim", None),):
            return final, int(orbit["final_step"].values)
    return x_last, t_next


def _map_exponent(map_: Any, x_last: np.ndarray, t0: int, steps: int, scale: float, seed: int) -> float:
    """Mean log growth per step of one tangent (or renormalised twin) from the last state."""
    if getattr(map_, "dim", None) != x_last.shape[0]:
        raise ValueError(
            f"orbital_stability: expected a map with dim={x_last.shape[0]} (the orbit's width), "
            f"got {getattr(map_, 'dim', None)}"
        )
    dtype = getattr(map_, "dtype", torch.float64)
    x = torch.as_tensor(x_last, dtype=dtype)
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(x.shape[0], generator=gen, dtype=torch.float64).to(dtype)
    v = v / v.norm()
    total = 0.0
    d0 = 1e-8 * max(scale, 1.0)
    y = x + d0 * v
    with torch.no_grad():
        for k in range(steps):
            if has_jacobian(map_):
                x, v = map_.step_jvp(x, v, t0 + k)
                growth = float(v.norm())
                v = v / growth
            else:
                x, y = map_.step(x, t0 + k), map_.step(y, t0 + k)
                sep = float((y - x).norm())
                growth = sep / d0
                y = x + (y - x) * (d0 / sep)
            if not (math.isfinite(growth) and growth > 0):
                warnings.warn(
                    f"orbital_stability: map-based exponent broke down at step {k} (growth {growth})", stacklevel=3
                )
                return float("nan")
            total += math.log(growth)
    return total / steps
