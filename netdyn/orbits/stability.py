"""Orbital stability: what the tail of an orbit settles into.

:func:`orbital_stability` classifies the end of a recorded orbit as a
``"fixed_point"``, ``"periodic"`` orbit of period ``p``, ``"quasi_periodic"``,
``"chaotic"`` or ``"divergent"`` orbit and returns the evidence with the label
(an :class:`OrbitalStability`), in the spirit of the orbital-stability analysis
of training trajectories by Danovski, Soriano & Lacasa (2024).

No algorithm lives here twice: divergence is :func:`netdyn.maps.divergence.divergence_reason`,
the exponent of a map is :func:`netdyn.lyapunov.maximal.max_lyapunov` and the exponent of a
recorded orbit is :func:`netdyn.series.datadriven.rosenstein`.  The result says when these
pieces of evidence disagree (``confidence="low"``, ``conflict``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from netdyn._core.results import DatasetResult
from netdyn._core.validation import check_float, check_int
from netdyn.series.datadriven import rosenstein
from netdyn.maps.divergence import DivergenceRule, divergence_reason
from netdyn._core.stats import block_stderr
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.base import has_jacobian
from netdyn.io.recording import SKETCH_CHUNK_ROWS, SketchProjection

__all__ = ["OrbitalStability", "orbital_stability", "LABELS"]

LABELS = ("fixed_point", "periodic", "quasi_periodic", "chaotic", "divergent")
_SHRINK = 0.5  # late/early ratio of a return distance that marks a contracting orbit (test 3)
_DRIFT = 0.5  # drift above which the tail is still travelling rather than stationary (test 3)
_SIGMAS = 2.0  # an exponent within this many standard errors of exponent_tol is marginal


@dataclass(frozen=True, eq=False, repr=False)
class OrbitalStability(DatasetResult):
    """The class of an orbit's tail and the evidence for it.

    Distances are relative to ``scale`` unless said otherwise.  ``to_dataset()`` gives
    every field as a 0-d variable or attribute (``period`` listed in ``none_fields``
    when None); ``OrbitalStability.from_dataset`` inverts it, also after ``to_netcdf``.

    Attributes
    ----------
    label
        one of :data:`LABELS`.
    period
        1 for a fixed point, ``p`` for a periodic orbit, ``None`` otherwise.
    reason
        one sentence saying which test decided; for a divergent orbit it starts with
        the divergence rule's reason (``"non-finite"``, ``"loss blow-up"`` or
        ``"unbounded growth"``, :data:`netdyn.maps.divergence.REASONS`).
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
        the maximal Lyapunov exponent (per step) over the tail window, NaN when none
        was supplied, no map was given and none was needed (a cycle found by its
        return distance) or it is not estimable; ``+inf`` when
        :func:`~netdyn.lyapunov.maximal.max_lyapunov` could not resolve it.
    exponent_source
        ``"supplied"``, ``"map"`` (:func:`~netdyn.lyapunov.maximal.max_lyapunov`), ``"orbit"``
        (:func:`~netdyn.series.datadriven.rosenstein` on the tail's states) or ``"none"``.
    growth
        max ``||x||`` over the last quarter of the tail / max over the first quarter.
    drift
        ``||mean of the last quarter - mean of the first quarter|| / max_t ||x_t - mean||``:
        near 0 for a stationary orbit, of order 1 for one still travelling.
    exponent_stderr
        standard error of ``exponent`` (block averaging of the local rates over the
        window, :func:`~netdyn._core.stats.block_stderr`); NaN when unknown.
    confidence
        ``"high"`` when every test agrees and the deciding evidence is there;
        ``"low"`` when ``conflict`` is not empty, when the label rests on a default
        (no exponent estimable) or when the deciding exponent lies within two
        standard errors of ``exponent_tol``.
    conflict
        ``""`` when every test agrees, else one sentence naming the conflicting
        evidence (e.g. a cycle by return distance with a positive exponent).
    sketch_dim
        0 when the full state was classified; else the dimension of the Gaussian
        sketch a state too large for memory was classified through.

    Examples
    --------
    >>> import netdyn as nd
    >>> res = nd.orbital_stability(nd.run(nd.LogisticMap(3.2), None, 200))
    >>> res.label, res.period
    ('periodic', 2)
    >>> nd.OrbitalStability.from_dataset(res.to_dataset()).period
    2
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
    exponent_stderr: float = math.nan
    confidence: str = "high"
    conflict: str = ""
    sketch_dim: int = 0


@dataclass(frozen=True)
class _Orbit:
    """The parts of an orbit argument that the tests read."""

    states: np.ndarray  # (T, d) float64
    dtype: np.dtype  # dtype of the input (for the default tol)
    steps: np.ndarray  # (T,) map time of each state
    loss: np.ndarray | None  # (T,) or None
    flagged: bool  # the Dataset's diverged flag
    has_flag: bool  # the orbit is a Dataset with a diverged flag
    flag_reason: str  # the Dataset's recorded divergence reason, "" if none
    final_step: int | None
    initial: np.ndarray | None  # full map state at steps[0] (a trajectory Dataset's initial_state)
    driven: str = ""  # what makes the map differ from step to step (mini-batches), "" if nothing known


def _orbital_stability(
    x: np.ndarray | torch.Tensor | xr.DataArray | xr.Dataset,
    *,
    tail: int | None = None,
    tol: float | None = None,
    max_period: int = 64,
    converge_ratio: float = 1e-2,
    growth_limit: float | None = None,
    exponent: float | xr.Dataset | None = None,
    map_: Any = None,
    exponent_tol: float = 0.01,
    exponent_steps: int | None = None,
    theiler: int = 10,
    horizon: int = 5,
    n_ref: int = 500,
    recurrence_eps: float = 0.1,
    seed: int = 0,
    rule: DivergenceRule | None = None,
) -> OrbitalStability:
    """Classify the tail of an orbit.

    Parameters
    ----------
    x
        states ``(T, d)`` or a scalar series ``(T,)``: a numpy array or tensor (state
        ``k`` at map time ``k``), a DataArray over ``(step, param)`` (map times from
        its ``step`` coordinate), or a trajectory Dataset (its ``state``, ``loss``,
        ``diverged`` flag and ``initial_state``).
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
        deprecated: sets ``norm_factor`` of the divergence rule (use ``rule``).
        Growth of the state norm is one clause of the one divergence rule, not a
        second test.
    exponent
        the orbit's maximal Lyapunov exponent per step, if known: a number (taken to
        describe the tail window) or the Dataset returned by
        :func:`~netdyn.lyapunov.maximal.max_lyapunov` for this orbit, of which the mean
        ``local_rate`` of the intervals inside the tail window is used (at least one
        must be; an estimate that stopped before the window's end gives its
        ``lyapunov``, ``+inf`` when unresolved).  A sweep hands over its
        ``max_lyapunov`` Dataset this way.
    map_
        the map that produced the orbit; when ``exponent`` is None the exponent is
        measured by :func:`~netdyn.lyapunov.maximal.max_lyapunov` (tangent when the map has
        ``step_jvp``, twin otherwise; its defaults: ``d0 = 1e-9``, parameter norm)
        over the tail window ``[t_a, t_b]`` (map times of the tail's first and last
        states).  For a trajectory Dataset it starts from ``initial_state`` (the full
        state, optimiser buffers included, which the recorded parameters lack) with
        the steps before ``t_a`` as ``transient``, so the separation is aligned with
        the most unstable direction when the window opens — the same number as the
        window's mean ``local_rate`` of a ``max_lyapunov`` run over the whole orbit.
        Otherwise it starts from the tail's first state at ``t0 = t_a`` (the
        orbit's width must be the map's ``dim``), from a random direction whose
        alignment costs a bias of order ``ln|cos angle| / (t_b - t_a)``.
    exponent_tol
        default 0.01 per step: a bounded aperiodic orbit is chaotic when its
        exponent exceeds this, quasi-periodic otherwise; a cycle whose exponent
        exceeds it is a conflict.  Reference estimates on quasi-periodic orbits are
        ~1e-3 or less; the chaotic logistic and Hénon maps have 0.4 to 0.7.
    exponent_steps
        default ``None``: the map-based exponent counts the whole tail window
        (``t_b - t_a`` steps); an int counts at most that many steps from ``t_a``.
    theiler, horizon, n_ref
        defaults 10, 5, 500: without a map or an exponent, the exponent of a bounded
        aperiodic tail is :func:`~netdyn.series.datadriven.rosenstein` on its states
        (no embedding, ``theiler=theiler``, ``trajectory_len=horizon + 1``, a line
        fitted over all ``k``).  ``theiler`` also excludes near-in-time pairs from
        ``recurrence_rate``, which uses at most ``n_ref`` reference states.
    recurrence_eps
        default 0.1: near-return radius, relative to ``max_t ||x_t - mean||``.
    seed
        default 0: seeds the tangent / twin direction.
    rule
        the divergence rule's thresholds (default
        :class:`~netdyn.maps.divergence.DivergenceRule()`).

    Returns
    -------
    OrbitalStability (``sketch_dim`` > 0 when the state was classified through a sketch)

    Memory: a recorded state larger than :data:`STATE_BUDGET` (256 MiB as float64) is
    never loaded whole; it is read in blocks of steps and projected to
    :data:`SKETCH_DIM` (256) dimensions by the seeded Gaussian sketch of
    :mod:`netdyn.io.recording` (the one ``run(record=k)`` uses).  The projection is
    linear, so a repeated state stays repeated exactly, and each distance keeps its
    size within about ``sqrt(2 / 256)`` = 9 % (Johnson–Lindenstrauss): the tests below
    compare distances with each other and with orders of magnitude, which that
    preserves; nearest neighbours are not preserved, so a quasi-periodic or chaotic
    label decided by the nearest-neighbour exponent of a sketch comes with
    ``confidence="low"`` (pass ``map_=`` for the full-state exponent).  Peak memory is
    then a block plus the ``(T, 256)`` sketch, whatever the file size.

    Raises
    ------
    ValueError
        When ``tol``, ``max_period``, ``theiler``, ``horizon``, ``exponent_steps`` or
        ``tail`` is out of range (``16 <= tail <= T``), or the orbit is not a valid
        state array.

    Notes
    -----
    **The tests, in order.**

    1. **divergent** — :func:`~netdyn.maps.divergence.divergence_reason` applied to the
       whole recorded orbit: the Dataset's ``loss`` (if present) and the state
       norms (non-finite values, loss blow-up, unbounded growth); or the Dataset's
       ``diverged`` flag (the run stopped at a step it did not record).  The rule
       firing on a Dataset whose flag is false is labelled divergent with a
       conflict.
    2. For ``p = 1, ..., max_period`` the return distances
       ``e_p(t) = ||x_{t+p} - x_t||``: the smallest ``p`` whose ``e_p`` stays within
       ``tol * scale`` over the tail, or decays as described for
       ``converge_ratio``, gives a **fixed_point** (``p = 1``) or **periodic** orbit.
       With ``scale = max ||x_t||`` the tolerance follows the orbit's magnitude, so
       float noise never hides a cycle and a cycle is never below the noise.
       An exponent, when supplied or measurable from ``map_``, is checked against
       the cycle: above ``exponent_tol`` it is a conflict (an unstable cycle held
       by exact arithmetic, or an exponent of another window).
    3. Otherwise the orbit is bounded and not yet periodic; its maximal exponent
       ``lam`` is taken as supplied, from ``map_``, or from the orbit by Rosenstein's
       method.  ``lam <= exponent_tol`` and some ``e_p`` whose maximum over the
       last quarter is at most half its maximum over the first: the orbit is
       *contracting* onto a cycle too slowly for test 2; its period is the first
       ``p`` whose ``e_p`` shrinks (in log) at least half as fast as the fastest —
       **fixed_point** or **periodic**, with ``converged=False`` (e_p of a
       quasi-periodic or chaotic orbit keeps its maximum, ratio ~1).  Likewise
       **fixed_point** (``converged=False``) for an orbit that still travels
       (``drift > 0.5``: the means of its first and last quarters are further apart
       than half its extent, where a stationary orbit's agree up to sampling noise)
       with shrinking steps — e.g. gradient descent still descending a valley.
       ``lam > exponent_tol``: **chaotic** (a conflict when some ``e_p`` contracts
       as above); otherwise **quasi_periodic**, with ``confidence="low"`` and a
       conflict when the evidence for quasi-periodic motion is weak: the tail still
       travels (``drift > 0.5``; quasi-periodic motion keeps returning), or the map
       draws mini-batches (a Dataset's attrs ``batch_size`` below ``n_train``, or a
       training ``map_`` with a ``batch_size``: noise drives it).  Chaotic, with a
       warning and ``confidence="low"``, when no exponent can be estimated.

    **Why the exponent is measured over the tail window.**
    The class describes the tail; an exponent of another window describes another
    orbit piece.  On the README's sweep (digits, 64-32-10 ReLU MLP, N(0, 1) init,
    full-batch GD, 200 steps) the runs at ``lr >= 2.2`` are chaotic for tens of
    steps and then every ReLU dies: the second half is an exact fixed point (loss
    ln 10) with a tail exponent of ~0 (measured 1e-4 at lr = 3.8), while the exponent
    over the whole run is +0.02 to +0.3 — a transient, not a contradiction of the
    dynamics.  So a map-based exponent is measured on ``[t_a, t_b]``, a
    :func:`~netdyn.lyapunov.maximal.max_lyapunov` Dataset is averaged over the same window,
    and a supplied number that still contradicts the class is reported in
    ``conflict`` rather than silently ignored.

    Limitations: slow unbounded growth, e.g. weights growing like ``log t`` on
    separable data, is not divergent by test 1: with shrinking steps it reads as a
    converging fixed point, otherwise by its exponent.

    References
    ----------
    Danovski, Soriano & Lacasa, Front. Complex Syst. (2024);
    Rosenstein, Collins & De Luca, Physica D 65 (1993) 117.

    Examples
    --------
    >>> import netdyn as nd
    >>> nd.orbital_stability(nd.run(nd.LogisticMap(2.5), None, 100)).label  # x* = 0.6
    'fixed_point'
    >>> res = nd.orbital_stability(nd.run(nd.LogisticMap(4.0), None, 200), map_=nd.LogisticMap(4.0))
    >>> res.label, round(res.exponent, 1)  # ln 2 = 0.69
    ('chaotic', 0.7)
    """
    info = _parse(x)
    if map_ is not None and not info.driven and hasattr(map_, "inputs"):  # a training map
        info = dataclasses.replace(info, driven=_mini_batches(getattr(map_, "batch_size", None), len(map_.inputs)))
    states = info.states
    n_all = states.shape[0]
    n = n_all // 2 if tail is None else int(tail)
    if tol is None:
        tol = max(1e-6, 100 * float(np.finfo(info.dtype).eps))
    caller = "orbital_stability"
    tol = check_float(tol, "tol", caller, minimum=0, maximum=1, exclusive=True)
    max_period = check_int(max_period, "max_period", caller, minimum=1)
    theiler = check_int(theiler, "theiler", caller, minimum=0)
    horizon = check_int(horizon, "horizon", caller, minimum=1)
    if exponent_steps is not None:
        exponent_steps = check_int(exponent_steps, "exponent_steps", caller, minimum=1)
    why, conflict = _divergence(info, _rule(rule, growth_limit))
    if why:  # decided on the whole orbit, however short (a run stops where it diverges)
        return _divergent(states[n_all - min(max(n, 0), n_all) :], why, conflict, float(tol))
    if not 16 <= n <= n_all:
        raise ValueError(f"orbital_stability: expected 16 <= tail <= T={n_all}, got tail={n}")
    x = states[n_all - n :]
    nan = float("nan")
    base = dict(tail=n, tol=float(tol), recurrence_rate=nan, exponent=nan, exponent_source="none")
    norms = np.linalg.norm(x, axis=1)
    quarter = n // 4
    with np.errstate(invalid="ignore", divide="ignore"):
        growth = float(np.max(norms[-quarter:]) / np.max(norms[:quarter]))
    scale = float(norms.max())
    if scale == 0.0:
        return OrbitalStability(
            label="fixed_point", period=1, reason="the tail is identically zero", scale=0.0, mean_distance=0.0,
            best_period=1, return_distance=0.0, converged=True, growth=1.0, drift=0.0,
            **{**base, "recurrence_rate": 1.0},
        )
    spread = float(np.linalg.norm(x - x.mean(axis=0), axis=1).max())
    base["recurrence_rate"] = _recurrence_rate(x, theiler, n_ref, recurrence_eps * spread)
    drift = float(np.linalg.norm(x[-quarter:].mean(axis=0) - x[:quarter].mean(axis=0)) / spread) if spread > 0 else 0.0
    common = dict(scale=scale, mean_distance=spread / scale, growth=growth, drift=drift)

    max_p = max(1, min(int(max_period), n // 4))
    best_p, best_e = 1, float("inf")
    log_decay = np.zeros(max_p + 1)  # log(late / early) of e_p, p = 1..max_p
    cycle = None  # (period, converged, how, worst) of test 2
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
            how = f"within tol={tol:g}" if converged else f"decaying ({late:.2e} late vs {early:.2e} early)"
            cycle = (p, converged, how, worst)
            break

    lam, stderr, lam_late, source = _exponent(
        info, n, exponent, map_, exponent_steps, seed, x, theiler, horizon, need=cycle is None
    )
    base.update(exponent=lam, exponent_source=source, exponent_stderr=stderr)
    marginal = math.isfinite(lam) and math.isfinite(stderr) and abs(lam - exponent_tol) <= _SIGMAS * stderr
    if cycle is not None:
        p, converged, how, worst = cycle
        conflict = ""
        if lam > exponent_tol:
            why = (
                f"a chaotic transient inside the tail (over its last quarter the exponent is {lam_late:.3g})"
                if lam_late <= exponent_tol
                else "an unstable cycle held by exact arithmetic, or an exponent of another window"
            )
            conflict = (
                f"x(t+{p}) returns to x(t) ({how}) but the exponent {lam:.3g} > {exponent_tol:g} ({source}): {why}"
            )
        return OrbitalStability(
            label="fixed_point" if p == 1 else "periodic", period=p,
            reason=f"x(t+{p}) returns to x(t): max |x(t+{p}) - x(t)| / scale {how}",
            best_period=p, return_distance=worst, converged=converged, confidence="low" if conflict else "high",
            conflict=conflict, **common, **base,
        )

    contracting = bool(log_decay[1:].min() <= math.log(_SHRINK))
    low = "low" if marginal else "high"
    if lam <= exponent_tol and contracting:
        # an attracting orbit not yet within tol: the first p whose return distance
        # shrinks at least half as fast (in log) as the fastest-shrinking one
        p = int(np.flatnonzero(log_decay[1:] <= 0.5 * log_decay[1:].min())[0]) + 1
        shrink = math.exp(log_decay[p])
        return OrbitalStability(
            label="fixed_point" if p == 1 else "periodic", period=p,
            reason=f"contracting: exponent {lam:.3g} <= {exponent_tol:g} ({source}) and max |x(t+{p}) - x(t)| "
            f"shrank by {shrink:.3g} across the tail",
            best_period=best_p, return_distance=best_e, converged=False, confidence=low, **common, **base,
        )
    if lam <= exponent_tol and drift > _DRIFT and log_decay[1] < 0:
        return OrbitalStability(
            label="fixed_point", period=1,
            reason=f"converging: the orbit travels (drift {drift:.3g} > {_DRIFT:g}) with shrinking steps "
            f"(max |x(t+1) - x(t)| late / early = {math.exp(log_decay[1]):.3g}) and exponent {lam:.3g} <= "
            f"{exponent_tol:g} ({source})",
            best_period=best_p, return_distance=best_e, converged=False, confidence=low, **common, **base,
        )
    conflict = ""
    if math.isnan(lam):
        warnings.warn(
            "orbital_stability: no exponent could be estimated; labelling the bounded aperiodic orbit chaotic",
            stacklevel=2,
        )
        label, why, low = "chaotic", "bounded and aperiodic; exponent not estimable", "low"
    elif lam > exponent_tol:
        label, why = "chaotic", f"bounded, aperiodic, exponent {lam:.3g} > {exponent_tol:g} ({source})"
        if contracting:
            p = int(np.argmin(log_decay[1:])) + 1
            conflict = (
                f"the exponent {lam:.3g} > {exponent_tol:g} ({source}) says chaotic but max |x(t+{p}) - x(t)| "
                f"shrank by {math.exp(log_decay[p]):.3g} across the tail (contracting onto a cycle)"
                + (f"; over the tail's last quarter the exponent is {lam_late:.3g}" if math.isfinite(lam_late) else "")
            )
        elif math.isinf(lam):
            conflict = f"the exponent could not be resolved (+inf, {source}) while the recorded orbit stays bounded"
    else:
        label, why = "quasi_periodic", f"bounded, aperiodic, exponent {lam:.3g} <= {exponent_tol:g} ({source})"
        conflict = _not_quasi_periodic(drift, info.driven)
    return OrbitalStability(
        label=label, period=None, reason=why, best_period=best_p, return_distance=best_e, converged=False,
        confidence="low" if conflict else low, conflict=conflict, **common, **base,
    )


def _not_quasi_periodic(drift: float, driven: str) -> str:
    """Why a bounded, aperiodic, non-chaotic tail may not be quasi-periodic motion ("" when nothing
    says so): quasi-periodic motion is that of an autonomous map, and it keeps returning."""
    reasons = []
    if drift > _DRIFT:
        reasons.append(f"the tail still travels (drift {drift:.3g} > {_DRIFT:g}) without shrinking steps: it has "
                       "not settled, while quasi-periodic motion keeps returning")
    if driven:
        reasons.append(f"the map draws {driven} (another batch each step): bounded aperiodic motion with a small "
                       "exponent is what that noise gives, not evidence of quasi-periodic motion")
    return "; ".join(reasons)


STATE_BUDGET = 256 * 2**20
"""Bytes of float64 state above which a recorded state is classified through a sketch."""
SKETCH_DIM = 256


@functools.wraps(_orbital_stability)
def orbital_stability(x: Any, **options: Any) -> OrbitalStability:  # noqa: D103 (the docstring is wrapped)
    x, sketch_dim = _bounded(x)
    result = _orbital_stability(x, **options)
    if not sketch_dim:
        return result
    if result.exponent_source == "orbit" and result.label in ("quasi_periodic", "chaotic"):
        # nearest neighbours are not kept by a projection: a label decided by their exponent is not certain
        why = (f"the exponent {result.exponent:.3g} comes from nearest neighbours in a {sketch_dim}-d sketch of a "
               "state too large for memory; pass map_= for the exponent of the full state")
        return dataclasses.replace(result, sketch_dim=sketch_dim, confidence="low",
                                   conflict=f"{result.conflict}; {why}" if result.conflict else why)
    return dataclasses.replace(result, sketch_dim=sketch_dim)


def _bounded(orbit: Any) -> tuple[Any, int]:
    """A recorded state too large for memory replaced by its streamed sketch: ``(orbit, sketch_dim or 0)``."""
    state = orbit["state"] if isinstance(orbit, xr.Dataset) and "state" in orbit else orbit
    if not isinstance(state, xr.DataArray) or state.ndim != 2 or state.size * 8 <= STATE_BUDGET:
        return orbit, 0
    state = state.transpose("step", ...)
    n_steps, n_params = state.shape
    k = min(SKETCH_DIM, n_params)
    projection = SketchProjection(n_params, k, seed=0)
    rows = max(1, (4 * 2**20) // (8 * n_params))
    blocks = []
    for start in range(0, n_steps, rows):
        block = np.asarray(state[start : start + rows].values, dtype=np.float64)
        out = np.zeros((block.shape[0], k))
        for c in range(-(-n_params // SKETCH_CHUNK_ROWS)):
            part = projection.block(c).numpy()
            out += block[:, c * SKETCH_CHUNK_ROWS : c * SKETCH_CHUNK_ROWS + part.shape[0]] @ part
        blocks.append(out)
    sketch = xr.DataArray(np.concatenate(blocks), dims=("step", "param"), coords={"step": state["step"].values})
    if isinstance(orbit, xr.Dataset):
        keep = orbit.drop_vars([name for name in orbit.variables if "param" in orbit[name].dims])
        return keep.assign(state=sketch), k
    return sketch, k


def _divergent(x: np.ndarray, why: str, conflict: str, tol: float) -> OrbitalStability:
    """The result for a divergent orbit whose tail (possibly shorter than 16 states) is ``x``."""
    nan = float("nan")
    finite = bool(np.isfinite(x).all())
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(x, axis=1)
    quarter = x.shape[0] // 4
    growth, scale = float("inf"), float("inf")
    if finite:
        scale = float(norms.max()) if norms.size else nan
        with np.errstate(invalid="ignore", divide="ignore"):
            growth = float(norms[-quarter:].max() / norms[:quarter].max()) if quarter else nan
    return OrbitalStability(
        label="divergent", period=None, reason=why, tail=x.shape[0], scale=scale, tol=tol, mean_distance=nan,
        best_period=0, return_distance=nan, converged=False, recurrence_rate=nan, exponent=nan,
        exponent_source="none", growth=growth, drift=nan, confidence="low" if conflict else "high",
        conflict=conflict,
    )


def _rule(rule: DivergenceRule | None, growth_limit: float | None) -> DivergenceRule:
    """The divergence rule, with the deprecated ``growth_limit`` folded into its ``norm_factor``."""
    if growth_limit is None:
        return rule or DivergenceRule()
    warnings.warn(
        "orbital_stability: growth_limit is deprecated; it sets the divergence rule's norm_factor "
        "(pass rule=DivergenceRule(norm_factor=...))",
        DeprecationWarning,
        stacklevel=3,
    )
    rule = rule or DivergenceRule()
    return DivergenceRule(
        loss_factor=rule.loss_factor, norm_factor=float(growth_limit), loss_floor=rule.loss_floor,
        norm_floor=rule.norm_floor,
    )


def _divergence(info: _Orbit, rule: DivergenceRule) -> tuple[str, str]:
    """``(reason, conflict)``: the divergence rule on the recorded loss and state norms, and the flag."""
    with np.errstate(invalid="ignore", over="ignore"):
        norm = np.linalg.norm(info.states, axis=1)
    norm = np.where(np.isfinite(info.states).all(axis=1), norm, np.inf)
    found, index = divergence_reason(info.loss, norm=norm, rule=rule)
    if found:
        found = f"{found} (recorded state {index}, step {int(info.steps[index])})"
    if info.flagged:
        if info.flag_reason or found:
            return info.flag_reason or found, ""
        stop = "" if info.final_step is None else f" at step {info.final_step}"
        return f"non-finite: the Dataset's diverged flag is set (the run stopped{stop})", ""
    if found and info.has_flag:
        return found, "the divergence rule fires on the recorded series but the Dataset's diverged flag is false"
    return found, ""


def _parse(orbit: Any) -> _Orbit:
    """Split the orbit argument into float64 states, map times, loss, flag and initial state."""
    flagged, has_flag, flag_reason, final_step, loss, initial, steps = False, False, "", None, None, None, None
    driven = ""
    if isinstance(orbit, xr.Dataset):
        driven = _mini_batches(orbit.attrs.get("batch_size"), orbit.attrs.get("n_train"))
        if "state" not in orbit:
            raise ValueError("orbital_stability: expected a Dataset with a 'state' variable, got none")
        has_flag = "diverged" in orbit
        flagged = bool(orbit["diverged"].values) if has_flag else False
        recorded = orbit["divergence_reason"] if "divergence_reason" in orbit else orbit.attrs.get("divergence_reason")
        flag_reason = str(np.asarray(recorded).item()) if recorded is not None else ""
        final_step = int(orbit["final_step"].values) if "final_step" in orbit else None
        if "loss" in orbit and orbit["loss"].dims == ("step",):
            loss = np.asarray(orbit["loss"].values, dtype=np.float64)
        if "initial_state" in orbit:
            initial = np.asarray(orbit["initial_state"].values, dtype=np.float64)
        orbit = orbit["state"]
    if isinstance(orbit, xr.DataArray):
        if "step" in orbit.coords and orbit["step"].ndim == 1 and orbit.sizes.get("step", 0) == orbit.shape[0]:
            steps = np.asarray(orbit["step"].values, dtype=np.int64)
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
    steps = np.arange(arr.shape[0], dtype=np.int64) if steps is None else steps
    return _Orbit(arr.astype(np.float64), dtype, steps, loss, flagged, has_flag, flag_reason, final_step, initial,
                  driven)


def _mini_batches(batch_size: Any, n_train: Any) -> str:
    """``"mini-batches of k of n samples"`` when a training map draws another batch each step (its
    ``batch_size`` below its ``n_train``), else ``""`` (full batch, or not a training map)."""
    if batch_size is None or n_train is None:
        return ""
    k, n = int(batch_size), int(n_train)
    return f"mini-batches of {k} of {n} samples" if 0 < k < n else ""


def _recurrence_rate(x: np.ndarray, theiler: int, n_ref: int, radius: float) -> float:
    """Fraction of (reference, state) pairs more than ``theiler`` steps apart within ``radius``."""
    n = x.shape[0]
    refs = np.unique(np.linspace(0, n - 1, min(n_ref, n)).astype(int))
    far = np.abs(refs[:, None] - np.arange(n)[None, :]) > theiler
    if not far.any():
        return float("nan")
    if radius <= 0:
        return 1.0
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[refs, None] + sq[None, :] - 2.0 * x[refs] @ x.T, 0.0)
    return float(np.mean(d2[far] <= radius**2))


def _exponent(
    info: _Orbit, n: int, exponent: Any, map_: Any, exponent_steps: int | None, seed: int, x: np.ndarray,
    theiler: int, horizon: int, need: bool,
) -> tuple[float, float, float, str]:
    """``(exponent, stderr, late, source)`` of the tail window, ``late`` the mean local rate over the
    window's last quarter (NaN without local rates); NaN / "none" when not available."""
    nan = float("nan")
    if isinstance(exponent, xr.Dataset):
        return (*_window_rates(exponent, int(info.steps[-n]), int(info.steps[-1])), "supplied")
    if exponent is not None:
        return float(exponent), nan, nan, "supplied"
    if map_ is not None:
        result = _map_exponent(map_, info, n, exponent_steps, seed)
        lam, stderr = (float(np.ravel(result[v].values)[0]) for v in ("lyapunov", "lyapunov_stderr"))
        rates = np.ravel(result["local_rate"].values)
        return lam, stderr, _late(rates) if np.isfinite(rates).all() else nan, "map"
    if not need:
        return nan, nan, nan, "none"
    return _orbit_exponent(x, theiler, horizon), nan, nan, "orbit"


def _late(rates: np.ndarray) -> float:
    """Mean of the last quarter (at least one) of the local rates."""
    return float(rates[-max(1, rates.size // 4) :].mean())


def _window_rates(result: xr.Dataset, t_a: int, t_b: int) -> tuple[float, float, float]:
    """Mean, block standard error and last-quarter mean of the ``local_rate`` of a
    :func:`max_lyapunov` Dataset over the intervals inside ``[t_a, t_b]``."""
    if "local_rate" not in result or "step" not in result.coords:
        raise ValueError(
            "orbital_stability: expected exponent as a number or a max_lyapunov Dataset (local_rate over step), "
            f"got a Dataset with {sorted(result.data_vars)}"
        )
    m = int(result.attrs.get("renorm_every", 1))
    step = result["step"].values
    inside = (step - m >= t_a) & (step <= t_b)
    rates = np.asarray(result["local_rate"].values, dtype=np.float64).reshape(-1, step.size)[0]
    if not inside.any():
        raise ValueError(
            f"orbital_stability: expected a max_lyapunov Dataset whose steps cover the tail window [{t_a}, {t_b}], "
            f"got steps {int(step[0])}..{int(step[-1])}"
        )
    if not np.isfinite(rates[: np.flatnonzero(inside)[-1] + 1]).all():
        # the estimate stopped before the window's end: the engine's verdict (+inf unresolved, -inf collapsed)
        return float(np.ravel(result["lyapunov"].values)[0]), math.nan, math.nan
    rates = rates[inside]
    return float(rates.mean()), float(block_stderr(rates)), _late(rates)


def _map_exponent(map_: Any, info: _Orbit, n: int, exponent_steps: int | None, seed: int) -> xr.Dataset:
    """:func:`max_lyapunov` over the tail window, from the run's start (the steps before the window as
    transient) when the orbit is a trajectory Dataset with a fitting ``initial_state``, else from the
    tail's first state."""
    dim = getattr(map_, "dim", None)
    t_first, t_a, t_b = int(info.steps[0]), int(info.steps[-n]), int(info.steps[-1])
    count = max(1, t_b - t_a)
    if exponent_steps is not None:
        count = min(count, int(exponent_steps))
    dtype = getattr(map_, "dtype", torch.float64)
    method = "tangent" if has_jacobian(map_) else "twin"
    start = info.states[-n]
    if info.initial is not None and info.initial.shape == (dim,):
        x0, t0, transient = info.initial, t_first, t_a - t_first
    elif start.shape == (dim,):
        x0, t0, transient = start, t_a, 0
    else:
        raise ValueError(
            f"orbital_stability: expected a map with dim={start.shape[0]} (the orbit's width) or a trajectory "
            f"Dataset whose initial_state has the map's dim, got a map with dim={dim}"
        )
    x0 = torch.as_tensor(x0, dtype=dtype)
    return max_lyapunov(map_, x0, count, method=method, transient=transient, seed=seed, t0=t0)


def _orbit_exponent(x: np.ndarray, theiler: int, horizon: int) -> float:
    """Rosenstein's exponent of the tail's states, NaN when the tail is too short for the Theiler window."""
    if x.shape[0] - horizon < 2 * theiler + 2:
        return float("nan")
    curve = rosenstein(x, observable="state", emb_dim=1, lag=1, theiler=theiler, trajectory_len=horizon + 1,
                       fit_range=None)
    return float(curve.exponent)
