"""Numba kernels for :mod:`netdyn.recurrence` (the optional ``fast`` extra).

Every kernel walks the upper triangle ``j > i`` of the pair-distance matrix row
by row, computing each distance once, and allocates nothing of size ``N``: the
caller passes the (``O(N)``) work arrays, so that ``tracemalloc`` sees all the
memory used.  Distances are accumulated over the coordinates in their natural
order, as ``scipy.spatial.distance.cdist`` does, so they are bit-identical to
the numpy path's and thresholds / recurrences agree exactly.  They come per pair
(``_distance``, fused with the recurrence test: fastest for RQA) or per row
(``_distance_row`` on the transposed points, vectorised: fastest for the
threshold histograms).

The row loops are functions of their own (``inline="never"``): inlined into the
outer loops, LLVM compiles them 2-3x slower.  Single-threaded on purpose: a
``prange`` over batches of rows, tried, was deterministic but 20x slower on a
machine with more busy threads than cores (every batch waits for a descheduled
thread).

Metric codes: 0 supremum, 1 Euclidean, 2 Manhattan.
"""
from __future__ import annotations

import numba
import numpy as np

METRIC_CODES = {"supremum": 0, "euclidean": 1, "manhattan": 2}


@numba.njit(cache=True, inline="always")
def _distance(pts: np.ndarray, i: int, j: int, metric: int) -> float:
    d = pts.shape[1]
    s = 0.0
    if metric == 0:
        for c in range(d):
            v = abs(pts[i, c] - pts[j, c])
            if v > s:
                s = v
    elif metric == 1:
        for c in range(d):
            v = pts[i, c] - pts[j, c]
            s += v * v
        s = np.sqrt(s)
    else:
        for c in range(d):
            s += abs(pts[i, c] - pts[j, c])
    return s


@numba.njit(cache=True, inline="never")
def _row(pts: np.ndarray, i: int, start: int, eps: float, metric: int, row: np.ndarray, hits: np.ndarray) -> int:
    """``row[j] = R_ij`` for ``j >= start``; the recurrent ``j`` to ``hits`` (branch-free); how many."""
    m = 0
    for j in range(start, pts.shape[0]):
        rec = _distance(pts, i, j, metric) < eps
        row[j] = rec
        hits[m] = j
        m += rec
    return m


@numba.njit(cache=True)
def line_histograms(
    pts: np.ndarray,
    eps: float,
    metric: int,
    theiler: int,
    diag: np.ndarray,
    vert: np.ndarray,
    diag_run: np.ndarray,
    vert_run: np.ndarray,
    row: np.ndarray,
    hits: np.ndarray,
    prev_hits: np.ndarray,
) -> int:
    """Fill ``diag`` / ``vert`` (zeroed, length N + 1) with the line-length histograms; return the recurrent pairs.

    Conventions are those of ``recurrence._line_histograms``: diagonal lines of
    offsets ``k = j - i >= max(theiler, 1)`` counted in the upper triangle and
    doubled, vertical lines over whole columns of the symmetric matrix (with the
    LOI when ``theiler == 0``), pairs counted over the whole matrix.

    One pass over the rows ``i`` of the upper triangle.  Row ``i``'s entries
    are written to ``row`` (bool, N + 1; ``row[N]`` stays False) and its
    recurrent columns, ascending, to ``hits``.  Runs are kept per diagonal
    ``k = j - i`` (``diag_run[k]``) and per column ``j`` over its rows ``< j``
    (``vert_run[j]``); a run can only end where the previous row had a
    recurrence, so the previous row's ``prev_hits`` are checked against
    ``row``, and all bookkeeping costs ``O(recurrences)``.  When row ``i``
    starts, column ``i``'s upper part is complete; by symmetry its lower part
    is row ``i`` read left to right, so column ``i`` is finished in the row,
    its run going on through ``R_ii`` (recurrent iff ``theiler == 0``).
    ``diag_run`` / ``vert_run`` / ``hits`` / ``prev_hits`` (int64, N) may hold
    anything on entry.
    """
    n = pts.shape[0]
    kmin = max(theiler, 1)
    upper = 0
    n_prev = 0
    diag_run[:] = 0
    vert_run[:] = 0
    row[n] = False
    for i in range(n):
        m = _row(pts, i, i + kmin, eps, metric, row, hits)
        upper += m
        # runs through the previous row's recurrences (i - 1, jp) that end here; branch-free, as whether a
        # run ends is data-dependent: an ending run of length r adds to bin r, a going one to the junk bin 0
        for j in range(i + 1, min(n, i + kmin)):
            row[j] = False  # the Theiler band
        for h in range(n_prev):
            jp = prev_hits[h]
            k = jp - i + 1
            end = 1 - row[jp + 1]
            r = diag_run[k]
            diag[r * end] += 2
            diag_run[k] = r - r * end
            end = (jp > i) * (1 - row[jp])
            r = vert_run[jp]
            vert[r * end] += 1
            vert_run[jp] = r - r * end
        for h in range(m):
            j = hits[h]
            diag_run[j - i] += 1
            vert_run[j] += 1
        # column i: its rows < i, then R_ii, then row i read left to right
        run = vert_run[i]
        if theiler > 0:
            vert[run] += 1
            run = 0
        else:
            run += 1
        last = i
        for h in range(m):
            j = hits[h]
            end = j != last + 1
            vert[run * end] += 1
            run = run - run * end + 1
            last = j
        vert[run] += 1
        hits, prev_hits, n_prev = prev_hits, hits, m
    diag[0] = 0
    vert[0] = 0
    return 2 * upper + (n if theiler == 0 else 0)


@numba.njit(cache=True, inline="never")
def _distance_row(pts_t: np.ndarray, i: int, start: int, metric: int, out: np.ndarray) -> None:
    """``out[j] = ||X_i - X_j||`` for ``j >= start``, coordinate by coordinate (``pts_t`` is (d, N)).

    Each ``out[j]`` accumulates over the coordinates in order, as ``_distance``.
    """
    d, n = pts_t.shape
    col = pts_t[0]
    xi = col[i]
    if metric == 1:
        for j in range(start, n):
            v = xi - col[j]
            out[j] = v * v
    else:
        for j in range(start, n):
            out[j] = abs(xi - col[j])
    for c in range(1, d):
        col = pts_t[c]
        xi = col[i]
        if metric == 0:
            for j in range(start, n):
                v = abs(xi - col[j])
                out[j] = v if v > out[j] else out[j]
        elif metric == 1:
            for j in range(start, n):
                v = xi - col[j]
                out[j] += v * v
        else:
            for j in range(start, n):
                out[j] += abs(xi - col[j])
    if metric == 1:
        for j in range(start, n):
            out[j] = np.sqrt(out[j])


@numba.njit(cache=True, inline="never")
def _row_histogram(dist: np.ndarray, start: int, lo: float, hi: float, scale: float, counts: np.ndarray) -> None:
    last = counts.size - 1
    for j in range(start, dist.size):
        d = dist[j]
        if lo <= d <= hi:
            counts[min(int((d - lo) * scale), last)] += 1


@numba.njit(cache=True)
def distance_histogram(
    pts_t: np.ndarray, metric: int, kmin: int, lo: float, hi: float, scale: float, counts: np.ndarray, dist: np.ndarray
) -> None:
    """Add to ``counts`` (B bins) the upper-triangle distances ``d`` in ``[lo, hi]`` (``j - i >= kmin``).

    ``pts_t`` is (d, N); ``dist`` (N) a work array.  ``d`` goes to bin
    ``min(int((d - lo) scale), B - 1)``, a non-decreasing function of ``d``, so
    every bin holds the values of one interval.
    """
    for i in range(pts_t.shape[1]):
        _distance_row(pts_t, i, i + kmin, metric, dist)
        _row_histogram(dist, i + kmin, lo, hi, scale, counts)


@numba.njit(cache=True, inline="never")
def _row_bin_values(
    dist: np.ndarray, start: int, lo: float, hi: float, scale: float, last: int, b: int, m: int, out: np.ndarray, bounds: np.ndarray
) -> int:
    for j in range(start, dist.size):
        d = dist[j]
        if lo <= d <= hi and min(int((d - lo) * scale), last) == b:
            if m < out.size:
                out[m] = d
            m += 1
            bounds[0] = min(bounds[0], d)
            bounds[1] = max(bounds[1], d)
    return m


@numba.njit(cache=True)
def distance_bin_values(
    pts_t: np.ndarray, metric: int, kmin: int, lo: float, hi: float, scale: float, last: int, b: int, out: np.ndarray, dist: np.ndarray
) -> tuple[int, float, float]:
    """The distances of bin ``b`` of :func:`distance_histogram` (``last = B - 1``): (how many, min, max).

    Writes them to ``out`` while it has room, so a bin larger than ``out`` still
    yields its exact interval ``[min, max]`` for a finer histogram.
    """
    m = 0
    bounds = np.array([np.inf, -np.inf])
    for i in range(pts_t.shape[1]):
        _distance_row(pts_t, i, i + kmin, metric, dist)
        m = _row_bin_values(dist, i + kmin, lo, hi, scale, last, b, m, out, bounds)
    return m, bounds[0], bounds[1]
