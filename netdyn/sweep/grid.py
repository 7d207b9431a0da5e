"""Learning-rate sweeps: where training turns chaotic, and where it is fastest.

:func:`run_sweep` trains one MLP of :mod:`netdyn.maps.problems` for every combination of
learning rate, seed, activation and optimiser, and measures on each orbit its
maximal Lyapunov exponent, its orbital class, its final loss and accuracy and the
time it takes to reach a target test accuracy.  Points run in parallel on a Dask
cluster (a local one by default) or in a plain loop, and each finished point is
stored on disk at once (:mod:`netdyn.sweep.store`), so an interrupted sweep resumes
without recomputing anything.  :func:`edge_of_chaos` and :func:`fastest_lr` read
the result: the learning rate where the exponent turns positive and the one that
trains fastest — the comparison of Jiménez-González, Soriano & Lacasa (2025).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from netdyn._core.signals import holding_signals
from netdyn._core.validation import check_choice, check_int
from netdyn._version import __version__
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.problems import ACTIVATIONS, DATASETS, make_task, training_map
from netdyn.orbits.stability import orbital_stability
from netdyn.sweep.store import Claims, grid_key, load_point, point_key, point_path, save_point
from netdyn.orbits.trajectory import run

__all__ = ["AXES", "PointSettings", "run_sweep", "point_specs", "train_point", "edge_of_chaos", "fastest_lr", "local_cluster"]

AXES = ("lr", "seed", "activation", "optimizer")
TASK_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "hidden": [32],
    "init": "torch",
    "init_scale": 1.0,
    "dtype": "float64",
    "n_train": None,
}
# name -> value of a point that has none (error, or not reached)
SCALARS: dict[str, Any] = {
    "lyapunov": math.nan,
    "lyapunov_stderr": math.nan,
    "lyapunov_resolved": math.nan,
    "lyapunov_tail": math.nan,
    "exponent_unresolved": False,
    "orbit_class": "",
    "orbit_period": 0,
    "orbit_confidence": "",
    "orbit_conflict": "",
    "final_loss": math.nan,
    "final_test_accuracy": math.nan,
    "time_to_target": math.nan,
    "diverged": False,
    "divergence_reason": "",
    "status": "error",
    "error": "",
    "wall_time": math.nan,
}
CURVES = ("loss", "test_accuracy")
_POLL_S = 0.5  # while another process computes the points this one waits for
_DESCRIPTIONS = {
    "lyapunov": (
        "maximal Lyapunov exponent of the training map along the orbit (+inf: too large to resolve, "
        "see exponent_unresolved)", "1/step",
    ),
    "lyapunov_stderr": ("block-average standard error of the exponent", "1/step"),
    "lyapunov_resolved": ("running exponent estimate at the last step the twin could resolve", "1/step"),
    "lyapunov_tail": (
        "the exponent over the orbit's second half, the window orbit_class examines (chaos that ended earlier "
        "is transient)", "1/step",
    ),
    "exponent_unresolved": (
        "the twin/tangent separation lost floating-point resolution (or became non-finite): the exponent is "
        "too large to resolve; a fact about the estimate, not about training", "",
    ),
    "orbit_class": ("orbital class of the orbit's second half (netdyn.orbits.stability)", ""),
    "orbit_period": ("period of a fixed point (1) or periodic orbit, else 0", ""),
    "orbit_confidence": ("high | low: whether the evidence for orbit_class agrees (netdyn.orbits.stability)", ""),
    "orbit_conflict": ("the disagreeing evidence for orbit_class ('' when every piece agrees)", ""),
    "final_loss": ("training loss at the last step (+inf: diverged)", ""),
    "final_test_accuracy": ("test accuracy at the last evaluation (NaN: diverged)", ""),
    "time_to_target": ("first step whose test accuracy reaches target_accuracy (inf: never)", "steps"),
    "diverged": (
        "training diverged by the divergence rule (netdyn.maps.divergence): non-finite values, loss blow-up or "
        "unbounded parameter growth", "",
    ),
    "divergence_reason": ("the divergence rule's sentence ('' when training is sound)", ""),
    "status": ("ok | diverged | error", ""),
    "error": ("exception or divergence message ('' when ok)", ""),
    "wall_time": ("seconds spent on the point where it ran", "s"),
    "loss": ("training loss at each step", ""),
    "test_accuracy": ("test accuracy, every eval_every steps (NaN between)", ""),
}


# ---------------------------------------------------------------- the grid
def _values(name: str, values: Any, kind: type) -> list[Any]:
    """A sweep axis as a list of distinct plain values (a scalar is one value)."""
    if isinstance(values, (str, int, float, np.generic)):
        values = [values]
    try:
        out = [kind(v.item() if isinstance(v, np.generic) else v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"run_sweep: expected {name} as a {kind.__name__} or a sequence of them, got {values!r}") from err
    if not out or len(set(out)) != len(out):
        raise ValueError(f"run_sweep: expected a non-empty list of distinct {name} values, got {out}")
    return out


def _task_spec(task: str | Mapping[str, Any]) -> dict[str, Any]:
    """The task as a dict with every make_task option (defaults filled in), so equal
    tasks hash equally however they were written."""
    if isinstance(task, str):
        task = {"dataset": task}
    if not isinstance(task, Mapping):
        raise ValueError(f"run_sweep: expected task as a dataset name or a dict of make_task options, got {task!r}")
    unknown = set(task) - set(TASK_DEFAULTS)
    if unknown:
        raise ValueError(
            f"run_sweep: expected task options among {sorted(TASK_DEFAULTS)}, got {sorted(unknown)} "
            "(activation and seed are sweep axes)"
        )
    spec = {**TASK_DEFAULTS, **task}
    if spec["dataset"] not in DATASETS:
        raise ValueError(f"run_sweep: expected dataset in {list(DATASETS)}, got {spec['dataset']!r}")
    hidden = spec["hidden"]
    spec["hidden"] = [int(hidden)] if isinstance(hidden, (int, np.integer)) else [int(h) for h in hidden]
    spec["init_scale"] = float(spec["init_scale"])
    spec["dtype"] = str(spec["dtype"]).replace("torch.", "")
    spec["n_train"] = None if spec["n_train"] is None else int(spec["n_train"])
    return spec


@dataclasses.dataclass(frozen=True)
class PointSettings:
    """What every point of a sweep shares: the task and how each point is trained and measured.

    The one definition of these settings: :func:`run_sweep` and :func:`point_specs`
    take them as keywords (``**settings``) and build this object, ``netdyn sweep``
    passes its options through it, and :meth:`spec` gives the JSON-serialisable dict
    that :func:`train_point` runs and :func:`netdyn.sweep.store.point_key` names.

    Parameters
    ----------
    task : str or dict, default "digits"
        a data set name of :mod:`netdyn.maps.problems` or a dict of ``make_task`` options
        among ``dataset``, ``hidden`` (default [32]), ``init`` ("torch"),
        ``init_scale`` (1.0), ``dtype`` ("float64"), ``n_train`` (all).
    steps : int, default 200
        training steps per point (>= 32: the orbit's class needs a 16-step tail).
    target_accuracy : float, default 0.9
        test accuracy in ``(0, 1]`` that defines ``time_to_target``.
    eval_every : int, default 1
        steps between test evaluations, ``1 <= eval_every <= steps`` (the resolution
        of ``time_to_target``).  On the default digits MLP an evaluation costs about a
        quarter of a step, and a point about three steps per step (orbit + twin pair),
        so evaluating every step adds < 10 %.
    batch_size : int, optional
        mini-batch size (default: full batch).
    optimizer_kwargs : dict, optional
        passed to every optimiser (momentum, betas, weight_decay, ...).
    lyapunov_method : {"twin", "tangent"}, default "twin"
        twin orbits work for every optimiser; tangents need a functional one.
    lyapunov_transient : int, default 0
        first steps of the orbit not counted in the exponent, ``0 <= . <= steps - 10``
        (0: the whole training run, as in Jiménez-González et al.).
    d0 : float, optional
        twin separation; default the dtype rule of :func:`netdyn.max_lyapunov`
        (``sqrt(eps) * max(|theta_0|, 1)``), so float32 tasks work too.

    Examples
    --------
    >>> from netdyn.sweep.grid import PointSettings
    >>> spec = PointSettings(task="iris", steps=40).spec()
    >>> spec["task"]["dataset"], spec["steps"], spec["lyapunov"]["method"]
    ('iris', 40, 'twin')
    """

    task: str | Mapping[str, Any] = "digits"
    steps: int = 200
    target_accuracy: float = 0.9
    eval_every: int = 1
    batch_size: int | None = None
    optimizer_kwargs: Mapping[str, Any] | None = None
    lyapunov_method: str = "twin"
    lyapunov_transient: int = 0
    d0: float | None = None

    def spec(self) -> dict[str, Any]:
        """The settings checked and in canonical, JSON-serialisable form (the part of a point's spec they give).

        Returns
        -------
        dict
            keys ``task`` (every ``make_task`` option filled in), ``steps``, ``eval_every``,
            ``target_accuracy``, ``batch_size``, ``optimizer_kwargs``, ``lyapunov``
            (``method``, ``transient``, ``d0``).

        Raises
        ------
        ValueError
            When a setting is out of its range (see the class docstring).

        Examples
        --------
        >>> from netdyn.sweep.grid import PointSettings
        >>> PointSettings(task="iris", steps=40).spec()["eval_every"]
        1
        """
        caller = "run_sweep"
        steps = check_int(self.steps, "steps", caller, minimum=32)
        eval_every = check_int(self.eval_every, "eval_every", caller, minimum=1, maximum=steps)
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"{caller}: expected 0 < target_accuracy <= 1, got {self.target_accuracy}")
        method = check_choice(self.lyapunov_method, "lyapunov_method", caller, ("twin", "tangent"))
        transient = check_int(self.lyapunov_transient, "lyapunov_transient", caller, minimum=0, maximum=steps - 10)
        return {
            "task": _task_spec(self.task),
            "steps": steps,
            "eval_every": eval_every,
            "target_accuracy": float(self.target_accuracy),
            "batch_size": None if self.batch_size is None else int(self.batch_size),
            "optimizer_kwargs": dict(self.optimizer_kwargs or {}),
            "lyapunov": {"method": method, "transient": transient, "d0": None if self.d0 is None else float(self.d0)},
        }


def point_specs(
    *,
    lr: Any = (0.1,),
    seed: Any = (0,),
    activation: Any = ("tanh",),
    optimizer: Any = ("sgd",),
    **settings: Any,
) -> tuple[dict[str, list[Any]], list[tuple[tuple[int, ...], dict[str, Any]]]]:
    """The grid of a sweep: ``(axes, [(index, spec), ...])``.

    Parameters
    ----------
    lr, seed, activation, optimizer : value or sequence
        the sweep axes, as in :func:`run_sweep`.
    **settings
        the fields of :class:`PointSettings` (``task``, ``steps``, ...).

    Returns
    -------
    axes : dict
        each of :data:`AXES` to its values.
    points : list of (index, spec)
        ``index`` is the position of the point on the axes and ``spec`` the
        JSON-serialisable dict that :func:`train_point` runs and
        :func:`netdyn.sweep.store.point_key` names.

    Raises
    ------
    ValueError
        When an axis or a setting is invalid: every check of a sweep's arguments
        happens here, before anything runs.

    Examples
    --------
    >>> from netdyn.sweep.grid import point_specs
    >>> axes, points = point_specs(lr=[0.1, 1.0], seed=[0, 1], task="iris", steps=40)
    >>> axes["lr"], [index for index, _ in points][:2]
    ([0.1, 1.0], [(0, 0, 0, 0), (0, 1, 0, 0)])
    """
    common = PointSettings(**settings).spec()
    axes = {
        "lr": _values("lr", lr, float),
        "seed": _values("seed", seed, int),
        "activation": _values("activation", activation, str),
        "optimizer": _values("optimizer", optimizer, str),
    }
    if not all(v > 0 and math.isfinite(v) for v in axes["lr"]):
        raise ValueError(f"run_sweep: expected finite learning rates > 0, got {axes['lr']}")
    bad = [a for a in axes["activation"] if a not in ACTIVATIONS]
    if bad:
        raise ValueError(f"run_sweep: expected activations among {sorted(ACTIVATIONS)}, got {bad}")
    points = []
    for index in np.ndindex(*(len(v) for v in axes.values())):
        values = {name: axes[name][i] for name, i in zip(AXES, index)}
        points.append((tuple(int(i) for i in index), {**common, **values}))
    return axes, points


# ---------------------------------------------------------------- one point
@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread while a point runs: one point per core, and the same
    floating-point reductions wherever the point runs (results are bit-identical)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _failed(message: str, steps: int) -> dict[str, Any]:
    """The result of a point that raised: fill values, ``status="error"``."""
    out = {**SCALARS, "status": "error", "error": message}
    out.update({name: np.full(steps, np.nan) for name in CURVES})
    return out


def train_point(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Train one network and measure its orbit; never raises.

    Parameters
    ----------
    spec : dict
        one point of :func:`point_specs`.

    Returns
    -------
    dict with the scalars of :data:`SCALARS` and the curves ``loss`` and
    ``test_accuracy`` (arrays ``(steps,)``, NaN after a divergence).  An exception
    gives ``status="error"`` and its message in ``error``; a training divergence
    ``status="diverged"`` with the rule's reason in ``divergence_reason`` and the
    warnings in ``error``.

    Two separate facts: ``diverged`` is about *training* — the recorded orbit broke
    the divergence rule (:mod:`netdyn.maps.divergence`: non-finite values, the loss
    above 1e3 x its start, the parameter norm above 1e3 x its start);
    ``exponent_unresolved`` is about the *estimate* — the twin separation lost
    floating-point resolution, ``lyapunov = +inf`` and ``lyapunov_resolved`` the
    estimate it had reached.  A point whose training is sound but whose exponent is
    unresolved is ``status="ok"`` with its real final loss and accuracy.

    Notes
    -----
    The point:

    1. ``make_task`` with the point's activation and ``seed`` (initial weights) and
       ``training_map`` with its learning rate, optimiser and ``seed`` (batches);
    2. ``run`` for ``steps`` steps from the seed's weights, evaluating test accuracy
       every ``eval_every`` steps: ``loss``, ``test_accuracy``, ``final_loss`` (at
       step ``steps - 1``), ``final_test_accuracy`` (last evaluation) and
       ``time_to_target`` = first evaluated step ``t`` with accuracy >= target
       (of the steps before a divergence);
    3. ``max_lyapunov`` over the same orbit — same initial state and steps, the
       first ``lyapunov_transient`` steps not counted — by twin orbits (any
       optimiser) or exact tangents;
    4. ``orbital_stability`` of the recorded orbit (a Dataset: its ``diverged``
       flag counts) told the exponent (+inf when unresolved: above every chaos
       threshold); a diverged orbit is ``"divergent"`` without it (it may be too
       short to classify).  ``orbit_confidence`` and ``orbit_conflict`` are the
       result's ``confidence`` and ``conflict`` ("high" and "" where it has none).

    torch runs on one thread (:func:`_one_thread`) so a point gives the same bits in
    a plain loop and on any Dask worker.  Top-level and pure: Dask pickles it by name.

    Examples
    --------
    >>> from netdyn.sweep.grid import point_specs, train_point
    >>> _, [(_, spec)] = point_specs(lr=0.5, task={"dataset": "iris", "hidden": [4], "n_train": 40}, steps=32)
    >>> result = train_point(spec)
    >>> result["status"], result["loss"].shape
    ('ok', (32,))
    """
    start = time.perf_counter()
    with _one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _train(spec)
        except Exception as err:  # a failing point is a result, never a crash of the sweep
            result = _failed(f"{type(err).__name__}: {err}", int(spec["steps"]))
    if result["status"] == "diverged":
        result["error"] = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or "diverged"
    result["wall_time"] = time.perf_counter() - start
    return result


def _train(spec: Mapping[str, Any]) -> dict[str, Any]:
    t, steps = spec["task"], int(spec["steps"])
    task = make_task(
        t["dataset"], hidden=t["hidden"], activation=spec["activation"], dtype=t["dtype"], init=t["init"],
        init_scale=t["init_scale"], seed=spec["seed"], n_train=t["n_train"],
    )
    tmap = training_map(
        task, lr=spec["lr"], optimizer=spec["optimizer"], batch_size=spec["batch_size"], seed=spec["seed"],
        **spec["optimizer_kwargs"],
    )
    x0 = tmap.initial_state()
    orbit = run(tmap, x0, steps, eval_every=spec["eval_every"])
    lyap = spec["lyapunov"]
    exponent = max_lyapunov(
        tmap, x0, steps - lyap["transient"], method=lyap["method"], transient=lyap["transient"], d0=lyap["d0"]
    )
    diverged = bool(orbit["diverged"])
    curves = {name: np.full(steps, np.nan) for name in CURVES}
    recorded = orbit["step"].values
    for name in CURVES:
        curves[name][recorded] = orbit[name].values
    evaluated = np.flatnonzero(np.isfinite(curves["test_accuracy"]))
    reached = evaluated[curves["test_accuracy"][evaluated] >= spec["target_accuracy"]]
    if diverged:
        label, period, confidence, conflict, tail = "divergent", 0, "high", "", math.nan
    else:
        try:  # the local rates, averaged by orbital_stability over the window it classifies
            stability = orbital_stability(orbit, exponent=exponent)
        except ValueError:  # a transient longer than the first half left that window uncounted
            stability = orbital_stability(orbit, exponent=float(exponent["lyapunov"]))
        label, period, tail = stability.label, stability.period or 0, stability.exponent
        confidence, conflict = getattr(stability, "confidence", "high"), getattr(stability, "conflict", "")
    return {
        **SCALARS,
        "lyapunov": float(exponent["lyapunov"]),
        "lyapunov_stderr": float(exponent["lyapunov_stderr"]),
        "lyapunov_resolved": float(exponent["lyapunov_resolved"]),
        "lyapunov_tail": float(tail),
        "exponent_unresolved": bool(exponent["unresolved"]),
        "orbit_class": label,
        "orbit_period": int(period),
        "orbit_confidence": str(confidence),
        "orbit_conflict": str(conflict),
        "final_loss": math.inf if diverged else float(curves["loss"][-1]),
        "final_test_accuracy": math.nan if diverged else float(curves["test_accuracy"][evaluated[-1]]),
        "time_to_target": float(reached[0]) if reached.size else math.inf,
        "diverged": diverged,
        "divergence_reason": str(orbit["divergence_reason"].values),
        "status": "diverged" if diverged else "ok",
        **curves,
    }


# ---------------------------------------------------------------- running the grid
def run_sweep(
    *,
    lr: Any = (0.1,),
    seed: Any = (0,),
    activation: Any = ("tanh",),
    optimizer: Any = ("sgd",),
    store: str | os.PathLike | None = None,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool | None = None,
    **settings: Any,
) -> xr.Dataset:
    """Train every combination of ``lr x seed x activation x optimizer`` and measure it.

    Parameters
    ----------
    lr, seed, activation, optimizer : value or sequence
        the sweep axes (defaults 0.1, 0, "tanh", "sgd").  ``seed`` seeds the initial
        weights and the mini-batch order.
    store : path, optional
        folder of the point store: finished points are written there at once and
        points found there are not recomputed.  Failed (``status="error"``) points
        are not stored, so a rerun retries them; diverged points are results and are.
        Several sweeps may share one store at the same time: each point is claimed
        by one process (:class:`netdyn.sweep.store.Claims`), the others wait for its
        file, so no point is computed twice and every sweep returns the same result.
        A damaged point file is moved aside (``*.damaged``, one warning) and recomputed.
    client : distributed.Client or "sync", optional
        run on this Dask client; ``"sync"`` runs a plain in-process loop.
    scheduler : str, optional
        address (``"tcp://host:port"``) of an existing Dask scheduler to connect to.
        Its workers must be able to import netdyn.
    n_workers : int, optional
        with neither ``client`` nor ``scheduler``: a ``LocalCluster`` with this many
        single-threaded worker processes (default: one per core); 0 runs the plain loop.
        The workers are started with ``spawn``, which re-imports the calling script:
        a script that calls ``run_sweep`` must do so under ``if __name__ == "__main__":``
        (notebooks and ``python -m`` entry points need nothing).
    progress : bool or None, default None
        a tqdm bar over points; ``None``: only when writing to a terminal.
    **settings
        what every point shares, the fields of :class:`PointSettings`: ``task``
        (default "digits"), ``steps`` (200), ``target_accuracy`` (0.9), ``eval_every``
        (1), ``batch_size``, ``optimizer_kwargs``, ``lyapunov_method`` ("twin"),
        ``lyapunov_transient`` (0), ``d0``.

    Returns
    -------
    xarray.Dataset over ``(lr, seed, activation, optimizer)``: ``lyapunov``,
    ``lyapunov_stderr``, ``orbit_class``, ``orbit_period``, ``final_loss``,
    ``final_test_accuracy``, ``time_to_target``, ``diverged``, ``status``,
    ``error``, ``wall_time``, and over ``(..., step)`` the curves ``loss`` and
    ``test_accuracy``.  attrs: the task and settings, ``points_total``,
    ``points_loaded`` (from the store), ``points_computed``, ``points_failed``,
    ``backend``.

    Notes
    -----
    Each point is :func:`train_point`, a pure function of its spec, so the Dataset
    does not depend on where or in which order points ran (only ``wall_time``
    does).  On Dask each point is one task; results come back to this process,
    which writes the store, so remote workers need no shared file system.

    Raises
    ------
    ValueError
        When an axis or a setting is invalid (:func:`point_specs`), ``n_workers < 0``
        or both ``client`` and ``scheduler`` are given — before anything runs.

    Examples
    --------
    >>> import netdyn as nd
    >>> ds = nd.run_sweep(lr=[0.05, 0.5], task={"dataset": "iris", "hidden": [4], "n_train": 40}, steps=32,
    ...                   n_workers=0, progress=False)
    >>> ds["lyapunov"].dims, int(ds.attrs["points_total"])
    (('lr', 'seed', 'activation', 'optimizer'), 2)
    """
    axes, points = point_specs(lr=lr, seed=seed, activation=activation, optimizer=optimizer, **settings)
    steps = points[0][1]["steps"]
    if n_workers is not None:
        n_workers = check_int(n_workers, "n_workers", "run_sweep", minimum=0)
    if client is not None and scheduler is not None:
        raise ValueError("run_sweep: expected at most one of client and scheduler, got both")
    sync = client == "sync" or (client is None and scheduler is None and n_workers == 0)
    backend = "sync" if sync else _backend_name(client, scheduler, n_workers)
    execute = _run_sync if sync else _run_dask
    results: dict[tuple[int, ...], dict[str, Any]] = {}
    n_loaded = n_computed = 0
    claims = Claims(store) if store is not None else contextlib.nullcontext()
    bar = tqdm(total=len(points), desc="run_sweep", unit="point", disable=None if progress is None else not progress)
    with holding_signals(), claims, bar:  # a signal during a point's file write waits for the file (write_atomic)
        remaining = points
        while remaining:
            todo, waiting, before = [], [], len(results)
            for index, spec in remaining:
                stored = load_point(store, spec) if store is not None else None
                if stored is None:
                    todo.append((index, spec))
                else:
                    results[index], n_loaded = stored, n_loaded + 1
                    bar.update(1)
            take = None if store is None else (lambda spec: _take(claims, store, spec))
            with contextlib.closing(execute(todo, client, scheduler, n_workers, take)) as done:
                for index, spec, result in done:
                    if result is None:  # another process holds the point: wait for its file
                        waiting.append((index, spec))
                        continue
                    if store is not None:
                        if result["status"] != "error":
                            save_point(store, spec, result)
                        claims.release(point_key(spec))
                    results[index], n_computed = result, n_computed + 1
                    bar.update(1)
            if waiting and len(results) == before:
                bar.set_postfix_str(f"waiting for {len(waiting)} point(s) another process computes", refresh=True)
                time.sleep(_POLL_S)
            remaining = waiting
    ds = _assemble(axes, results, int(steps))
    ds.attrs.update(_settings_attrs(points[0][1]))
    ds.attrs.update(
        points_total=len(points),
        points_loaded=n_loaded,
        points_computed=n_computed,
        points_failed=int((ds["status"] == "error").sum()),
        backend=backend,
        grid_key=grid_key(spec for _, spec in points),
        netdyn_version=__version__,
    )
    return ds


def _take(claims: Claims, store: str | os.PathLike, spec: Mapping[str, Any]) -> bool:
    """Claim ``spec``'s point for this process; False when another process holds it
    or has stored it since the store was read."""
    key = point_key(spec)
    if not claims.acquire(key):
        return False
    if os.path.exists(point_path(store, spec)):
        claims.release(key)
        return False
    return True


def _backend_name(client: Any, scheduler: str | None, n_workers: int | None) -> str:
    if client is not None:
        return "client"
    if scheduler is not None:
        return f"scheduler {scheduler}"
    return f"LocalCluster({n_workers or os.cpu_count() or 1})"


Take = Callable[[Mapping[str, Any]], bool]


def _run_sync(todo: list, client: Any, scheduler: Any, n_workers: Any, take: Take | None = None) -> Iterator[tuple]:
    """The points in a plain loop, claiming each (``take``) just before it runs, so
    concurrent sweeps of one store share the work; a point not taken yields ``None``."""
    for index, spec in todo:
        yield index, spec, (train_point(spec) if take is None or take(spec) else None)


def _run_dask(
    todo: list, client: Any, scheduler: str | None, n_workers: int | None, take: Take | None = None
) -> Iterator[tuple]:
    """One Dask task per point taken (``take``, all claimed before the cluster starts;
    the others yield ``None``), results in completion order; a task whose worker
    failed (killed, lost) becomes an error point.  A cluster this function started is
    closed however the caller stops (the generator is closed on an exception).

    Task keys are unique to the call (the point's key and a fresh token): with the
    point's key alone, a sweep submitted right after another on the same client could
    be handed a released result the scheduler had not yet forgotten (seen in 7 of 20
    back-to-back resubmissions on a LocalCluster), so ``points_computed`` and
    ``wall_time`` would count work that did not run."""
    import uuid

    from distributed import as_completed

    mine = []
    for index, spec in todo:
        if take is None or take(spec):
            mine.append((index, spec))
        else:
            yield index, spec, None
    if not mine:
        return
    with _client(client, scheduler, n_workers) as dask_client:
        points, futures, call = {}, [], uuid.uuid4().hex[:12]
        for index, spec in mine:
            future = dask_client.submit(train_point, spec, key=f"netdyn-point-{point_key(spec)}-{call}", pure=False)
            points[future.key] = (index, spec)
            futures.append(future)
        for future in as_completed(futures):
            index, spec = points[future.key]
            try:
                result = future.result()
            except Exception as err:  # the worker, not the point, failed
                result = _failed(f"{type(err).__name__}: {err}", int(spec["steps"]))
            future.release()
            yield index, spec, result


# Dask's periodic housekeeping, slowed down for a cluster whose every core trains: the workers'
# statistical profiler (a stack sample every 10 ms), the event-loop health tick (every 20 ms), the
# system and memory monitors (psutil every 0.5 s / 0.1 s) and the scheduler's work stealing wake
# every process many times a second.  With one worker per core these wake-ups compete with the
# points; measured on the 2-core machine, an idle LocalCluster(2) used ~9 % of a core with Dask's
# defaults.  Points are coarse tasks (seconds), so nothing here needs the fine intervals.
_QUIET_DASK: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing-interval": "5s",
}


def local_cluster(
    *,
    n_workers: int | None = None, local_directory: str | os.PathLike | None = None, dashboard_address: str | None = None
) -> Any:
    """A ``distributed.LocalCluster`` tuned for training points: ``n_workers`` (default:
    one per core) single-threaded worker processes.

    Workers keep their scratch space (spilled data, locks) in ``local_directory``,
    default Dask's ``temporary-directory`` setting or else the system temporary
    folder — never the current directory.  No dashboard server is started unless
    ``dashboard_address`` (e.g. ``":8787"``) asks for one.

    Dask's nanny normally exports ``MALLOC_TRIM_THRESHOLD_=65536`` to its workers, so
    that glibc hands freed memory back at once; torch's per-step activation buffers
    are then unmapped and faulted in again at every step, which made a digits point
    46 % slower in a worker than in the calling process (measured: 3.03 s vs 2.08 s
    for four 100-step points).  The cluster is started without that variable (glibc's
    adaptive default), which brings the worker within a few % of the plain loop.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.sweep.grid import local_cluster
    >>> with local_cluster(n_workers=2) as cluster:  # doctest: +SKIP
    ...     ds = nd.run_sweep(lr=[0.1, 1.0], client=cluster.get_client())
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None, **_QUIET_DASK}), \
            _explained_start_failure():
        return LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard_address,
            # without a dashboard the scheduler still serves health/metrics over HTTP, by
            # default on port 8787 (a warning when taken): a free local port instead
            scheduler_kwargs=None if dashboard_address else {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            local_directory=os.fspath(
                local_directory or dask.config.get("temporary-directory") or tempfile.gettempdir()
            ),
            silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )


@contextlib.contextmanager
def _explained_start_failure() -> Iterator[None]:
    """Dask's "Nanny failed to start" in words when its cause is the usual one: workers
    started by spawn/forkserver re-import the script that is running (``__main__`` with a
    file) and, without a ``__name__ == "__main__"`` guard, start a cluster of their own."""
    try:
        yield
    except RuntimeError as error:
        import dask

        script = getattr(sys.modules.get("__main__"), "__file__", None)
        method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
        if script is None or method == "fork" or "failed to start" not in str(error):
            raise
        raise RuntimeError(
            f"local_cluster: the Dask worker processes did not start. Workers started by {method!r} re-import the "
            f"running script {os.path.basename(script)!r}; called at its top level, the sweep starts again in each "
            "worker. Put the call under `if __name__ == \"__main__\":`, pass n_workers=0 (one process), or set "
            "dask.config.set({'distributed.worker.multiprocessing-method': 'fork'}) first"
        ) from error


@contextlib.contextmanager
def _client(client: Any, scheduler: str | None, n_workers: int | None) -> Iterator[Any]:
    """The given client, a client of ``scheduler``, or a fresh LocalCluster's client (closed after)."""
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler) as connected:
            yield connected
        return
    with local_cluster(n_workers=n_workers) as cluster, Client(cluster) as local:
        yield local


def _assemble(axes: dict[str, list], results: dict[tuple[int, ...], dict[str, Any]], steps: int) -> xr.Dataset:
    shape = tuple(len(axes[a]) for a in AXES)
    data: dict[str, Any] = {}
    for name, fill in SCALARS.items():
        dtype = object if isinstance(fill, str) else type(fill)
        array = np.full(shape, fill, dtype=dtype)
        for index, result in results.items():
            array[index] = result[name]
        data[name] = (AXES, array.astype(str) if dtype is object else array)
    for name in CURVES:
        array = np.full(shape + (steps,), np.nan)
        for index, result in results.items():
            array[index] = result[name]
        data[name] = ((*AXES, "step"), array)
    ds = xr.Dataset(data, coords={**{a: axes[a] for a in AXES}, "step": np.arange(steps, dtype=np.int64)})
    for name, (description, units) in _DESCRIPTIONS.items():
        ds[name].attrs["description"] = description
        if units:
            ds[name].attrs["units"] = units
    ds["lr"].attrs["scale"] = "log"
    return ds


def _settings_attrs(spec: Mapping[str, Any]) -> dict[str, Any]:
    import json

    task = spec["task"]
    return {
        **{k: v for k, v in task.items() if k not in ("hidden", "n_train")},
        "hidden": list(task["hidden"]),
        "n_train": -1 if task["n_train"] is None else task["n_train"],
        "steps": spec["steps"],
        "eval_every": spec["eval_every"],
        "target_accuracy": spec["target_accuracy"],
        "batch_size": -1 if spec["batch_size"] is None else spec["batch_size"],
        "optimizer_kwargs": json.dumps(spec["optimizer_kwargs"], sort_keys=True),
        "lyapunov_method": spec["lyapunov"]["method"],
        "lyapunov_transient": spec["lyapunov"]["transient"],
        "d0": "default" if spec["lyapunov"]["d0"] is None else spec["lyapunov"]["d0"],
    }


# ---------------------------------------------------------------- reading the result
def edge_of_chaos(result: xr.Dataset, *, threshold: float = 0.01, variable: str = "lyapunov") -> xr.Dataset:
    """The learning rate where the maximal exponent turns positive, per seed.

    Parameters
    ----------
    result : Dataset
        a :func:`run_sweep` result, or any Dataset whose ``variable`` has dims ``lr`` and
        ``seed`` (others, e.g. activation and optimizer, are kept).
    threshold : float, default 0.01
        the crossing level (1/step).  Finite-time estimates of a marginal exponent
        come out slightly positive (an O(1) transient growth ``G`` over ``T`` steps
        reads as ``ln G / T``; on the digits MLP 1e-3 to 6e-3 per step at small
        learning rates, tutorial 02), so a threshold of 0 lands in that noise.  The
        default is ``orbital_stability``'s ``exponent_tol``: the edge is where the
        orbit is classified chaotic.
    variable : str, default "lyapunov"

    Returns
    -------
    Dataset: ``edge_lr`` (seed, ...) — NaN for a seed without a crossing —,
    ``edge_lr_mean``, ``edge_lr_std`` (population std) and ``n_crossing`` over
    seeds (...).

    Notes
    -----
    Along increasing ``lr``, points whose training diverged (``diverged`` True, when
    ``result`` has that variable: the orbit left the regime the exponent describes)
    and failed points (NaN exponent) are dropped; an unresolved exponent (+inf, see
    :func:`train_point`) is kept and counts as above every threshold.  The edge is
    the *last* upward crossing ``lam_i < threshold <= lam_{i+1}`` of neighbouring
    points — the learning rate above which the exponent stays above the threshold —
    placed by linear interpolation in ``log lr``:
    ``log lr* = log lr_i + (threshold - lam_i) / (lam_{i+1} - lam_i) *
    (log lr_{i+1} - log lr_i)``, which puts a crossing into an unresolved point at
    ``lr_i`` (the limit ``lam_{i+1} -> inf``).  The last rather than the first
    crossing, so that noise of a near-zero exponent at small learning rates is not
    taken for the edge.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from netdyn.sweep.grid import edge_of_chaos
    >>> lr = np.array([0.1, 1.0, 10.0])
    >>> result = xr.Dataset({"lyapunov": (("lr", "seed"), [[-0.02], [0.0], [0.02]])}, coords={"lr": lr, "seed": [0]})
    >>> round(float(edge_of_chaos(result, threshold=0.0)["edge_lr_mean"]), 6)
    1.0
    """
    _check_result(result, "edge_of_chaos", variable, ("lr", "seed"))
    lam = result[variable].astype(float)
    if "diverged" in result:
        lam = lam.where(~result["diverged"].astype(bool))
    log_lr = np.log(result["lr"].values)
    order = np.argsort(log_lr)

    def crossing(values: np.ndarray) -> float:
        x, y = log_lr[order], values[order]
        keep = ~np.isnan(y)
        x, y = x[keep], y[keep]
        up = np.flatnonzero((y[:-1] < threshold) & (y[1:] >= threshold))
        if up.size == 0:
            return math.nan
        i = up[-1]
        fraction = 0.0 if math.isinf(y[i + 1]) else (threshold - y[i]) / (y[i + 1] - y[i])
        return float(np.exp(x[i] + fraction * (x[i + 1] - x[i])))

    edge = xr.apply_ufunc(crossing, lam, input_core_dims=[["lr"]], vectorize=True, output_dtypes=[float])
    found = edge.notnull().sum("seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, as documented
        mean = edge.mean("seed")
        std = edge.std("seed")
    out = xr.Dataset({"edge_lr": edge, "edge_lr_mean": mean, "edge_lr_std": std, "n_crossing": found})
    out.attrs.update(threshold=float(threshold), variable=variable)
    out["edge_lr"].attrs["description"] = f"learning rate where {variable} crosses {threshold:g} upwards (last crossing)"
    return out


def fastest_lr(result: xr.Dataset, *, variable: str = "time_to_target") -> xr.Dataset:
    """The learning rate of the fastest training: minimum over ``lr`` of the median
    over seeds of ``time_to_target``.

    Parameters
    ----------
    result : Dataset
        a :func:`run_sweep` result (``variable`` with dims ``lr`` and ``seed``).
    variable : str, default "time_to_target"

    Returns
    -------
    Dataset: ``fastest_lr`` and ``fastest_time`` (...), and ``median_time``
    (lr, ...).  NaN where no learning rate reaches the target (all medians inf).

    Notes
    -----
    ``median_s T(lr, s)`` with ``T = inf`` for seeds that never reach the target
    and for points whose training diverged (``diverged`` True, when ``result`` has
    that variable: a run that blew up is not a trained network, whatever accuracy
    it passed through), so the median is inf when at least half never do; failed
    points (NaN) are left out; ties go to the smallest learning rate.  An
    unresolved exponent does not matter here.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from netdyn.sweep.grid import fastest_lr
    >>> result = xr.Dataset({"time_to_target": (("lr", "seed"), [[80.0], [20.0], [np.inf]])},
    ...                     coords={"lr": [0.1, 1.0, 10.0], "seed": [0]})
    >>> float(fastest_lr(result)["fastest_lr"])
    1.0
    """
    _check_result(result, "fastest_lr", variable, ("lr", "seed"))
    times = result[variable].astype(float)
    if "diverged" in result:
        times = times.where(~result["diverged"].astype(bool), math.inf)
    median = times.median("seed", skipna=True)

    def best(values: np.ndarray) -> np.ndarray:
        lrs = result["lr"].values
        finite = np.isfinite(values)
        if not finite.any():
            return np.array([math.nan, math.nan])
        candidates = np.flatnonzero(finite & (values == values[finite].min()))
        i = candidates[np.argmin(lrs[candidates])]
        return np.array([lrs[i], values[i]])

    both = xr.apply_ufunc(
        best, median, input_core_dims=[["lr"]], output_core_dims=[["which"]], vectorize=True,
        dask_gufunc_kwargs={"output_sizes": {"which": 2}},
    )
    out = xr.Dataset(
        {"fastest_lr": both.isel(which=0, drop=True), "fastest_time": both.isel(which=1, drop=True), "median_time": median}
    )
    out.attrs["variable"] = variable
    return out


def _check_result(result: Any, caller: str, variable: str, dims: Sequence[str]) -> None:
    if not isinstance(result, xr.Dataset) or variable not in result:
        raise ValueError(f"{caller}: expected a sweep Dataset with a {variable!r} variable, got {type(result).__name__}")
    missing = [d for d in dims if d not in result[variable].dims]
    if missing:
        raise ValueError(f"{caller}: expected {variable} with dims {tuple(dims)}, got {result[variable].dims}")
