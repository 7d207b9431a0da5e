"""Trajectories on disk: the netCDF4 layout, a streaming writer, open and save.

Layout (one file = one trajectory, see the data model in the design notes)
------------------------------------------------------------------------
dimensions ``step`` (unlimited), ``param``, ``state_index``;
``step(step)`` int64, ``param(param)`` int64, ``param_name(param)``, ``layer(param)`` str;
``state(step, param)``, ``loss(step)``, ``grad_norm(step)``, optional
``test_loss(step)`` and ``test_accuracy(step)`` (NaN between evaluations);
``diverged()`` (int8 tagged ``dtype="bool"``, read back as bool by xarray) and, written
when the run finishes, ``divergence_reason()`` (str, ``""`` when sound) and
``diverged_step()`` (int64, -1 when sound) — older files, and files of killed runs, lack
these two and still open;
``initial_state(state_index)``, ``final_state(state_index)``, ``final_step()``: the
full map state (parameters and optimiser buffers) at the start and at step
``final_step``, so a run can be continued with ``run(map_, final_state, n, t0=final_step)``.
Global attribute ``complete`` is 0 while a run writes (or after it was killed), 1 after.

Crash safety
------------
:class:`TrajectoryWriter` opens the file in append mode, writes a block of rows and
the current ``final_state``, and closes it again, so between writes the file on disk
is a complete, readable netCDF file holding every step written so far.  A kill
*during* the few milliseconds of a write can still leave the HDF5 metadata
inconsistent (HDF5 keeps no journal); fewer, larger writes (``flush_every``) make
that window rarer.

An interrupted run (Ctrl-C, SIGTERM turned into ``KeyboardInterrupt``, or any
exception inside the loop) writes every row it computed and closes the file with
``complete = 0`` and the attribute ``interrupted_at`` = the first step it did not
finish (:meth:`TrajectoryWriter.close`).

HDF5 locks files: while another process holds the file open (e.g. a notebook that
called :func:`open_trajectory` on a running file), the writer cannot reopen it.  It
then keeps the rows in memory, warns once, and retries at the next write; at the
end of the run it waits up to ``FINISH_RETRY_S`` seconds (an interrupted run
``INTERRUPT_RETRY_S``).  Rows it still cannot append are never dropped: they go to
a *side file* ``<path>.pending-<first row>.nc`` (written atomically) with the final
state and flags, and a ``RuntimeWarning`` names it.  While the lock lasts, rows
beyond ``SPILL_BYTES`` of memory are spilled to side files too, and moved into the
file at the first write that can reopen it.  :func:`open_trajectory` merges
side files (with a warning) and :func:`consolidate` writes them into the main file
once nobody holds it.  Setting the environment variable
``HDF5_USE_FILE_LOCKING=FALSE`` for both processes lifts the lock.
"""
from __future__ import annotations

import glob
import json
import os
import time
import uuid
import warnings
from typing import Any, Callable, Mapping

import netCDF4
import numpy as np
import xarray as xr

from netdyn._core.signals import critical_section

__all__ = [
    "REQUIRED_VARIABLES",
    "RowBuffer",
    "TrajectoryWriter",
    "build_dataset",
    "consolidate",
    "netcdf_attrs",
    "open_trajectory",
    "pending_files",
    "save_trajectory",
    "verdict_variables",
    "write_atomic",
]

REQUIRED_VARIABLES = ("state", "loss", "grad_norm", "diverged")
EVAL_VARIABLES = ("test_loss", "test_accuracy")
FINISH_RETRY_S = 30.0
INTERRUPT_RETRY_S = 2.0
SPILL_BYTES = 64 * 2**20
_PENDING = ".pending-"
_CHUNK_BYTES = 4 * 2**20


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes made netCDF-safe: bool -> int, None -> ``"None"``, non-empty lists of
    numbers -> numpy arrays, dicts and other lists -> JSON strings, other objects -> ``str``.

    Note that netCDF returns a one-element array attribute as a scalar.

    Parameters
    ----------
    attrs : mapping
        Attribute names to values of any type.

    Returns
    -------
    dict
        The same names, with values netCDF4 can store.

    Examples
    --------
    >>> from netdyn.io.storage import netcdf_attrs
    >>> netcdf_attrs({"ok": True, "none": None, "sizes": [4, 5, 3], "opts": {"a": 1}})
    {'ok': 1, 'none': 'None', 'sizes': array([4, 5, 3]), 'opts': '{"a": 1}'}
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif value is None:
            value = "None"
        elif isinstance(value, (list, tuple, np.ndarray)):
            arr = np.asarray(value)
            if arr.size and arr.ndim == 1 and arr.dtype.kind in "iuf" and arr.dtype != np.bool_:
                value = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float64)
            else:
                value = json.dumps(np.asarray(value).tolist() if isinstance(value, np.ndarray) else list(value), default=str)
        elif isinstance(value, dict):
            value = json.dumps(value, default=str, sort_keys=True)
        elif isinstance(value, (np.integer, int)):
            value = int(value)
        elif isinstance(value, (np.floating, float)):
            value = float(value)
        elif not isinstance(value, str):
            value = str(value)
        out[str(key)] = value
    return out


class RowBuffer:
    """Pre-allocated rows of a trajectory: ``step``, ``state``, ``loss``, ``grad_norm``
    (and ``test_loss``, ``test_accuracy`` when ``with_eval``, and one float per name
    in ``extra``, e.g. a running exponent); at most ``capacity`` rows.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.io.storage import RowBuffer
    >>> buf = RowBuffer(2, 3, np.dtype(np.float64), with_eval=False)
    >>> buf.add({"step": 0, "state": np.zeros(3), "loss": 1.0, "grad_norm": 0.5})
    >>> buf.rows()["state"].shape, buf.full
    ((1, 3), False)
    """

    def __init__(self, capacity: int, n_params: int, dtype: np.dtype, with_eval: bool, extra: tuple[str, ...] = ()):
        self.capacity, self.n = int(capacity), 0
        self.arrays: dict[str, np.ndarray] = {
            "step": np.empty(capacity, dtype=np.int64),
            "state": np.empty((capacity, n_params), dtype=dtype),
            "loss": np.empty(capacity),
            "grad_norm": np.empty(capacity),
        }
        for name in (EVAL_VARIABLES if with_eval else ()) + tuple(extra):
            self.arrays[name] = np.empty(capacity)

    @property
    def full(self) -> bool:
        return self.n >= self.capacity

    def add(self, values: Mapping[str, Any]) -> None:
        for name, arr in self.arrays.items():
            arr[self.n] = values[name]
        self.n += 1

    def rows(self) -> dict[str, np.ndarray]:
        """Views of the filled rows."""
        return {name: arr[: self.n] for name, arr in self.arrays.items()}

    def clear(self) -> None:
        self.n = 0


def build_dataset(
    rows: Mapping[str, np.ndarray],
    names: list[str],
    layers: list[str],
    initial_state: np.ndarray,
    final_state: np.ndarray,
    final_step: int,
    diverged: bool,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The in-memory trajectory Dataset, with the same layout as the streamed file.

    Parameters
    ----------
    rows : mapping of str to array
        The filled rows of a :class:`RowBuffer`.
    names, layers : list of str
        Labels of the recorded parameters (``param`` coordinate and its ``layer``).
    initial_state, final_state : array (state_dim,)
        The full map states at the start and at ``final_step``.
    final_step : int
        The step of ``final_state``.
    diverged : bool
        Whether the run broke the divergence rule.
    attrs : mapping
        Attributes (made netCDF-safe with :func:`netcdf_attrs`).

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.io.storage import RowBuffer, build_dataset
    >>> buf = RowBuffer(1, 2, np.dtype(np.float64), with_eval=False)
    >>> buf.add({"step": 0, "state": np.ones(2), "loss": 1.0, "grad_norm": 0.0})
    >>> ds = build_dataset(buf.rows(), ["x0", "x1"], ["x", "x"], np.ones(2), np.ones(2), 1, False, {})
    >>> ds["state"].dims, int(ds["final_step"])
    (('step', 'param'), 1)
    """
    data = {
        "state": (("step", "param"), rows["state"]),
        "loss": ("step", rows["loss"]),
        "grad_norm": ("step", rows["grad_norm"]),
    }
    for name in rows:
        if name not in ("step", "state", "loss", "grad_norm"):
            data[name] = ("step", rows[name])
    data.update(
        diverged=((), np.bool_(diverged)),
        initial_state=("state_index", initial_state),
        final_state=("state_index", final_state),
        final_step=((), np.int64(final_step)),
    )
    coords = {
        "step": ("step", rows["step"]),
        "param": ("param", np.arange(len(names), dtype=np.int64)),
        "param_name": ("param", np.array(names, dtype=str)),
        "layer": ("param", np.array(layers, dtype=str)),
    }
    return xr.Dataset(data, coords=coords, attrs=netcdf_attrs(attrs))


def verdict_variables(verdict: Mapping[str, Any]) -> dict[str, tuple[tuple, np.ndarray]]:
    """``divergence_reason`` (str) and ``diverged_step`` (int64) as scalar Dataset variables.

    Examples
    --------
    >>> from netdyn.io.storage import verdict_variables
    >>> sorted(verdict_variables({"divergence_reason": "", "diverged_step": -1}))
    ['diverged_step', 'divergence_reason']
    """
    return {
        "divergence_reason": ((), np.array(str(verdict["divergence_reason"]))),
        "diverged_step": ((), np.int64(verdict["diverged_step"])),
    }


_FLAG_VARIABLES = ("diverged", "divergence_reason", "diverged_step")  # flags stored as variables, not attributes


def _write_verdict(nc: netCDF4.Dataset, verdict: Mapping[str, Any]) -> None:
    """Create (if needed) and fill the scalar ``divergence_reason`` and ``diverged_step``."""
    if "divergence_reason" not in nc.variables:
        nc.createVariable("divergence_reason", str, ())
        nc.createVariable("diverged_step", "i8", ())
    nc["divergence_reason"][...] = np.array(str(verdict["divergence_reason"]), dtype=object)
    nc["diverged_step"].assignValue(int(verdict["diverged_step"]))


class TrajectoryWriter:
    """Streams a trajectory to a netCDF4 file, one block of rows per :meth:`append`.

    The file is created at once (``complete = 0``, no rows, ``final_state`` =
    ``initial_state``); each append reopens it, adds the rows, updates
    ``final_state``/``final_step`` and closes it; :meth:`finish` writes the last rows,
    ``diverged`` and ``complete = 1``; :meth:`close` ends an interrupted run
    (``complete = 0``, ``interrupted_at``).  Creating a writer removes side files
    left by an earlier run to the same path.  See the module docstring for crash
    safety, interruptions and file locks.

    Examples
    --------
    Used by :func:`netdyn.run` with ``path=``; the file it writes:

    >>> import os, tempfile
    >>> import netdyn as nd
    >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
    >>> with nd.run(nd.LogisticMap(4.0), None, 20, path=path, flush_every=8) as ds:
    ...     ds.sizes["step"], int(ds.attrs["complete"])
    (20, 1)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        names: list[str],
        layers: list[str],
        state_dtype: np.dtype,
        initial_state: np.ndarray,
        t0: int,
        with_eval: bool,
        attrs: Mapping[str, Any],
        chunk_rows: int,
        extra: tuple[str, ...] = (),
    ):
        self.path, self.n_written = os.fspath(path), 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._warned, self._last_queued = False, int(t0) - 1
        self._sides: list[str] = []  # side files of rows spilled while the file was locked
        self._spilled = 0  # rows in them
        n = len(names)
        rows = max(1, min(int(chunk_rows), _CHUNK_BYTES // max(1, n * np.dtype(state_dtype).itemsize)))
        with critical_section(), netCDF4.Dataset(self.path, "w", format="NETCDF4") as nc:
            nc.createDimension("step", None)
            nc.createDimension("param", n)
            nc.createDimension("state_index", len(initial_state))
            nc.createVariable("step", "i8", ("step",), chunksizes=(rows,))
            nc.createVariable("param", "i8", ("param",))[:] = np.arange(n, dtype=np.int64)
            nc.createVariable("param_name", str, ("param",))[:] = np.array(names, dtype=object)
            nc.createVariable("layer", str, ("param",))[:] = np.array(layers, dtype=object)
            state = nc.createVariable("state", np.dtype(state_dtype), ("step", "param"), chunksizes=(rows, max(1, n)))
            state.setncattr("coordinates", "param_name layer")
            for name in ("loss", "grad_norm") + (EVAL_VARIABLES if with_eval else ()) + tuple(extra):
                nc.createVariable(name, "f8", ("step",), chunksizes=(rows,))
            diverged = nc.createVariable("diverged", "i1", ())
            diverged.setncattr("dtype", "bool")
            diverged.assignValue(0)
            for name in ("initial_state", "final_state"):
                nc.createVariable(name, initial_state.dtype, ("state_index",))[:] = initial_state
            nc.createVariable("final_step", "i8", ()).assignValue(int(t0))
            nc.setncatts(netcdf_attrs({**attrs, "complete": 0}))
        for side in pending_files(self.path):  # of an earlier run to the same path
            os.remove(side)

    def _queue(self, rows: Mapping[str, np.ndarray], only_new: bool = False) -> None:
        """Copy ``rows`` into the pending blocks.  ``only_new`` (after an interruption)
        skips the steps up to the last one queued: an append interrupted during its
        write keeps its block queued while the caller still holds the same rows."""
        steps = np.asarray(rows["step"])
        keep = steps > self._last_queued if only_new else np.ones(len(steps), dtype=bool)
        if keep.any():
            self._pending.append({name: np.array(arr)[keep] for name, arr in rows.items()})
            self._last_queued = int(steps[keep][-1])

    def _write(self, final_state: np.ndarray, final_step: int, flags: Mapping[str, Any] | None) -> bool:
        """Append the pending blocks and the state reached; ``flags``: the variable
        ``diverged`` and the attributes to set at the end.  False when the file is locked.

        A critical section (:mod:`netdyn._core.signals`): netCDF4 can swallow a
        ``KeyboardInterrupt`` raised while it opens the file or writes a variable, and one
        raised mid-write would leave the block half written, so a signal waits until the
        file is closed."""
        with critical_section():
            return self._write_now(final_state, final_step, flags)

    def _write_now(self, final_state: np.ndarray, final_step: int, flags: Mapping[str, Any] | None) -> bool:
        try:
            nc = netCDF4.Dataset(self.path, "a")
        except OSError:
            return False
        with nc:
            for side in self._sides:  # rows spilled while the file was locked, in order
                self.n_written = max(self.n_written, _copy_side(nc, side))
            while self._pending:
                block = self._pending[0]
                k = len(block["step"])
                for name, arr in block.items():
                    nc[name][self.n_written : self.n_written + k] = arr
                self.n_written += k
                self._pending.pop(0)
            nc["final_state"][:] = final_state
            nc["final_step"].assignValue(int(final_step))
            if flags is not None:
                nc["diverged"].assignValue(int(flags["diverged"]))
                if "divergence_reason" in flags:
                    _write_verdict(nc, flags)
                nc.setncatts(netcdf_attrs({k: v for k, v in flags.items() if k not in _FLAG_VARIABLES}))
        for side in self._sides:
            os.remove(side)
        self._sides, self._spilled = [], 0
        return True

    def append(self, rows: Mapping[str, np.ndarray], final_state: np.ndarray, final_step: int) -> None:
        """Write ``rows`` (copied if the file is locked) and the state reached so far."""
        self._queue(rows)
        if self._write(final_state, final_step, None):
            return
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"run: cannot reopen {self.path!r} to append (another process holds it open?); "
                f"keeping the rows (in memory, beyond {SPILL_BYTES / 2**20:g} MiB in side files "
                f"{self.path}{_PENDING}<row>.nc) and retrying at the next write",
                RuntimeWarning,
                stacklevel=3,
            )
        if sum(arr.nbytes for block in self._pending for arr in block.values()) > SPILL_BYTES:
            self._sides.append(self._spill(final_state, final_step, {"diverged": False, "complete": 0}))
            self._spilled += sum(len(block["step"]) for block in self._pending)
            self._pending = []

    def finish(
        self,
        rows: Mapping[str, np.ndarray],
        final_state: np.ndarray,
        final_step: int,
        diverged: bool,
        verdict: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the last rows and mark the file complete (``complete = 1``); ``verdict``
        (``divergence_reason``, ``diverged_step``) is written with them.  Rows that
        cannot be appended within ``FINISH_RETRY_S`` go to a side file (see the module)."""
        self._queue(rows)
        flags = {"diverged": diverged, "complete": 1, **(verdict or {})}
        self._end(final_state, final_step, flags, FINISH_RETRY_S)

    def close(
        self, rows: Mapping[str, np.ndarray], final_state: np.ndarray, final_step: int, interrupted_at: int
    ) -> None:
        """After an interruption: write every row computed, ``final_state`` at
        ``final_step``, ``complete = 0`` and ``interrupted_at``; rows that cannot be
        appended within ``INTERRUPT_RETRY_S`` go to a side file."""
        self._queue(rows, only_new=True)
        flags = {"diverged": False, "complete": 0, "interrupted_at": int(interrupted_at)}
        self._end(final_state, final_step, flags, INTERRUPT_RETRY_S)

    def _end(self, final_state: np.ndarray, final_step: int, flags: Mapping[str, Any], wait_s: float) -> None:
        """Write the pending rows with ``flags``, retrying for ``wait_s`` seconds; then,
        or when interrupted while waiting, put them in a side file."""
        deadline = time.monotonic() + wait_s
        delay = 0.01
        try:
            while not self._write(final_state, final_step, flags):
                if time.monotonic() > deadline:
                    self._spill_and_warn(final_state, final_step, flags, f"after {wait_s:g} s")
                    return
                time.sleep(delay)
                delay = min(2 * delay, 1.0)
        except BaseException:  # e.g. Ctrl-C while waiting for the lock: keep the rows anyway
            if self._pending:
                interrupted = {**flags, "diverged": False, "complete": 0,
                               "interrupted_at": int(flags.get("interrupted_at", final_step))}
                self._spill_and_warn(final_state, final_step, interrupted, "(interrupted while waiting)")
            raise

    def _spill_and_warn(self, final_state: np.ndarray, final_step: int, flags: Mapping[str, Any], when: str) -> None:
        side = self._spill(final_state, final_step, flags)
        warnings.warn(
            f"run: cannot reopen {self.path!r} (another process holds it open?) {when}; "
            f"it holds the first {self.n_written} recorded rows, the other "
            f"{sum(len(b['step']) for b in self._pending)} and the final state are in {side!r}. "
            f"open_trajectory merges them; once no process holds the file, "
            f"netdyn.io.storage.consolidate({self.path!r}) writes them into it",
            RuntimeWarning,
            stacklevel=5,
        )
        self._pending = []

    def _spill(self, final_state: np.ndarray, final_step: int, flags: Mapping[str, Any]) -> str:
        """Write the pending rows, final state and flags to ``<path>.pending-<n>.nc``
        atomically (temporary name, then ``os.replace``); returns its path."""
        names = list(self._pending[0]) if self._pending else ["step"]
        rows = {name: np.concatenate([b[name] for b in self._pending]) for name in names} if self._pending else {
            "step": np.empty(0, dtype=np.int64)}
        data: dict[str, Any] = {name: (("step",) + (("param",) if arr.ndim == 2 else ()), arr)
                                for name, arr in rows.items() if name != "step"}
        data.update(
            final_state=("state_index", final_state),
            final_step=((), np.int64(final_step)),
            diverged=((), np.int8(flags["diverged"]), {"dtype": "bool"}),
        )
        attrs = {k: v for k, v in flags.items() if k != "diverged"}
        first_row = self.n_written + self._spilled
        ds = xr.Dataset(data, coords={"step": ("step", rows["step"])},
                        attrs=netcdf_attrs({**attrs, "netdyn_pending": 1, "first_row": first_row}))
        side = f"{self.path}{_PENDING}{first_row}.nc"
        return write_atomic(side, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4"))


def write_atomic(path: str | os.PathLike, write: Callable[[str], Any]) -> str:
    """Call ``write(tmp)`` on a temporary name in the folder of ``path``, then
    ``os.replace`` it onto ``path``: readers and concurrent writers see an old or a
    new complete file, never a mix.  Returns ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> from netdyn.io.storage import write_atomic
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> _ = write_atomic(path, lambda tmp: open(tmp, "w").write("done"))
    >>> open(path).read()
    'done'
    """
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    # netCDF4 can swallow a KeyboardInterrupt raised inside it: under holding_signals (run, run_sweep)
    # a Ctrl-C or SIGTERM during the write waits for the file to be in place, then acts
    with critical_section():
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return path


def pending_files(path: str | os.PathLike) -> list[str]:
    """Side files ``<path>.pending-<first row>.nc`` of a trajectory, by first row.

    Examples
    --------
    >>> import os, tempfile
    >>> from netdyn.io.storage import pending_files
    >>> pending_files(os.path.join(tempfile.mkdtemp(), "run.nc"))
    []
    """
    path = os.fspath(path)
    found = []
    for name in glob.glob(glob.escape(path) + _PENDING + "*.nc"):
        first = name[len(path) + len(_PENDING) : -3]
        if first.isdigit():
            found.append((int(first), name))
    return [name for _, name in sorted(found)]


def _merge_pending(ds: xr.Dataset, path: str, sides: list[str]) -> xr.Dataset:
    """``ds`` with the rows, final state and flags of its side files, in memory."""
    parts, last = [], None
    step_names = [name for name in ds.variables if "step" in ds[name].dims]
    try:
        first = None
        for side in sides:
            with xr.open_dataset(side, engine="netcdf4") as p:
                p = p.load()
            first = int(p.attrs["first_row"]) if first is None else first
            if p.sizes.get("step", 0):  # a side file may hold only the final state and flags
                parts.append(p[[n for n in step_names if n in p.variables]])
            last = p
        head = ds.isel(step=slice(0, first))[step_names].load()
        rows = xr.concat([head] + parts, dim="step", data_vars="all", coords="minimal", compat="override",
                         join="outer")
        out = ds.drop_dims("step").load().merge(rows.drop_vars([n for n in rows.coords if n != "step"]))
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"open_trajectory: side file(s) {sides} of {path!r} are unreadable ({err})") from err
    finally:
        ds.close()
    out["final_state"] = ("state_index", last["final_state"].values.astype(ds["final_state"].dtype))
    out["final_step"] = ((), np.int64(last["final_step"].values))
    out["diverged"] = ((), np.bool_(last["diverged"].values))
    out.attrs = {**ds.attrs, **{k: v for k, v in last.attrs.items() if k not in ("netdyn_pending", "first_row")}}
    if "interrupted_at" in ds.attrs and "interrupted_at" not in last.attrs:
        out.attrs.pop("interrupted_at")
    out.encoding["source"] = path
    warnings.warn(
        f"open_trajectory: {len(rows['step']) - first} rows of {path!r} are in side file(s) {sides} "
        f"(the file was locked when they were written); they are merged here. "
        f"Run netdyn.io.storage.consolidate({path!r}) to write them into the file",
        RuntimeWarning,
        stacklevel=3,
    )
    return out


def _first_row(side: str) -> int:
    """The first row of a side file, from its name ``<path>.pending-<row>.nc``."""
    return int(side.rsplit(_PENDING, 1)[1][:-3])


def _copy_side(nc: netCDF4.Dataset, side: str) -> int:
    """Write a side file's rows into the open trajectory ``nc`` at their own row
    positions, with its final state, flags and attributes; returns the row after them."""
    try:
        with xr.open_dataset(side, engine="netcdf4") as p:
            p = p.load()
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"consolidate: side file {side!r} is unreadable ({err})") from err
    first, k = int(p.attrs["first_row"]), p.sizes.get("step", 0)
    for name in list(p.coords) + list(p.data_vars):
        if k and (name == "step" or "step" in p[name].dims):
            nc[name][first : first + k] = p[name].values
    nc["final_state"][:] = p["final_state"].values
    nc["final_step"].assignValue(int(p["final_step"]))
    nc["diverged"].assignValue(int(p["diverged"]))
    for key, value in p.attrs.items():
        if key not in ("netdyn_pending", "first_row"):
            nc.setncattr(key, value)
    if "interrupted_at" in nc.ncattrs() and "interrupted_at" not in p.attrs:
        nc.delncattr("interrupted_at")
    return first + k


def consolidate(path: str | os.PathLike) -> int:
    """Write the rows of a trajectory's side files (``<path>.pending-<n>.nc``, left
    by a run that could not reopen a locked file) into ``path`` and remove them.

    Parameters
    ----------
    path : str or PathLike
        the trajectory file; no other process may hold it open.

    Returns
    -------
    int
        number of rows moved from side files (0: there were none).

    Each side file's rows go to their own row positions (attribute ``first_row``),
    so a consolidation killed midway can simply be run again.  Raises ``OSError``
    when the file is still locked and ``ValueError`` for an unreadable side file.

    Examples
    --------
    >>> import os, tempfile
    >>> import netdyn as nd
    >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
    >>> nd.run(nd.LogisticMap(4.0), None, 10, path=path).close()
    >>> nd.consolidate(path)  # no side files: nothing to move
    0
    """
    path = os.fspath(path)
    sides = pending_files(path)
    if not sides:
        return 0
    try:
        nc = netCDF4.Dataset(path, "a")
    except OSError as err:
        raise OSError(f"consolidate: cannot open {path!r} to append (another process holds it open?): {err}") from err
    moved = 0
    with nc:
        for side in sides:
            moved += _copy_side(nc, side) - _first_row(side)
    for side in sides:
        os.remove(side)
    return moved


def _check_layout(ds: xr.Dataset, where: str) -> None:
    missing = [name for name in REQUIRED_VARIABLES if name not in ds.variables]
    if missing:
        raise ValueError(f"{where} is not a netdyn trajectory: missing variable(s) {missing}")
    if ds["state"].dims != ("step", "param"):
        raise ValueError(f"{where} is not a netdyn trajectory: expected state dims ('step', 'param'), got {ds['state'].dims}")


def open_trajectory(path: str | os.PathLike) -> xr.Dataset:
    """Open a trajectory file lazily (xarray, engine ``netcdf4``).

    Parameters
    ----------
    path : str or PathLike
        a file written by :func:`netdyn.orbits.trajectory.run` (``path=``) or :func:`save_trajectory`.

    Returns
    -------
    xarray.Dataset
        backed by the file; ``state`` is read on access.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file
    for one that is not netCDF, is truncated or corrupt, or lacks the variables of a
    trajectory (they are named).  A file whose ``complete`` attribute is 0 (its run
    was killed, interrupted or is still writing) opens with a ``RuntimeWarning``
    giving how many steps it holds.  Side files ``<path>.pending-<n>.nc`` (rows a run
    could not append to a locked file) are merged in, with a ``RuntimeWarning``; the
    result is then in memory (see :func:`consolidate`).

    Examples
    --------
    >>> import os, tempfile
    >>> import netdyn as nd
    >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
    >>> nd.run(nd.LogisticMap(4.0), None, 10, path=path).close()
    >>> with nd.open_trajectory(path) as ds:
    ...     ds.sizes["step"]
    10
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"open_trajectory: no such file: {path!r}")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as err:
        raise ValueError(f"open_trajectory: {path!r} is not a readable netCDF file ({err})") from err
    try:
        _check_layout(ds, f"open_trajectory: {path!r}")
        labels = [name for name in ("param_name", "layer") if name in ds.data_vars]
        ds = ds.set_coords(labels)
        n = ds.sizes["step"]
        if n:  # touch the last row: a truncated file opens but fails here
            ds["state"].isel(step=-1).values
        for name in ("loss", "grad_norm", "diverged", "step"):
            if name in ds.variables:
                ds[name].values
    except ValueError:
        ds.close()
        raise
    except (OSError, RuntimeError, KeyError, IndexError) as err:
        ds.close()
        raise ValueError(f"open_trajectory: {path!r} is truncated or corrupt ({err})") from err
    sides = pending_files(path)
    if sides:
        ds = _merge_pending(ds, path, sides)
        n = ds.sizes["step"]
    if int(ds.attrs.get("complete", 1)) == 0:
        last = int(ds["step"][-1]) if n else None
        stopped = f" (interrupted at step {int(ds.attrs['interrupted_at'])})" if "interrupted_at" in ds.attrs else ""
        warnings.warn(
            f"open_trajectory: {path!r} is incomplete (complete=0: its run was killed or is still writing){stopped}; "
            f"it holds {n} steps" + (f", the last is step {last}" if n else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    return ds


def save_trajectory(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write an in-memory trajectory to ``path`` (netCDF4, unlimited ``step``).

    Attributes are made netCDF-safe with :func:`netcdf_attrs`; reopening with
    :func:`open_trajectory` gives back an identical Dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory Dataset of :func:`netdyn.run` (``state(step, param)`` and the rest of
        the layout in :mod:`netdyn.io.storage`).
    path : str or os.PathLike
        The file to write (replaced, with any side files it had).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When ``ds`` lacks the trajectory variables.

    Examples
    --------
    >>> import os, tempfile
    >>> import xarray as xr
    >>> import netdyn as nd
    >>> ds = nd.run(nd.HenonMap(), None, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "henon.nc")
    >>> nd.save_trajectory(ds, path)
    >>> with nd.open_trajectory(path) as back:
    ...     bool(back["state"].equals(ds["state"]))
    True
    """
    _check_layout(ds, "save_trajectory: the Dataset")
    for side in pending_files(path):  # they belonged to the file being replaced
        os.remove(side)
    out = ds.copy()
    out.attrs = netcdf_attrs(ds.attrs)
    out.to_netcdf(os.fspath(path), engine="netcdf4", format="NETCDF4", unlimited_dims=["step"])
