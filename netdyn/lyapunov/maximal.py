"""The maximal Lyapunov exponent of any map, by tangent vectors or twin orbits.

Front door: :func:`max_lyapunov`.  Both methods are Benettin's algorithm: a small
separation (a tangent vector, or the difference to a twin orbit) is evolved
along the orbit, its growth factor ``g`` is measured and the separation is
renormalised every ``renorm_every`` steps; the exponent is the mean of ``ln g``
per step.

* ``method="tangent"`` evolves an exact tangent vector with ``map.step_jvp``;
* ``method="twin"`` evolves a second orbit at distance ``d0`` with ``map.step``
  only, so it works for every map (e.g. a training map with a generic
  ``torch.optim`` optimiser whose update has no exact tangent).

Shared building blocks live below this module: :class:`netdyn.maps.batching.BatchStepper`
(one call steps a batch of states, vectorised with ``torch.func.vmap`` when the
map allows it) and :func:`netdyn._core.stats.block_stderr`.

Related modules: :mod:`netdyn.lyapunov.spectrum` (spectrum by QR, FTLE, covariant
vectors, sum of exponents from ``det J``), :mod:`netdyn.lyapunov.growth` (the papers'
un-renormalised perturbation-growth protocol), :mod:`netdyn.sharpness.hessian`.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from netdyn._core.devices import SYNC_EVERY
from netdyn._core.perturbation import default_d0
from netdyn._core.progress import progress_bar
from netdyn._core.stats import block_stderr
from netdyn._core.validation import check_choice, check_float, check_int
from netdyn.maps.base import as_states, map_attrs, param_dim_of, require_jacobian
from netdyn.maps.batching import BatchStepper
from netdyn.maps.divergence import DivergenceRule, EnsembleDivergence, parameter_norms, parameter_norms_on_device

__all__ = ["max_lyapunov"]

Pair = tuple[Tensor, Tensor]


def max_lyapunov(
    map_: Any,
    x0: Tensor | np.ndarray,
    steps: int,
    *,
    method: str = "tangent",
    transient: int = 0,
    renorm_every: int = 1,
    d0: float | None = None,
    seed: int = 0,
    params_only: bool = True,
    n_blocks: int = 10,
    vectorize: bool | None = None,
    t0: int = 0,
    divergence: DivergenceRule | None = DivergenceRule(),
    progress: bool | None = None,
) -> xr.Dataset:
    """Maximal Lyapunov exponent (per step) by Benettin's algorithm.

    Parameters
    ----------
    map_ : DiscreteMap
        needs ``step_jvp`` for ``method="tangent"``; only ``step`` for ``"twin"``.
    x0 : tensor ``(dim,)`` or ``(n, dim)``
        initial state, or ``n`` initial states estimated together (result gains a
        dim ``init``).
    steps : int
        counted steps after the transient; a multiple of ``renorm_every``.
    method : {"tangent", "twin"}, default "tangent"
    transient : int, default 0
        steps run first (separation renormalised every step) and not counted, to
        let the separation align with the most unstable direction.
    renorm_every : int, default 1
        steps between renormalisations (both methods).
    d0 : float, optional
        twin distance; default :func:`netdyn._core.perturbation.default_d0`
        ``sqrt(eps) * max(scale, 1)`` for the state's dtype (float64: 1.5e-8 x
        scale, float32: 3.5e-4 x scale), ``scale`` the largest parameter norm of
        ``x0`` — the same rule as :class:`netdyn.monitor.LyapunovMonitor`.  The
        attribute ``d0`` of the result says what was used.  Ignored by "tangent".
    seed : int, default 0
        seed of the random initial direction(s) (``torch.Generator``).
    params_only : bool, default True
        start the separation on the parameter part of the state (first
        ``map.param_dim`` entries) and measure / renormalise it by that part's norm
        (the optimiser buffers of the twin still evolve and are rescaled with it);
        ``False``: start and measure on the *full* state.  The default matters only
        for stateful optimisers: buffers and parameters have different units, and a
        direct perturbation of Adam's zero-initialised second moments gives a
        spurious first-step growth of e^17-e^20 (measured on iris, tutorial 05) that
        dominates finite-time estimates.  Asymptotically both norms give the same
        exponent.  Same default as :class:`netdyn.monitor.LyapunovMonitor`.
    n_blocks : int, default 10
        blocks for the standard error (:func:`block_stderr`).
    vectorize : bool or None, default None
        for ``n > 1`` (and for the twin pair): ``torch.func.vmap`` over the map
        when possible (None: try it, else loop; see :class:`BatchStepper`).
    t0 : int, default 0
        map time of ``x0`` (steps already taken): continuing a saved run from
        ``ds.final_state`` needs ``t0=int(ds.final_step)``, since momentum's first
        step, Adam's bias correction and the mini-batch schedule depend on it.
        The ``step`` coordinate, ``diverged_step`` and ``unresolved_step`` count from ``t0``.
    divergence : DivergenceRule or None, default ``DivergenceRule()``
        the training-divergence rule (:mod:`netdyn.maps.divergence`) applied to the
        reference orbit's parameter norm ``||x_t[:param_dim]||`` (the norm suffices
        here: a loss is not part of the map protocol's ``step``; :func:`netdyn.run`
        also checks the loss).  It only *flags* ``diverged``: the estimate goes on
        while the separation can be measured (an escaping linear orbit keeps an
        exact exponent).  ``None``: only non-finite orbits are flagged.
    progress : bool or None, default None
        a tqdm bar over the ``transient + steps`` steps; None: shown only on a
        terminal.

    Returns
    -------
    xarray.Dataset with coords ``step`` (global step index at each
    renormalisation) and, for batched ``x0``, ``init``:

    ``lyapunov`` ``(init)``
        final estimate, per step; ``+inf`` for an unresolved member, ``-inf`` for a
        collapsed separation (see below);
    ``lyapunov_resolved`` ``(init)``
        the running estimate at the last interval that could be measured (equal to
        ``lyapunov`` for a resolved member; NaN when no interval was measured);
    ``lyapunov_stderr`` ``(init)``
        block-average standard error of the local rates;
    ``lyapunov_running`` ``(init, step)``
        running estimate ``lambda(t)`` (convergence);
    ``local_rate`` ``(init, step)``
        ``ln(g) / renorm_every`` of each interval;
    ``unresolved`` ``(init)`` bool and ``unresolved_step`` ``(init)`` (-1 if none)
        the separation could no longer be measured (see the failure policy);
    ``diverged`` ``(init)`` bool, ``diverged_step`` ``(init)`` (-1 if none) and
    ``divergence_reason`` ``(init)`` str (``""`` if none)
        the reference orbit broke the divergence rule (``divergence``).

    attrs: ``method``, ``d0``, ``renorm_every``, ``transient``, ``steps``,
    ``perturbation_seed``, ``params_only`` (0/1), ``batching``, the map's
    ``describe()``.

    Raises
    ------
    ValueError
        on a bad ``x0`` shape or dtype, counts that are not integers in range,
        ``steps`` not a multiple of ``renorm_every``, an unknown ``method``, a
        ``d0 <= 0`` or one below the state's floating-point resolution.
    TypeError
        for ``method="tangent"`` on a map without ``step_jvp``.

    Notes
    -----
    ``lambda = 1/(N m) sum_j ln(|delta_j'| / |delta_{j-1}|)`` where ``delta'`` is the
    separation after ``m = renorm_every`` steps and ``delta`` after the previous
    renormalisation.  Tangent: ``delta_{t+1} = J(x_t) delta_t`` exactly.  Twin:
    ``delta = y - x`` for a second orbit ``y`` of the same map (same ``t``, so a
    mini-batch map shows both the same batch), rescaled to ``|delta| = d0`` towards
    the reference; the *measured* distance after rescaling is used as the next
    denominator, so rounding in the rescale does not bias the estimate.  For a
    stateful optimiser the state, and thus the twin's separation vector, includes
    the optimiser buffers (momentum, Adam moments): the exponent is that of the
    full update map, measured by the norm that ``params_only`` selects.

    Failure policy — two separate facts.  *Divergence* is a fact about the
    orbit: ``diverged`` is set at the first step whose reference state breaks the
    divergence rule (non-finite, or parameter norm above 1e3 x ``max(||x_0||, 1)``),
    with a warning; the estimate continues.  *Resolution* is a fact about the
    estimate: when the reference or the separation becomes non-finite, or (twin)
    the rescaled separation is no longer ``d0`` within 10 % because the state has
    grown so large that ``d0`` is below its floating-point resolution, the member
    stops with ``unresolved = True`` at ``unresolved_step``, a warning, running
    estimate kept up to that step (NaN after), ``lyapunov = +inf`` by convention
    (not resolvable at this ``d0``; :func:`netdyn.sweep.grid.edge_of_chaos` counts it
    above every chaos threshold) and ``lyapunov_resolved`` the estimate it had
    reached.  With the default ``d0`` in float64 this takes parameter entries of
    order 1e6 (their rounding then rivals ``d0``), so on sound training it is rare;
    a small explicit ``d0`` makes it common.  A separation that
    collapses to exactly 0 gives ``-inf`` (also with a warning).

    Defaults: ``d0 = sqrt(eps) * max(scale, 1)`` is the finite-difference balance of
    rounding (relative ``eps * scale / d0``) and nonlinearity (relative ``d0 / scale``),
    both ``sqrt(eps)`` there, in every precision (ChaosTools' fixed 1e-9 is this rule
    for float64 states of norm ~0.07, and is lost to rounding in float32).  A ``d0``
    lost to rounding at the start raises ``ValueError``.  Ten blocks: see
    :func:`block_stderr`.

    References
    ----------
    Benettin, Galgani, Giorgilli, Strelcyn, Meccanica 15 (1980); ChaosTools.jl
    ``lyapunov``; Skokos, Lect. Notes Phys. 790 (2010).

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> m = nd.LogisticMap(r=4.0)
    >>> res = nd.max_lyapunov(m, torch.tensor([0.3], dtype=torch.float64), 500, transient=20)
    >>> round(float(res["lyapunov"]), 2)  # ln 2 = 0.693
    0.69
    >>> twin = nd.max_lyapunov(nd.HenonMap(), nd.HenonMap().initial_state(), 500, method="twin")
    >>> round(float(twin["lyapunov"]), 1)  # 0.419
    0.4
    """
    caller = "max_lyapunov"
    xs, batched = as_states(map_, x0, caller)
    steps = check_int(steps, "steps", caller, minimum=1)
    transient = check_int(transient, "transient", caller, minimum=0)
    renorm_every = check_int(renorm_every, "renorm_every", caller, minimum=1)
    n_blocks = check_int(n_blocks, "n_blocks", caller, minimum=1)
    t0 = check_int(t0, "t0", caller, minimum=0)
    if steps % renorm_every:
        raise ValueError(f"{caller}: expected steps to be a multiple of renorm_every={renorm_every}, got {steps}")
    method = check_choice(method, "method", caller, ("tangent", "twin"))
    if d0 is not None:
        d0 = check_float(d0, "d0", caller, minimum=0.0, exclusive=True)
    if method == "tangent":
        require_jacobian(map_, caller)
    n_params = param_dim_of(map_)
    n, p = xs.shape[0], (n_params if params_only else map_.dim)
    if d0 is None:
        d0 = default_d0(xs.dtype, float(parameter_norms(xs, n_params).max()))
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.zeros_like(xs)
    u[:, :p] = torch.randn(n, p, generator=gen, dtype=torch.float64).to(device=xs.device, dtype=xs.dtype)  # CPU draw, moved once
    u = u / u[:, :p].norm(dim=1, keepdim=True)
    stepper = BatchStepper(map_, vectorize)

    def norm(z: Tensor) -> Tensor:
        return z[:, :p].norm(dim=1).to(torch.float64)

    # the loop's state is the stack [x; z] (2n, dim) of the orbits and their separations, in
    # two preallocated buffers that the steps alternate between (views of both made once)
    first = torch.cat((xs, u)) if method == "tangent" else torch.cat((xs, xs + d0 * u))
    buffers = (first, torch.empty_like(first))
    x, z = [b[:n] for b in buffers], [b[n:] for b in buffers]
    z_measured = [b[n:, :p] for b in buffers]
    if method == "tangent":

        def advance(k: int, t: int) -> None:
            torch.cat(stepper.step_jvp(x[k], z[k], t0 + t), out=buffers[1 - k])

        def separation(k: int, out: Tensor) -> Tensor:
            return _norm_into(z_measured[k], out)

        def rescale(k: int, g: Tensor) -> None:
            z[k].div_(g.to(first.dtype)[:, None])

    else:
        if not torch.allclose(norm(z[0] - x[0]), torch.full((n,), d0, dtype=torch.float64, device=x[0].device),
                              rtol=1e-3, atol=0.0):
            raise ValueError(
                f"{caller}: expected d0 above the resolution of the {xs.dtype} state, got d0={d0} "
                f"(use float64 states or a larger d0)"
            )
        diff = torch.empty_like(xs)  # y - x of the last separation(), reused by rescale()
        diff_measured = diff[:, :p]
        d0_tensor = torch.tensor(d0, dtype=torch.float64)
        scale = torch.empty(n, dtype=torch.float64)
        scale_column = scale[:, None]

        def advance(k: int, t: int) -> None:
            stepper.step(buffers[k], t0 + t, out=buffers[1 - k])

        def separation(k: int, out: Tensor) -> Tensor:
            torch.sub(z[k], x[k], out=diff)
            return _norm_into(diff_measured, out)

        def rescale(k: int, g: Tensor) -> None:
            """y <- x + (y - x) * d0 / g in place, with the y - x of the separation() just taken
            (a true division: d0 / tensor would multiply by 1 / g)."""
            torch.div(d0_tensor, g, out=scale)
            diff.mul_(scale_column if diff.dtype == scale.dtype else scale_column.to(diff.dtype))
            torch.add(x[k], diff, out=z[k])

    target = 1.0 if method == "tangent" else d0

    def orbit_norm(k: int, out: Tensor) -> Tensor:
        """The norm the divergence rule judges, of the orbits in buffer ``k``, into ``out``."""
        return parameter_norms_on_device(x[k], n_params, out=out)

    with progress_bar(transient + steps, progress=progress, desc=caller) as bar:
        logs, end_step, verdict = _benettin(
            advance, separation, rescale, buffers, target, steps, transient, renorm_every, orbit_norm, divergence,
            advanced=bar.update,
        )
    end_step = np.where(end_step >= 0, end_step + int(t0), end_step)
    verdict.diverged_step = np.where(verdict.diverged_step >= 0, verdict.diverged_step + int(t0), -1)
    ds = _rates_dataset(
        logs,
        end_step,
        verdict,
        batched,
        steps,
        transient,
        renorm_every,
        n_blocks,
        caller,
        {
            **map_attrs(map_),
            "method": method,
            "d0": float(d0),
            "renorm_every": int(renorm_every),
            "transient": int(transient),
            "steps": int(steps),
            "perturbation_seed": int(seed),
            "params_only": int(params_only),
            "batching": stepper.mode if n > 1 or method == "twin" else "single",
            "units": "per step",
            "t0": int(t0),
        },
    )
    return ds.assign_coords(step=ds["step"] + int(t0))


def _benettin(
    advance: Callable[[int, int], None],
    separation: Callable[[int, Tensor], Tensor],
    rescale: Callable[[int, Tensor], None],
    buffers: tuple[Tensor, Tensor],
    target: float,
    steps: int,
    transient: int,
    m: int,
    orbit_norm: Callable[[int, Tensor], Tensor],
    rule: DivergenceRule | None,
    block: int = SYNC_EVERY,
    advanced: Callable[[int], Any] = lambda n: None,
) -> tuple[np.ndarray, np.ndarray, EnsembleDivergence]:
    """Shared loop: returns ``ln`` growth per interval ``(n, steps // m)`` (NaN after a
    member stops), ``end_step (n,)`` (-1 while alive) and the orbits' divergence
    verdict.

    The state is the stack ``[x; z]`` ``(2n, dim)`` of the orbits and their separations
    (tangents or twins), held in ``buffers[k]``, ``k`` alternating: ``buffers[0]`` holds
    the initial state, ``advance(k, t)`` writes the next state of ``buffers[k]`` into
    ``buffers[1 - k]``, ``separation(k, out)`` writes the separations' norms ``(n,)`` in
    float64 into ``out``, ``rescale(k, g)`` scales the separations to ``target`` in place
    (right after the ``separation`` that measured ``g``; a member whose ``g`` is 0 or
    non-finite stops at that step, so its rescaled values are never read) and
    ``orbit_norm(k, out)`` writes the orbits' norms (the divergence rule's) into ``out``.

    A member stops (unresolved) when the orbit or the separation becomes non-finite,
    or when its rescaled separation is no longer ``target`` within 10 %: the state
    has grown so large that ``target`` is below its floating-point resolution (a
    twin of an escaping orbit).  The divergence rule on ``orbit_norm`` of the
    reference is checked at every step and only flags the member.

    Each step only records (finiteness, norms and distances go into preallocated
    rows on the state's device, nothing comes back to the host); every ``block`` steps
    (default :data:`netdyn._core.devices.SYNC_EVERY`, one host copy per block) :func:`_judge_block`
    applies the rules above to the recorded steps, with the verdicts they would have
    had step by step.  Stopped members are stepped on to the end of their block
    (their values are never read); the loop ends after the block in which the last
    member stops.
    """
    n = buffers[0].shape[0] // 2
    logs = np.full((n, steps // m), np.nan)
    alive = np.ones(n, dtype=bool)
    end_step = np.full(n, -1, dtype=np.int64)
    verdict = EnsembleDivergence(n, rule)
    total = transient + steps
    size = min(block, total)
    # per step: finiteness marks of [x; z] (0, or NaN at an inf/NaN entry), orbit norm,
    # g before and separation after rescaling
    marks = torch.empty(size, 2 * n, dtype=buffers[0].dtype, device=buffers[0].device)
    zeros = torch.empty_like(buffers[0])
    rows = torch.empty(3, size, n, dtype=torch.float64, device=buffers[0].device)
    grown = rows[1]
    # the rows as lists of views, made once (indexing a tensor costs microseconds per step)
    mark_rows, norm_rows, grown_rows, kept_rows = (list(r.unbind(0)) for r in (marks, *rows))
    verdict.update(orbit_norm(0, norm_rows[0]).cpu().numpy(), 0, alive)
    prev = separation(0, kept_rows[0]).cpu().numpy().copy()
    k = 0
    for first in range(0, total, block):
        last = min(first + block, total)
        grown.fill_(math.nan)
        for t in range(first, last):
            i = t - first
            advance(k, t)
            advanced(1)
            k = 1 - k
            state = buffers[k]
            # x - x is 0 where x is finite, NaN at inf/NaN, and never overflows
            torch.sum(torch.sub(state, state, out=zeros), 1, out=mark_rows[i])
            orbit_norm(k, norm_rows[i])
            counted = t - transient + 1
            if counted <= 0 or counted % m == 0:
                rescale(k, separation(k, grown_rows[i]))
                separation(k, kept_rows[i])
        finite = (marks[: last - first] == 0).cpu().numpy()
        record = rows[:, : last - first].cpu().numpy()
        prev = _judge_block(
            first, finite[:, :n] & finite[:, n:], *record, prev, target, transient, m, logs, alive, end_step, verdict
        )
        if not alive.any():
            break
    return logs, end_step, verdict


def _norm_into(z: Tensor, out: Tensor) -> Tensor:
    """The row norms of ``z`` ``(n, k)``, computed in ``z``'s dtype, written into ``out`` ``(n,)``."""
    if z.dtype == out.dtype:
        return torch.linalg.vector_norm(z, dim=1, out=out)
    return out.copy_(torch.linalg.vector_norm(z, dim=1))


def _judge_block(
    first: int,
    finite: np.ndarray,
    norms: np.ndarray,
    grown: np.ndarray,
    kept: np.ndarray,
    prev: np.ndarray,
    target: float,
    transient: int,
    m: int,
    logs: np.ndarray,
    alive: np.ndarray,
    end_step: np.ndarray,
    verdict: EnsembleDivergence,
) -> np.ndarray:
    """The stopping rules of :func:`_benettin` on the steps ``first, first + 1, ...`` recorded
    in the rows of ``finite`` (x and z finite), ``norms`` (orbit norm), ``grown`` (``g``;
    NaN on steps without renormalisation) and ``kept`` (separation after rescaling), all
    ``(rows, n)``; fills ``logs`` and updates ``alive``, ``end_step`` and ``verdict`` in place;
    returns the separation the next interval starts from ``(n,)``.

    At step ``t`` a live member is checked by the divergence rule, then stops when ``x``
    or ``z`` is non-finite or (renormalisation steps) ``g`` is; else a counted interval
    logs ``ln(g / prev)`` and the member stops on ``g == 0`` (collapse); else it stops
    when the rescaled separation is off ``target`` by more than 10 %.  ``end_step`` is
    ``t + 1`` at the first stop.  Vectorised over the rows: the outcome of judging the
    steps one by one."""
    count = finite.shape[0]
    counted = np.arange(first, first + count) - transient + 1
    renorm = (counted <= 0) | (counted % m == 0)
    logged = renorm & (counted > 0)
    where = np.flatnonzero(renorm)
    before = np.full_like(grown, np.nan)  # the denominator of each renormalisation step
    before[where] = np.vstack((prev[None], kept[where[:-1]]))
    nonfinite = ~finite | (renorm[:, None] & ~np.isfinite(np.where(renorm[:, None], grown, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log(grown / before)
        collapsed = logged[:, None] & ~nonfinite & (grown == 0)
        off = renorm[:, None] & ~(np.abs(kept / target - 1.0) <= 0.1)
    event = (nonfinite | collapsed | off) & alive
    stops = event.any(0)
    stop_row = np.where(stops, event.argmax(0), count)  # first event of each member (count: none)
    rows = np.arange(count)[:, None]
    written = logged[:, None] & alive & ((rows < stop_row) | ((rows == stop_row) & ~nonfinite))
    i, j = np.nonzero(written)
    logs[j, counted[i] // m - 1] = rates[i, j]
    for i in range(min(count, int(stop_row[alive].max(initial=-1)) + 1)):
        verdict.update(norms[i], first + i + 1, alive & (stop_row >= i))
    end_step[stops] = first + stop_row[stops] + 1
    alive &= ~stops
    return kept[where[-1]].copy() if where.size else prev


def _rates_dataset(
    logs: np.ndarray,
    end_step: np.ndarray,
    verdict: EnsembleDivergence,
    batched: bool,
    steps: int,
    transient: int,
    m: int,
    n_blocks: int,
    caller: str,
    attrs: dict[str, Any],
) -> xr.Dataset:
    rates = logs / m
    with np.errstate(invalid="ignore"):
        running = np.cumsum(logs, axis=1) / (m * np.arange(1, logs.shape[1] + 1))
    complete = np.isfinite(logs).all(axis=1)
    collapsed = ~complete & (end_step >= 0) & np.isneginf(logs).any(axis=1)
    unresolved = ~complete & ~collapsed
    final = np.where(unresolved, np.inf, np.where(complete, running[:, -1], -np.inf))
    resolved = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in running])
    verdict.warn(caller)
    if unresolved.any():
        warnings.warn(
            f"{caller}: the separation of {int(unresolved.sum())} of {len(unresolved)} orbit(s) could not be "
            f"resolved (non-finite, or d0 below the state's floating-point resolution; first at step "
            f"{int(end_step[unresolved].min())}); exponent reported as +inf, the estimate reached is lyapunov_resolved",
            RuntimeWarning,
            stacklevel=3,
        )
    if collapsed.any():
        warnings.warn(
            f"{caller}: the separation collapsed to 0 for {int(collapsed.sum())} orbit(s); exponent -inf",
            RuntimeWarning,
            stacklevel=3,
        )
    stderr = np.where(complete, block_stderr(np.where(complete[:, None], rates, 0.0), n_blocks), np.nan)
    step = transient + m * np.arange(1, logs.shape[1] + 1, dtype=np.int64)
    ds = xr.Dataset(
        {
            "lyapunov": (("init",), final),
            "lyapunov_resolved": (("init",), resolved),
            "lyapunov_stderr": (("init",), stderr),
            "lyapunov_running": (("init", "step"), running),
            "local_rate": (("init", "step"), rates),
            "unresolved": (("init",), unresolved),
            "unresolved_step": (("init",), np.where(unresolved, end_step, -1)),
            **verdict.variables(),
        },
        coords={"step": step, "init": np.arange(len(final))},
        attrs=attrs,
    )
    ds["lyapunov"].attrs["units"] = "1/step"
    ds["lyapunov_resolved"].attrs["units"] = "1/step"
    return ds if batched else ds.isel(init=0, drop=True)
