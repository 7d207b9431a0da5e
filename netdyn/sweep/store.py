"""On-disk store of sweep points: one small netCDF file per finished point.

A point is identified by its *specification* — the JSON-serialisable dict of
everything that determines its result (task, learning rate, seed, activation,
optimiser, steps, estimator settings).  :func:`point_key` hashes the canonical
JSON of that dict (SHA-256, sorted keys, floats by their shortest repr), so the
same point gets the same file name in every session and on every machine, and
a sweep that was interrupted finds what it already computed.

Files are written atomically: to a temporary name in the same folder, then
``os.replace`` onto the final name, so a reader (or a resumed sweep) sees either
no file or a complete one, even when the writer is killed mid-write.  Leftover
``*.tmp`` files of a killed writer are never read.

A point file that cannot be read (truncated, zero bytes, not netCDF) is moved aside
to ``<key>.nc.damaged`` with one ``RuntimeWarning`` naming it, and counts as absent,
so the sweep recomputes it.

Several processes may share one store (two identical sweeps, a sweep and a rerun):
a process *claims* a point before computing it with an atomic ``O_CREAT | O_EXCL``
file ``<key>.claim`` holding its pid, host and start time (:class:`Claims`), and the
others wait for the point file instead of computing it again.  A claim is stale —
and taken over — when its owner is a process of this host that no longer exists,
or when its file was not refreshed for ``CLAIM_STALE_S`` seconds (owners refresh
theirs every ``CLAIM_REFRESH_S`` seconds).  Results and figures of a sweep are
written with :func:`netdyn.io.storage.write_atomic`, so concurrent writers never meet in one file.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import warnings
from typing import Any, Iterable, Mapping

import numpy as np
import xarray as xr

from netdyn._version import __version__
from netdyn.io.storage import write_atomic

__all__ = [
    "Claims",
    "grid_key",
    "load_point",
    "point_key",
    "point_path",
    "result_paths",
    "save_point",
    "stored_keys",
]

_SUFFIX = ".nc"
_CLAIM = ".claim"
CLAIM_REFRESH_S = 30.0
CLAIM_STALE_S = 300.0


def point_key(spec: Mapping[str, Any]) -> str:
    """Stable 20-hex-digit name of a point: SHA-256 of its canonical JSON.

    ``spec`` must hold only JSON types (dict, list, str, int, float, bool, None);
    numpy scalars are converted.  Key order does not matter.

    Examples
    --------
    >>> from netdyn.sweep.store import point_key
    >>> point_key({"lr": 0.1, "seed": 0}) == point_key({"seed": 0, "lr": 0.1})  # key order does not matter
    True
    >>> len(point_key({"lr": 0.1}))
    20
    """
    try:
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=_plain, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"point_key: expected a JSON-serialisable point specification, got {spec!r}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def point_path(root: str | os.PathLike, spec: Mapping[str, Any]) -> str:
    """File of ``spec``'s point in the store folder ``root``.

    Examples
    --------
    >>> from netdyn.sweep.store import point_key, point_path
    >>> point_path("store", {"lr": 0.1}).endswith(point_key({"lr": 0.1}) + ".nc")
    True
    """
    return os.path.join(os.fspath(root), point_key(spec) + _SUFFIX)


def save_point(root: str | os.PathLike, spec: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """Write one point atomically; returns its path.

    ``result`` maps names to scalars (numbers, bools, strings) or 1-D arrays over
    ``step``; ``spec`` is kept as the JSON attribute ``spec``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from netdyn.sweep.store import load_point, save_point
    >>> root = tempfile.mkdtemp()
    >>> path = save_point(root, {"lr": 0.1}, {"lyapunov": 0.02, "status": "ok", "loss": np.ones(3)})
    >>> back = load_point(root, {"lr": 0.1})
    >>> back["lyapunov"], back["status"], back["loss"].tolist()
    (0.02, 'ok', [1.0, 1.0, 1.0])
    """
    os.makedirs(root, exist_ok=True)
    path = point_path(root, spec)
    data = {}
    for name, value in result.items():
        array = np.asarray(value)
        if array.ndim > 1:
            raise ValueError(f"save_point: expected scalars or 1-D arrays, got {name} of shape {array.shape}")
        data[name] = (("step",) if array.ndim == 1 else (), array)
    ds = xr.Dataset(
        data,
        attrs={
            "spec": json.dumps(spec, sort_keys=True, default=_plain),
            "key": point_key(spec),
            "netdyn_version": __version__,
        },
    )
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))


def load_point(root: str | os.PathLike, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored result of ``spec`` as a dict (scalars as Python values, curves as
    numpy arrays), or ``None`` when the store has no such point.

    Examples
    --------
    >>> import tempfile
    >>> from netdyn.sweep.store import load_point
    >>> load_point(tempfile.mkdtemp(), {"lr": 0.1}) is None
    True
    """
    path = point_path(root, spec)
    if not os.path.exists(path):
        return None
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as err:
        _move_aside(path, err)
        return None
    return {name: (var.values if var.ndim else var.values.item()) for name, var in ds.data_vars.items()}


def _move_aside(path: str, err: BaseException) -> None:
    """Rename an unreadable point file to ``<path>.damaged`` (``.damaged-<n>`` if taken)
    and say so in one warning line."""
    target, n = f"{path}.damaged", 1
    while os.path.exists(target):
        target, n = f"{path}.damaged-{n}", n + 1
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another process moved it (or replaced it with a good one) first
        return
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    warnings.warn(
        f"sweep store: point file {path!r} is damaged ({type(err).__name__}: {reason}); "
        f"moved to {os.path.basename(target)!r}, the point is computed again",
        RuntimeWarning,
        stacklevel=3,
    )


def stored_keys(root: str | os.PathLike) -> set[str]:
    """Keys of the points stored under ``root`` (empty for a missing folder).

    Examples
    --------
    >>> import tempfile
    >>> from netdyn.sweep.store import point_key, save_point, stored_keys
    >>> root = tempfile.mkdtemp()
    >>> _ = save_point(root, {"lr": 0.1}, {"status": "ok"})
    >>> stored_keys(root) == {point_key({"lr": 0.1})}
    True
    """
    if not os.path.isdir(root):
        return set()
    return {name[: -len(_SUFFIX)] for name in os.listdir(root) if name.endswith(_SUFFIX)}


def grid_key(specs: Iterable[Mapping[str, Any]]) -> str:
    """Stable 20-hex-digit name of a whole grid: :func:`point_key` of its point
    specifications in grid order.

    Examples
    --------
    >>> from netdyn.sweep.store import grid_key
    >>> grid_key([{"lr": 0.1}, {"lr": 1.0}]) != grid_key([{"lr": 1.0}, {"lr": 0.1}])  # the order counts
    True
    """
    return point_key({"points": list(specs)})


def result_paths(folder: str | os.PathLike, key: str, *, stem: str = "result", figure: str = "sweep") -> tuple[str, str]:
    """Where a sweep of grid ``key`` writes its result and figure in ``folder``.

    ``<stem>.nc`` and ``<figure>.png`` when the folder has no result yet or its
    ``<stem>.nc`` holds the same grid (attribute ``grid_key``); otherwise the grid's
    own ``<stem>-<key[:8]>.nc`` and ``<figure>-<key[:8]>.png``, so a sweep of other
    settings never overwrites the result of another grid.

    Examples
    --------
    >>> import os, tempfile
    >>> from netdyn.sweep.store import result_paths
    >>> nc, png = result_paths(tempfile.mkdtemp(), "0123abcd")
    >>> os.path.basename(nc), os.path.basename(png)
    ('result.nc', 'sweep.png')
    """
    folder = os.fspath(folder)
    main = os.path.join(folder, stem + ".nc")
    if os.path.exists(main) and _attr(main, "grid_key") != key:
        return os.path.join(folder, f"{stem}-{key[:8]}.nc"), os.path.join(folder, f"{figure}-{key[:8]}.png")
    return main, os.path.join(folder, figure + ".png")


def _attr(path: str, name: str) -> Any:
    """A global attribute of a netCDF file, None when absent or unreadable."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return ds.attrs.get(name)
    except (OSError, ValueError, RuntimeError):
        return None


class Claims:
    """Claims of the points one process computes in a store folder.

    Use as a context manager: on exit (normal, error or ``KeyboardInterrupt``) every
    claim still held is released.  While open, a daemon thread refreshes the held
    claims' modification times every ``CLAIM_REFRESH_S`` seconds.

    Parameters
    ----------
    root : str or PathLike
        the store folder (created if missing).

    Examples
    --------
    >>> import tempfile
    >>> from netdyn.sweep.store import Claims
    >>> with Claims(tempfile.mkdtemp()) as claims:
    ...     claims.acquire("abc"), claims.acquire("abc")  # held by this process: not twice
    (True, False)
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        self.held: set[str] = set()
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key + _CLAIM)

    def acquire(self, key: str) -> bool:
        """Claim point ``key``: True when this process may compute it (a stale claim
        of another owner is taken over), False while a live owner holds it."""
        for _ in range(2):
            try:
                fd = os.open(self._path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(key):
                    return False
                self._remove(key)  # then try again, once
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**self.owner, "time": time.time()}, f)
            with self._lock:
                self.held.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        """Give up the claim of ``key`` (after its point file is written, or on error)."""
        with self._lock:
            if key not in self.held:
                return
            self.held.discard(key)
        self._remove(key)

    def _stale(self, key: str) -> bool:
        path = self._path(key)
        try:
            age = time.time() - os.stat(path).st_mtime
            with open(path) as f:
                owner = json.load(f)
        except FileNotFoundError:
            return True  # released meanwhile: free to take
        except (OSError, ValueError):  # unreadable: a claimant killed between create and write
            return age > CLAIM_REFRESH_S
        if age > CLAIM_STALE_S:
            return True
        if owner.get("host") == self.owner["host"]:
            return not _alive(int(owner.get("pid", -1)))
        return False

    def _remove(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass

    def _refresh(self) -> None:
        while not self._stop.wait(CLAIM_REFRESH_S):
            with self._lock:
                held = list(self.held)
            for key in held:
                try:
                    os.utime(self._path(key))
                except OSError:
                    pass

    def __enter__(self) -> "Claims":
        os.makedirs(self.root, exist_ok=True)
        self._thread = threading.Thread(target=self._refresh, name="netdyn-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for key in list(self.held):
            self.release(key)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {value!r}")
