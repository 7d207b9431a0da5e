"""Surrogate series for hypothesis tests: random shuffle, Fourier (FT) and IAAFT.

A surrogate is a series drawn from a null hypothesis that shares chosen
properties with the data and nothing else (Theiler et al. 1992):

========  ===========================================  ============================================
kind      null hypothesis                              preserved
========  ===========================================  ============================================
shuffle   i.i.d. noise                                 the values (amplitude distribution), exactly
ft        linear Gaussian process                      the periodogram ``|X_k|^2``, to float precision
iaaft     linear Gaussian process, observed through    the values exactly; the periodogram up to the
          a static monotone function                   small residual of the iteration (``spectral_error``)
========  ===========================================  ============================================

FT (phase randomisation): ``X_k -> |X_k| e^{i phi_k}`` with ``phi_k`` uniform on
``[0, 2 pi)`` for ``0 < k < N/2``; the mean (``k = 0``) and, for even ``N``, the
Nyquist term keep their values, so the result is real.  IAAFT (Schreiber &
Schmitz 1996): start from a shuffle, then alternate (a) impose the data's
Fourier amplitudes keeping the current phases and (b) give the series the
data's values in the current rank order, until the rank order stops changing
(a fixed point) or ``max_iter``; the returned series is the one after (b), so
its values are exactly the data's.

All ``n`` surrogates are generated at once as an ``(n, N)`` array with numpy's
batched FFT; randomness only through the ``numpy.random.Generator`` made from
``seed``, so equal seeds give equal surrogates.

References
----------
J. Theiler, S. Eubank, A. Longtin, B. Galdrikian, J. D. Farmer, "Testing for
nonlinearity in time series: the method of surrogate data", Physica D 58, 77
(1992).
T. Schreiber, A. Schmitz, "Improved surrogate data for nonlinearity tests",
Phys. Rev. Lett. 77, 635 (1996); "Surrogate time series", Physica D 142, 346
(2000).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from netdyn._core.validation import check_choice, check_int
from netdyn.series.observables import observable_series

__all__ = ["KINDS", "shuffle_surrogates", "ft_surrogates", "iaaft_surrogates", "surrogates", "spectral_error"]

KINDS = ("shuffle", "ft", "iaaft")


def _checked(x: Any, n: int, caller: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 4:
        raise ValueError(f"{caller}: expected a series of shape (N,) with N >= 4, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{caller}: expected finite values, got NaN/inf")
    check_int(n, "n", caller, minimum=1)
    return arr


def shuffle_surrogates(x: np.ndarray, *, n: int = 99, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n`` random permutations of the series ``x`` (N,): array (n, N).

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        Finite series, N >= 4.
    n : int, default 99
        Number of surrogates.
    seed : int or numpy.random.Generator, default 0
        Random source.

    Returns
    -------
    numpy.ndarray, shape (n, N)

    Raises
    ------
    ValueError
        For a non-finite or too short series, or ``n < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.surrogates import shuffle_surrogates
    >>> sur = shuffle_surrogates(np.arange(5.0), n=2)
    >>> sur.shape, np.sort(sur, axis=1)[0].tolist()
    ((2, 5), [0.0, 1.0, 2.0, 3.0, 4.0])
    """
    arr = _checked(x, n, "shuffle_surrogates")
    n = int(n)
    rng = np.random.default_rng(seed)
    return rng.permuted(np.broadcast_to(arr, (n, arr.size)), axis=1)


def _random_phases(spec: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` copies of the rfft ``spec`` (of a series of length ``size``), phases shifted uniformly at random.

    The DC term and, for even ``size``, the Nyquist term are kept (they must be
    real); every modulus is unchanged.  Returns (n, len(spec)).
    """
    phases = np.exp(2j * np.pi * rng.random((n, spec.size)))
    phases[:, 0] = 1.0
    if size % 2 == 0:
        phases[:, -1] = 1.0
    return spec * phases


def ft_surrogates(x: np.ndarray, *, n: int = 99, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n`` phase-randomised (FT) surrogates of ``x`` (N,): array (n, N), same periodogram.

    Parameters
    ----------
    x, n, seed
        As :func:`shuffle_surrogates`.

    Returns
    -------
    numpy.ndarray, shape (n, N)

    Raises
    ------
    ValueError
        As :func:`shuffle_surrogates`.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.surrogates import ft_surrogates, spectral_error
    >>> x = np.random.default_rng(0).standard_normal(64)
    >>> bool(spectral_error(x, ft_surrogates(x, n=3)).max() < 1e-12)
    True
    """
    arr = _checked(x, n, "ft_surrogates")
    n = int(n)
    rng = np.random.default_rng(seed)
    return np.fft.irfft(_random_phases(np.fft.rfft(arr), n, arr.size, rng), arr.size, axis=1)


def iaaft_surrogates(
    x: np.ndarray, *, n: int = 99, seed: int | np.random.Generator = 0, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` IAAFT surrogates of ``x`` (N,): (array (n, N), iterations used per surrogate (n,)).

    Each surrogate is iterated until its rank order is a fixed point of
    "impose the spectrum, then the values" (exactly: the next step would
    return the same series) or ``max_iter`` rounds; the number of rounds is
    returned so a caller can see which did not converge (``== max_iter``).

    Parameters
    ----------
    x, n, seed
        As :func:`shuffle_surrogates`.
    max_iter : int, default 1000
        Iteration cap.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Surrogates (n, N) and iterations used (n,).

    Raises
    ------
    ValueError
        As :func:`shuffle_surrogates`, or for ``max_iter < 1``.

    References
    ----------
    T. Schreiber, A. Schmitz, "Improved surrogate data for nonlinearity tests",
    Phys. Rev. Lett. 77, 635 (1996).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.surrogates import iaaft_surrogates
    >>> x = np.random.default_rng(0).standard_normal(64) ** 3
    >>> sur, used = iaaft_surrogates(x, n=2)
    >>> bool(np.array_equal(np.sort(sur[0]), np.sort(x)))
    True
    """
    caller = "iaaft_surrogates"
    arr = _checked(x, n, caller)
    n = int(n)
    max_iter = check_int(max_iter, "max_iter", caller, minimum=1)
    rng = np.random.default_rng(seed)
    amplitude = np.abs(np.fft.rfft(arr))
    values = np.sort(arr)
    s = rng.permuted(np.broadcast_to(arr, (n, arr.size)), axis=1)
    order = np.argsort(s, axis=1, kind="stable")  # s[i, order[i]] is sorted
    used = np.full(n, max_iter, dtype=np.int64)
    active = np.arange(n)
    for it in range(1, max_iter + 1):
        spec = np.fft.rfft(s[active], axis=1)
        shaped = np.fft.irfft(amplitude * np.exp(1j * np.angle(spec)), arr.size, axis=1)
        new_order = np.argsort(shaped, axis=1, kind="stable")
        rows = np.empty_like(shaped)
        np.put_along_axis(rows, new_order, np.broadcast_to(values, shaped.shape), axis=1)
        s[active] = rows
        done = np.all(new_order == order[active], axis=1)
        order[active] = new_order
        used[active[done]] = it
        active = active[~done]
        if active.size == 0:
            break
    return s, used


def spectral_error(x: np.ndarray, surrogate: np.ndarray) -> np.ndarray:
    """Relative periodogram mismatch ``|| |S_k| - |X_k| ||_2 / || X_k ||_2`` (k > 0) per surrogate row.

    Parameters
    ----------
    x : numpy.ndarray, shape (N,)
        The original series.
    surrogate : numpy.ndarray, shape (n, N) or (N,)
        Surrogates.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Dimensionless; 0 for an FT surrogate up to rounding (~1e-15).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.surrogates import spectral_error
    >>> x = np.sin(np.arange(32.0))
    >>> spectral_error(x, x[::-1]).round(12)
    array([0.])
    """
    ref = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64)))[1:]
    sur = np.abs(np.fft.rfft(np.atleast_2d(surrogate), axis=1))[:, 1:]
    return np.linalg.norm(sur - ref, axis=1) / np.linalg.norm(ref)


def surrogates(
    x: Any,
    *,
    kind: str = "iaaft",
    n: int = 99,
    seed: int | np.random.Generator = 0,
    observable: str | None = None,
    max_iter: int = 1000,
) -> xr.Dataset:
    """``n`` surrogates of a series or of a trajectory observable.

    Parameters
    ----------
    x : numpy.ndarray (N,), xarray.DataArray or trajectory xarray.Dataset
        The series (:func:`netdyn.series.observables.observable_series`; for a Dataset
        ``observable`` picks it, default ``"loss"``).
    kind : {"shuffle", "ft", "iaaft"}, default "iaaft"
        The null hypothesis (module docstring).
    n : int, default 99
        Number of surrogates (99 gives a one-sided test at 1 %).
    seed : int or numpy.random.Generator, default 0
        Random source.
    observable : str, optional
        As :func:`netdyn.series.observables.observable_series`.
    max_iter : int, default 1000
        IAAFT only: iteration cap.

    Returns
    -------
    xarray.Dataset
        ``data`` over ``time`` (N,), ``surrogates`` over ``(surrogate, time)``,
        ``spectral_error`` over ``surrogate`` (:func:`spectral_error`); for
        IAAFT also ``iterations``.  attrs: ``kind``, ``seed`` (when an int),
        ``max_iter``, ``n_unconverged``.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a multivariate observable, or as :func:`shuffle_surrogates`.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> out = nd.surrogates(np.sin(0.3 * np.arange(100)), kind="ft", n=5)
    >>> out["surrogates"].shape
    (5, 100)
    """
    caller = "surrogates"
    kind = check_choice(kind, "kind", caller, KINDS)
    n = check_int(n, "n", caller, minimum=1)
    data = observable_series(x, observable=observable)
    if data.ndim != 1:
        raise ValueError(f"{caller}: expected a scalar observable, got shape {data.shape}")
    out: dict[str, Any] = {"data": ("time", data)}
    attrs: dict[str, Any] = {"kind": kind, "n": n}
    if isinstance(seed, (int, np.integer)):
        attrs["seed"] = int(seed)
    if kind == "shuffle":
        sur = shuffle_surrogates(data, n=n, seed=seed)
    elif kind == "ft":
        sur = ft_surrogates(data, n=n, seed=seed)
    else:
        sur, used = iaaft_surrogates(data, n=n, seed=seed, max_iter=max_iter)
        out["iterations"] = ("surrogate", used)
        attrs.update(max_iter=max_iter, n_unconverged=int(np.sum(used == max_iter)))
    out["surrogates"] = (("surrogate", "time"), sur)
    out["spectral_error"] = ("surrogate", spectral_error(data, sur))
    return xr.Dataset(out, coords={"surrogate": np.arange(n), "time": np.arange(data.size)}, attrs=attrs)
