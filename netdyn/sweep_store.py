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
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any, Mapping

import numpy as np
import xarray as xr

from ._version import __version__

__all__ = ["point_key", "point_path", "save_point", "load_point", "stored_keys"]

_SUFFIX = ".nc"


def point_key(spec: Mapping[str, Any]) -> str:
    """Stable 20-hex-digit name of a point: SHA-256 of its canonical JSON.

    ``spec`` must hold only JSON types (dict, list, str, int, float, bool, None);
    numpy scalars are converted.  Key order does not matter.
    """
    try:
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=_plain, allow_nan=True)
    except TypeError as err:
        raise ValueError(f"point_key: expected a JSON-serialisable point specification, got {spec!r}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def point_path(root: str | os.PathLike, spec: Mapping[str, Any]) -> str:
    """File of ``spec``'s point in the store folder ``root``."""
    return os.path.join(os.fspath(root), point_key(spec) + _SUFFIX)


def save_point(root: str | os.PathLike, spec: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """Write one point atomically; returns its path.

    ``result`` maps names to scalars (numbers, bools, strings) or 1-D arrays over
    ``step``; ``spec`` is kept as the JSON attribute ``spec``.
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
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_point(root: str | os.PathLike, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored result of ``spec`` as a dict (scalars as Python values, curves as
    numpy arrays), or ``None`` when the store has no such point."""
    path = point_path(root, spec)
    if not os.path.exists(path):
        return None
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    return {name: (var.values if var.ndim else var.values.item()) for name, var in ds.data_vars.items()}


def stored_keys(root: str | os.PathLike) -> set[str]:
    """Keys of the points stored under ``root`` (empty for a missing folder)."""
    if not os.path.isdir(root):
        return set()
    return {name[: -len(_SUFFIX)] for name in os.listdir(root) if name.endswith(_SUFFIX)}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {value!r}")
