"""The twin's measure-and-rescale step as one compiled pass over CPU tensors.

Every step of a twin estimator (Benettin) measures the distance between a
reference state ``x`` and its twin ``y``, pulls the twin back to distance ``d0``
along ``y - x`` and measures the distance it now has (the next denominator).
Written with torch operations that is a dozen small calls per step (copies,
subtractions, norms, a rescale), each paying the dispatcher; inside a user's
training loop (:class:`netdyn.LyapunovMonitor`) their cost, and the caches they
evict from the user's next step, made most of the monitor's overhead beyond the
second forward/backward.  :class:`TwinRescale` does the same arithmetic in one
numba call over the tensors' memory (no copy), for CPU tensors of one float
dtype (float32 or float64), contiguous; anything else keeps the torch path.

Arithmetic: differences in the tensors' dtype, sums of squares in float64
(at least as accurate as ``torch.linalg.vector_norm``; summed in vector lanes, so
within a few ulps of a sequential sum), the rescale ``y <- x + (x - y) (-d0 / g)``
in float64 then rounded to the dtype.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = ["TwinRescale"]


# Sums of squares: reassociation lets LLVM vectorise the sum (several partial sums
# instead of one chain of dependent additions); the rounding stays that of float64
# sums of float64 squares, within a few ulps of the sequential sum.  Conversions are
# np.float64(...): in numba, float() of a float32 stays a float32.
_REDUCTION = {"reassoc", "nsz"}


@numba.njit(cache=True, fastmath=_REDUCTION)
def _squared_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sum (x - y)^2`` in float64 (differences in the arrays' dtype)."""
    total = 0.0
    for j in range(x.size):
        d = np.float64(x[j] - y[j])
        total += d * d
    return total


@numba.njit(cache=True, fastmath=_REDUCTION)
def _squared_norm(x: np.ndarray) -> float:
    """``sum x^2`` in float64."""
    total = 0.0
    for j in range(x.size):
        total += np.float64(x[j]) * np.float64(x[j])
    return total


@numba.njit(cache=True)
def _pull_back(x: np.ndarray, y: np.ndarray, factor: float) -> None:
    """``y <- x + (x - y) factor``, computed in float64 and rounded to the arrays' dtype."""
    for j in range(x.size):
        y[j] = np.float64(x[j]) + np.float64(x[j] - y[j]) * factor


@numba.njit(cache=True)
def _measure_and_rescale(refs, twins, n_param: int, n_measured: int, d0: float) -> tuple[float, float, float]:
    """``(|x - y|, |y' - x|, |theta|)`` over the first ``n_measured`` arrays (``|theta|``:
    the first ``n_param``) with ``y' = x + (x - y) (-d0 / |x - y|)`` written into ``twins``
    (``-d0`` when the distance is 0 or not finite)."""
    theta2 = 0.0
    g2 = 0.0
    for i in range(n_measured):
        g2 += _squared_distance(refs[i], twins[i])
        if i < n_param:
            theta2 += _squared_norm(refs[i])
    g = math.sqrt(g2)
    factor = -(d0 / g) if g > 0.0 and math.isfinite(g) else -d0
    after2 = 0.0
    for i in range(len(refs)):
        _pull_back(refs[i], twins[i], factor)
        if i < n_measured:
            after2 += _squared_distance(twins[i], refs[i])
    return g, math.sqrt(after2), math.sqrt(theta2)


class TwinRescale:
    """Measure-and-rescale of a twin over lists of CPU tensors, compiled (module docstring).

    Parameters
    ----------
    n_param : int
        How many leading tensors of the state are parameters (``|theta|`` is their norm).
    n_measured : int or None
        How many leading tensors the distance is measured on (None: all); at least ``n_param``.
    d0 : float
        Twin distance after the rescale.

    Examples
    --------
    >>> import math, torch
    >>> from netdyn._core.twin_rescale import TwinRescale
    >>> x, y = [torch.tensor([3.0, 0.0])], [torch.tensor([3.0, 2.0])]
    >>> rescale = TwinRescale(n_param=1, n_measured=None, d0=0.5)
    >>> rescale(x, y), y[0].tolist()  # |x - y| = 2, pulled back to 0.5; |theta| = 3
    ((2.0, 0.5, 3.0), [3.0, 0.5])
    >>> rescale([torch.tensor([1.0], dtype=torch.bfloat16)], [torch.tensor([1.0], dtype=torch.bfloat16)]) is None
    True
    """

    def __init__(self, n_param: int, n_measured: int | None, d0: float):
        if n_measured is not None and n_measured < n_param:
            raise ValueError(f"TwinRescale: expected n_measured >= n_param={n_param}, got {n_measured}")
        self.n_param, self.n_measured, self.d0 = n_param, n_measured, float(d0)
        self._tensors: tuple[Tensor, ...] = ()  # held, so no other tensor can take their ids or memory
        self._key: tuple[int, ...] = ()
        self._arrays: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]] | None = None

    @staticmethod
    def applies(refs: list[Tensor], twins: list[Tensor]) -> bool:
        """Whether the compiled pass can take these tensors: all on the CPU, contiguous, of
        one dtype float32 or float64, pairwise of one size."""
        first = refs[0].dtype
        return first in (torch.float32, torch.float64) and all(
            t.device.type == "cpu" and t.dtype == first and t.is_contiguous() for t in (*refs, *twins)
        ) and all(r.numel() == t.numel() for r, t in zip(refs, twins))

    def __call__(self, refs: list[Tensor], twins: list[Tensor]) -> tuple[float, float, float] | None:
        """``(|x - y|, |y' - x|, |theta|)`` as floats with the twins rescaled in place, or None
        (nothing done) for tensors the compiled pass cannot take (:meth:`applies`)."""
        tensors = (*refs, *twins)
        key = (*map(id, tensors), *map(Tensor.data_ptr, tensors))
        if key != self._key:  # new tensors (optimiser buffers created, a state re-armed): new views
            self._tensors, self._key = tensors, key
            self._arrays = (
                tuple(tuple(t.detach().view(-1).numpy() for t in ts) for ts in (refs, twins))
                if self.applies(refs, twins) else None
            )
        if self._arrays is None:
            return None
        n_measured = len(refs) if self.n_measured is None else self.n_measured
        return _measure_and_rescale(self._arrays[0], self._arrays[1], self.n_param, n_measured, self.d0)
