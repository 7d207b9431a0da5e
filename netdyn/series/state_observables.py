"""Scalar observables of a recorded state, computed chunk by chunk over the step dimension.

A trajectory file can hold far more state than memory (10 000 steps of a 60 000-parameter
network are 2.4 GB in float32).  The scalar observables of the state — its norm, the norm
of its updates, a single parameter, a projection — need only one row block at a time, so
:func:`state_observable` reads ``state`` in blocks of ``chunk`` steps (``xarray`` reads a
file-backed variable lazily) and keeps only the result: peak memory a few
blocks of 4 MiB whatever the file size.  The principal-axis projection makes
one pass for the mean and one per power iteration.

Definitions (``x_t`` the recorded state row, float64):

* ``norm``: ``||x_t||``;
* ``update_norm``: ``||x_t - x_{t-1}||`` (``N - 1`` values);
* ``param:<i>``: ``x_t[i]``;
* ``projection:random``: ``(x_t - mean) . u`` for a unit vector ``u`` drawn from ``seed``;
* ``projection`` / ``projection:pca``: the same with ``u`` the leading principal axis of
  the centred states (power iteration from a ``seed``-drawn start, sign fixed so that the
  largest loading is positive).

Rows from the first non-finite one on are cut (a diverged run), with a warning.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterator

import numpy as np
import xarray as xr

from netdyn._core.validation import check_int

__all__ = ["state_observable", "STREAMED_OBSERVABLES"]

STREAMED_OBSERVABLES = ("norm", "update_norm", "projection", "projection:pca", "projection:random")
BLOCK_BYTES = 4 * 2**20  # default block: 4 MiB of float64 rows


def state_observable(
    state: xr.DataArray, *, observable: str, seed: int = 0, chunk: int | None = None, caller: str = "state_observable"
) -> np.ndarray:
    """One scalar per recorded step from ``state (step, param)``, in bounded memory.

    Parameters
    ----------
    state : xarray.DataArray
        the trajectory's ``state`` DataArray (file-backed or in memory), dims ``(step, param)``.
    observable : str
        ``"norm"``, ``"update_norm"``, ``"param:<i>"``, ``"projection:random"``, ``"projection"``
        or ``"projection:pca"`` (module docstring).
    seed : int, default 0
        seed of the random direction / the power-iteration start.
    chunk : int, optional
        steps per block read (memory ~ a few ``chunk * n_params * 8`` bytes); default: the
        rows of 4 MiB (:data:`BLOCK_BYTES`).
    caller : str
        name used in errors and warnings.

    Returns
    -------
    numpy.ndarray
        float64 ``(N',)``: ``N' = N`` (``N - 1`` for ``update_norm``), fewer when the
        state becomes non-finite.

    Raises
    ------
    ValueError
        For an unknown observable, a parameter index out of range or a bad ``chunk``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from netdyn.series.state_observables import state_observable
    >>> state = xr.DataArray(np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]]), dims=("step", "param"))
    >>> state_observable(state, observable="update_norm", chunk=2).round(3)
    array([4.243, 1.   ])
    """
    name = observable
    state = state.transpose("step", ...)
    n_steps, n_params = state.shape
    if chunk is None:
        chunk = max(1, BLOCK_BYTES // (8 * max(n_params, 1)))
    chunk = check_int(chunk, "chunk", caller, minimum=1)
    if name.startswith("param:"):
        try:
            index = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"{caller}: expected 'param:<integer>', got {name!r}") from None
        if not -n_params <= index < n_params:
            raise ValueError(f"{caller}: expected a parameter index in [0, {n_params}), got {index}")
        return np.concatenate([block[:, index] for block in _finite_blocks(state, chunk, caller)])
    if name == "norm":
        return np.concatenate([np.linalg.norm(block, axis=1) for block in _finite_blocks(state, chunk, caller)])
    if name == "update_norm":
        out, previous = [], None
        for block in _finite_blocks(state, chunk, caller):
            if previous is not None:  # the step across the block boundary
                out.append(np.linalg.norm(block[:1] - previous, axis=1))
            out.append(np.linalg.norm(np.diff(block, axis=0), axis=1))
            previous = block[-1:]
        if sum(len(part) for part in out) < 1:
            raise ValueError(f"{caller}: 'update_norm' needs at least 2 finite steps, got 1")
        return np.concatenate(out)
    if name not in STREAMED_OBSERVABLES:
        raise ValueError(f"{caller}: expected an observable in {['param:<i>', *STREAMED_OBSERVABLES]}, got {name!r}")
    total, n = np.zeros(n_params), 0
    for block in _finite_blocks(state, chunk, caller):  # the first pass also finds the finite part
        total += block.sum(axis=0)
        n += block.shape[0]
    mean = total / n
    if name == "projection:random":
        direction = np.random.default_rng(seed).standard_normal(n_params)
        axis = direction / np.linalg.norm(direction)
    else:
        axis = _principal_axis(lambda: _blocks(state, n, chunk), mean, seed)
    return np.concatenate([(block - mean) @ axis for block in _blocks(state, n, chunk)])


def _blocks(state: xr.DataArray, n: int, chunk: int) -> Iterator[np.ndarray]:
    """Row blocks ``state[i:i+chunk]`` of the first ``n`` rows as float64 arrays."""
    for start in range(0, n, chunk):
        yield np.asarray(state[start : min(start + chunk, n)].values, dtype=np.float64)


def _finite_blocks(state: xr.DataArray, chunk: int, caller: str) -> Iterator[np.ndarray]:
    """Row blocks as float64, ending before the first non-finite row (with a warning;
    ``ValueError`` when it is row 0), so one pass both reads and checks the state."""
    n_steps = state.shape[0]
    for start in range(0, n_steps, chunk):
        block = np.asarray(state[start : min(start + chunk, n_steps)].values, dtype=np.float64)
        bad = ~np.isfinite(block).all(axis=1)
        if not bad.any():
            yield block
            continue
        first = start + int(np.argmax(bad))
        if first == 0:
            raise ValueError(f"{caller}: expected finite values in the state, got a non-finite value at index 0")
        warnings.warn(
            f"{caller}: the state becomes non-finite at index {first} (diverged run); analysing the finite "
            f"leading part of length {first}",
            RuntimeWarning,
            stacklevel=4,
        )
        if first > start:
            yield block[: first - start]
        return


def _principal_axis(blocks: Callable[[], Iterator[np.ndarray]], mean: np.ndarray, seed: int,
                    iters: int = 100) -> np.ndarray:
    """Leading right singular vector of the centred states by power iteration, one pass per iteration."""
    v = np.random.default_rng(seed).standard_normal(mean.shape[0])
    v /= np.linalg.norm(v)
    for _ in range(iters):
        w = np.zeros_like(v)
        for block in blocks():
            centred = block - mean
            w += centred.T @ (centred @ v)
        norm = np.linalg.norm(w)
        if norm == 0:
            break
        w /= norm
        converged = np.abs(w @ v) > 1 - 1e-13
        v = w
        if converged:
            break
    else:
        warnings.warn(
            f"state_observable: the principal axis did not converge in {iters} power iterations (the top variances "
            "are nearly equal, e.g. a rotating state): the 'projection' observable depends on the start; use "
            "'projection:random' or 'norm'",
            RuntimeWarning,
            stacklevel=4,
        )
    return v * np.sign(v[np.argmax(np.abs(v))])
