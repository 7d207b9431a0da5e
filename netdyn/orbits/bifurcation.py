"""Orbit (bifurcation / chaos) diagrams over a control parameter.

:func:`orbit_diagram` runs one orbit per value of a control parameter (``r`` of
the logistic map, the learning rate of gradient descent, ...), keeps its tail
projected to a scalar observable and classifies each orbit with
:func:`netdyn.orbits.stability.orbital_stability`.  :func:`netdyn.plot.orbits.plot_orbit_diagram`
draws the result.

Parameter batches: when ``map_`` (the family) accepts a 1-D tensor of all the values and
returns one map whose ``members`` are those values (the classic maps of
:mod:`netdyn.maps.classic`: ``LogisticMap``, ``HenonMap``, ``QuadraticGD``,
``CircleRotation``, ``LorenzRK4``, and factories such as
``lambda lr: QuadraticGD(h, lr=lr)``), all orbits advance together, one tensor
operation per step.  Other factories (e.g. a ``TrainingMap`` per learning rate,
``PotentialGD``) get one map and one orbit per value.  The classification stays
per value (:func:`netdyn.orbits.stability.orbital_stability` judges one tail, with the
exponent of that value's map); ``classify=False`` skips it when only the tails
are wanted (it is most of the cost of a large diagram).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from netdyn._version import __version__
from netdyn._core.progress import progress_bar
from netdyn._core.validation import check_int
from netdyn.maps.base import is_batch_first
from netdyn.orbits.stability import orbital_stability

__all__ = ["orbit_diagram"]


def orbit_diagram(
    map_: Callable[[float], Any],
    values: Sequence[float] | np.ndarray,
    steps: int,
    *,
    tail: int,
    observable: int | Callable[[np.ndarray], np.ndarray] = 0,
    x0: torch.Tensor | np.ndarray | Sequence[float] | None = None,
    seed: int = 0,
    name: str = "value",
    use_map: bool = True,
    classify: bool = True,
    vectorize: bool | None = None,
    progress: bool | None = None,
    **stability: Any,
) -> xr.Dataset:
    """Tails and orbital classes of a family of maps over a control parameter.

    Parameters
    ----------
    map_
        the family of maps, ``value -> map`` (a :class:`~netdyn.maps.base.DiscreteMap`), e.g.
        ``LogisticMap`` or ``lambda lr: TrainingMap(..., lr=lr)``.
    values
        the control-parameter values, shape ``(V,)``.
    steps
        total steps of each orbit (transient plus tail); ``steps >= tail``.
    tail
        number of final states kept and classified, at least 16.
    observable
        default 0: the state coordinate plotted; or a function mapping the tail
        states ``(tail, dim)`` (numpy, float64) to ``(tail,)`` — e.g. the loss or a
        random projection for a network.
    x0
        default ``None``: each map's ``initial_state(seed)``; else the same initial
        state for every value.
    seed
        default 0: passed to ``initial_state`` and to the classification.
    name
        default ``"value"``: name of the control parameter, stored as the attribute
        ``control`` (e.g. ``"r"``, ``"lr"``).
    use_map
        default ``True``: pass the map to :func:`orbital_stability`, so that every
        orbit's exponent is :func:`~netdyn.lyapunov.maximal.max_lyapunov` (tangent, or twin
        without ``step_jvp``) over the kept tail window, from its first state at map
        time ``steps - tail``, and checked against the class; ``False``: the
        exponent of aperiodic tails from :func:`~netdyn.series.datadriven.rosenstein`.
    classify
        default ``True``: classify every tail with :func:`orbital_stability` (one
        call per value); ``False``: only the tails (``orbit``), without the
        variables ``label``, ``period``, ``exponent``, ``confidence``, ``conflict``.
    vectorize
        default ``None``: advance all values as one parameter batch when
        ``map_(torch.tensor(values))`` returns one (see the module docstring),
        else one map per value; ``True``: require the batch (``ValueError``
        otherwise); ``False``: one map per value.  Both give the same tails to the
        last bit (the members compute exactly the per-value operations).
    progress : bool or None, default None
        a tqdm bar over the values (None: only on a terminal).
    **stability
        further keyword arguments of :func:`orbital_stability` (``tol``,
        ``exponent_steps``, ...); its ``tail`` is the whole kept tail.

    Returns
    -------
    xarray.Dataset
        dims ``(value, tail_step)``:

        ``orbit`` (value, tail_step)
            the observable on the tail (NaN after a divergence);
        ``label`` (value,)
            the orbital class (str);
        ``period`` (value,)
            the period, 0 when there is none;
        ``exponent`` (value,)
            the exponent of the tail window (per step; with ``use_map=False`` NaN
            when none was needed);
        ``confidence`` (value,)
            ``"high"`` or ``"low"`` (:class:`~netdyn.orbits.stability.OrbitalStability`);
        ``conflict`` (value,)
            ``""`` or the sentence naming conflicting evidence;

        coords ``value`` (the control values) and ``tail_step`` (the step index
        ``steps - tail + k`` of each kept state); attrs ``control``, ``steps``,
        ``tail``, ``map`` (class name of the first map), ``classified`` (0/1),
        ``batching`` (``"parameter batch"`` or ``"per value"``), ``netdyn_version``.

    An orbit that becomes non-finite stops there, its remaining tail is NaN and it
    is labelled divergent (the ``"non-finite"`` clause of
    :mod:`netdyn.maps.divergence`; one warning for the whole diagram).  A finite tail
    is judged by :func:`orbital_stability`, which applies the whole divergence rule
    (growth of the state norm relative to the tail's first state).

    Raises
    ------
    ValueError
        When ``values`` is empty or not 1-D, ``tail`` is not in ``[16, steps]`` or the
        observable is neither a valid state index nor a callable.

    Examples
    --------
    >>> import netdyn as nd
    >>> d = nd.orbit_diagram(nd.LogisticMap, [2.8, 3.2], 200, tail=32, name="r")
    >>> d["label"].values.tolist(), d["period"].values.tolist()
    (['fixed_point', 'periodic'], [1, 2])
    """
    make_map = map_  # the family: value -> map
    steps = check_int(steps, "steps", "orbit_diagram", minimum=1)
    tail = check_int(tail, "tail", "orbit_diagram", minimum=1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"orbit_diagram: expected a non-empty 1-D sequence of values, got shape {values.shape}")
    if not 16 <= tail <= steps:
        raise ValueError(f"orbit_diagram: expected 16 <= tail <= steps, got tail={tail}, steps={steps}")
    if not (callable(observable) or isinstance(observable, (int, np.integer))):
        raise ValueError(f"orbit_diagram: expected an int or a callable observable, got {type(observable).__name__}")
    batch = _parameter_batch(make_map, values, vectorize)
    if batch is not None:
        _check_observable(observable, batch.dim)
        all_states, all_finite = _tails_batched(batch, steps, tail, x0, seed)
        maps = (batch.member(k) for k in range(values.size))
        map_name = type(batch).__name__
    else:
        maps = (make_map(float(value)) for value in values)
        map_name = ""
    orbits = np.full((values.size, tail), np.nan)
    labels, periods, exponents = [], np.zeros(values.size, dtype=np.int64), np.full(values.size, np.nan)
    confidence, conflicts = [], []
    diverged = []
    if batch is not None and not callable(observable):
        orbits[:] = all_states[:, :, observable]  # rows after a divergence are NaN already
    with progress_bar(values.size, progress=progress, desc="orbit_diagram", unit="value") as bar:
        for k, value in enumerate(values):
            bar.update(1)
            if batch is None or classify or callable(observable):
                member = next(maps)
            if batch is None:
                map_name = map_name or type(member).__name__
                _check_observable(observable, member.dim)
                states, finite = _tail(member, steps, tail, x0, seed)
            else:
                states, finite = all_states[k], bool(all_finite[k])
            if not finite:
                diverged.append(float(value))
            if batch is None or callable(observable):
                kept = states[np.isfinite(states).all(axis=1)]
                if kept.shape[0]:
                    proj = kept[:, observable] if not callable(observable) else np.asarray(observable(kept), dtype=np.float64)
                    orbits[k, : kept.shape[0]] = proj
            if not classify:
                continue
            if finite:
                timed = xr.DataArray(states, dims=("step", "param"), coords={"step": np.arange(steps - tail, steps)})
                res = orbital_stability(timed, tail=tail, seed=seed, map_=member if use_map else None, **stability)
                labels.append(res.label)
                periods[k] = res.period or 0
                exponents[k] = res.exponent
                confidence.append(res.confidence)
                conflicts.append(res.conflict)
            else:
                labels.append("divergent")
                confidence.append("high")
                conflicts.append("")
    if diverged:
        warnings.warn(f"orbit_diagram: orbits diverged at {name} = {diverged}", stacklevel=2)
    variables = {"orbit": (("value", "tail_step"), orbits)}
    if classify:
        variables.update({
            "label": ("value", np.array(labels, dtype=str)),
            "period": ("value", periods),
            "exponent": ("value", exponents),
            "confidence": ("value", np.array(confidence, dtype=str)),
            "conflict": ("value", np.array(conflicts, dtype=str)),
        })
    return xr.Dataset(
        variables,
        coords={"value": values, "tail_step": np.arange(steps - tail, steps, dtype=np.int64)},
        attrs={"control": name, "steps": int(steps), "tail": int(tail), "map": map_name, "classified": int(classify),
               "batching": "per value" if batch is None else "parameter batch", "netdyn_version": __version__},
    )


def _check_observable(observable: Any, dim: int) -> None:
    if not callable(observable) and not 0 <= observable < dim:
        raise ValueError(f"orbit_diagram: expected an observable index in [0, {dim}), got {observable}")


def _parameter_batch(make_map: Callable[[Any], Any], values: np.ndarray, vectorize: bool | None) -> Any:
    """``make_map(tensor of values)`` when it is one ``batch_first`` map with ``values.size``
    members, else None (``vectorize=True``: ``ValueError`` instead of None)."""
    if vectorize is False:
        return None
    expected = (f"orbit_diagram: expected make_map to accept a 1-D tensor of the {values.size} values and return "
                "one batch_first map with that many members (vectorize=True)")
    try:
        batch = make_map(torch.as_tensor(values, dtype=torch.float64))
    except (TypeError, ValueError, RuntimeError) as err:  # a factory of scalar values only: one map per value
        if vectorize:
            raise ValueError(f"{expected}, got the error {err}") from err
        return None
    if getattr(batch, "members", None) != values.size or not is_batch_first(batch):
        if vectorize:
            raise ValueError(f"{expected}, got {type(batch).__name__} with members={getattr(batch, 'members', None)}")
        return None
    return batch


def _tails_batched(batch: Any, steps: int, tail: int, x0: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_tail` of every member of a parameter batch at once: ``(members, tail, dim)``
    float64 tails (NaN rows from a member's first non-finite state on) and ``(members,)``
    whether each orbit stayed finite."""
    n, dim = batch.members, batch.dim
    dtype = getattr(batch, "dtype", torch.float64)
    if x0 is None:
        x = batch.initial_state(seed)
    else:
        x = torch.as_tensor(x0, dtype=dtype).reshape(dim).expand(n, dim).clone()
    out = np.full((n, tail, dim), np.nan)
    alive = torch.ones(n, dtype=torch.bool)
    start = steps - tail
    with torch.no_grad():
        for t in range(steps):
            alive &= torch.isfinite(x).all(dim=1)
            if t >= start:
                rows = x.detach().cpu().double().numpy()
                out[:, t - start] = np.where(alive.numpy()[:, None], rows, np.nan)
            x = batch.step(x, t)
    return out, alive.numpy()


def _tail(map_: Any, steps: int, tail: int, x0: Any, seed: int) -> tuple[np.ndarray, bool]:
    """The last ``tail`` states of ``steps`` iterations as float64 ``(tail, dim)``;
    NaN rows after a non-finite state, and whether the orbit stayed finite."""
    dtype = getattr(map_, "dtype", torch.float64)
    x = map_.initial_state(seed) if x0 is None else torch.as_tensor(x0, dtype=dtype).reshape(map_.dim).clone()
    out = np.full((tail, map_.dim), np.nan)
    start = steps - tail
    with torch.no_grad():
        for t in range(steps):
            if not bool(torch.isfinite(x).all()):
                return out, False
            if t >= start:
                out[t - start] = x.detach().cpu().double().numpy()
            x = map_.step(x, t)
    return out, True
