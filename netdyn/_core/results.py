"""One result protocol: every result object converts losslessly to an ``xarray.Dataset``.

A result class is a frozen dataclass that inherits :class:`DatasetResult`.  Its
fields become, in :meth:`DatasetResult.to_dataset`:

* numbers and booleans: 0-d data variables;
* numpy arrays: data variables over the dimensions named in the field's metadata
  (``field(metadata={"dims": ("k",)})``; default ``<name>_0``, ``<name>_1``, ...);
  a 1-d field whose dimension has its own name is an index coordinate;
* tuples of numbers: 1-d variables over ``<name>_index``;
* strings: attributes; ``None``: listed in the ``none_fields`` attribute.

:meth:`DatasetResult.from_dataset` inverts it, also after a netCDF round trip,
and the ``repr`` shows scalars in full and arrays by shape.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

import numpy as np
import xarray as xr

__all__ = ["DatasetResult"]

R = TypeVar("R", bound="DatasetResult")


class DatasetResult:
    """Mixin for frozen-dataclass results: ``to_dataset``, ``from_dataset`` and a readable ``repr``.

    Examples
    --------
    >>> from dataclasses import dataclass, field
    >>> import numpy as np
    >>> from netdyn._core.results import DatasetResult
    >>> @dataclass(frozen=True, eq=False, repr=False)
    ... class Fit(DatasetResult):
    ...     slope: float
    ...     residuals: np.ndarray = field(metadata={"dims": ("point",)})
    >>> fit = Fit(0.5, np.zeros(3))
    >>> fit
    Fit(slope=0.5, residuals=<array (3,) float64>)
    >>> Fit.from_dataset(fit.to_dataset()).slope
    0.5
    """

    def to_dataset(self) -> xr.Dataset:
        """All fields as an ``xarray.Dataset`` (lossless; see the module docstring).

        Returns
        -------
        xarray.Dataset
            Saveable with ``to_netcdf``; ``attrs["result_type"]`` names the class.
        """
        data: dict[str, Any] = {}
        attrs: dict[str, Any] = {"result_type": type(self).__name__}
        none_fields = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                none_fields.append(f.name)
            elif isinstance(value, str):
                attrs[f.name] = value
            elif isinstance(value, tuple):
                data[f.name] = (f"{f.name}_index", np.asarray(value))
            elif isinstance(value, np.ndarray):
                dims = f.metadata.get("dims") or tuple(f"{f.name}_{i}" for i in range(value.ndim))
                data[f.name] = (dims, value)
            else:
                data[f.name] = ((), value)
        attrs["none_fields"] = " ".join(none_fields)
        ds = xr.Dataset(data, attrs=attrs)
        return ds.assign(self._derived_variables())

    def _derived_variables(self) -> dict[str, Any]:
        """Extra, recomputable variables for plotting (ignored by :meth:`from_dataset`)."""
        return {}

    @classmethod
    def from_dataset(cls: type[R], ds: xr.Dataset) -> R:
        """The result that :meth:`to_dataset` wrote (from memory or a reopened netCDF file).

        Raises
        ------
        ValueError
            When ``ds`` was written by another result type.
        """
        written = ds.attrs.get("result_type")
        if written != cls.__name__:
            raise ValueError(f"{cls.__name__}.from_dataset: expected a Dataset written by {cls.__name__}, got {written!r}")
        hints = typing.get_type_hints(cls)
        none_fields = set(str(ds.attrs.get("none_fields", "")).split())
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in none_fields:
                values[f.name] = None
            elif f.name in ds.attrs:
                values[f.name] = str(ds.attrs[f.name])
            else:
                values[f.name] = _typed(ds[f.name].values, hints[f.name])
        return cls(**values)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                parts.append(f"{f.name}=<array {value.shape} {value.dtype}>")
            elif isinstance(value, (float, np.floating)):
                parts.append(f"{f.name}={float(value):.6g}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}(" + ", ".join(parts) + ")"


def _typed(array: np.ndarray, hint: Any) -> Any:
    """A stored variable back in the Python type its field declares."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(v.item() for v in array)
    if array.ndim:
        return array
    names = {getattr(h, "__name__", str(h)) for h in (typing.get_args(hint) or (hint,))}
    item = array.item()
    if "bool" in names:
        return bool(item)
    if "int" in names and "float" not in names:
        return int(item)
    if "float" in names:
        return float(item)
    return item
