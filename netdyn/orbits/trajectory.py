"""Record the orbit of a map: ``run(map_, x0, steps) -> xarray.Dataset``.

The recorder iterates ``x_{t+1} = F(x_t, t)`` and stores, every ``record_every``
steps, the selected parameters of ``x_t`` (see :mod:`netdyn.io.recording`) with the
loss and gradient norm *at* ``x_t`` and, every ``eval_every`` steps, held-out
metrics.  With ``path=`` the rows stream to a netCDF4 file (:mod:`netdyn.io.storage`)
in blocks, so memory does not grow with the number of steps.
"""
from __future__ import annotations

import collections
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

from netdyn._core.devices import SYNC_EVERY, host_block, map_device
from netdyn._core.signals import critical_section, holding_signals
from netdyn._core.validation import check_int
from netdyn._version import __version__
from netdyn.maps.divergence import DivergenceCheck, DivergenceRule, parameter_norms, parameter_norms_on_device
from netdyn.maps.base import describe_map, is_batch_first, param_dim_of
from netdyn.io.recording import Selection, resolve_record
from netdyn.io.storage import RowBuffer, TrajectoryWriter, build_dataset, netcdf_attrs, open_trajectory, verdict_variables

__all__ = ["SUMMARY_FIELDS", "run", "state_matrix", "summarize", "summary_dict"]


def _initial(map_: Any, x0: Any) -> Tensor:
    x = map_.initial_state() if x0 is None else torch.as_tensor(x0, device=map_device(map_))
    if x.shape != (map_.dim,):
        raise ValueError(f"run: expected x0 of shape ({map_.dim},), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("run: expected a finite initial state, got NaN/inf entries")
    return x.detach().clone()


def _numpy(x: Tensor, dtype: np.dtype) -> np.ndarray:
    return x.detach().to("cpu", torch.float64 if dtype == np.float64 else torch.float32).numpy()


@contextlib.contextmanager
def _closed_on_interrupt(open_writer: Callable[[], TrajectoryWriter | None],
                         reached: Callable[[], tuple]) -> Iterator[TrajectoryWriter | None]:
    """Around the loop of :func:`run`: opens the streamed file (``open_writer()``, None
    without a file) and, on any exception — ``KeyboardInterrupt`` from SIGINT (or SIGTERM
    turned into one), an error of the map — writes every computed row and the state
    reached to it, marks it interrupted and re-raises.

    ``reached()`` gives ``(rows, state, step)``: the buffered rows, the last state and its step.
    The file is created and closed in critical sections (:mod:`netdyn._core.signals`): a
    signal that arrives while it is created is acted on once ``writer`` exists, so that
    file too is closed as interrupted, and a second Ctrl-C waits until the rows are written.
    """
    writer = None
    try:
        with critical_section():
            writer = open_writer()
        yield writer
    except BaseException:
        if writer is not None:
            with critical_section():
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
    x0 : tensor or array (dim,) or (n, dim), or None
        initial state (e.g. ``map_.initial_state(seed)``, or ``ds.final_state.values`` to
        continue a run); ``None``: the map's own ``map_.initial_state()``.  ``n`` states
        (or a parameter batch, a map with ``members``, see :mod:`netdyn.maps.base`) run
        as one ensemble: see "Batches" in the Notes.
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
        call ``map_.evaluate(x_t)`` when ``(t - t0) % eval_every == 0``; must be a
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
    While it streams, SIGINT or SIGTERM arriving during a write to the file (or while a
    step's row and state are stored) takes effect when that write ends, milliseconds
    later: the file is never left half written and the signal is never lost (netCDF4's
    compiled code can swallow an exception raised inside it; see
    :mod:`netdyn._core.signals`).  Outside those moments the signal acts at once.

    Batches: with ``x0`` of shape ``(n, dim)``, or a parameter batch (``map_.members``
    not None; ``x0`` None, one state ``(dim,)`` shared by the members, or
    ``(members, dim)``), the members advance together and every variable gains the
    leading dimension ``member``: ``state (member, step, param)``, ``loss``/
    ``grad_norm`` ``(member, step)``, ``diverged``, ``divergence_reason``,
    ``diverged_step``, ``final_step`` ``(member,)``, ``initial_state``/
    ``final_state`` ``(member, state_index)``; attribute ``batching``.  Each member
    follows the rules above on its own (a diverged member stops: its later rows are
    NaN), so the result equals the per-member runs concatenated along ``member``.
    How the batch is stepped (``batching``): a ``batch_first`` map (the classic maps,
    :class:`netdyn.maps.vmap_training.VmapTrainingMap`) in one call per step, with its
    batched ``step_with_metrics`` when present; a map without metrics by
    ``torch.func.vmap`` over ``step`` (a loop where vmap fails); a map whose metrics
    come one state at a time (``TrainingMap``, ``PotentialGD``) member by member
    (``"per member"``).  ``evaluate`` is called per member.  A batch is kept in
    memory: ``path`` must be None.

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
    batch = _batch_states(map_, x0)
    if batch is not None:
        if path is not None:
            raise ValueError("run: expected path=None for a batch of states (a trajectory file holds one orbit), "
                             f"got path={os.fspath(path)!r}")
        return _run_batch(map_, steps, batch, record_every=record_every, record=record,
                          eval_every=eval_every, progress=progress, t0=t0, divergence=divergence)
    if path is not None:
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"run: the directory of path={os.fspath(path)!r} does not exist")
    with holding_signals() if path is not None else contextlib.nullcontext():  # see _closed_on_interrupt
        return _run_orbit(map_, x0, steps, record_every=record_every, record=record, path=path,
                          eval_every=eval_every, flush_every=flush_every, progress=progress, t0=t0,
                          divergence=divergence)


def _run_orbit(
    map_: Any, x0: Any, steps: int, *, record_every: int, record: Any, path: str | os.PathLike | None,
    eval_every: int | None, flush_every: int, progress: bool | None, t0: int, divergence: DivergenceRule | None,
) -> xr.Dataset:
    """:func:`run` of one orbit (the counts arrive checked, the folder of ``path`` exists)."""
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

    def open_writer() -> TrajectoryWriter | None:
        if path is None:
            return None
        return TrajectoryWriter(path, selection.names, selection.layers, dtype, initial, t0, with_eval, attrs,
                                flush_every)

    buffer = RowBuffer(min(flush_every, n_records) if path is not None else n_records, selection.size, dtype,
                       with_eval)
    step_with_metrics = getattr(map_, "step_with_metric_tensors", None)  # metrics left on the device
    if not callable(step_with_metrics):
        step_with_metrics = getattr(map_, "step_with_metrics", None)
    has_metrics = callable(step_with_metrics)
    check = DivergenceCheck(divergence) if divergence is not None else None
    loop = _Loop(x, t0, _block_size(x), buffer.capacity)
    nan = float("nan")

    def replay() -> None:
        """The host side of the steps in ``loop.pending`` (one device-to-host copy), in order:
        the divergence rule, the rows, the writes; stops the loop at a divergence."""
        if not loop.pending:
            return
        values = host_block([p.device_values for p in loop.pending])
        states = [p.row for p in loop.pending if p.row is not None]
        rows = torch.stack(states).to("cpu", torch.float64 if dtype == np.float64 else torch.float32).numpy() \
            if states else None
        k = 0
        while loop.pending:
            p = loop.pending[0]
            norm, finite_next, extra = values[0, 0], values[0, 1] != 0, values[0, 2:]
            loss, grad_norm = (float(extra[0]), float(extra[1])) if extra.size else p.host_metrics
            t = p.t
            loop.reason = _divergence(check, loss, has_metrics, float(norm))
            if loop.reason:
                loop.diverged_step, loop.x = t, (loop.previous if t > t0 else loop.x)
                loop.final_step = max(t - 1, t0)
                loop.stop()
                return
            row = None
            if p.row is not None:
                row = {"step": t, "state": rows[k], "loss": loss, "grad_norm": grad_norm}
                if with_eval:  # a host sync per evaluation, intended
                    metrics = map_.evaluate(p.x) if (t - t0) % eval_every == 0 else {}
                    row["test_loss"] = float(metrics.get("test_loss", nan))
                    row["test_accuracy"] = float(metrics.get("test_accuracy", nan))
            # the row, its write and the step's state change together: a signal waits for the end of
            # the section, so the replay in reached() neither adds this row again nor skips a step
            with critical_section():
                if row is not None:
                    buffer.add(row)
                    k += 1
                    if writer and buffer.full:  # a host copy of the state per write, intended
                        last, last_step = (p.x_next, t + 1) if finite_next else (p.x, t)
                        writer.append(buffer.rows(), _numpy(last, dtype), last_step)
                        buffer.clear()
                loop.pending.popleft()
                values = values[1:]
                if not finite_next:
                    loop.reason, loop.diverged_step, loop.final_step = "non-finite: the state has NaN/inf entries", t + 1, t
                    loop.stop()
                    return
                loop.previous, loop.x, loop.t_x = p.x, p.x_next, t + 1

    def reached() -> tuple:
        with contextlib.suppress(Exception):
            replay()  # the steps computed since the last block; a failing one ends the rows there
        return buffer.rows(), _numpy(loop.x, dtype), loop.t_x

    loop.final_step = t0 + steps
    writer = None
    with _closed_on_interrupt(open_writer, reached) as writer, tqdm(
        total=steps, disable=None if progress is None else not progress, desc=f"run {type(map_).__name__}"
    ) as bar:
        cursor = x
        for t in range(t0, t0 + steps):
            try:
                if has_metrics:
                    x_next, metrics = step_with_metrics(cursor, t)
                else:
                    x_next, metrics = map_.step(cursor, t), {}
            except Exception:
                replay()  # the steps before: a divergence there stopped the run before this step
                if loop.stopped:
                    break
                raise
            loop.add(t, cursor, x_next, metrics, (t - t0) % record_every == 0, selection, param_dim, has_metrics)
            with critical_section():  # tqdm's refresh takes its lock without try/finally: an interrupt there
                bar.update(1)  # leaks it (a tqdm whose close() joins its monitor thread then deadlocks)
            if loop.block_done():
                replay()
                if loop.stopped:
                    break
            cursor = x_next
        replay()
    reason, diverged_step, final_step, previous, x = loop.reason, loop.diverged_step, loop.final_step, loop.previous, loop.x
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
            stacklevel=3,  # the caller of run
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


def _batch_states(map_: Any, x0: Any) -> Tensor | None:
    """The initial states ``(n, dim)`` of a batched run, or None for a single orbit."""
    members = getattr(map_, "members", None)
    if members is None and (x0 is None or torch.as_tensor(x0).ndim != 2):
        return None
    if x0 is None:
        xs = map_.initial_state()
    else:
        xs = torch.as_tensor(x0)
        if members is not None and xs.shape == (map_.dim,):
            xs = xs.expand(members, map_.dim)
    n = members if members is not None else xs.shape[0]
    if xs.shape != (n, map_.dim) or n == 0:
        raise ValueError(f"run: expected x0 of shape ({map_.dim},) or (n, {map_.dim})"
                         + (f" with n = members = {members}" if members is not None else "") + f", got {tuple(xs.shape)}")
    if not bool(torch.isfinite(xs).all()):
        raise ValueError("run: expected finite initial states, got NaN/inf entries")
    return xs.detach().clone()


class _BatchRule:
    """The divergence rule of :func:`_divergence` for ``n`` members at once: the flags are
    computed on arrays, and each flagged member's sentence comes from the scalar code
    (a :class:`DivergenceCheck` holding that member's references), so the verdicts are
    those of ``n`` separate runs."""

    def __init__(self, n: int, rule: DivergenceRule | None):
        self.rule = rule
        self.loss_ref, self.norm_ref = np.full(n, np.nan), np.full(n, np.nan)

    def _check(self, i: int) -> DivergenceCheck | None:
        if self.rule is None:
            return None
        return DivergenceCheck(self.rule, loss_ref=float(self.loss_ref[i]), norm_ref=float(self.norm_ref[i]))

    def reasons(self, loss: np.ndarray, norm: np.ndarray, live: np.ndarray, has_metrics: bool) -> dict[int, str]:
        """``{member: reason}`` for the live members that break the rule at this state;
        the references of the others are updated as :meth:`DivergenceCheck.check` does."""
        with np.errstate(invalid="ignore", over="ignore"):
            flag = (np.isnan(loss) if has_metrics else np.zeros(loss.shape, dtype=bool)) | np.isinf(loss) | ~np.isfinite(norm)
            if self.rule is not None:
                flag |= np.isnan(loss) & ~np.isnan(self.loss_ref)
                fresh = np.isfinite(loss) & np.isnan(self.loss_ref)
                loss_ref = np.where(fresh, np.maximum(np.abs(loss), self.rule.loss_floor), self.loss_ref)
                flag |= np.isfinite(loss) & (np.abs(loss) > self.rule.loss_factor * loss_ref)
                norm_ref = np.where(np.isnan(self.norm_ref), np.maximum(norm, self.rule.norm_floor), self.norm_ref)
                flag |= norm > self.rule.norm_factor * norm_ref
        out = {int(i): _divergence(self._check(i), float(loss[i]), has_metrics, float(norm[i]))
               for i in np.flatnonzero(live & flag)}
        if self.rule is not None:
            keep = live & ~flag
            self.loss_ref[keep], self.norm_ref[keep] = loss_ref[keep], norm_ref[keep]
        return out

    def last(self, i: int, norm: float) -> str:
        """The norm part of the rule at a member's last state (as :func:`run` judges it)."""
        check = self._check(i)
        return check.check_norm(norm) if check is not None else ""


def _projected(selection: Selection, theta: Tensor) -> Tensor:
    """``selection.project`` of each row of ``theta (n, param_dim)``: vmap, or a loop where it fails."""
    try:
        return torch.func.vmap(selection.project)(theta)
    except Exception:  # a projection vmap cannot trace: one row at a time
        return torch.stack([selection.project(row) for row in theta])


def _run_batch(
    map_: Any, steps: int, xs: Tensor, *, record_every: int, record: Any,
    eval_every: int | None, progress: bool, t0: int, divergence: DivergenceRule | None,
) -> xr.Dataset:
    """:func:`run` of a batch of states ``xs (n, dim)``; see its "Batches" section (the
    counts arrive checked by :func:`run`)."""
    n = xs.shape[0]
    batch_first = is_batch_first(map_)
    if callable(getattr(map_, "step_with_metrics", None)) and not batch_first:
        members = [map_.member(i) if getattr(map_, "members", None) is not None else map_ for i in range(n)]
        runs = [run(m, xs[i], steps, record_every=record_every, record=record, eval_every=eval_every,
                    progress=progress, t0=t0, divergence=divergence) for i, m in enumerate(members)]
        ds = xr.concat(runs, dim="member", data_vars="all", coords="minimal", compat="override", join="outer",
                       combine_attrs="override")
        return ds.assign_coords(member=np.arange(n)).assign_attrs(batching="per member")
    selection = resolve_record(map_, record=record)
    param_dim = param_dim_of(map_)
    dtype = np.dtype(np.float64 if xs.dtype == torch.float64 else np.float32)
    has_metrics = batch_first and callable(getattr(map_, "step_with_metrics", None))
    if batch_first:
        advance, batching = map_.step, "batch_first"
    else:
        from netdyn.maps.batching import BatchStepper

        stepper = BatchStepper(map_)
        advance, batching = stepper.step, None
    rule = _BatchRule(n, divergence)
    live = np.ones(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    diverged_step = np.full(n, -1, dtype=np.int64)
    final_step = np.full(n, t0 + steps, dtype=np.int64)
    initial = _numpy(xs, dtype)
    final = initial.copy()
    nan = np.full(n, np.nan)
    rows: dict[str, list] = {"step": [], "state": [], "loss": [], "grad_norm": []}
    if eval_every is not None:
        rows.update(test_loss=[], test_accuracy=[])
    x, previous = xs, xs
    with tqdm(total=steps, disable=not progress, desc=f"run {type(map_).__name__} x{n}") as bar:
        for t in range(t0, t0 + steps):
            if has_metrics:
                x_next, metrics = map_.step_with_metrics(x, t)
                loss, grad_norm = (np.asarray(torch.as_tensor(metrics[k]).detach().cpu().double().numpy(), dtype=np.float64)
                                   for k in ("loss", "grad_norm"))
            else:
                x_next, loss, grad_norm = advance(x, t), nan, nan
            stopped = rule.reasons(loss, parameter_norms(x, param_dim), live, has_metrics)
            for i, reason in stopped.items():
                reasons[i], diverged_step[i], final_step[i] = reason, t, max(t - 1, t0)
                final[i] = _numpy((previous if t > t0 else x)[i], dtype)
                live[i] = False
            finite_next = torch.isfinite(x_next).all(dim=1).numpy()
            if (t - t0) % record_every == 0 and live.any():
                state = _numpy(_projected(selection, x[:, :param_dim]), dtype)
                state[~live] = np.nan
                rows["step"].append(t)
                rows["state"].append(state)
                rows["loss"].append(np.where(live, loss, np.nan))
                rows["grad_norm"].append(np.where(live, grad_norm, np.nan))
                if eval_every is not None:
                    test = np.full((2, n), np.nan)
                    if (t - t0) % eval_every == 0:
                        for i in np.flatnonzero(live):
                            metrics = map_.evaluate(x[i])
                            test[:, i] = [metrics.get("test_loss", np.nan), metrics.get("test_accuracy", np.nan)]
                    rows["test_loss"].append(test[0])
                    rows["test_accuracy"].append(test[1])
            bar.update(1)
            for i in np.flatnonzero(live & ~finite_next):
                reasons[i], diverged_step[i], final_step[i] = "non-finite: the state has NaN/inf entries", t + 1, t
                final[i] = _numpy(x[i], dtype)
                live[i] = False
            keep = torch.from_numpy(live)[:, None]
            previous, x = torch.where(keep, x, previous), torch.where(keep, x_next, x)
            if not live.any():
                break
    if steps:
        norms = parameter_norms(x, param_dim)
        for i in np.flatnonzero(live):  # the last state's norm, as run judges it
            reason = rule.last(int(i), float(norms[i]))
            if reason:
                reasons[i], diverged_step[i], final_step[i] = reason, t0 + steps, t0 + steps - 1
                final[i] = _numpy(previous[i], dtype)
                live[i] = False
    sound = live & (reasons == "")
    final[sound] = _numpy(x, dtype)[sound]
    if (reasons != "").any():
        first = int(np.argmin(np.where(reasons != "", diverged_step, np.iinfo(np.int64).max)))
        warnings.warn(f"run: {int((reasons != '').sum())} of {n} member(s) diverged (first at step "
                      f"{int(diverged_step[first])}: {reasons[first]}); each stopped there, its steps before are kept",
                      RuntimeWarning, stacklevel=3)
    attrs = {
        "map": type(map_).__name__, **describe_map(map_), "record": selection.record,
        **selection.attrs, "record_every": record_every, "eval_every": eval_every, "t0": t0, "dtype": str(dtype),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "netdyn_version": __version__,
        "complete": 1, "batching": batching or stepper.mode,
    }
    series = {name: (("member", "step"), np.stack(values, axis=1) if values else np.zeros((n, 0)))
              for name, values in rows.items() if name not in ("step", "state")}
    data = {
        "state": (("member", "step", "param"),
                  np.stack(rows["state"], axis=1) if rows["state"] else np.zeros((n, 0, selection.size), dtype)),
        **series,
        "diverged": (("member",), reasons != ""),
        "initial_state": (("member", "state_index"), initial),
        "final_state": (("member", "state_index"), final),
        "final_step": (("member",), final_step),
        "divergence_reason": (("member",), reasons.astype(str)),
        "diverged_step": (("member",), diverged_step),
    }
    coords = {
        "member": np.arange(n),
        "step": ("step", np.array(rows["step"], dtype=np.int64)),
        "param": ("param", np.arange(selection.size, dtype=np.int64)),
        "param_name": ("param", np.array(selection.names, dtype=str)),
        "layer": ("param", np.array(selection.layers, dtype=str)),
    }
    return xr.Dataset(data, coords=coords, attrs=netcdf_attrs(attrs))


class _Step:
    """One computed step, waiting for the host: the states, the recorded row (on the device)
    and ``device_values = [||theta_t||, finite(x_{t+1}), loss, grad_norm]`` (float64, the
    metrics only when the map gives tensors; else ``host_metrics``)."""

    __slots__ = ("t", "x", "x_next", "row", "device_values", "host_metrics")

    def __init__(self, t: int, x: Tensor, x_next: Tensor, row: Tensor | None, device_values: Tensor,
                 host_metrics: tuple[float, float]):
        self.t, self.x, self.x_next, self.row = t, x, x_next, row
        self.device_values, self.host_metrics = device_values, host_metrics


class _Loop:
    """The state of :func:`run`'s loop: the host-confirmed ``x``/``previous``/``t_x`` and the
    steps computed since (``pending``), replayed on the host once per block."""

    def __init__(self, x: Tensor, t0: int, block: int, capacity: int):
        self.x, self.previous, self.t_x = x, x, t0
        self.block, self.capacity, self.rows_pending = block, max(capacity, 1), 0
        self.pending: collections.deque[_Step] = collections.deque()
        self.reason, self.diverged_step, self.final_step, self.stopped = "", -1, t0, False
        self.rows_in_buffer = 0

    def add(self, t: int, x: Tensor, x_next: Tensor, metrics: dict[str, Any], recorded: bool, selection: Any,
            param_dim: int, has_metrics: bool) -> None:
        nan = float("nan")
        loss, grad_norm = (metrics.get("loss", nan), metrics.get("grad_norm", nan)) if has_metrics else (nan, nan)
        parts = [parameter_norms_on_device(x[None], param_dim)[0],
                 torch.isfinite(x_next).all().to(torch.float64)]
        host = (nan, nan)
        if torch.is_tensor(loss) and torch.is_tensor(grad_norm):
            parts += [loss.detach().to(torch.float64).reshape(()), grad_norm.detach().to(torch.float64).reshape(())]
        else:
            host = (float(loss), float(grad_norm))
        row = selection.project(x[:param_dim]).detach() if recorded else None
        self.pending.append(_Step(t, x, x_next, row, torch.stack(parts), host))
        self.rows_pending += recorded

    def block_done(self) -> bool:
        """A host copy is due: a full block, or the rows that fill the writer's buffer."""
        if len(self.pending) >= self.block or self.rows_in_buffer + self.rows_pending >= self.capacity:
            self.rows_in_buffer = (self.rows_in_buffer + self.rows_pending) % self.capacity
            self.rows_pending = 0
            return True
        return False

    def stop(self) -> None:
        self.stopped = True
        self.pending.clear()


def _block_size(x: Tensor) -> int:
    """Steps between host copies: :data:`SYNC_EVERY`, fewer for states so large that the
    block's states would pass 64 MiB (the pending steps keep theirs until the copy)."""
    return max(1, min(SYNC_EVERY, (64 << 20) // max(1, x.numel() * x.element_size())))


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
