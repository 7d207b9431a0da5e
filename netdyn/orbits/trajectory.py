"""Record the orbit of a map: ``run(map_, x0, steps) -> xarray.Dataset``.

The recorder iterates ``x_{t+1} = F(x_t, t)`` and stores, every ``record_every``
steps, the selected parameters of ``x_t`` (see :mod:`netdyn.io.recording`) with the
loss and gradient norm *at* ``x_t`` and, every ``eval_every`` steps, held-out
metrics.  With ``path=`` the rows stream to a netCDF4 file (:mod:`netdyn.io.storage`)
in blocks, so memory does not grow with the number of steps.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from netdyn._core.validation import check_int
from netdyn._version import __version__
from netdyn.maps.divergence import DivergenceCheck, DivergenceRule, parameter_norms
from netdyn.maps.classic import describe_map, param_dim_of
from netdyn.io.recording import resolve_record
from netdyn.io.storage import RowBuffer, TrajectoryWriter, build_dataset, open_trajectory, verdict_variables

__all__ = ["SUMMARY_FIELDS", "run", "state_matrix", "summarize", "summary_dict"]


def _initial(map_: Any, x0: Any) -> Tensor:
    x = map_.initial_state() if x0 is None else torch.as_tensor(x0)
    if x.shape != (map_.dim,):
        raise ValueError(f"run: expected x0 of shape ({map_.dim},), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("run: expected a finite initial state, got NaN/inf entries")
    return x.detach().clone()


def _numpy(x: Tensor, dtype: np.dtype) -> np.ndarray:
    return x.detach().to("cpu", torch.float64 if dtype == np.float64 else torch.float32).numpy()


@contextlib.contextmanager
def _closed_on_interrupt(writer: TrajectoryWriter | None, reached: Callable[[], tuple]) -> Iterator[None]:
    """Around the loop of :func:`run`: on any exception — ``KeyboardInterrupt`` from
    SIGINT (or SIGTERM turned into one), an error of the map — write every computed
    row and the state reached to the streamed file, mark it interrupted, re-raise.

    ``reached()`` gives ``(rows, state, step)``: the buffered rows, the last state and its step.
    """
    try:
        yield
    except BaseException:
        if writer is not None:
            rows, state, step = reached()
            writer.close(rows, state, step, interrupted_at=step)
        raise


def run(
    map_: Any,
    x0: Tensor | np.ndarray | None,
    steps: int,
    *,
    record_every: int = 1,
    record: Any = "all",
    path: str | os.PathLike | None = None,
    eval_every: int | None = None,
    flush_every: int = 100,
    progress: bool | None = None,
    t0: int = 0,
    divergence: DivergenceRule | None = DivergenceRule(),
) -> xr.Dataset:
    """Iterate ``map_`` for ``steps`` steps from ``x0`` and return the recorded trajectory.

    Parameters
    ----------
    map_ : DiscreteMap
        any map of :mod:`netdyn.maps.classic`; ``step_with_metrics`` (when present) supplies
        ``loss`` and ``grad_norm``, ``evaluate`` the test metrics, ``param_labels`` the labels.
    x0 : tensor or array (dim,) or None
        initial state (e.g. ``map_.initial_state(seed)``, or ``ds.final_state.values`` to
        continue a run); ``None``: the map's own ``map_.initial_state()``.
    steps : int
        number of map steps, ``t = t0 ... t0 + steps - 1``.
    record_every : int, default 1
        store ``x_t`` for ``t - t0 = 0, record_every, 2 record_every, ...``.
    record : "all", list of layer names, int k, default "all"
        what to store of ``x_t[:param_dim]``; see :func:`netdyn.io.recording.resolve_record`
        (an int gives a seeded random sketch of ``k`` dimensions for large models).
    path : str or PathLike, optional
        stream to this netCDF4 file (overwritten) and return it opened lazily.
    eval_every : int, optional
        call ``map.evaluate(x_t)`` when ``(t - t0) % eval_every == 0``; must be a
        multiple of ``record_every``.  Adds ``test_loss``/``test_accuracy`` (NaN between).
    flush_every : int, default 100
        with ``path``: recorded rows kept in memory between writes to the file.
    progress : bool or None, default None
        show a tqdm progress bar; ``None``: only when writing to a terminal.
    t0 : int, default 0
        index of the first step (the map sees ``t``; mini-batch maps pick batches by it).
    divergence : DivergenceRule or None, default ``DivergenceRule()``
        thresholds of the divergence rule (:mod:`netdyn.maps.divergence`): a non-finite
        value, a loss above 1e3 x ``max(|L_0|, 1)`` or a parameter norm above
        1e3 x ``max(||theta_0||, 1)`` stops the run.  ``None`` keeps only the
        non-finite test (to follow an escaping orbit as far as floating point allows).

    Returns
    -------
    xarray.Dataset
        ``state(step, param)``, ``loss``, ``grad_norm`` (NaN for maps without
        metrics), optional ``test_loss``/``test_accuracy``, ``diverged``,
        ``divergence_reason`` (str, ``""`` when sound), ``diverged_step`` (-1 when sound),
        ``initial_state``/``final_state`` (``state_index``: the full map state,
        optimiser buffers included) and ``final_step``; attributes from
        ``map_.describe()`` plus ``record``, ``record_every``, ``eval_every``,
        ``t0``, ``dtype``, ``created``, ``netdyn_version``, ``complete``.

    Raises
    ------
    ValueError
        When ``steps``, ``record_every``, ``flush_every``, ``t0`` or ``eval_every`` is not a
        valid int, ``eval_every`` is not a multiple of ``record_every`` or the map cannot
        evaluate, or ``x0`` has the wrong shape or non-finite entries.
    FileNotFoundError
        When the folder of ``path`` does not exist.

    Notes
    -----
    Row ``t`` holds ``x_t`` and ``L(x_t)``, ``|grad L(x_t)|`` as computed by the step
    ``x_t -> x_{t+1}``.  ``final_state`` is ``x_{t0+steps}`` with ``final_step = t0 + steps``,
    so ``run(map_, ds.final_state.values, n, t0=int(ds.final_step))`` continues the
    orbit exactly.

    Divergence: the first state ``x_b`` that breaks the divergence rule — ``L(x_b)``
    or an entry of ``x_b`` NaN/inf, ``L(x_b) > 1e3 max(|L(x_{t0})|, 1)`` ("loss
    blow-up", e.g. cross-entropy at an absurd learning rate: finite but
    meaningless), or ``||theta_b|| > 1e3 max(||theta_{t0}||, 1)`` ("unbounded
    growth", ``theta`` the first ``param_dim`` entries: parameters, not optimiser
    buffers, whose units differ) — stops the run with ``diverged = True``,
    ``diverged_step = b``, ``divergence_reason`` the rule's sentence and a
    ``RuntimeWarning`` naming the step and the reason.  The rows of steps ``< b``
    are kept, ``final_state`` is the last sound state ``x_{b-1}`` and ``final_step``
    is ``b - 1`` (``x_{t0}`` and ``t0`` when ``b = t0``).  No exception is raised and
    a streamed file is completed.  Maps without ``step_with_metrics`` are judged by
    the norm and finiteness only.

    Interruption: on ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM where a handler turns
    it into one, as the CLI does) or any exception raised inside the loop, a streamed
    file receives every row computed so far, ``final_state``/``final_step`` of the
    last completed step, ``complete = 0`` and the attribute ``interrupted_at`` (that
    step), then the exception propagates.  If another process holds the file open,
    rows that cannot be appended go to a side file (see :mod:`netdyn.io.storage`).

    Examples
    --------
    >>> import netdyn as nd
    >>> import numpy as np
    >>> ds = nd.run(nd.LogisticMap(4.0), np.array([0.3]), 20)
    >>> ds["state"].shape, bool(ds["diverged"])
    ((20, 1), False)
    >>> round(float(ds["state"][1, 0]), 2)  # 4 * 0.3 * 0.7
    0.84
    """
    steps = check_int(steps, "steps", "run", minimum=0)
    record_every = check_int(record_every, "record_every", "run", minimum=1)
    flush_every = check_int(flush_every, "flush_every", "run", minimum=1)
    t0 = check_int(t0, "t0", "run", minimum=0)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", "run", minimum=1)
        if eval_every % record_every:
            raise ValueError(f"run: expected eval_every to be a multiple of record_every={record_every}, got {eval_every}")
        if not callable(getattr(map_, "evaluate", None)):
            raise ValueError(f"run: eval_every needs {type(map_).__name__}.evaluate(x), which it lacks")
    selection = resolve_record(map_, record=record)
    x = _initial(map_, x0)
    param_dim = param_dim_of(map_)
    dtype = np.dtype(np.float64 if x.dtype == torch.float64 else np.float32)
    with_eval = eval_every is not None
    n_records = -(-steps // record_every)
    attrs = {
        "map": type(map_).__name__,
        **describe_map(map_),
        "record": selection.record,
        **selection.attrs,
        "record_every": record_every,
        "eval_every": eval_every,
        "t0": t0,
        "dtype": str(dtype),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "netdyn_version": __version__,
        "complete": 0,
    }
    initial = _numpy(x, dtype)
    writer = None
    if path is not None:
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"run: the directory of path={os.fspath(path)!r} does not exist")
        writer = TrajectoryWriter(
            path, selection.names, selection.layers, dtype, initial, t0, with_eval, attrs, flush_every
        )
    buffer = RowBuffer(min(flush_every, n_records) if writer else n_records, selection.size, dtype, with_eval)
    step_with_metrics = getattr(map_, "step_with_metrics", None)
    has_metrics = callable(step_with_metrics)
    check = DivergenceCheck(divergence) if divergence is not None else None
    final_step, reason, diverged_step = t0 + steps, "", -1
    previous = x  # the last sound state before x
    nan = float("nan")
    t_x = t0  # the step of x
    with tqdm(total=steps, disable=None if progress is None else not progress, desc=f"run {type(map_).__name__}") as bar, _closed_on_interrupt(
        writer, lambda: (buffer.rows(), _numpy(x, dtype), t_x)
    ):
        for t in range(t0, t0 + steps):
            if has_metrics:
                x_next, metrics = step_with_metrics(x, t)
                loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
            else:
                x_next, loss, grad_norm = map_.step(x, t), nan, nan
            reason = _divergence(check, loss, has_metrics, float(parameter_norms(x[None], param_dim)[0]))
            if reason:
                diverged_step, x = t, (previous if t > t0 else x)
                final_step = max(t - 1, t0)
                break
            finite_next = bool(torch.isfinite(x_next).all())
            if (t - t0) % record_every == 0:
                row = {
                    "step": t,
                    "state": _numpy(selection.project(x[:param_dim]), dtype),
                    "loss": loss,
                    "grad_norm": grad_norm,
                }
                if with_eval:
                    metrics = map_.evaluate(x) if (t - t0) % eval_every == 0 else {}
                    row["test_loss"] = float(metrics.get("test_loss", nan))
                    row["test_accuracy"] = float(metrics.get("test_accuracy", nan))
                buffer.add(row)
                if writer and buffer.full:
                    last, last_step = (x_next, t + 1) if finite_next else (x, t)
                    writer.append(buffer.rows(), _numpy(last, dtype), last_step)
                    buffer.clear()
            bar.update(1)
            if not finite_next:
                reason, diverged_step, final_step = "non-finite: the state has NaN/inf entries", t + 1, t
                break
            previous, x, t_x = x, x_next, t + 1  # one statement: an interrupt sees all or none
    if not reason and check is not None and steps:
        # the last state's loss is not computed; its norm is checked like every other state's
        reason = check.check_norm(float(parameter_norms(x[None], param_dim)[0]))
        if reason:
            diverged_step, final_step, x = t0 + steps, t0 + steps - 1, previous
    if reason:
        warnings.warn(
            f"run: diverged at step {diverged_step} ({reason}); the run stopped, steps before {diverged_step} "
            "are kept",
            RuntimeWarning,
            stacklevel=2,
        )
    diverged = bool(reason)
    final = _numpy(x, dtype)
    verdict = {"divergence_reason": reason, "diverged_step": diverged_step}
    if writer:
        writer.finish(buffer.rows(), final, final_step, diverged, verdict)
        return open_trajectory(path)
    attrs["complete"] = 1
    ds = build_dataset(buffer.rows(), selection.names, selection.layers, initial, final, final_step, diverged, attrs)
    return ds.assign(verdict_variables(verdict))


def _divergence(check: DivergenceCheck | None, loss: float, has_metrics: bool, norm: float) -> str:
    """The rule's reason at one state, ``""`` when sound.  A map with metrics whose
    loss is NaN is non-finite even before a reference loss exists; without a rule
    (``check`` None) only non-finite values count."""
    if has_metrics and math.isnan(loss):
        return "non-finite: the loss is NaN"
    if check is not None:
        return check.check(loss, norm)
    if math.isinf(loss) or not math.isfinite(norm):
        return "non-finite: the loss or the state has NaN/inf entries"
    return ""


def state_matrix(ds: xr.Dataset) -> np.ndarray:
    """The recorded states as a numpy array (loads ``state``).

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory Dataset of :func:`run` with ``state(step, param)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(steps, params)``, in the units of the map's state.

    Raises
    ------
    ValueError
        When ``ds`` has no ``state(step, param)``.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.orbits.trajectory import state_matrix
    >>> state_matrix(nd.run(nd.HenonMap(), None, 20)).shape
    (20, 2)
    """
    if "state" not in ds.variables or ds["state"].dims != ("step", "param"):
        raise ValueError("state_matrix: expected a trajectory Dataset with state(step, param), got "
                         f"variables {sorted(map(str, ds.variables))}")
    return np.asarray(ds["state"].values)


def _last_finite(da: xr.DataArray | None) -> float | None:
    if da is None:
        return None
    values = np.asarray(da.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


#: the entries :func:`summarize` may hold, in the order ``netdyn info`` prints them
SUMMARY_FIELDS = (
    "path", "file_size_bytes", "steps", "first_step", "last_step", "final_step", "n_params", "state_dim", "map",
    "optimizer", "lr", "seed", "record", "final_loss", "final_test_accuracy", "diverged", "divergence_reason",
    "complete",
)


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """What a trajectory holds, as a small Dataset of scalars (used by ``netdyn info``).

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory Dataset of :func:`run` (in memory or opened from a file).

    Returns
    -------
    xarray.Dataset
        The entries of :data:`SUMMARY_FIELDS` that are known: numbers and booleans as
        0-d variables, strings (``path``, ``map``, ``optimizer``, ``record``,
        ``divergence_reason``) as attributes.  ``steps`` counts recorded rows,
        ``first_step``/``last_step`` are the first and last recorded steps, ``final_step``
        the step of ``final_state``, ``n_params`` the recorded parameters, ``state_dim``
        the full state's dimension, ``final_loss`` the last finite loss,
        ``final_test_accuracy`` the last evaluated accuracy, ``file_size_bytes`` the
        size of the file (bytes), ``divergence_reason`` the rule's sentence (``""``
        when sound).  An entry that is unknown (``path`` of an in-memory Dataset, the
        reason in files written before it was recorded) is absent.  Saves to netCDF
        and reopens unchanged.

    Raises
    ------
    ValueError
        When ``ds`` has no ``state`` variable.

    Examples
    --------
    >>> import netdyn as nd
    >>> s = nd.summarize(nd.run(nd.LogisticMap(4.0), None, 20))
    >>> int(s["steps"]), int(s["last_step"]), bool(s["diverged"]), s.attrs["map"]
    (20, 19, False, 'LogisticMap')
    """
    if "state" not in ds.variables:
        raise ValueError(f"summarize: expected a trajectory Dataset with a state variable, got {sorted(map(str, ds.variables))}")
    source = ds.encoding.get("source")
    steps = ds["step"].values if "step" in ds.variables else np.array([])
    attrs = ds.attrs
    values = {
        "path": source,
        "file_size_bytes": os.path.getsize(source) if source and os.path.isfile(source) else None,
        "steps": int(ds.sizes.get("step", 0)),
        "first_step": int(steps[0]) if steps.size else None,
        "last_step": int(steps[-1]) if steps.size else None,
        "final_step": int(ds["final_step"]) if "final_step" in ds.variables else None,
        "n_params": int(ds.sizes.get("param", 0)),
        "state_dim": int(ds.sizes["state_index"]) if "state_index" in ds.sizes else None,
        "map": _plain(attrs.get("map")),
        "optimizer": _plain(attrs.get("optimizer", attrs.get("optimiser"))),
        "lr": _plain(attrs.get("lr")),
        "seed": _plain(attrs.get("seed")),
        "record": _plain(attrs.get("record")),
        "final_loss": _last_finite(ds.get("loss")),
        "final_test_accuracy": _last_finite(ds.get("test_accuracy")),
        "diverged": bool(ds["diverged"]) if "diverged" in ds.variables else None,
        "divergence_reason": str(ds["divergence_reason"].values) if "divergence_reason" in ds.variables else None,
        "complete": bool(int(attrs["complete"])) if "complete" in attrs else None,
    }
    known = {name: value for name, value in values.items() if value is not None}
    scalars = {name: ((), value) for name, value in known.items() if isinstance(value, (bool, int, float))}
    words = {name: value for name, value in known.items() if name not in scalars}
    return xr.Dataset(scalars, attrs=words)


def summary_dict(summary: xr.Dataset) -> dict[str, Any]:
    """A :func:`summarize` Dataset as a plain dict over :data:`SUMMARY_FIELDS` (None where absent).

    Parameters
    ----------
    summary : xarray.Dataset
        The result of :func:`summarize` (also after a netCDF round trip).

    Returns
    -------
    dict
        Python scalars and strings, JSON-serialisable.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.orbits.trajectory import summary_dict
    >>> d = summary_dict(nd.summarize(nd.run(nd.LogisticMap(4.0), None, 20)))
    >>> d["steps"], d["path"], d["diverged"]
    (20, None, False)
    """
    out: dict[str, Any] = {}
    for name in SUMMARY_FIELDS:
        if name in summary.data_vars:
            out[name] = summary[name].values.item()
        else:
            out[name] = _plain(summary.attrs.get(name))
    return out
