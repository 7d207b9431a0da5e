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

from netdyn._core.devices import SYNC_EVERY, host_block
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

    if method == "tangent":
        pair, advance = (xs, u), lambda x, v, t: stepper.step_jvp(x, v, t0 + t)
        separation = lambda x, v: norm(v)  # noqa: E731
        rescale = lambda x, v, g: v / g.to(v.dtype)[:, None]  # noqa: E731
    else:
        ys = xs + d0 * u
        if not torch.allclose(norm(ys - xs), torch.full((n,), d0, dtype=torch.float64, device=xs.device), rtol=1e-3, atol=0.0):
            raise ValueError(
                f"{caller}: expected d0 above the resolution of the {xs.dtype} state, got d0={d0} "
                f"(use float64 states or a larger d0)"
            )

        def advance(x: Tensor, y: Tensor, t: int) -> Pair:
            out = stepper.step(torch.cat((x, y)), t0 + t)
            return out[:n], out[n:]

        separation = lambda x, y: norm(y - x)  # noqa: E731
        rescale = lambda x, y, g: x + (y - x) * (d0 / g).to(x.dtype)[:, None]  # noqa: E731
        pair = (xs, ys)
    target = 1.0 if method == "tangent" else d0
    orbit_norm = lambda x: parameter_norms_on_device(x, n_params)  # noqa: E731
    with progress_bar(transient + steps, progress=progress, desc=caller) as bar:
        logs, end_step, verdict = _benettin(
            advance, separation, rescale, pair, target, steps, transient, renorm_every, orbit_norm, divergence,
            bar.update,
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
    advance: Callable[[Tensor, Tensor, int], Pair],
    separation: Callable[[Tensor, Tensor], Tensor],
    rescale: Callable[[Tensor, Tensor, Tensor], Tensor],
    pair: Pair,
    target: float,
    steps: int,
    transient: int,
    m: int,
    orbit_norm: Callable[[Tensor], Tensor],
    rule: DivergenceRule | None,
    advanced: Callable[[int], Any] = lambda n: None,
) -> tuple[np.ndarray, np.ndarray, EnsembleDivergence]:
    """Shared loop: returns ``ln`` growth per interval ``(n, steps // m)`` (NaN after a
    member stops), ``end_step (n,)`` (-1 while alive) and the orbits' divergence
    verdict.

    A member stops (unresolved) when the orbit or the separation becomes non-finite,
    or when its rescaled separation is no longer ``target`` within 10 %: the state
    has grown so large that ``target`` is below its floating-point resolution (a
    twin of an escaping orbit).  The divergence rule on ``orbit_norm`` of the
    reference is checked at every step and only flags the member.

    Device: everything per step stays on the state's device; the norms and flags of
    each block of :data:`netdyn._core.devices.SYNC_EVERY` steps are copied to the host
    once and the divergence rule replayed on them step by step (one sync per block)."""
    x, z = pair
    n, device = x.shape[0], x.device
    n_logs = steps // m
    growth = torch.full((n, n_logs), math.nan, dtype=torch.float64, device=device)  # g_j where measured
    before = torch.full((n, n_logs), math.nan, dtype=torch.float64, device=device)  # the denominator of g_j
    alive = torch.ones(n, dtype=torch.bool, device=device)
    end_step = torch.full((n,), -1, dtype=torch.int64, device=device)
    verdict = EnsembleDivergence(n, rule)
    verdict.update(orbit_norm(x).cpu().numpy(), 0, np.ones(n, dtype=bool))
    prev = separation(x, z)
    pending: list[tuple[Tensor, Tensor]] = []  # (orbit norms, alive) of each step, copied once per block

    def replay() -> None:
        if pending:
            norms, flags = host_block([a for a, _ in pending]), host_block([b for _, b in pending])
            for j, t_done in enumerate(range(t + 2 - len(pending), t + 2)):
                verdict.update(norms[j], t_done, flags[j])
            pending.clear()

    for t in range(transient + steps):
        x, z = advance(x, z, t)
        advanced(1)
        pending.append((orbit_norm(x), alive.clone()))
        finite = torch.isfinite(x).all(1) & torch.isfinite(z).all(1)
        counted = t - transient + 1
        if counted > 0 and counted % m:
            stop = alive & ~finite
        else:
            g = separation(x, z)
            stop = alive & ~(finite & torch.isfinite(g))
            if counted > 0:
                kept = alive & ~stop
                growth[:, counted // m - 1] = torch.where(kept, g, math.nan)
                before[:, counted // m - 1] = torch.where(kept, prev, math.nan)
                collapsed = kept & (g == 0)
                end_step = torch.where(collapsed, t + 1, end_step)
                alive = alive & ~collapsed
            z = rescale(x, z, torch.where(g > 0, g, 1.0))
            prev = separation(x, z)
            stop = stop | (alive & ~((prev / target - 1.0).abs() <= 0.1))
        end_step = torch.where(stop, t + 1, end_step)
        alive = alive & ~stop
        if len(pending) == SYNC_EVERY:
            replay()
            if not bool(alive.any()):  # one sync per block: the loop may run past the last member's stop
                break
    replay()
    g, d = growth.cpu().numpy(), before.cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(g / d)
    end_step = end_step.cpu().numpy()
    return logs, end_step, verdict


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
