"""Recurrence plots and recurrence quantification analysis (RQA) in O(N) memory.

The recurrence matrix of points ``X_0 .. X_{N-1}`` (a series, a delay
embedding of one, or a state trajectory ``(N, d)``) is

    R_ij = 1  if  ||X_i - X_j|| < eps  and  |i - j| >= theiler,   else 0,

with ``||.||`` the supremum (default, as pyunicorn), Euclidean or Manhattan
norm, and ``eps`` either given (``threshold``) or chosen so that a fixed
fraction of pairs recur (``recurrence_rate``; the pair distance of rank
``int(rate (T - 1))`` among the ``T`` pairs outside the Theiler window, which
for ``theiler=0`` is pyunicorn's rule).

Nothing of size ``N x N`` is ever held: the matrix is produced in blocks of rows
(``block_size`` entries each, default 2^20), and diagonal line lengths are
counted along each block with the open runs carried to the next block, while
vertical line lengths are counted as horizontal runs of the rows (the matrix is
symmetric).  After one dense pass per block all counting is ``O(recurrences)``.  Peak memory is ``O(block_size + N)``; time ``O(N^2 d)``.
With numba (a core dependency) compiled kernels run instead
(:mod:`netdyn.series._rqa_kernels`), in ``O(N)`` memory, with the same results:
``engine="numba"`` visits every pair of the upper triangle (at N = 5000: ~3x
faster than the numpy path with a given threshold, ~17x at a fixed rate; see
``benchmarks/datadriven_cost.py``); ``engine="grid"`` visits only the pairs in
neighbouring cells of a grid of cell side ``~eps`` (time ``O(candidates)``,
a few times the recurrences: the RP_Speed_Test workload, N = 474 275, in
45-56 s on a shared 2-core machine, 49 s of CPU, 71 MiB; see
``benchmarks/rqa_speed_test.py``).  ``engine="auto"``
takes the grid when it pays (:func:`_grid_pays`: at least 2000 points and
candidates at most a quarter of all pairs, counted exactly from the cells
before any distance is computed), the exhaustive kernel otherwise.

RQA measures (Marwan et al. 2007), with ``P(l)`` / ``P_v(v)`` the numbers of
diagonal / vertical lines of length exactly ``l`` / ``v``:

=======  =====================================================================
RR       recurrence rate: recurrent pairs / pairs outside the Theiler window
DET      sum_{l>=l_min} l P(l) / sum_l l P(l)
L        mean diagonal length sum_{l>=l_min} l P(l) / sum_{l>=l_min} P(l)
Lmax     longest diagonal line (over all lengths)
DIV      1 / Lmax
ENTR     -sum_{l>=l_min} p(l) ln p(l),  p(l) = P(l) / sum_{l>=l_min} P(l)
LAM      sum_{v>=v_min} v P_v(v) / sum_v v P_v(v)
TT       trapping time sum_{v>=v_min} v P_v(v) / sum_{v>=v_min} P_v(v)
Vmax     longest vertical line
=======  =====================================================================

Conventions (chosen to coincide with ``pyunicorn.timeseries.RecurrencePlot``
when ``theiler=0``): diagonal lines are counted in both triangles and the main
diagonal (line of identity, LOI) is never a diagonal line; vertical lines run
over whole columns, so with ``theiler=0`` they include the LOI points, and RR
counts the LOI.  ``theiler=w >= 1`` removes the band ``|i - j| < w`` from RR,
diagonal and vertical lines alike (``w = 1``: just the LOI, the recommended
default).  pyunicorn adds ``1e-8`` to its denominators and stores the series in
float32; both differences are below 1e-7 relative for float32-exact inputs.
An empty denominator gives NaN.

References
----------
N. Marwan, M. C. Romano, M. Thiel, J. Kurths, "Recurrence plots for the
analysis of complex systems", Phys. Rep. 438, 237 (2007).
J. F. Donges et al., "Unified functional network and nonlinear time series
analysis for complex systems science: The pyunicorn package", Chaos 25,
113101 (2015).
"""
from __future__ import annotations

import importlib
import math
import warnings
from types import ModuleType
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist
from tqdm.auto import tqdm

from netdyn._core.results import DatasetResult
from netdyn._core.validation import check_choice, check_float, check_int
from netdyn.series.embedding import delay_embed
from netdyn.series.observables import observable_series

__all__ = [
    "RQAResult",
    "RecurrenceSpec",
    "recurrence_spec",
    "recurrence_parameters_doc",
    "with_recurrence_doc",
    "DEFAULT_RECURRENCE_RATE",
    "MIN_RQA_POINTS",
    "recurrence_points",
    "recurrence_threshold",
    "recurrence_matrix",
    "recurrence_image",
    "rqa",
    "windowed_rqa",
    "line_measures",
    "pairs_outside",
]

_METRICS = {"supremum": "chebyshev", "euclidean": "euclidean", "manhattan": "cityblock"}
_BLOCK = 1 << 20
_MEASURES = ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax")
_ENGINES = ("auto", "numba", "grid", "numpy")
_BINS = 8192
_SELECT = 1 << 18


@dataclass(frozen=True, eq=False, repr=False)
class RQAResult(DatasetResult):
    """RQA measures of one recurrence matrix (definitions in the module docstring).

    Attributes
    ----------
    RR, DET, L, DIV, ENTR, LAM, TT : float
        The measures (NaN for an empty denominator); ``L`` and ``TT`` in steps.
    Lmax, Vmax : int
        Longest diagonal / vertical line, in steps.
    diag_hist, vert_hist : numpy.ndarray, shape (n_points + 1,)
        ``diag_hist[l]`` / ``vert_hist[v]`` count the lines of length exactly
        ``l`` / ``v`` (index 0 unused), over the dimension ``length``.
    threshold : float
        The recurrence threshold ``eps`` used (in the units of the points).
    metric : str
        ``"supremum"``, ``"euclidean"`` or ``"manhattan"``.
    theiler, l_min, v_min : int
        Theiler window and shortest counted lines, in steps.
    n_points : int
        Number of points ``N`` of the matrix.

    Notes
    -----
    ``to_dataset()`` holds every field: the measures and settings as 0-d
    variables (``metric`` as an attribute), the histograms over ``length``.
    One window of :func:`windowed_rqa` has the same variables, so
    ``RQAResult.from_dataset(windowed.isel(window_center=i))`` is that window's result.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> res = nd.rqa(np.sin(2 * np.pi * np.arange(200) / 20), recurrence_rate=0.1, emb_dim=2)
    >>> round(res.RR, 2), round(res.DET, 2)
    (0.1, 0.86)
    >>> nd.RQAResult.from_dataset(res.to_dataset()).DET == res.DET
    True
    """

    RR: float
    DET: float
    L: float
    Lmax: int
    DIV: float
    ENTR: float
    LAM: float
    TT: float
    Vmax: int
    diag_hist: np.ndarray = field(metadata={"dims": ("length",)})
    vert_hist: np.ndarray = field(metadata={"dims": ("length",)})
    threshold: float
    metric: str
    theiler: int
    l_min: int
    v_min: int
    n_points: int


DEFAULT_RECURRENCE_RATE = 0.05
"""The recurrence rate used when neither a threshold nor a rate is given: a few percent is
the usual choice (Marwan, Romano, Thiel & Kurths, Phys. Rep. 438 (2007) 237; Zbilut &
Webber): small enough for the lines to mean something, large enough to count them."""


recurrence_parameters_doc = """threshold : float, optional
        Recurrence threshold ``eps`` in the units of the points (a pair recurs
        when its distance is ``< eps``); > 0.
    recurrence_rate : float, optional
        Instead of ``threshold``: the target fraction of recurrent pairs, in
        [0, 1] (:func:`netdyn.series.recurrence.recurrence_threshold`).  At most
        one of the two; neither: ``recurrence_rate = 0.05``
        (:data:`netdyn.series.recurrence.DEFAULT_RECURRENCE_RATE`).
    metric : {"supremum", "euclidean", "manhattan"}, default "supremum"
        Norm of the distances.
    theiler : int, default 1
        Theiler window, steps: pairs with ``|i - j| < theiler`` are removed
        (1: just the line of identity; 0: pyunicorn's convention).
    emb_dim, lag : int, default 1
        Delay embedding of the series (:func:`netdyn.series.embedding.delay_embed`;
        1, 1: none).
    observable : str, optional
        Which series of a trajectory Dataset / which observable of a state
        (:mod:`netdyn.series.observables`; default ``"loss"`` for a Dataset)."""
"""The numpydoc entries of the recurrence front door's parameters, written once: every function
that takes them has ``{recurrence_parameters}`` in its docstring (see :func:`with_recurrence_doc`)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def with_recurrence_doc(func: _F) -> _F:
    """Put :data:`recurrence_parameters_doc` in place of ``{recurrence_parameters}`` in ``func``'s docstring.

    Parameters
    ----------
    func : callable
        A front-door function.

    Returns
    -------
    callable
        ``func`` itself, its docstring completed.

    Examples
    --------
    >>> @with_recurrence_doc
    ... def f():
    ...     "Parameters: {recurrence_parameters}"
    >>> "recurrence_rate : float" in f.__doc__
    True
    """
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("{recurrence_parameters}", recurrence_parameters_doc)
    return func


@dataclass(frozen=True)
class RecurrenceSpec:
    """The recurrence front door's settings, validated once (:func:`recurrence_spec` makes one).

    Every public recurrence function (:func:`rqa`, :func:`windowed_rqa`,
    :func:`recurrence_matrix`, :func:`recurrence_image`, the cross / joint
    recurrence and network functions, :func:`netdyn.plot.recurrence.plot_recurrence`)
    takes the same plain keywords and turns them into one ``RecurrenceSpec``,
    so the checks and the defaults live here.

    Attributes
    ----------
    threshold : float or None
        ``eps`` (> 0), or None when it is chosen for ``recurrence_rate``.
    recurrence_rate : float or None
        The target rate in [0, 1] (:data:`DEFAULT_RECURRENCE_RATE` when neither
        was given), or None when ``threshold`` is given.
    metric : str
        ``"supremum"``, ``"euclidean"`` or ``"manhattan"``.
    theiler, emb_dim, lag : int
        Theiler window (steps), embedding dimension and lag (steps).
    observable : str or None
        As :func:`netdyn.series.observables.observable_series`.

    Examples
    --------
    >>> from netdyn.series.recurrence import recurrence_spec
    >>> spec = recurrence_spec("demo")
    >>> spec.recurrence_rate, spec.cdist_metric
    (0.05, 'chebyshev')
    """

    threshold: float | None
    recurrence_rate: float | None
    metric: str
    theiler: int
    emb_dim: int
    lag: int
    observable: str | None

    @property
    def cdist_metric(self) -> str:
        """The metric's name for ``scipy.spatial.distance.cdist``."""
        return _METRICS[self.metric]

    def points(self, x: Any) -> np.ndarray:
        """:func:`recurrence_points` of ``x`` with this spec's embedding and observable."""
        return recurrence_points(x, emb_dim=self.emb_dim, lag=self.lag, observable=self.observable)


def recurrence_spec(
    caller: str,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    min_theiler: int = 0,
) -> RecurrenceSpec:
    """The validated :class:`RecurrenceSpec` of a front door's keywords (defaults: :data:`recurrence_parameters_doc`).

    Parameters
    ----------
    caller : str
        The public function, for error messages.
    threshold, recurrence_rate, metric, theiler, emb_dim, lag, observable
        The user's values (:data:`recurrence_parameters_doc`).
    min_theiler : int, default 0
        Smallest Theiler window the caller accepts (a network has no
        self-loops: 1).

    Returns
    -------
    RecurrenceSpec

    Raises
    ------
    ValueError
        When both ``threshold`` and ``recurrence_rate`` are given, or any value
        is out of range.

    Examples
    --------
    >>> from netdyn.series.recurrence import recurrence_spec
    >>> recurrence_spec("rqa", threshold=0.1, recurrence_rate=0.1)
    Traceback (most recent call last):
    ...
    ValueError: rqa: expected at most one of threshold / recurrence_rate, got threshold=0.1, recurrence_rate=0.1
    """
    if threshold is not None and recurrence_rate is not None:
        raise ValueError(f"{caller}: expected at most one of threshold / recurrence_rate, got {threshold=}, {recurrence_rate=}")
    if threshold is not None:
        threshold = check_float(threshold, "threshold", caller, minimum=0, exclusive=True)
    else:
        rate = DEFAULT_RECURRENCE_RATE if recurrence_rate is None else recurrence_rate
        recurrence_rate = check_float(rate, "recurrence_rate", caller, minimum=0, maximum=1)
    return RecurrenceSpec(
        threshold=threshold,
        recurrence_rate=recurrence_rate,
        metric=check_choice(metric, "metric", caller, tuple(_METRICS)),
        theiler=check_int(theiler, "theiler", caller, minimum=min_theiler),
        emb_dim=check_int(emb_dim, "emb_dim", caller, minimum=1),
        lag=check_int(lag, "lag", caller, minimum=1),
        observable=observable,
    )


def recurrence_points(x: Any, *, emb_dim: int = 1, lag: int = 1, observable: str | None = None) -> np.ndarray:
    """The points ``X_i`` (N', D) whose recurrences are analysed.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        The data; for a Dataset (or with ``observable``) read by
        :func:`netdyn.series.observables.observable_series` (default ``"loss"``;
        non-finite tails are cut with a warning).
    emb_dim, lag : int, default 1
        Delay embedding (default: none).
    observable : str, optional
        As :func:`netdyn.series.observables.observable_series`.

    Returns
    -------
    numpy.ndarray, shape (N', D)
        ``N' = N - (emb_dim - 1) lag``, ``D = emb_dim d``.

    Raises
    ------
    ValueError
        For fewer than 2 points or non-finite values in an array.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence import recurrence_points
    >>> recurrence_points(np.arange(4.0), emb_dim=2).shape
    (3, 2)
    """
    if observable is not None or isinstance(x, xr.Dataset):
        pts = observable_series(x, observable=observable)
    else:
        pts = _array(x)
    pts = delay_embed(pts, emb_dim=emb_dim, lag=lag)
    if pts.shape[0] < 2:
        raise ValueError(f"recurrence_points: expected at least 2 points, got {pts.shape[0]}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("recurrence_points: expected finite values, got NaN/inf (use a Dataset to cut a diverged run)")
    return pts


#: fewest points an RQA is computed on: 10 points give 36 pairs outside the LOI band (theiler 1), so the
#: smallest rate step is ~3 %; fewer make RR, DET, LAM ratios of a handful of counts
MIN_RQA_POINTS = 10


def _check_length(n: int, theiler: int, l_min: int, v_min: int, caller: str, what: str = "series") -> None:
    """Raise unless ``n`` points can hold a recurrence line of ``max(l_min, v_min)`` outside the Theiler band.

    A diagonal at offset ``k >= theiler`` has ``n - k`` points, so a line of
    length ``l`` needs ``n >= theiler + l``; below that DET / LAM are 0 / 0.
    """
    need = max(MIN_RQA_POINTS, max(theiler, 1) + max(l_min, v_min))
    if n < need:
        raise ValueError(
            f"{caller}: expected a {what} of at least {need} points (at least {MIN_RQA_POINTS}, and theiler "
            f"{theiler} + longest minimal line {max(l_min, v_min)} so that a line fits outside the Theiler "
            f"window), got {n}"
        )


def _array(x: Any) -> np.ndarray:
    arr = np.asarray(x.values if isinstance(x, xr.DataArray) else x, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"recurrence_points: expected shape (N,) or (N, d), got {arr.shape}")
    return arr


def _kernels(engine: str, caller: str) -> ModuleType | None:
    """The numba kernels module, or None for the numpy path."""
    if check_choice(engine, "engine", caller, _ENGINES) == "numpy":
        return None
    try:
        return importlib.import_module("netdyn.series._rqa_kernels")
    except ImportError as err:
        if engine in ("numba", "grid"):
            raise ImportError(f"{caller}: engine={engine!r} needs numba (pip install numba): {err}") from err
        return None


def _bounds(n: int, rows: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + rows)) for i in range(0, n, rows)]


def _rows_per_block(n: int, block_size: int) -> int:
    return max(1, min(n, block_size // n))


def _distance_rows(pts: np.ndarray, metric: str, bounds: list[tuple[int, int]]) -> Iterator[tuple[int, np.ndarray]]:
    for i0, i1 in bounds:
        yield i0, cdist(pts[i0:i1], pts, metric=metric)


def _recurrent_rows(
    pts: np.ndarray, eps: float, metric: str, theiler: int, bounds: list[tuple[int, int]]
) -> Iterator[tuple[int, np.ndarray]]:
    """Row blocks ``(i0, Rb)``; ``Rb`` is bool (B, N + B), columns >= N are 0 (padding)."""
    n = pts.shape[0]
    offsets = np.arange(-theiler + 1, theiler)
    for i0, dist in _distance_rows(pts, metric, bounds):
        rows = dist.shape[0]
        block = np.zeros((rows, n + rows), dtype=bool)
        np.less(dist, eps, out=block[:, :n])
        if theiler > 0:
            cols = (np.arange(i0, i0 + rows)[:, None] + offsets).ravel()
            r = np.repeat(np.arange(rows), offsets.size)
            ok = (cols >= 0) & (cols < n)
            block[r[ok], cols[ok]] = False
        yield i0, block


def pairs_outside(n: int, *, theiler: int) -> int:
    """Number of ordered pairs ``(i, j)`` of ``n`` points with ``|i - j| >= theiler`` (all ``n^2`` for 0).

    Parameters
    ----------
    n : int
        Number of points.
    theiler : int
        Theiler window, steps (0: no window; 1: the line of identity removed).

    Returns
    -------
    int
        The number of pairs an RQA's RR is divided by.

    Examples
    --------
    >>> from netdyn.series.recurrence import pairs_outside
    >>> pairs_outside(10, theiler=0), pairs_outside(10, theiler=1), pairs_outside(10, theiler=2)
    (100, 90, 72)
    """
    if theiler <= 0:
        return n * n
    w = min(theiler, n)
    return n * n - n - 2 * sum(n - k for k in range(1, w))


def _diameter(pts: np.ndarray, metric: str) -> float:
    span = np.ptp(pts, axis=0)
    bound = {"chebyshev": span.max(), "euclidean": np.sqrt(np.sum(span**2)), "cityblock": span.sum()}[metric]
    return float(bound) * (1 + 1e-9) + 1e-300


def recurrence_threshold(
    x: Any,
    *,
    recurrence_rate: float = DEFAULT_RECURRENCE_RATE,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    block_size: int = _BLOCK,
    engine: str = "auto",
) -> float:
    """The threshold ``eps`` that gives a fixed recurrence rate.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d) or xarray.DataArray
        Series or state trajectory (see :func:`recurrence_points`).
    recurrence_rate : float, default 0.05
        Target fraction of recurrent pairs, in [0, 1].
    metric, theiler, emb_dim, lag, block_size, engine
        As :func:`rqa`.

    Returns
    -------
    float
        The distance of rank ``int(rate (T - 1))`` (0-based, ascending) among the
        ``T`` pair distances outside the Theiler window; recurrences are
        ``d < eps``, so the realised rate is at most the target (exactly
        pyunicorn's ``threshold_from_recurrence_rate`` for ``theiler=0``).

    Raises
    ------
    ValueError
        For invalid settings or no pair outside the Theiler window.

    Notes
    -----
    The rank is located without storing the ``N^2`` distances: a histogram of
    the distances is refined on the bin holding the rank until that bin's
    distances fit a small buffer, where they are partitioned.  numpy: 1024 bins
    over row blocks of ``cdist``, bins of at most 2^20 values (usually 2-3
    passes).  numba: the upper triangle only (each pair once; the LOI's zeros
    and the symmetry are accounted for in the rank), 8192 bins, then one pass
    that collects the bin (at most 2^18 values) or, if it is larger, its exact
    ``[min, max]`` for the next histogram (usually 2 passes).  grid (``"auto"``
    when it pays): the rank is bracketed by the distances of a fixed-seed sample
    of pairs, and one pass over the grid's candidate pairs for the bracket's top
    counts the pairs below the bracket and collects those inside
    (:func:`_threshold_grid`; one more pass when the bracket holds more than
    2^20 values).  All engines return the same distance, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence import recurrence_threshold
    >>> recurrence_threshold(np.arange(10.0), recurrence_rate=0.5, theiler=0)
    3.0
    """
    caller = "recurrence_threshold"
    spec = recurrence_spec(caller, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler, emb_dim=emb_dim, lag=lag)
    recurrence_rate, theiler = spec.recurrence_rate, spec.theiler
    kernels = _kernels(engine, caller)
    pts = spec.points(x)
    name = spec.cdist_metric
    n = pts.shape[0]
    pairs = pairs_outside(n, theiler=theiler)
    if pairs == 0:
        raise ValueError(f"{caller}: expected theiler < N = {n} (some pairs outside the Theiler window), got {theiler}")
    rank = int(recurrence_rate * (pairs - 1))
    if kernels is not None and (engine == "grid" or (engine == "auto" and n >= _GRID_MIN)):
        found = _threshold_grid(kernels, pts, rank, metric, theiler, force=engine == "grid")
        if found is not None:
            return found
    if kernels is not None:
        found = _threshold_kernels(kernels, pts, rank, metric, theiler)
        if found is not None:
            return found
    return _threshold_numpy(pts, rank, name, theiler, block_size)


def _threshold_numpy(pts: np.ndarray, rank: int, name: str, theiler: int, block_size: int) -> float:
    n = pts.shape[0]
    bounds = _bounds(n, _rows_per_block(n, block_size))
    lo, hi, below = 0.0, _diameter(pts, name), 0

    def values_in(dist: np.ndarray, i0: int) -> np.ndarray:
        if theiler > 0:
            i = np.arange(i0, i0 + dist.shape[0])[:, None]
            dist = np.where(np.abs(i - np.arange(n)) < theiler, np.inf, dist)
        return dist[(dist >= lo) & (dist < hi)]

    while True:
        edges = np.linspace(lo, hi, 1025)
        counts = np.zeros(1024, dtype=np.int64)
        for i0, dist in _distance_rows(pts, name, bounds):
            v = values_in(dist, i0)
            counts += np.bincount(np.clip(np.searchsorted(edges, v, "right") - 1, 0, 1023), minlength=1024)
        cum = below + np.cumsum(counts)
        b = int(np.searchsorted(cum, rank, "right"))
        below = int(cum[b - 1]) if b > 0 else below
        lo, hi = float(edges[b]), float(edges[b + 1])
        if counts[b] <= (1 << 20) or np.nextafter(lo, np.inf) >= hi:
            break
    if np.nextafter(lo, np.inf) >= hi:
        return lo
    kept = np.concatenate([values_in(dist, i0) for i0, dist in _distance_rows(pts, name, bounds)])
    return float(np.partition(kept, rank - below)[rank - below])


def _threshold_kernels(kernels: ModuleType, pts: np.ndarray, rank: int, metric: str, theiler: int) -> float | None:
    """The distance of ``rank`` in the full matrix, from the upper triangle; None if the distances are too small to bin.

    The ``T`` values are the LOI's N zeros (``theiler == 0`` only), which sort
    first, then every upper-triangle distance twice, so full rank ``r`` is the
    upper-triangle rank ``(r - zeros) // 2``.
    """
    zeros = pts.shape[0] if theiler == 0 else 0
    if rank < zeros:
        return 0.0
    rank = (rank - zeros) // 2
    code, kmin = kernels.METRIC_CODES[metric], max(theiler, 1)
    lo, hi = 0.0, _diameter(pts, _METRICS[metric])
    counts = np.empty(_BINS, dtype=np.int64)
    values = np.empty(_SELECT)
    pts_t, dist = np.ascontiguousarray(pts.T), np.empty(pts.shape[0])
    while True:
        scale = _BINS / (hi - lo)
        if not math.isfinite(scale):  # a bin narrower than ~1e-304: leave it to the numpy path
            return None
        counts[:] = 0
        kernels.distance_histogram(pts_t, code, kmin, lo, hi, scale, counts, dist)
        cum = np.cumsum(counts)
        b = int(np.searchsorted(cum, rank, "right"))
        rank -= int(cum[b - 1]) if b > 0 else 0
        m, lo, hi = kernels.distance_bin_values(pts_t, code, kmin, lo, hi, scale, _BINS - 1, b, values, dist)
        if m <= values.size:
            return float(np.partition(values[:m], rank)[rank])
        if lo == hi:
            return lo


_SAMPLE = 1 << 18
"""Random pairs whose distances bracket the threshold for the grid (:func:`_threshold_grid`)."""
_SAMPLE_Z = 5.0
"""Half-width of that bracket, in binomial standard deviations of the sampled rate."""
_GRID_VALUES = 1 << 20
"""Most distances the grid's threshold search holds (8 MiB); a larger bracket is narrowed by a histogram first."""


def _random_pairs(n: int, kmin: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` pairs ``(i, j)``, ``j - i >= kmin``, uniform over those pairs (ordered pairs drawn uniformly, those
    inside the Theiler band redrawn; fixed seed)."""
    rng = np.random.default_rng(0)
    dtype = np.int32 if n < 2**31 else np.int64  # int32 draws cost a fifth of int64 ones
    i, j = np.empty(0, dtype), np.empty(0, dtype)
    while i.size < size:
        a, b = rng.integers(0, n, (2, size + size // 8 + 64), dtype=dtype)
        far = np.abs(a - b) >= kmin
        i, j = np.concatenate((i, np.minimum(a, b)[far])), np.concatenate((j, np.maximum(a, b)[far]))
    return i[:size], j[:size]


def _sampled_bracket(kernels: ModuleType, pts: np.ndarray, rank: int, kmin: int, metric: str, upper: int) -> tuple[float, float]:
    """``[lo, hi]`` around the distance of upper-triangle rank ``rank`` (of ``upper`` pairs ``j - i >= kmin``): the
    sampled quantiles ``rank / upper +- z sigma`` (:data:`_SAMPLE_Z`) of ``min(`` :data:`_SAMPLE` ``, 16 N)`` random
    pairs (fixed seed); ``hi`` is the diameter bound past the sample.  The bracket sets only the speed of a search,
    never its result: it may miss the rank."""
    n = pts.shape[0]
    size = min(_SAMPLE, 16 * n, upper)  # ~ the cost of a pass over N rows, no more
    sample = kernels.pair_distances(pts, *_random_pairs(n, kmin, size), kernels.METRIC_CODES[metric])
    q, sigma = rank / upper, math.sqrt(max(rank / upper * (1 - rank / upper), 1.0 / size) / size)
    r_lo, r_hi = math.floor((q - _SAMPLE_Z * sigma) * size), math.ceil((q + _SAMPLE_Z * sigma) * size)
    picks = [r for r in (r_lo, r_hi) if 0 <= r < size]
    sample = np.partition(sample, picks) if picks else sample
    lo = float(sample[r_lo]) if r_lo >= 0 else 0.0
    hi = float(sample[r_hi]) if r_hi < size else _diameter(pts, _METRICS[metric])
    return lo, hi


class _BracketCount(NamedTuple):
    """One pass over a grid's candidate pairs around ``[lo, hi]`` (:func:`_count_bracket`).

    ``below`` / ``inside``: upper-triangle pairs with ``d < lo`` / ``lo <= d <= hi``; ``values``: the latter's
    distances, or None when they did not fit the buffer; ``counts``: their histogram (:data:`_BINS` bins of
    width ``1 / scale`` from ``lo``); ``low`` / ``high``: their least and greatest; ``masks`` (N, W): the rows
    holding each bin's pairs, hashed (``grid_distance_histogram``).
    """

    below: int
    inside: int
    values: np.ndarray | None
    counts: np.ndarray
    scale: float
    low: float
    high: float
    masks: np.ndarray


def _count_bracket(
    kernels: ModuleType, pts: np.ndarray, grid: Any, blocks: np.ndarray, tasks: int, metric: str, kmin: int,
    lo: float, hi: float, cap: int, mask_words: int = 0,
) -> _BracketCount | None:
    """Count the pairs ``j - i >= kmin`` below ``lo`` and collect (up to ``cap`` per task) those in ``[lo, hi]``, in
    one pass of ``tasks`` parallel tasks over ``grid``'s row ``blocks``
    (:func:`netdyn.series._rqa_kernels.grid_distance_histogram`; the grid must hold every pair with ``d <= hi``);
    None when ``[lo, hi]`` is too narrow to bin.  ``mask_words`` (0 or a power of 2): words per row of the rows'
    bin filter (``_BracketCount.masks``)."""
    scale = _BINS / (hi - lo) if hi > lo else 0.0
    if not math.isfinite(scale):
        return None
    code = kernels.METRIC_CODES[metric]
    if code == 1:
        below_max = kernels.square_root_bound(lo) if lo > 0 else -1.0
        top_max = kernels.square_root_bound(float(np.nextafter(hi, np.inf)))
    else:
        below_max, top_max = float(np.nextafter(lo, -np.inf)), hi
    counts_t, out_t = np.empty((tasks, _BINS), np.int64), np.empty((tasks, cap))
    found_t, bounds_t = np.empty((tasks, 2), np.int64), np.empty((tasks, 2))
    masks = np.empty((pts.shape[0], mask_words), np.uint64)
    kernels.grid_distance_histogram(
        pts, code, kmin, lo, below_max, top_max, scale, grid.spts, grid.cell, grid.start, grid.offsets, blocks,
        counts_t, out_t, found_t, bounds_t, np.empty((tasks, grid.start.size - 1), np.int64),
        np.empty((tasks, pts.shape[0])), masks,
        np.ascontiguousarray(grid.spts.T) if pts.shape[1] == 3 else np.empty((3, 0)), np.empty((tasks, pts.shape[0])),
    )
    fits = bool(np.all(found_t[:, 1] <= cap))
    values = np.concatenate([out_t[t, : found_t[t, 1]] for t in range(tasks)]) if fits else None
    return _BracketCount(int(found_t[:, 0].sum()), int(found_t[:, 1].sum()), values, counts_t.sum(axis=0), scale,
                         float(bounds_t[:, 0].min()), float(bounds_t[:, 1].max()), masks)


def _select(found: _BracketCount, lo: float, r: int) -> float:
    """The value of rank ``r`` among ``found.values``: partitioned within its histogram bin only (the bins are the
    kernel's, ``min(int((d - lo) scale), bins - 1)``, recomputed with the same arithmetic)."""
    cum = np.cumsum(found.counts)
    b = int(np.searchsorted(cum, r, "right"))
    r -= int(cum[b - 1]) if b > 0 else 0
    bins = np.minimum(((found.values - lo) * found.scale).astype(np.int64), found.counts.size - 1)
    return float(np.partition(found.values[bins == b], r)[r])


def _rank_bin(found: _BracketCount, lo: float, hi: float, r: int) -> tuple[float, float]:
    """The histogram bin of ``found``'s value of rank ``r``, as ``[b_lo, b_hi]`` within the values' range (a little
    wide, for the rounding of the bin edges)."""
    b = int(np.searchsorted(np.cumsum(found.counts), r, "right"))
    pad = (hi - lo) * 2.0**-40
    return max(found.low, lo + b / found.scale - pad), min(found.high, lo + (b + 1) / found.scale + pad)


def _grid_tasks(n: int) -> int:
    """Parallel tasks of the grid kernels: one per numba thread, at most one per 64 rows."""
    import numba

    return max(1, min(numba.get_num_threads(), n // 64))


def _upper_rank(n: int, rank: int, theiler: int) -> tuple[int, int, int] | None:
    """The full-matrix rank ``rank`` as a rank among the ``upper`` pairs ``j - i >= kmin``: ``(rank, upper, kmin)``;
    None when it falls on the LOI's zeros (``theiler == 0``).

    The ``T`` values are the LOI's N zeros (``theiler == 0`` only), which sort first, then every upper-triangle
    distance twice, so full rank ``r`` is the upper-triangle rank ``(r - zeros) // 2``.
    """
    zeros = n if theiler == 0 else 0
    if rank < zeros:
        return None
    kmin = max(theiler, 1)
    return (rank - zeros) // 2, (n - kmin) * (n - kmin + 1) // 2, kmin


def _threshold_grid(kernels: ModuleType, pts: np.ndarray, rank: int, metric: str, theiler: int, force: bool) -> float | None:
    """:func:`_threshold_kernels` over the candidate pairs of a neighbour grid; None when the grid does not pay
    (:func:`_grid_pays`, unless ``force``), the Theiler window leaves fewer than half the pairs, or the bracket
    cannot be narrowed (distances too close to bin).

    The distance of upper-triangle rank ``r`` is bracketed by ``[lo, hi]`` (:func:`_sampled_bracket`).  A grid
    holding every pair with ``d <= hi`` then counts the pairs below ``lo`` and collects those in ``[lo, hi]``
    (:func:`_count_bracket`; one pass, usually; a bracket holding more than :data:`_GRID_VALUES` is narrowed to
    the histogram bin of the rank, one more pass; a bracket that misses the rank is moved).  The value is that
    rank's distance among all pairs, exactly.
    """
    n = pts.shape[0]
    upper_rank = _upper_rank(n, rank, theiler)
    if upper_rank is None:
        return 0.0
    rank, upper, kmin = upper_rank
    pts = np.ascontiguousarray(pts)
    if 4 * upper < n * n:  # a Theiler window over half the series: random pairs would mostly be redrawn
        return None
    lo, hi = _sampled_bracket(kernels, pts, rank, kmin, metric, upper)
    diameter = _diameter(pts, _METRICS[metric])
    grid, grid_hi = None, -1.0
    tasks = _grid_tasks(n)
    cap = min(_GRID_VALUES, upper) // tasks + 1
    while True:
        if hi > grid_hi:
            grid = _grid(kernels, pts, float(np.nextafter(hi, np.inf)), metric)
            if not force and not _grid_pays(grid, n):
                return None
            grid_hi = hi
            blocks = _row_blocks(grid, min(_GRID_BLOCKS_PER_TASK * tasks, max(1, n // 64)))
        found = _count_bracket(kernels, pts, grid, blocks, tasks, metric, kmin, lo, hi, cap)
        if found is None:
            return None
        r = rank - found.below
        if r < 0:  # the rank lies below the bracket
            lo, hi = 0.0, float(np.nextafter(lo, -np.inf))
        elif r >= found.inside:  # above it
            if hi >= diameter:
                return None
            lo, hi = float(np.nextafter(hi, np.inf)), min(2 * hi if hi > 0 else diameter * 2.0**-20, diameter)
        elif found.values is not None:
            return _select(found, lo, r)
        else:  # too many values: keep the bin holding the rank, within the values' range
            if found.low == found.high:
                return found.low
            b_lo, b_hi = _rank_bin(found, lo, hi, r)
            if (b_lo, b_hi) == (lo, hi):
                return None
            lo, hi = b_lo, b_hi


def _bin_start(lo: float, hi: float, scale: float, b: int) -> float:
    """The least distance in ``[lo, hi]`` that ``grid_distance_histogram`` bins at ``b`` or above
    (``int((d - lo) scale) >= b``, monotone in ``d``; ``b >= 1`` found by bisection over the doubles' bit patterns,
    which order the non-negative doubles); ``lo`` for ``b = 0``."""
    if b <= 0:
        return lo
    low, high = int(np.float64(lo).view(np.int64)), int(np.float64(hi).view(np.int64))  # f(lo) < b <= f(hi)
    while high - low > 1:
        mid = (low + high) // 2
        if int((float(np.int64(mid).view(np.float64)) - lo) * scale) >= b:
            high = mid
        else:
            low = mid
    return float(np.int64(high).view(np.float64))


_MASK_WORDS = 8
"""Words per row of the rows' bin filter of the fixed-rate grid RQA (64 bytes per point): a row collects the pairs
of the rank's bin only when its bit is set (~1 / 512 of a row's bracket pairs share it)."""
_NEAR_VALUES = 1 << 18
"""Most pairs the fixed-rate grid RQA holds between a histogram bin's edges (:func:`_rqa_rate_grid`; 6 MiB per task)."""


def _rqa_rate_grid(
    kernels: ModuleType, pts: np.ndarray, rate: float, metric: str, theiler: int, l_min: int, v_min: int, force: bool
) -> RQAResult | None:
    """:func:`rqa` at the threshold of ``recurrence_rate = rate`` (:func:`recurrence_threshold`) on the grid, with
    one counting pass, the same result exactly; None where the search cannot take this road (the caller then finds
    the threshold by :func:`recurrence_threshold` first).

    The bracket ``[lo, hi]`` of the rank (:func:`_sampled_bracket`) is counted once (:func:`_count_bracket`) on a
    grid for ``hi``, which then serves the RQA pass too (every threshold ``<= hi``).  When the bracket's
    distances fit the buffer, the rank's distance ``eps`` is selected among them and the RQA pass runs at ``eps``.
    Otherwise (long series: the bracket holds ~ N^2 / sqrt(sample) pairs) the pass's histogram gives the bin
    ``[b_lo, b_hi]`` of the rank, holding few pairs; the RQA pass runs at ``b_lo`` and collects the pairs of the
    bin (:func:`netdyn.series._rqa_kernels.grid_line_histograms` with ``collect``), among which ``eps`` is selected; the pairs
    with ``b_lo <= d < eps`` are then added to the matrix, each of their lines walked and counted
    (:func:`netdyn.series._rqa_kernels.add_recurrences`).  None when: the rank falls on exact coincidences
    (``eps = 0``), the grid does not pay (unless ``force``), the Theiler window leaves fewer than half the pairs,
    the sampled bracket misses the rank, or the bin holds more than :data:`_NEAR_VALUES` pairs.
    """
    n = pts.shape[0]
    upper_rank = _upper_rank(n, int(rate * (pairs_outside(n, theiler=theiler) - 1)), theiler)
    if upper_rank is None:
        return None
    rank, upper, kmin = upper_rank
    if 4 * upper < n * n:
        return None
    pts = np.ascontiguousarray(pts)
    lo, hi = _sampled_bracket(kernels, pts, rank, kmin, metric, upper)
    grid = _grid(kernels, pts, float(np.nextafter(hi, np.inf)), metric)
    if not force and not _grid_pays(grid, n):
        return None
    tasks = _grid_tasks(n)
    blocks = _row_blocks(grid, min(_GRID_BLOCKS_PER_TASK * tasks, max(1, n // 64)))
    found = _count_bracket(kernels, pts, grid, blocks, tasks, metric, kmin, lo, hi, min(_GRID_VALUES, upper) // tasks + 1,
                           _MASK_WORDS)
    if found is None or not 0 <= rank - found.below < found.inside:
        return None
    r = rank - found.below
    if found.values is not None or found.low == found.high:
        eps = _select(found, lo, r) if found.values is not None else found.low
        if eps <= 0:
            return None
        count, diag, vert = _line_histograms_grid(kernels, pts, eps, metric, theiler, grid)
        return _rqa_result(n, count, diag, vert, eps, metric, theiler, l_min, v_min)
    cum = np.cumsum(found.counts)
    b = int(np.searchsorted(cum, r, "right"))
    below_bin = found.below + (int(cum[b - 1]) if b > 0 else 0)
    in_bin = int(found.counts[b])
    b_lo = _bin_start(lo, hi, found.scale, b)
    b_hi = float(np.nextafter(_bin_start(lo, hi, found.scale, b + 1), -np.inf)) if b + 1 < found.counts.size else hi
    if b_lo <= 0 or in_bin > _NEAR_VALUES:
        return None
    words = found.masks.shape[1]
    rows = (found.masks[:, (b >> 6) % words] >> np.uint64(b & 63)) & np.uint64(1) == 1
    count, diag, vert, near = _line_histograms_grid_near(kernels, pts, b_lo, b_hi, metric, theiler, grid, in_bin + 1, rows)
    # exactly the bin's pairs, below them the pairs of the bins before: else (never seen) leave it to the search
    if near is None or near.shape[0] != in_bin or (count - (n if theiler == 0 else 0)) // 2 != below_bin:
        return None
    r = rank - below_bin
    code = kernels.METRIC_CODES[metric]
    dist = np.sqrt(near[:, 2]) if code == 1 else near[:, 2]
    eps = float(np.partition(dist, r)[r])
    new = near[dist < eps, :2].astype(np.int64)
    i, j = new[:, 0], new[:, 1]
    by_diag = np.stack((j - i, i), axis=1)[np.lexsort((i, j - i))]
    col, row = np.concatenate((j, i)), np.concatenate((i, j))
    by_col = np.stack((col, row), axis=1)[np.lexsort((row, col))]
    s_lo, s_eps = (kernels.square_root_bound(b_lo), kernels.square_root_bound(eps)) if code == 1 else (b_lo, eps)
    kernels.add_recurrences(pts, b_lo, s_lo, eps, s_eps, code, theiler, by_diag, by_col, diag, vert)
    return _rqa_result(n, count + 2 * new.shape[0], diag, vert, eps, metric, theiler, l_min, v_min)


def _resolve_threshold(
    pts: np.ndarray, spec: RecurrenceSpec, block_size: int, caller: str, engine: str = "auto", rate_theiler: int | None = None
) -> float:
    """``spec.threshold``, or the threshold of ``spec.recurrence_rate`` on ``pts`` (Theiler window ``rate_theiler``,
    default ``spec.theiler``), with a warning when that rate is reached only by exact coincidences."""
    if spec.threshold is not None:
        return spec.threshold
    theiler = spec.theiler if rate_theiler is None else rate_theiler
    eps = recurrence_threshold(pts, recurrence_rate=spec.recurrence_rate, metric=spec.metric, theiler=theiler,
                               block_size=block_size, engine=engine)
    if eps == 0:
        warnings.warn(
            f"{caller}: more than a fraction {spec.recurrence_rate} of the pairs coincide exactly (e.g. a periodic "
            "orbit); counting exact coincidences as recurrences (eps = smallest positive float)",
            RuntimeWarning,
            stacklevel=3,
        )
        eps = float(np.nextafter(0.0, 1.0))
    return eps


@with_recurrence_doc
def recurrence_matrix(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    packed: bool = False,
    block_size: int = _BLOCK,
) -> np.ndarray:
    """The recurrence matrix, as bool (N, N) or bit-packed rows.

    For RQA measures use :func:`rqa`, for a picture :func:`recurrence_image`;
    neither forms this matrix.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        Series or state trajectory (:func:`recurrence_points`).
    {recurrence_parameters}
    packed : bool, default False
        Return ``np.packbits(R, axis=1)`` of shape ``(N, ceil(N / 8))`` uint8
        (N^2 / 8 bytes; 50 MB at N = 20 000), built block by block.
    block_size : int, default 2^20
        Matrix entries per row block.

    Returns
    -------
    numpy.ndarray
        bool (N, N), or uint8 (N, ceil(N / 8)) when ``packed``.

    Raises
    ------
    ValueError
        For invalid settings or too short a series.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> nd.recurrence_matrix(np.arange(10.0) % 2, threshold=0.5, theiler=1)[0].astype(int)
    array([0, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    """
    caller = "recurrence_matrix"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                           emb_dim=emb_dim, lag=lag, observable=observable)
    block_size = check_int(block_size, "block_size", caller, minimum=1)
    pts = spec.points(x)
    _check_length(pts.shape[0], spec.theiler, 1, 1, caller, "series (after embedding)")
    eps = _resolve_threshold(pts, spec, block_size, caller)
    n = pts.shape[0]
    out = np.empty((n, (n + 7) // 8 if packed else n), dtype=np.uint8 if packed else bool)
    for i0, block in _recurrent_rows(pts, eps, spec.cdist_metric, spec.theiler, _bounds(n, _rows_per_block(n, block_size))):
        rows = block[:, :n]
        out[i0 : i0 + rows.shape[0]] = np.packbits(rows, axis=1) if packed else rows
    return out

@with_recurrence_doc
def recurrence_image(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    size: int = 1000,
    block_size: int = _BLOCK,
) -> tuple[np.ndarray, int]:
    """A recurrence plot downsampled by block-OR, for display.

    Built row block by row block, so memory is ``O(block_size + size^2)``.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        Series or state trajectory (:func:`recurrence_points`).
    {recurrence_parameters}
    size : int, default 1000
        Largest side of the image.
    block_size : int, default 2^20
        Matrix entries per row block.

    Returns
    -------
    (numpy.ndarray, int)
        ``(image, factor)``: ``image[I, J]`` is True when any ``R_ij`` with
        ``i // factor == I`` and ``j // factor == J`` is, where
        ``factor = ceil(N / size)``; the image is bool of side ``ceil(N / factor)``.

    Raises
    ------
    ValueError
        For invalid settings.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence import recurrence_image
    >>> image, factor = recurrence_image(np.sin(0.3 * np.arange(500)), size=100)
    >>> image.shape, factor
    ((100, 100), 5)
    """
    caller = "recurrence_image"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                           emb_dim=emb_dim, lag=lag, observable=observable)
    size = check_int(size, "size", caller, minimum=1)
    block_size = check_int(block_size, "block_size", caller, minimum=1)
    pts = spec.points(x)
    eps = _resolve_threshold(pts, spec, block_size, caller)
    n = pts.shape[0]
    factor = max(1, math.ceil(n / size))
    side = math.ceil(n / factor)
    rows = factor * max(1, _rows_per_block(n, block_size) // factor)
    image = np.zeros((side, side), dtype=bool)
    for i0, block in _recurrent_rows(pts, eps, spec.cdist_metric, spec.theiler, _bounds(n, rows)):
        b = block[:, :n]
        pad_r, pad_c = (-b.shape[0]) % factor, side * factor - n
        b = np.pad(b, ((0, pad_r), (0, pad_c)))
        image[i0 // factor : i0 // factor + b.shape[0] // factor] = b.reshape(-1, factor, side, factor).any(axis=(1, 3))
    return image, factor

def _runs(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) of the runs of consecutive integers in the sorted array ``pos``."""
    if pos.size == 0:
        return pos, pos
    breaks = np.flatnonzero(np.diff(pos) != 1)
    return pos[np.r_[0, breaks + 1]], pos[np.r_[breaks, pos.size - 1]] + 1


def _line_histograms(pts: np.ndarray, eps: float, metric: str, theiler: int, block_size: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(recurrent pairs, diagonal histogram, vertical histogram), streamed over row blocks.

    Per block, one dense pass finds the recurrent positions; everything after
    is ``O(recurrences)``: vertical lines are runs of consecutive positions
    (a zero padding column separates the rows), diagonal lines are runs of
    consecutive rows within one diagonal ``k = j - i``, for which the positions
    are regrouped by ``k`` with scipy's ``O(nnz)`` CSR -> CSC conversion.
    """
    from scipy.sparse import csr_matrix

    n = pts.shape[0]
    diag = np.zeros(n + 1, dtype=np.int64)
    vert = np.zeros(n + 1, dtype=np.int64)
    carry = np.zeros(n, dtype=np.int64)
    kmin = max(theiler, 1)
    count = 0
    for i0, block in _recurrent_rows(pts, eps, metric, theiler, _bounds(n, _rows_per_block(n, block_size))):
        rows, width = block.shape
        pos = np.flatnonzero(block)
        count += pos.size
        start, stop = _runs(pos)
        vert += np.bincount(stop - start, minlength=n + 1)
        n_k = n - i0 - kmin
        if n_k <= 0:
            continue
        b, c = np.divmod(pos, width)
        k = c - i0 - b
        upper = k >= kmin
        b, k = b[upper], k[upper] - kmin
        indptr = np.searchsorted(b, np.arange(rows + 1))
        by_k = csr_matrix((np.ones(b.size, dtype=np.int8), k, indptr), shape=(rows, n_k)).tocsc()
        key = np.repeat(np.arange(n_k, dtype=np.int64) * (rows + 1), np.diff(by_k.indptr)) + by_k.indices
        start, stop = _runs(key)
        k = start // (rows + 1) + kmin
        top, bottom = start % (rows + 1) == 0, stop % (rows + 1) == rows
        length = stop - start
        continued = np.zeros(n, dtype=bool)
        continued[k[top]] = True
        length[top] += carry[k[top]]
        diag += np.bincount(carry[(carry > 0) & ~continued], minlength=n + 1)
        carry[:] = 0
        carry[k[bottom]] = length[bottom]
        diag += np.bincount(length[~bottom], minlength=n + 1)
    diag += np.bincount(carry[carry > 0], minlength=n + 1)
    return count, 2 * diag, vert


def line_measures(hist: np.ndarray, *, l_min: int) -> tuple[float, float, int, float]:
    """The line measures of a line-length histogram: ``(fraction, mean, longest, entropy)``.

    Parameters
    ----------
    hist : numpy.ndarray of int, shape (L + 1,)
        ``hist[l]`` lines of length exactly ``l`` (index 0 unused).
    l_min : int
        Shortest line counted by the fraction, mean and entropy (steps, >= 1).

    Returns
    -------
    (float, float, int, float)
        For diagonal lines DET, L, Lmax, ENTR; for vertical lines LAM, TT, Vmax
        and the vertical entropy (module docstring).  NaN for an empty denominator.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence import line_measures
    >>> line_measures(np.array([0, 2, 2, 2]), l_min=2)
    (0.8333333333333334, 2.5, 3, 0.6931471805599453)
    """
    lengths = np.arange(hist.size)
    total = float(lengths @ hist)
    long = hist[l_min:]
    in_long = float(lengths[l_min:] @ long)
    n_long = float(long.sum())
    frac = in_long / total if total > 0 else float("nan")
    mean = in_long / n_long if n_long > 0 else float("nan")
    nz = np.flatnonzero(hist)
    lmax = int(nz[-1]) if nz.size else 0
    p = long[long > 0] / n_long if n_long > 0 else np.zeros(0)
    entropy = float(-(p * np.log(p)).sum()) if n_long > 0 else float("nan")
    return frac, mean, lmax, entropy


@with_recurrence_doc
def rqa(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    l_min: int = 2,
    v_min: int = 2,
    block_size: int = _BLOCK,
    engine: str = "auto",
) -> RQAResult:
    """Recurrence quantification analysis without an ``N x N`` matrix in memory.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        Series or state trajectory (:func:`recurrence_points`).
    {recurrence_parameters}
    l_min, v_min : int, default 2
        Shortest diagonal / vertical line counted by DET, L, ENTR / LAM, TT (steps).
    block_size : int, default 2^20
        numpy engine: matrix entries per row block (memory ~ 9 bytes each).
    engine : {"auto", "numba", "grid", "numpy"}, default "auto"
        "numba": the compiled kernel over all pairs; "grid": the compiled
        kernel over the pairs of neighbouring grid cells; "numpy": the numpy
        path.  "auto": the grid when it pays (:func:`_grid_pays`), else
        "numba", and "numpy" when numba does not import.  All give identical
        results (same distances, same counts).

    Returns
    -------
    RQAResult
        Measures defined in the module docstring.

    Raises
    ------
    ValueError
        For invalid settings, a constant series, or too few points for a line
        of ``max(l_min, v_min)`` outside the Theiler window.

    Notes
    -----
    numpy engine: the matrix is streamed row block by row block: each block's
    distances come from ``scipy.spatial.distance.cdist``; vertical lines are the
    horizontal runs of the (symmetric) rows; diagonal runs are found after
    regrouping the block's recurrences by diagonal ``k = j - i``, and a run that
    reaches the block's last row is carried into the next block.  Memory
    ``O(block_size + N)``.

    numba engine: one pass over the upper triangle, each distance computed once;
    run lengths are kept per diagonal and per column and updated only where the
    current or the previous row recurs (``_rqa_kernels.line_histograms``).
    Memory ``O(N)`` (about 50 N bytes).  From 10 000 points on it uses every numba
    thread (``numba.set_num_threads``; default one per core): each thread owns a
    band of diagonals and the vertical runs are joined across bands afterwards
    (``_rqa_kernels.line_histograms_banded``), with the same counts to the last
    line and about 60 N bytes per thread.  Compiled on first use and cached on
    disk (``cache=True``); the first call in a fresh environment compiles
    (seconds), later processes load the cache.  numpy and numba: time ``O(N^2 d)``.

    grid engine: the points are bucketed in cells of side ``~eps / s`` over their
    (at most) three coordinates of largest span; each row visits the cells that
    can hold a partner, and tests those pairs with the exhaustive kernels'
    arithmetic.  Lines are counted per diagonal and per column in any order
    within a row, and the rows are cut into blocks that count the lines starting
    in them, one parallel task per numba thread
    (``_rqa_kernels.grid_line_histograms``).  Memory ``O(N)`` (about 50 N bytes
    per thread plus ``(8 d + 24) N`` for the grid); time ``O(candidates)``.

    Fixed recurrence rate on the grid: one pass counts the pairs around a sampled
    bracket of the threshold, then the RQA pass runs on the same grid, at the
    exact threshold when the bracket's distances fit a buffer, else at the lower
    edge of the threshold's histogram bin, collecting that bin's few pairs and
    adding those below the exact threshold afterwards (each of their lines
    walked): the matrix and measures of the exact threshold, for about 1.4-1.6x
    the time of the RQA at that threshold (``benchmarks/rqa_speed_test.py``) and
    about 100 N bytes more.

    References
    ----------
    N. Marwan, M. C. Romano, M. Thiel, J. Kurths, Phys. Rep. 438, 237 (2007).

    Examples
    --------
    A periodic signal, embedded in two dimensions, is mostly diagonal lines; the
    default recurrence rate is 5 %:

    >>> import numpy as np
    >>> import netdyn as nd
    >>> res = nd.rqa(np.sin(2 * np.pi * np.arange(300) / 20), emb_dim=2)
    >>> round(res.RR, 3), round(res.DET, 2)
    (0.05, 0.94)
    """
    caller = "rqa"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                           emb_dim=emb_dim, lag=lag, observable=observable)
    l_min = check_int(l_min, "l_min", caller, minimum=1)
    v_min = check_int(v_min, "v_min", caller, minimum=1)
    block_size = check_int(block_size, "block_size", caller, minimum=1)
    kernels = _kernels(engine, caller)
    pts = spec.points(x)
    _check_length(pts.shape[0], spec.theiler, l_min, v_min, caller, "series (after embedding)")
    if np.all(np.ptp(pts, axis=0) == 0):
        raise ValueError(f"{caller}: expected a non-constant series, got a constant one")
    if pairs_outside(pts.shape[0], theiler=spec.theiler) == 0:
        raise ValueError(f"{caller}: expected theiler < N = {pts.shape[0]}, got {spec.theiler}")
    if spec.threshold is None and kernels is not None and (engine == "grid" or (engine == "auto" and pts.shape[0] >= _GRID_MIN)):
        found = _rqa_rate_grid(kernels, pts, spec.recurrence_rate, spec.metric, spec.theiler, l_min, v_min, engine == "grid")
        if found is not None:
            return found
    eps = _resolve_threshold(pts, spec, block_size, caller, engine)
    return _rqa_points(pts, eps, spec.metric, spec.theiler, l_min, v_min, block_size, kernels, engine)

def _line_histograms_kernels(kernels: ModuleType, pts: np.ndarray, eps: float, metric: str, theiler: int) -> tuple[int, np.ndarray, np.ndarray]:
    """As :func:`_line_histograms`, by the numba kernels; all work arrays allocated here (visible to tracemalloc).

    With more than one numba thread and at least :data:`_BANDED_MIN` points, the
    upper triangle is cut into one band of diagonals per thread, of equal numbers of
    pairs (:func:`netdyn.series._rqa_kernels.line_histograms_banded`); the histograms are
    those of the single-threaded kernel, exactly.  Memory ``O(N)`` per thread.
    """
    import numba

    n = pts.shape[0]
    pts = np.ascontiguousarray(pts)
    diag = np.zeros(n + 1, dtype=np.int64)
    vert = np.zeros(n + 1, dtype=np.int64)
    code = kernels.METRIC_CODES[metric]
    bounds = _diagonal_bands(n, max(theiler, 1), numba.get_num_threads() if n >= _BANDED_MIN else 1)
    if bounds.size <= 2:
        work = [np.empty(n, dtype=np.int64) for _ in range(4)]
        row = np.empty(n + 1, dtype=bool)
        count = kernels.line_histograms(pts, eps, code, theiler, diag, vert, work[0], work[1], row, work[2], work[3])
        return count, diag, vert
    b = bounds.size - 1
    count = kernels.line_histograms_banded(
        pts, eps, code, theiler, bounds, diag, vert, np.empty((b, n + 1), np.int64), np.empty((b, n + 1), np.int64),
        np.empty(n, np.int64), *(np.empty((b, n), np.int64) for _ in range(4)), np.empty(b, np.int64),
        np.empty((b, n), dtype=bool), np.empty((b, 2, n), np.int64),
    )
    return count, diag, vert


_BANDED_MIN = 10_000  # below this one thread is done before several have started (5 000 points: 0.04 s vs 0.08 s)


def _diagonal_bands(n: int, k_min: int, n_bands: int) -> np.ndarray:
    """Offsets ``k_min = b_0 < ... < b_B = n`` cutting the diagonals ``k_min <= k < n`` of an
    ``n x n`` upper triangle into at most ``n_bands`` bands of nearly equal pair counts
    (diagonal ``k`` holds ``n - k`` pairs)."""
    if n_bands <= 1 or n - k_min < 2:
        return np.array([k_min, max(n, k_min)], dtype=np.int64)
    ks = np.arange(k_min, n)
    pairs = np.cumsum(n - ks)
    cuts = np.searchsorted(pairs, pairs[-1] * np.arange(1, n_bands) / n_bands) + k_min + 1
    return np.unique(np.concatenate(([k_min], np.minimum(cuts, n), [n]))).astype(np.int64)


_GRID_MIN = 2_000
"""Fewest points for which ``engine="auto"`` considers the neighbour grid (below, the exhaustive kernel is done in
milliseconds)."""
_GRID_SHARE = 0.25
"""``engine="auto"`` takes the grid when its candidate pairs are at most this share of all pairs: a candidate costs
more than a pair of the exhaustive kernel (gathered, not streamed; cells located per row)."""
_GRID_CELL_COST = 16
"""What one cell visited per row costs, in candidate pairs (loop set-up, the cell's bounds); picks the subdivision."""
_GRID_SUBDIVISIONS = (1, 2, 3)


def _grid(kernels: ModuleType, pts: np.ndarray, eps: float, metric: str) -> Any:
    """The cheapest of the grids with cells of ``eps / s``, ``s`` in :data:`_GRID_SUBDIVISIONS`.

    Cost: candidate pairs + :data:`_GRID_CELL_COST` per cell visited per row.
    """
    code = kernels.METRIC_CODES[metric]
    best, best_cost = None, math.inf
    for s in _GRID_SUBDIVISIONS:
        grid = kernels.build_grid(pts, eps, code, s, sort=False)
        cost = grid.candidates + _GRID_CELL_COST * pts.shape[0] * grid.offsets.size
        if cost < best_cost:
            best, best_cost = grid, cost
    return kernels.sort_grid(best, pts)


def _grid_pays(grid: Any, n: int) -> bool:
    """The rule of ``engine="auto"``: at least :data:`_GRID_MIN` points and candidates at most :data:`_GRID_SHARE` of
    the ``N (N - 1)`` ordered pairs."""
    return n >= _GRID_MIN and grid.candidates <= _GRID_SHARE * n * (n - 1)


def _row_blocks(grid: Any, n_blocks: int) -> np.ndarray:
    """Bounds ``0 = a_0 < ... < a_B = N`` of row blocks of nearly equal work.

    Row ``i``'s work: the candidates of its cells after ``i`` (about ``(N - i) / N`` of them) and the cells themselves.
    """
    n = grid.cell.size
    work = grid.row_work * ((n - np.arange(n)) / n) + _GRID_CELL_COST * grid.offsets.size
    cum = np.cumsum(work)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_blocks) / n_blocks)
    return np.unique(np.concatenate(([0], np.clip(cuts, 1, n), [n]))).astype(np.int64)


_GRID_BLOCKS_PER_TASK = 8
"""Row blocks per parallel task: more than one, so that a task delayed by another process costs little."""


def _grid_work(n: int, grid: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Row blocks of ``grid`` for the grid line kernels, and their work arrays ``diag_t``, ``vert_t``, ``dstate_t``,
    ``cstate_t``, ``hits_t``, ``first_t``, ``upper_t`` (one row per parallel task: :func:`_grid_tasks`)."""
    tasks = _grid_tasks(n)
    blocks = _row_blocks(grid, min(_GRID_BLOCKS_PER_TASK * tasks, max(1, n // 64)))
    state = np.int32 if n < 2**31 - 8 else np.int64
    return blocks, [
        np.empty((tasks, n + 1), np.int64), np.empty((tasks, n + 1), np.int64), np.empty((tasks, n, 2), state),
        np.empty((tasks, n, 2), state), np.empty((tasks, n), np.int64), np.empty((tasks, grid.start.size - 1), np.int64),
        np.empty(tasks, np.int64),
    ]


def _grid_merged(n: int, theiler: int, work: list[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """(recurrent pairs, diagonal histogram, vertical histogram) from the tasks' rows of :func:`_grid_work`'s arrays."""
    diag, vert = work[0].sum(axis=0), work[1].sum(axis=0)
    diag[0] = vert[0] = 0
    return 2 * int(work[6].sum()) + (n if theiler == 0 else 0), diag, vert


def _line_histograms_grid(
    kernels: ModuleType, pts: np.ndarray, eps: float, metric: str, theiler: int, grid: Any
) -> tuple[int, np.ndarray, np.ndarray]:
    """As :func:`_line_histograms`, over the candidate pairs of ``grid`` (:func:`netdyn._rqa_kernels.grid_line_histograms`).

    One parallel task per numba thread; work arrays allocated here: about ``40 N`` bytes per task, plus 8 per grid
    cell (at most ``4 N`` cells), besides the grid's ``(8 d + 24) N``.
    """
    n = pts.shape[0]
    pts = np.ascontiguousarray(pts)
    code = kernels.METRIC_CODES[metric]
    s_max = kernels.square_root_bound(eps) if code == 1 else eps
    blocks, work = _grid_work(n, grid)
    kernels.grid_line_histograms(
        pts, eps, s_max, -1.0, code, theiler, grid.spts, grid.sidx, grid.cell, grid.start, grid.offsets, blocks,
        *work, *kernels.without_near_pairs(work[6].size),
    )
    return _grid_merged(n, theiler, work)


def _line_histograms_grid_near(
    kernels: ModuleType, pts: np.ndarray, eps: float, top: float, metric: str, theiler: int, grid: Any, cap: int,
    rows: np.ndarray,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_line_histograms_grid` at ``eps``, and the pairs ``j - i >= max(theiler, 1)`` with ``eps <= d <= top``
    of the rows ``i`` with ``rows[i]`` (bool, N) as rows ``(i, j, raw distance)`` (Euclidean: the sum of squares),
    or None when a task found more than ``cap``
    (:func:`netdyn.series._rqa_kernels.grid_line_histograms` with ``collect``; ``grid`` must hold every pair with
    ``d <= top``).

    Memory: :func:`_line_histograms_grid`'s, plus ``16 N + 24 cap`` bytes per task.
    """
    n = pts.shape[0]
    code = kernels.METRIC_CODES[metric]
    s_max = kernels.square_root_bound(eps) if code == 1 else eps
    s_top = kernels.square_root_bound(float(np.nextafter(top, np.inf))) if code == 1 else top
    blocks, work = _grid_work(n, grid)
    tasks = work[6].size
    near_t, n_near = np.empty((tasks, cap, 3)), np.empty(tasks, np.int64)
    kernels.grid_line_histograms(
        pts, eps, s_max, s_top, code, theiler, grid.spts, grid.sidx, grid.cell, grid.start, grid.offsets, blocks,
        *work, np.empty((tasks, n), np.int64), np.empty((tasks, n)), near_t, n_near,
        np.ascontiguousarray(rows, dtype=np.bool_), True,
    )
    near = np.concatenate([near_t[t, : n_near[t]] for t in range(tasks)]) if np.all(n_near <= cap) else None
    return (*_grid_merged(n, theiler, work), near)


def _rqa_points(
    pts: np.ndarray, eps: float, metric: str, theiler: int, l_min: int, v_min: int, block_size: int,
    kernels: ModuleType | None, engine: str = "auto",
) -> RQAResult:
    n = pts.shape[0]
    wanted = engine == "grid" or (engine == "auto" and n >= _GRID_MIN)
    grid = _grid(kernels, pts, eps, metric) if kernels is not None and wanted else None
    if kernels is None:
        count, diag, vert = _line_histograms(pts, eps, _METRICS[metric], theiler, block_size)
    elif grid is not None and (engine == "grid" or _grid_pays(grid, n)):
        count, diag, vert = _line_histograms_grid(kernels, pts, eps, metric, theiler, grid)
    else:
        count, diag, vert = _line_histograms_kernels(kernels, pts, eps, metric, theiler)
    return _rqa_result(n, count, diag, vert, eps, metric, theiler, l_min, v_min)


def _rqa_result(
    n: int, count: int, diag: np.ndarray, vert: np.ndarray, eps: float, metric: str, theiler: int, l_min: int, v_min: int
) -> RQAResult:
    """The :class:`RQAResult` of ``count`` recurrent pairs and the line histograms of ``n`` points."""
    det, mean_l, lmax, entr = line_measures(diag, l_min=l_min)
    lam, tt, vmax, _ = line_measures(vert, l_min=v_min)
    return RQAResult(
        RR=count / pairs_outside(n, theiler=theiler),
        DET=det,
        L=mean_l,
        Lmax=lmax,
        DIV=1.0 / lmax if lmax > 0 else float("nan"),
        ENTR=entr,
        LAM=lam,
        TT=tt,
        Vmax=vmax,
        diag_hist=diag,
        vert_hist=vert,
        threshold=eps,
        metric=metric,
        theiler=theiler,
        l_min=l_min,
        v_min=v_min,
        n_points=n,
    )


@with_recurrence_doc
def windowed_rqa(
    x: Any,
    *,
    window: int,
    step: int | None = None,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    l_min: int = 2,
    v_min: int = 2,
    engine: str = "auto",
    progress: bool | None = None,
) -> xr.Dataset:
    """RQA in sliding windows along a trajectory.

    One threshold serves all windows: given, or chosen once on the whole series
    for the target rate, so that the windows' measures are comparable.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        Series or state trajectory (:func:`recurrence_points`).
    window : int
        Points per window (after embedding).
    step : int, optional
        Shift between windows, in points (default ``window // 4``).
    {recurrence_parameters}
    l_min, v_min, engine
        As :func:`rqa`.
    progress : bool, optional
        tqdm progress bar over the windows (None: shown only on a terminal).

    Returns
    -------
    xarray.Dataset
        The variables of :meth:`RQAResult.to_dataset`, with the measures and
        the histograms over ``window_center`` (index of the window's middle
        point, or the ``step`` coordinate of a trajectory Dataset):
        ``RQAResult.from_dataset(out.isel(window_center=i))`` is window ``i``'s
        :func:`rqa` with the common threshold.  Attrs add ``window`` and ``step``.

    Raises
    ------
    ValueError
        For invalid settings or windows too short for a line.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> out = nd.windowed_rqa(np.sin(0.3 * np.arange(200)), window=50, step=50, progress=False)
    >>> out["DET"].dims, out.sizes["window_center"]
    (('window_center',), 4)
    """
    caller = "windowed_rqa"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                           emb_dim=emb_dim, lag=lag, observable=observable)
    l_min = check_int(l_min, "l_min", caller, minimum=1)
    v_min = check_int(v_min, "v_min", caller, minimum=1)
    kernels = _kernels(engine, caller)
    pts = spec.points(x)
    n = pts.shape[0]
    window = check_int(window, "window", caller, minimum=2, maximum=n)
    step = max(1, window // 4) if step is None else check_int(step, "step", caller, minimum=1)
    _check_length(window, spec.theiler, l_min, v_min, caller, "window")
    eps = _resolve_threshold(pts, spec, _BLOCK, caller, engine)
    starts = np.arange(0, n - window + 1, step)
    results = [
        _rqa_points(pts[s : s + window], eps, spec.metric, spec.theiler, l_min, v_min, _BLOCK, kernels, engine)
        for s in tqdm(starts, desc=caller, unit="window", disable=None if progress is None else not progress)
    ]
    centre = starts + (window - 1) // 2
    if isinstance(x, xr.Dataset) and "step" in x.coords:
        centre = x["step"].values[centre]
    varying = {m: ("window_center", np.array([getattr(r, m) for r in results])) for m in _MEASURES}
    for name in ("diag_hist", "vert_hist"):
        varying[name] = (("window_center", "length"), np.stack([getattr(r, name) for r in results]))
    out = results[0].to_dataset().assign(varying).assign_coords(window_center=centre)
    out.attrs.update(window=window, step=step)
    return out

