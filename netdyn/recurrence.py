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
(:mod:`netdyn._rqa_kernels`), in ``O(N)`` memory, with the same results:
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
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist

from .embedding import delay_embed

__all__ = [
    "RQAResult",
    "recurrence_points",
    "recurrence_threshold",
    "recurrence_matrix",
    "recurrence_image",
    "rqa",
    "windowed_rqa",
]

_METRICS = {"supremum": "chebyshev", "euclidean": "euclidean", "manhattan": "cityblock"}
_BLOCK = 1 << 20
_MEASURES = ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax")
_ENGINES = ("auto", "numba", "grid", "numpy")
_BINS = 8192
_SELECT = 1 << 18


@dataclass(frozen=True, eq=False)
class RQAResult:
    """RQA measures of one recurrence matrix (definitions in the module docstring).

    ``diag_hist[l]`` / ``vert_hist[v]`` count the lines of length exactly ``l`` /
    ``v`` (index 0 unused); the remaining fields record how the matrix was made.
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
    diag_hist: np.ndarray
    vert_hist: np.ndarray
    threshold: float
    metric: str
    theiler: int
    l_min: int
    v_min: int
    n_points: int

    def to_dataset(self) -> xr.Dataset:
        """Measures as scalar variables, histograms over ``length``; settings as attrs."""
        data = {name: ((), getattr(self, name)) for name in _MEASURES}
        data["diag_hist"] = ("length", self.diag_hist)
        data["vert_hist"] = ("length", self.vert_hist)
        attrs = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _MEASURES and not f.name.endswith("hist")}
        return xr.Dataset(data, coords={"length": np.arange(self.diag_hist.size)}, attrs=attrs)


def recurrence_points(x: Any, emb_dim: int = 1, lag: int = 1, observable: str | None = None) -> np.ndarray:
    """The points ``X_i`` (N', D) whose recurrences are analysed.

    ``x`` is an array (N,) / (N, d), a ``DataArray`` or a trajectory ``Dataset``
    (``observable`` as in :func:`netdyn.datadriven.observable_series`, default
    ``"loss"``; non-finite tails are cut with a warning), delay-embedded with
    ``emb_dim`` and ``lag`` (default 1: no embedding).
    """
    from .datadriven import observable_series

    pts = observable_series(x, observable) if observable is not None or isinstance(x, xr.Dataset) else _array(x)
    pts = delay_embed(pts, emb_dim, lag)
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


def _metric(metric: str, caller: str) -> str:
    if metric not in _METRICS:
        raise ValueError(f"{caller}: expected metric in {list(_METRICS)}, got {metric!r}")
    return _METRICS[metric]


def _kernels(engine: str, caller: str) -> ModuleType | None:
    """The numba kernels module, or None for the numpy path."""
    if engine not in _ENGINES:
        raise ValueError(f"{caller}: expected engine in {list(_ENGINES)}, got {engine!r}")
    if engine == "numpy":
        return None
    try:
        return importlib.import_module(f"{__package__}._rqa_kernels")
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


def _pairs_outside(n: int, theiler: int) -> int:
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
    recurrence_rate: float,
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
    x : array (N,) / (N, d) or DataArray
        Series or state trajectory (see :func:`recurrence_points`).
    recurrence_rate : float in [0, 1]
        Target fraction of recurrent pairs.
    metric, theiler, emb_dim, lag, block_size, engine
        As :func:`rqa`.

    Returns
    -------
    float
        The distance of rank ``int(rate (T - 1))`` (0-based, ascending) among the
        ``T`` pair distances outside the Theiler window; recurrences are
        ``d < eps``, so the realised rate is at most the target (exactly
        pyunicorn's ``threshold_from_recurrence_rate`` for ``theiler=0``).

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
    """
    caller = "recurrence_threshold"
    if not 0 <= recurrence_rate <= 1:
        raise ValueError(f"{caller}: expected recurrence_rate in [0, 1], got {recurrence_rate}")
    kernels = _kernels(engine, caller)
    pts = recurrence_points(x, emb_dim, lag)
    name = _metric(metric, caller)
    n = pts.shape[0]
    pairs = _pairs_outside(n, theiler)
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
    i, j = np.empty(0, np.int64), np.empty(0, np.int64)
    while i.size < size:
        a, b = rng.integers(0, n, (2, 2 * size))
        far = np.abs(a - b) >= kmin
        i, j = np.concatenate((i, np.minimum(a, b)[far])), np.concatenate((j, np.maximum(a, b)[far]))
    return i[:size], j[:size]


def _threshold_grid(kernels: ModuleType, pts: np.ndarray, rank: int, metric: str, theiler: int, force: bool) -> float | None:
    """:func:`_threshold_kernels` over the candidate pairs of a neighbour grid; None when the grid does not pay
    (:func:`_grid_pays`, unless ``force``), the Theiler window leaves fewer than half the pairs, or the bracket
    cannot be narrowed (distances too close to bin).

    The distance of upper-triangle rank ``r`` is bracketed by ``[lo, hi]`` from the distances of
    ``min(`` :data:`_SAMPLE` ``, 16 N)`` random pairs (the sampled quantiles ``r / T_u +- z sigma``, :data:`_SAMPLE_Z`, a fixed seed:
    the bracket only sets the speed, never the result).  A grid holding every pair with ``d <= hi`` then counts
    the pairs below ``lo`` and collects those in ``[lo, hi]`` (one pass, usually; a bracket holding more than
    :data:`_GRID_VALUES` is narrowed to the histogram bin of the rank, one more pass; a bracket that misses
    the rank is moved).  The value is that rank's distance among all pairs, exactly.
    """
    import numba

    n = pts.shape[0]
    zeros = n if theiler == 0 else 0
    if rank < zeros:
        return 0.0
    rank = (rank - zeros) // 2
    kmin = max(theiler, 1)
    code = kernels.METRIC_CODES[metric]
    upper = (n - kmin) * (n - kmin + 1) // 2
    pts = np.ascontiguousarray(pts)
    if 4 * upper < n * n:  # a Theiler window over half the series: random pairs would mostly be redrawn
        return None
    size = min(_SAMPLE, 16 * n, upper)  # ~ the cost of a pass over N rows, no more
    sample = np.sort(kernels.pair_distances(pts, *_random_pairs(n, kmin, size), code))
    q, sigma = rank / upper, math.sqrt(max(rank / upper * (1 - rank / upper), 1.0 / size) / size)
    r_lo, r_hi = math.floor((q - _SAMPLE_Z * sigma) * size), math.ceil((q + _SAMPLE_Z * sigma) * size)
    lo = float(sample[r_lo]) if r_lo >= 0 else 0.0
    diameter = _diameter(pts, _METRICS[metric])
    hi = float(sample[r_hi]) if r_hi < size else diameter
    grid, grid_hi = None, -1.0
    tasks = max(1, min(numba.get_num_threads(), n // 64))
    cap = min(_GRID_VALUES, upper) // tasks + 1
    counts_t, out_t = np.empty((tasks, _BINS), np.int64), np.empty((tasks, cap))
    found_t, bounds_t, inside_t = np.empty((tasks, 2), np.int64), np.empty((tasks, 2)), np.empty((tasks, n))
    while True:
        if hi > grid_hi:
            grid = _grid(kernels, pts, float(np.nextafter(hi, np.inf)), metric)
            if not force and not _grid_pays(grid, n):
                return None
            grid_hi, first_t = hi, np.empty((tasks, grid.start.size - 1), np.int64)
            blocks = _row_blocks(grid, min(_GRID_BLOCKS_PER_TASK * tasks, max(1, n // 64)))
        scale = _BINS / (hi - lo) if hi > lo else 0.0
        if not math.isfinite(scale):
            return None
        if code == 1:
            below_max = kernels.square_root_bound(lo) if lo > 0 else -1.0
            top_max = kernels.square_root_bound(float(np.nextafter(hi, np.inf)))
        else:
            below_max, top_max = float(np.nextafter(lo, -np.inf)), hi
        kernels.grid_distance_histogram(
            pts, code, kmin, lo, below_max, top_max, scale, grid.spts, grid.cell, grid.start,
            grid.offsets, blocks, counts_t, out_t, found_t, bounds_t, first_t, inside_t,
        )
        below, inside = int(found_t[:, 0].sum()), int(found_t[:, 1].sum())
        r = rank - below
        if r < 0:  # the rank lies below the bracket
            lo, hi = 0.0, float(np.nextafter(lo, -np.inf))
        elif r >= inside:  # above it
            if hi >= diameter:
                return None
            lo, hi = float(np.nextafter(hi, np.inf)), min(2 * hi if hi > 0 else diameter * 2.0**-20, diameter)
        elif np.all(found_t[:, 1] <= cap):
            values = np.concatenate([out_t[t, : found_t[t, 1]] for t in range(tasks)])
            return float(np.partition(values, r)[r])
        else:  # too many values: keep the bin holding the rank, within the values' range
            low, high = float(bounds_t[:, 0].min()), float(bounds_t[:, 1].max())
            if low == high:
                return low
            b = int(np.searchsorted(np.cumsum(counts_t.sum(axis=0)), r, "right"))
            pad = (hi - lo) * 2.0**-40  # rounding of the bin edges: a bracket a little wide is harmless
            new = max(low, lo + b / scale - pad), min(high, lo + (b + 1) / scale + pad)
            if new == (lo, hi):
                return None
            lo, hi = new


DEFAULT_RECURRENCE_RATE = 0.05
"""The recurrence rate used when neither a threshold nor a rate is given: a few percent is
the usual choice (Marwan, Romano, Thiel & Kurths, Phys. Rep. 438 (2007) 237; Zbilut &
Webber): small enough for the lines to mean something, large enough to count them."""


def _resolve_threshold(
    pts: np.ndarray,
    threshold: float | None,
    recurrence_rate: float | None,
    metric: str,
    theiler: int,
    block_size: int,
    caller: str,
    engine: str = "auto",
) -> float:
    if threshold is not None and recurrence_rate is not None:
        raise ValueError(f"{caller}: expected at most one of threshold / recurrence_rate, got {threshold=}, {recurrence_rate=}")
    if threshold is None and recurrence_rate is None:
        recurrence_rate = DEFAULT_RECURRENCE_RATE
    if threshold is not None:
        if not threshold > 0:
            raise ValueError(f"{caller}: expected threshold > 0, got {threshold}")
        return float(threshold)
    eps = recurrence_threshold(pts, recurrence_rate, metric, theiler, block_size=block_size, engine=engine)
    if eps == 0:
        warnings.warn(
            f"{caller}: more than a fraction {recurrence_rate} of the pairs coincide exactly (e.g. a periodic "
            "orbit); counting exact coincidences as recurrences (eps = smallest positive float)",
            RuntimeWarning,
            stacklevel=3,
        )
        eps = float(np.nextafter(0.0, 1.0))
    return eps


def recurrence_matrix(
    x: Any,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    packed: bool = False,
    block_size: int = _BLOCK,
) -> np.ndarray:
    """The recurrence matrix, as bool (N, N) or bit-packed rows.

    Parameters as :func:`rqa`; ``packed=True`` returns ``np.packbits(R, axis=1)``
    of shape ``(N, ceil(N / 8))`` uint8 (N^2 / 8 bytes; 50 MB at N = 20 000),
    built block by block.  For RQA measures use :func:`rqa`, for a picture
    :func:`recurrence_image`; neither forms this matrix.
    """
    caller = "recurrence_matrix"
    pts = recurrence_points(x, emb_dim, lag)
    _check_length(pts.shape[0], theiler, 1, 1, caller, "series (after embedding)")
    name = _metric(metric, caller)
    eps = _resolve_threshold(pts, threshold, recurrence_rate, metric, theiler, block_size, caller)
    n = pts.shape[0]
    out = np.empty((n, (n + 7) // 8 if packed else n), dtype=np.uint8 if packed else bool)
    for i0, block in _recurrent_rows(pts, eps, name, theiler, _bounds(n, _rows_per_block(n, block_size))):
        rows = block[:, :n]
        out[i0 : i0 + rows.shape[0]] = np.packbits(rows, axis=1) if packed else rows
    return out


def recurrence_image(
    x: Any,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    emb_dim: int = 1,
    lag: int = 1,
    size: int = 1000,
    block_size: int = _BLOCK,
) -> tuple[np.ndarray, int]:
    """A recurrence plot downsampled by block-OR, for display.

    Returns ``(image, factor)``: ``image[I, J]`` is True when any ``R_ij`` with
    ``i // factor == I`` and ``j // factor == J`` is, where
    ``factor = ceil(N / size)``; the image is bool of side ``ceil(N / factor)``.
    Built row block by row block, so memory is ``O(block_size + size^2)``.
    """
    caller = "recurrence_image"
    pts = recurrence_points(x, emb_dim, lag)
    name = _metric(metric, caller)
    eps = _resolve_threshold(pts, threshold, recurrence_rate, metric, theiler, block_size, caller)
    n = pts.shape[0]
    factor = max(1, math.ceil(n / size))
    side = math.ceil(n / factor)
    rows = factor * max(1, _rows_per_block(n, block_size) // factor)
    image = np.zeros((side, side), dtype=bool)
    for i0, block in _recurrent_rows(pts, eps, name, theiler, _bounds(n, rows)):
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


def _line_measures(hist: np.ndarray, l_min: int) -> tuple[float, float, int, float]:
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


def rqa(
    x: Any,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    l_min: int = 2,
    v_min: int = 2,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    block_size: int = _BLOCK,
    engine: str = "auto",
) -> RQAResult:
    """Recurrence quantification analysis without an ``N x N`` matrix in memory.

    Parameters
    ----------
    x : array (N,) / (N, d), DataArray or trajectory Dataset
        Series or state trajectory (:func:`recurrence_points`).
    threshold : float, optional
        Recurrence threshold ``eps`` (recurrence when distance ``< eps``).
    recurrence_rate : float, optional
        Instead of ``threshold``: the target RR (:func:`recurrence_threshold`).
        Neither given: ``recurrence_rate = 0.05`` (:data:`DEFAULT_RECURRENCE_RATE`).
    metric : {"supremum", "euclidean", "manhattan"}, default "supremum"
    theiler : int, default 1
        Pairs with ``|i - j| < theiler`` are removed (1: the LOI; 0: pyunicorn).
    l_min, v_min : int, default 2
        Shortest diagonal / vertical line counted by DET, L, ENTR / LAM, TT.
    emb_dim, lag : int, default 1
        Optional delay embedding of ``x``.
    observable : str, optional
        For a Dataset input (default ``"loss"``).
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
    """
    caller = "rqa"
    if l_min < 1 or v_min < 1 or theiler < 0:
        raise ValueError(f"{caller}: expected l_min >= 1, v_min >= 1, theiler >= 0, got {l_min}, {v_min}, {theiler}")
    kernels = _kernels(engine, caller)
    pts = recurrence_points(x, emb_dim, lag, observable)
    _check_length(pts.shape[0], theiler, l_min, v_min, caller, "series (after embedding)")
    if np.all(np.ptp(pts, axis=0) == 0):
        raise ValueError(f"{caller}: expected a non-constant series, got a constant one")
    if _pairs_outside(pts.shape[0], theiler) == 0:
        raise ValueError(f"{caller}: expected theiler < N = {pts.shape[0]}, got {theiler}")
    _metric(metric, caller)
    eps = _resolve_threshold(pts, threshold, recurrence_rate, metric, theiler, block_size, caller, engine)
    return _rqa_points(pts, eps, metric, theiler, l_min, v_min, block_size, kernels, engine)


def _line_histograms_kernels(kernels: ModuleType, pts: np.ndarray, eps: float, metric: str, theiler: int) -> tuple[int, np.ndarray, np.ndarray]:
    """As :func:`_line_histograms`, by the numba kernels; all work arrays allocated here (visible to tracemalloc).

    With more than one numba thread and at least :data:`_BANDED_MIN` points, the
    upper triangle is cut into one band of diagonals per thread, of equal numbers of
    pairs (:func:`netdyn._rqa_kernels.line_histograms_banded`); the histograms are
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


def _line_histograms_grid(
    kernels: ModuleType, pts: np.ndarray, eps: float, metric: str, theiler: int, grid: Any
) -> tuple[int, np.ndarray, np.ndarray]:
    """As :func:`_line_histograms`, over the candidate pairs of ``grid`` (:func:`netdyn._rqa_kernels.grid_line_histograms`).

    One parallel task per numba thread; work arrays allocated here: about ``40 N`` bytes per task, plus 8 per grid
    cell (at most ``4 N`` cells), besides the grid's ``(8 d + 24) N``.
    """
    import numba

    n = pts.shape[0]
    pts = np.ascontiguousarray(pts)
    tasks = max(1, min(numba.get_num_threads(), n // 64))
    blocks = _row_blocks(grid, min(_GRID_BLOCKS_PER_TASK * tasks, max(1, n // 64)))
    code = kernels.METRIC_CODES[metric]
    s_max = kernels.square_root_bound(eps) if code == 1 else eps
    state = np.int32 if n < 2**31 - 8 else np.int64
    diag_t, vert_t = np.empty((tasks, n + 1), np.int64), np.empty((tasks, n + 1), np.int64)
    upper = np.empty(tasks, np.int64)
    kernels.grid_line_histograms(
        pts, eps, s_max, code, theiler, grid.spts, grid.sidx, grid.cell, grid.start, grid.offsets, blocks, diag_t,
        vert_t, np.empty((tasks, n, 2), state), np.empty((tasks, n, 2), state), np.empty((tasks, n), np.int64),
        np.empty((tasks, grid.start.size - 1), np.int64), upper,
    )
    diag, vert = diag_t.sum(axis=0), vert_t.sum(axis=0)
    diag[0] = vert[0] = 0
    return 2 * int(upper.sum()) + (n if theiler == 0 else 0), diag, vert


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
    det, mean_l, lmax, entr = _line_measures(diag, l_min)
    lam, tt, vmax, _ = _line_measures(vert, v_min)
    return RQAResult(
        RR=count / _pairs_outside(n, theiler),
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


def windowed_rqa(
    x: Any,
    window: int,
    step: int | None = None,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    l_min: int = 2,
    v_min: int = 2,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    engine: str = "auto",
) -> xr.Dataset:
    """RQA in sliding windows along a trajectory.

    Parameters
    ----------
    window : int
        Points per window.
    step : int, optional
        Shift between windows (default ``window // 4``).
    threshold / recurrence_rate
        One threshold for all windows: given, or chosen once on the whole series
        for the target rate, so that the windows' measures are comparable.
    others
        As :func:`rqa`.

    Returns
    -------
    xarray.Dataset
        Each measure over ``window_center`` (index of the window's middle point,
        or the ``step`` coordinate of a trajectory Dataset); ``threshold`` as attr.
    """
    caller = "windowed_rqa"
    kernels = _kernels(engine, caller)
    pts = recurrence_points(x, emb_dim, lag, observable)
    n = pts.shape[0]
    step = max(1, window // 4) if step is None else int(step)
    if not 2 <= window <= n or step < 1:
        raise ValueError(f"{caller}: expected 2 <= window <= {n} and step >= 1, got window={window}, step={step}")
    _check_length(window, theiler, l_min, v_min, caller, "window")
    _metric(metric, caller)
    eps = _resolve_threshold(pts, threshold, recurrence_rate, metric, theiler, _BLOCK, caller, engine)
    starts = np.arange(0, n - window + 1, step)
    values = {m: np.empty(starts.size) for m in _MEASURES}
    for w, s in enumerate(starts):
        res = _rqa_points(pts[s : s + window], eps, metric, theiler, l_min, v_min, _BLOCK, kernels, engine)
        for m in _MEASURES:
            values[m][w] = getattr(res, m)
    centre = starts + (window - 1) // 2
    if isinstance(x, xr.Dataset) and "step" in x.coords:
        centre = x["step"].values[centre]
    return xr.Dataset(
        {m: ("window_center", v) for m, v in values.items()},
        coords={"window_center": centre},
        attrs={"threshold": eps, "metric": metric, "theiler": theiler, "window": window, "step": step, "l_min": l_min, "v_min": v_min},
    )
