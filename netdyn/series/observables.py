"""The series an estimator analyses: observables of a recorded trajectory, below every estimator.

Every series analysis in :mod:`netdyn.series` (Rosenstein, nolds, RQA,
recurrence networks, the 0-1 test, surrogates) takes a series, a ``DataArray``
or a trajectory ``Dataset`` plus the name of an *observable*, and reads it here.

Observables (``observable=``)
-----------------------------
For a trajectory ``Dataset`` (see the data model in the design notes):

``"loss"`` (default), ``"grad_norm"`` or any other 1-D data variable
    that variable over ``step``;
``"param:<i>"``
    one recorded parameter, ``state[:, i]`` (``i`` a position along ``param``);
``"norm"``
    ``||state_t||_2``;
``"update_norm"``
    ``||state_{t+1} - state_t||_2`` (one value fewer);
``"projection"`` / ``"projection:pca"``
    the state projected on its first principal component (sign fixed so the
    largest loading is positive);
``"projection:random"``
    the state projected on a random unit vector drawn from ``seed``;
``"state"``
    the whole ``(step, param)`` state (multivariate; only :func:`netdyn.rosenstein`
    and the recurrence functions take it).

A ``DataArray`` or numpy array of shape ``(N,)`` is used as it is; one of shape
``(N, d)`` is a state, to which the state observables above apply (default
``"state"``).  A series that becomes non-finite (a diverged run) is cut to its
finite leading part with a warning.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from netdyn.series.state_observables import state_observable

__all__ = [
    "STATE_OBSERVABLES",
    "MIN_SERIES_POINTS",
    "observable_series",
    "array_observable",
    "finite_leading",
    "checked_series",
    "scalar_series",
    "observable_label",
]

#: observables computed from the recorded ``state`` (besides ``"param:<i>"``)
STATE_OBSERVABLES = ("norm", "update_norm", "projection", "projection:pca", "projection:random", "state")
#: fewest points an exponent estimator accepts
MIN_SERIES_POINTS = 10


def finite_leading(arr: np.ndarray, *, caller: str, what: str) -> np.ndarray:
    """``arr`` (N,) or (N, d) cut before its first non-finite row, with a ``RuntimeWarning`` when cut.

    Parameters
    ----------
    arr : numpy.ndarray, shape (N,) or (N, d)
        The series (one row per step).
    caller, what : str
        The public function and a description of ``arr``, for the messages.

    Returns
    -------
    numpy.ndarray
        ``arr[:first_bad]`` (``arr`` itself when all rows are finite).

    Raises
    ------
    ValueError
        When the very first row is non-finite.

    Examples
    --------
    >>> import numpy as np, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     finite_leading(np.array([1.0, 2.0, np.inf, 3.0]), caller="demo", what="the loss")
    array([1., 2.])
    """
    finite = np.isfinite(arr) if arr.ndim == 1 else np.all(np.isfinite(arr), axis=1)
    if finite.all():
        return arr
    first_bad = int(np.argmin(finite))
    if first_bad == 0:
        raise ValueError(f"{caller}: expected finite values in {what}, got a non-finite value at index 0")
    warnings.warn(
        f"{caller}: {what} becomes non-finite at index {first_bad} (diverged run); "
        f"analysing the finite leading part of length {first_bad}",
        RuntimeWarning,
        stacklevel=3,
    )
    return arr[:first_bad]


def array_observable(state: np.ndarray, *, observable: str, seed: int = 0, caller: str = "array_observable") -> np.ndarray:
    """A state observable of an in-memory state: the state itself (``"state"``) or a scalar series.

    Parameters
    ----------
    state : numpy.ndarray, shape (N, d)
        The state, one row per step.
    observable : str
        ``"state"`` or one of the scalar observables of
        :func:`netdyn.series.state_observables.state_observable` (one implementation).
    seed : int, default 0
        Seed of the random projection / power-iteration start.
    caller : str
        Name used in errors and warnings.

    Returns
    -------
    numpy.ndarray
        ``state`` for ``"state"``, else the series, shape (N,) (``N - 1`` for ``"update_norm"``).

    Examples
    --------
    >>> import numpy as np
    >>> array_observable(np.array([[3.0, 4.0], [0.0, 1.0]]), observable="norm")
    array([5., 1.])
    """
    if observable == "state":
        return state
    return state_observable(xr.DataArray(state, dims=("step", "param")), observable=observable, seed=seed, caller=caller)


def observable_series(x: Any, *, observable: str | None = None, seed: int = 0) -> np.ndarray:
    """The series an estimator analyses, as float64, cut before any non-finite value.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        The data.
    observable : str, optional
        One of the names in the module docstring.  Default: ``"loss"`` for a
        ``Dataset``; the series itself for 1-D input; ``"state"`` for 2-D input.
    seed : int, default 0
        Seed of the random projection / the power-iteration start vector.

    Returns
    -------
    numpy.ndarray
        Shape (N',) or, for ``"state"`` only, (N', d); ``N' <= N`` (cut at the
        first non-finite row, with a warning).

    Raises
    ------
    ValueError
        For an unknown observable, a state observable without a ``state``
        variable, or an array that is not 1-D or 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> nd.observable_series(np.array([[1.0, 0.0], [0.0, 2.0]]), observable="param:1")
    array([0., 2.])
    """
    caller = "observable_series"
    if isinstance(x, xr.Dataset):
        name = "loss" if observable is None else observable
        if name.startswith("param:") or name in STATE_OBSERVABLES:
            if "state" not in x:
                raise ValueError(f"{caller}: observable {name!r} needs a 'state' variable, got {list(x.data_vars)}")
            if name != "state":  # scalar observables stream over the steps: memory ~ one block, not the file
                return state_observable(x["state"], observable=name, seed=seed, caller=caller)
            state = x["state"].transpose("step", ...).values.astype(np.float64)
            return observable_series(state, observable=name, seed=seed)
        if name not in x.data_vars or x[name].ndim != 1:
            known = [v for v in x.data_vars if x[v].ndim == 1] + ["param:<i>", *STATE_OBSERVABLES]
            raise ValueError(f"{caller}: expected an observable in {known}, got {name!r}")
        return finite_leading(x[name].values.astype(np.float64), caller=caller, what=f"variable {name!r}")
    arr = np.asarray(x.values if isinstance(x, xr.DataArray) else x, dtype=np.float64)
    if arr.ndim == 1:
        if observable not in (None, "series"):
            raise ValueError(f"{caller}: a 1-D series has no observable {observable!r}; expected None")
        return finite_leading(arr, caller=caller, what="the series")
    if arr.ndim != 2:
        raise ValueError(f"{caller}: expected an array of shape (N,) or (N, d), got shape {arr.shape}")
    name = "state" if observable is None else observable
    if name.startswith("param:"):
        try:
            index = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"{caller}: expected 'param:<integer>', got {name!r}") from None
        if not -arr.shape[1] <= index < arr.shape[1]:
            raise ValueError(f"{caller}: expected a parameter index in [0, {arr.shape[1]}), got {index}")
        return finite_leading(arr[:, index], caller=caller, what=f"parameter {index}")
    if name not in STATE_OBSERVABLES:
        raise ValueError(f"{caller}: expected an observable in {['param:<i>', *STATE_OBSERVABLES]}, got {name!r}")
    state = finite_leading(arr, caller=caller, what="the state")
    return array_observable(state, observable=name, seed=seed, caller=caller)


def checked_series(x: np.ndarray, *, caller: str) -> np.ndarray:
    """``x`` when it has at least :data:`MIN_SERIES_POINTS` rows and is not constant.

    Parameters
    ----------
    x : numpy.ndarray, shape (N,) or (N, d)
    caller : str
        The public function, for the message.

    Returns
    -------
    numpy.ndarray
        ``x`` itself.

    Raises
    ------
    ValueError
        For fewer than 10 points or a constant series.

    Examples
    --------
    >>> import numpy as np
    >>> checked_series(np.ones(20), caller="demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: expected a non-constant series, got a constant one
    """
    if x.shape[0] < MIN_SERIES_POINTS:
        raise ValueError(f"{caller}: expected a series of at least {MIN_SERIES_POINTS} points, got {x.shape[0]}")
    if np.all(np.ptp(x, axis=0) == 0):
        raise ValueError(f"{caller}: expected a non-constant series, got a constant one")
    return x


def scalar_series(x: Any, *, observable: str | None, seed: int, caller: str) -> np.ndarray:
    """:func:`observable_series`, checked (:func:`checked_series`) and required to be scalar (N,).

    Parameters
    ----------
    x, observable, seed
        As :func:`observable_series`.
    caller : str
        The public function, for the messages.

    Returns
    -------
    numpy.ndarray, shape (N,)

    Raises
    ------
    ValueError
        For a multivariate observable, or as :func:`checked_series`.

    Examples
    --------
    >>> import numpy as np
    >>> scalar_series(np.arange(12.0).reshape(6, 2), observable=None, seed=0, caller="demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: expected a series of at least 10 points, got 6
    """
    series = checked_series(observable_series(x, observable=observable, seed=seed), caller=caller)
    if series.ndim != 1:
        raise ValueError(
            f"{caller}: nolds needs a scalar series; got a state of shape {series.shape}; "
            "pass observable='norm', 'param:<i>', 'projection', ... or use rosenstein()"
        )
    return series


def observable_label(x: Any, *, observable: str | None) -> str:
    """The name of the observable analysed, for results: ``observable`` or the default for ``x``.

    Parameters
    ----------
    x : numpy.ndarray, xarray.DataArray or xarray.Dataset
        The data as the user passed it.
    observable : str or None
        The user's observable.

    Returns
    -------
    str
        ``observable``, else ``"loss"`` (Dataset), ``"series"`` (1-D) or ``"state"`` (2-D).

    Examples
    --------
    >>> import numpy as np
    >>> observable_label(np.zeros(5), observable=None), observable_label(np.zeros((5, 2)), observable=None)
    ('series', 'state')
    """
    if observable is not None:
        return observable
    if isinstance(x, xr.Dataset):
        return "loss"
    return "series" if np.ndim(x) == 1 else "state"
