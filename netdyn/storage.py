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
``final_step``, so a run can be continued with ``run(map, n, x0=final_state, t0=final_step)``.
Global attribute ``complete`` is 0 while a run writes (or after it was killed), 1 after.

Crash safety
------------
:class:`TrajectoryWriter` opens the file in append mode, writes a block of rows and
the current ``final_state``, and closes it again, so between writes the file on disk
is a complete, readable netCDF file holding every step written so far.  A kill
*during* the few milliseconds of a write can still leave the HDF5 metadata
inconsistent (HDF5 keeps no journal); fewer, larger writes (``flush_every``) make
that window rarer.

HDF5 locks files: while another process holds the file open (e.g. a notebook that
called :func:`open_trajectory` on a running file), the writer cannot reopen it.  It
then keeps the rows in memory, warns once, and retries at the next write; at the
end of the run it waits up to ``FINISH_RETRY_S`` seconds.  Setting the environment
variable ``HDF5_USE_FILE_LOCKING=FALSE`` for both processes lifts the lock.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any, Mapping

import netCDF4
import numpy as np
import xarray as xr

__all__ = [
    "REQUIRED_VARIABLES",
    "RowBuffer",
    "TrajectoryWriter",
    "build_dataset",
    "netcdf_attrs",
    "open_trajectory",
    "save_trajectory",
    "verdict_variables",
]

REQUIRED_VARIABLES = ("state", "loss", "grad_norm", "diverged")
EVAL_VARIABLES = ("test_loss", "test_accuracy")
FINISH_RETRY_S = 30.0
_CHUNK_BYTES = 4 * 2**20


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes made netCDF-safe: bool -> int, None -> ``"None"``, non-empty lists of
    numbers -> numpy arrays, dicts and other lists -> JSON strings, other objects -> ``str``.

    Note that netCDF returns a one-element array attribute as a scalar.
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
    in ``extra``, e.g. a running exponent); at most ``capacity`` rows."""

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
    """The in-memory trajectory Dataset, with the same layout as the streamed file."""
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
    """``divergence_reason`` (str) and ``diverged_step`` (int64) as scalar Dataset variables."""
    return {
        "divergence_reason": ((), np.array(str(verdict["divergence_reason"]))),
        "diverged_step": ((), np.int64(verdict["diverged_step"])),
    }


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
    ``diverged`` and ``complete = 1``.  See the module docstring for crash safety and
    file locks.
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
        self._warned = False
        self._verdict: Mapping[str, Any] | None = None
        n = len(names)
        rows = max(1, min(int(chunk_rows), _CHUNK_BYTES // max(1, n * np.dtype(state_dtype).itemsize)))
        with netCDF4.Dataset(self.path, "w", format="NETCDF4") as nc:
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

    def _write(self, final_state: np.ndarray, final_step: int, diverged: bool | None) -> bool:
        try:
            nc = netCDF4.Dataset(self.path, "a")
        except OSError:
            return False
        with nc:
            for block in self._pending:
                k = len(block["step"])
                for name, arr in block.items():
                    nc[name][self.n_written : self.n_written + k] = arr
                self.n_written += k
            nc["final_state"][:] = final_state
            nc["final_step"].assignValue(int(final_step))
            if diverged is not None:
                nc["diverged"].assignValue(int(diverged))
                if self._verdict is not None:
                    _write_verdict(nc, self._verdict)
                nc.setncattr("complete", 1)
        self._pending = []
        return True

    def append(self, rows: Mapping[str, np.ndarray], final_state: np.ndarray, final_step: int) -> None:
        """Write ``rows`` (copied if the file is locked) and the state reached so far."""
        self._pending.append({name: np.array(arr) for name, arr in rows.items()})
        if not self._write(final_state, final_step, None) and not self._warned:
            self._warned = True
            warnings.warn(
                f"run: cannot reopen {self.path!r} to append (another process holds it open?); "
                "keeping the rows in memory and retrying at the next write",
                RuntimeWarning,
                stacklevel=3,
            )

    def finish(
        self,
        rows: Mapping[str, np.ndarray],
        final_state: np.ndarray,
        final_step: int,
        diverged: bool,
        verdict: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the last rows and mark the file complete (``complete = 1``); ``verdict``
        (``divergence_reason``, ``diverged_step``) is written with them."""
        self._verdict = verdict
        self._pending.append({name: np.array(arr) for name, arr in rows.items()})
        deadline = time.monotonic() + FINISH_RETRY_S
        delay = 0.01
        while not self._write(final_state, final_step, diverged):
            if time.monotonic() > deadline:
                raise OSError(
                    f"run: cannot reopen {self.path!r} to finish it after {FINISH_RETRY_S:.0f} s "
                    f"(another process holds it open?); it holds the first {self.n_written} recorded steps"
                )
            time.sleep(delay)
            delay = min(2 * delay, 1.0)


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
        a file written by :func:`netdyn.trajectory.run` (``path=``) or :func:`save_trajectory`.

    Returns
    -------
    xarray.Dataset
        backed by the file; ``state`` is read on access.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file
    for one that is not netCDF, is truncated or corrupt, or lacks the variables of a
    trajectory (they are named).  A file whose ``complete`` attribute is 0 (its run
    was killed or is still writing) opens with a ``RuntimeWarning`` giving how many
    steps it holds.
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
    if int(ds.attrs.get("complete", 1)) == 0:
        last = int(ds["step"][-1]) if n else None
        warnings.warn(
            f"open_trajectory: {path!r} is incomplete (complete=0: its run was killed or is still writing); "
            f"it holds {n} steps" + (f", the last is step {last}" if n else ""),
            RuntimeWarning,
            stacklevel=2,
        )
    return ds


def save_trajectory(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write an in-memory trajectory to ``path`` (netCDF4, unlimited ``step``).

    Attributes are made netCDF-safe with :func:`netcdf_attrs`; reopening with
    :func:`open_trajectory` gives back an identical Dataset.  Raises ``ValueError``
    when ``ds`` lacks the trajectory variables.
    """
    _check_layout(ds, "save_trajectory: the Dataset")
    out = ds.copy()
    out.attrs = netcdf_attrs(ds.attrs)
    out.to_netcdf(os.fspath(path), engine="netcdf4", format="NETCDF4", unlimited_dims=["step"])
