"""Numba kernels for :mod:`netdyn.series.recurrence` (numba is a core dependency).

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
outer loops, LLVM compiles them 2-3x slower.  :func:`line_histograms` is
single-threaded: a ``prange`` over batches of rows, tried, was deterministic but
20x slower on a machine with more busy threads than cores (every batch waits for
a descheduled thread).  :func:`line_histograms_banded` uses several cores with
one parallel task per core and no barrier: each task owns a band of diagonals.

Metric codes: 0 supremum, 1 Euclidean, 2 Manhattan.
"""
from __future__ import annotations

from typing import NamedTuple

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


# ---------------------------------------------------------------- multi-core line histograms
#
# The serial kernel above sweeps rows and carries every diagonal and vertical run from one
# row to the next, so its rows cannot be split between threads.  The banded kernel splits
# the upper triangle by *diagonal offset* instead: band b owns the offsets
# k_lo <= k < k_hi and walks its pairs (i, i + k) row by row.  A diagonal then lies in one
# band, whole, so its runs are exact; a column c of the symmetric matrix is cut into one
# segment per band above the LOI (rows c - k, k in the band) and one below (rows c + k).
# Each band counts the runs inside its segments and leaves, per column, the runs touching
# the two ends of each segment (equal to its length when it recurs throughout) — O(N)
# per band.  A serial pass then joins the segments of every column in row order.  Every
# distance is computed once, by ``_distance``, so the histograms equal the serial
# kernel's bit for bit.


@numba.njit(cache=True, inline="never")
def _row_span(pts: np.ndarray, i: int, start: int, stop: int, eps: float, metric: int, row: np.ndarray, hits: np.ndarray) -> int:
    """``row[j] = R_ij`` for ``start <= j < stop``; the recurrent ``j`` to ``hits`` (branch-free); how many."""
    m = 0
    for j in range(start, stop):
        rec = _distance(pts, i, j, metric) < eps
        row[j] = rec
        hits[m] = j
        m += rec
    return m


@numba.njit(cache=True, inline="never")
def _band(
    pts: np.ndarray, eps: float, metric: int, k_lo: int, k_hi: int, diag: np.ndarray, vert: np.ndarray,
    diag_run: np.ndarray, up_run: np.ndarray, up_head: np.ndarray, low_head: np.ndarray, low_tail: np.ndarray,
    row: np.ndarray, hits: np.ndarray, prev_hits: np.ndarray,
) -> int:
    """Runs of the pairs ``(i, i + k)``, ``k_lo <= k < k_hi``; returns how many recur.

    ``diag``/``vert`` (N + 1) receive the runs that lie inside the band's segments
    (bin 0 is junk); ``diag_run[k]`` (shared, each band its own ``k``) the diagonal
    runs.  Per column ``c``, of its segment above the LOI (rows ``c - k``):
    ``up_head`` the run from its first row, ``up_run`` the run at its last row (equal
    to the segment's length when it recurs throughout); of its segment below (rows
    ``c + k``): ``low_head`` and ``low_tail``.  As in :func:`line_histograms`, the
    work is ``O(recurrences)`` besides the distances: runs are only looked at where
    the previous row recurred.  ``row`` (bool, N), ``hits``/``prev_hits`` (N) are
    work arrays.
    """
    n = pts.shape[0]
    up_run[:] = 0
    up_head[:] = 0
    low_head[:] = 0
    low_tail[:] = 0
    diag_run[k_lo:k_hi] = 0
    upper = 0
    n_prev = 0
    for i in range(n - k_lo):
        stop = min(i + k_hi, n)
        m = _row_span(pts, i, i + k_lo, stop, eps, metric, row, hits)
        upper += m
        for h in range(n_prev):  # runs through the previous row's recurrences that end at row i
            jp = prev_hits[h]
            if jp + 1 < n and not row[jp + 1]:  # diagonal jp - i + 1, whose entry at row i is (i, jp + 1)
                k = jp + 1 - i
                diag[diag_run[k]] += 2
                diag_run[k] = 0
            if jp - i >= k_lo and not row[jp]:  # column jp, still inside the band at row i
                r = up_run[jp]
                if i - r == max(0, jp - k_hi + 1):
                    up_head[jp] = r
                else:
                    vert[r] += 1
                up_run[jp] = 0
        for h in range(m):
            j = hits[h]
            diag_run[j - i] += 1
            up_run[j] += 1
        # column i below the LOI: rows i + k_lo .. stop - 1, i.e. this row read left to right
        first, last, begin = i + k_lo, stop - 1, -2
        prev = -2
        for h in range(m + 1):
            j = hits[h] if h < m else -2
            if j != prev + 1:
                if begin >= 0:  # the run begin .. prev is complete
                    length = prev - begin + 1
                    if prev == last:
                        low_tail[i] = length
                    elif begin == first:
                        low_head[i] = length
                    else:
                        vert[length] += 1
                begin = j
            prev = j
        hits, prev_hits, n_prev = prev_hits, hits, m
    for k in range(k_lo, k_hi):
        diag[diag_run[k]] += 2
    return upper


@numba.njit(cache=True)
def _join_columns(
    n: int, theiler: int, bounds: np.ndarray, up_run: np.ndarray, up_head: np.ndarray, low_head: np.ndarray,
    low_tail: np.ndarray, vert: np.ndarray,
) -> None:
    """Add to ``vert`` the vertical runs that cross segment ends, column by column in row order."""
    n_bands = bounds.size - 1
    for c in range(n):
        carry = 0
        for b in range(n_bands - 1, -1, -1):  # rows c - k: the highest offsets come first
            length = min(bounds[b + 1] - 1, c) - bounds[b] + 1
            if length > 0:
                if up_run[b, c] == length:
                    carry += length
                else:
                    vert[carry + up_head[b, c]] += 1
                    carry = up_run[b, c]
        if theiler == 0:
            carry += 1  # the LOI recurs
        else:
            vert[carry] += 1  # the Theiler band and the LOI do not
            carry = 0
        for b in range(n_bands):  # rows c + k
            length = min(bounds[b + 1] - 1, n - 1 - c) - bounds[b] + 1
            if length > 0:
                if low_tail[b, c] == length:
                    carry += length
                else:
                    vert[carry + low_head[b, c]] += 1
                    carry = low_tail[b, c]
        vert[carry] += 1


@numba.njit(cache=True, parallel=True)
def line_histograms_banded(
    pts: np.ndarray,
    eps: float,
    metric: int,
    theiler: int,
    bounds: np.ndarray,
    diag: np.ndarray,
    vert: np.ndarray,
    diag_b: np.ndarray,
    vert_b: np.ndarray,
    diag_run: np.ndarray,
    up_run: np.ndarray,
    up_head: np.ndarray,
    low_head: np.ndarray,
    low_tail: np.ndarray,
    upper_b: np.ndarray,
    rows: np.ndarray,
    hits: np.ndarray,
) -> int:
    """:func:`line_histograms` on several cores: the same histograms and count, exactly.

    ``bounds`` (B + 1, ascending from ``max(theiler, 1)`` to N) cut the offsets into
    B bands, one parallel task each; ``diag_b``/``vert_b`` (B, N + 1) and
    ``up_run``/``up_head``/``low_head``/``low_tail`` (B, N) are their work arrays,
    ``diag_run`` (N), ``upper_b`` (B), ``rows`` (bool, (B, N)) and ``hits`` (B, 2, N) too.
    ``diag``/``vert`` (N + 1) must be zero.
    """
    n = pts.shape[0]
    n_bands = bounds.size - 1
    for b in numba.prange(n_bands):
        diag_b[b, :] = 0
        vert_b[b, :] = 0
        upper_b[b] = _band(
            pts, eps, metric, bounds[b], bounds[b + 1], diag_b[b], vert_b[b], diag_run, up_run[b], up_head[b],
            low_head[b], low_tail[b], rows[b], hits[b, 0], hits[b, 1],
        )
    _join_columns(n, theiler, bounds, up_run, up_head, low_head, low_tail, vert)
    for b in range(n_bands):
        diag += diag_b[b]
        vert += vert_b[b]
    diag[0] = 0
    vert[0] = 0
    return 2 * int(upper_b.sum()) + (n if theiler == 0 else 0)


# ---------------------------------------------------------------- neighbour-grid engine
#
# A recurrence matrix of a few per cent is mostly zeros, and the kernels above still compute
# every one of its N^2 / 2 distances.  The grid engine visits only candidate pairs: the points
# are bucketed in a uniform grid of cell side h >= (eps / s)(1 + 2^-20) over at most three of
# their coordinates (the three of largest span), sorted by cell and, within a cell, by time.
# Any of the three distances below eps bounds every coordinate difference by eps, so the
# partners of a point lie in the cells at offsets |o_c| <= s around its own; an offset is
# dropped when the gap between the two cells, ((|o_c| - 1)^+ h)_c, is itself at least eps in
# the metric (an integer test, exact), and the relative margin 2^-20 absorbs the rounding of
# the cell indices (at most 2^24 cells per axis).  Candidates are tested with the same
# arithmetic as ``_distance`` (Euclidean: ``sqrt(s) < eps`` is ``s <= s_max``, the largest
# double whose rounded square root is below eps, so no square root is taken): the recurrences
# are those of the exhaustive kernels, bit for bit.
#
# Row i's recurrences j > i come cell by cell, not in column order, so the line bookkeeping
# is order-free: per diagonal k = j - i and per column j the last row seen and the run length
# (a run continues when the last row is i - 1, else the old run is closed into the
# histogram); the runs of row i itself (column i below the line of identity, by symmetry)
# are found by walking from each recurrence whose left neighbour did not recur in row i.
# Rows are cut into blocks of nearly equal work, handed round-robin to one parallel task per
# thread.  A block counts the lines that start in it: it seeds its state from the row before
# it (runs through that row belong to an earlier block) and, after its last row, follows the
# runs it started, pair by pair, until they end.  Merged, the histograms are the exhaustive
# kernels', exactly.
#
# At a fixed recurrence rate the threshold is the distance of a given rank: one counting pass
# over a sampled bracket (grid_distance_histogram) gives its histogram bin, then the RQA pass
# runs at the bin's lower edge and also collects the bin's pairs on the rows that hold some
# (grid_line_histograms with collect); the pairs below the exact threshold are added afterwards by
# walking each of their lines (add_recurrences).


@numba.njit(cache=True, inline="always")
def _raw_distance(pts: np.ndarray, i: int, spts: np.ndarray, p: int, metric: int) -> float:
    """``_distance(pts, i, j)`` for ``spts[p] == pts[j]``, without the Euclidean square root."""
    d = pts.shape[1]
    s = 0.0
    if metric == 0:
        for c in range(d):
            v = abs(pts[i, c] - spts[p, c])
            if v > s:
                s = v
    elif metric == 1:
        for c in range(d):
            v = pts[i, c] - spts[p, c]
            s += v * v
    else:
        for c in range(d):
            s += abs(pts[i, c] - spts[p, c])
    return s


@numba.njit(cache=True, inline="always")
def _raw_distance3(x0: float, x1: float, x2: float, pts: np.ndarray, i: int, spts: np.ndarray, p: int, metric: int) -> float:
    """:func:`_raw_distance` for ``d >= 3``, ``(x0, x1, x2) = pts[i, :3]`` held in registers (same operations, same
    order: ``0 + a == a`` and ``max(0, a) == a`` for ``a >= 0``)."""
    if metric == 0:
        s = abs(x0 - spts[p, 0])
        v = abs(x1 - spts[p, 1])
        s = v if v > s else s
        v = abs(x2 - spts[p, 2])
        s = v if v > s else s
        for c in range(3, pts.shape[1]):
            v = abs(pts[i, c] - spts[p, c])
            if v > s:
                s = v
    elif metric == 1:
        v = x0 - spts[p, 0]
        s = v * v
        v = x1 - spts[p, 1]
        s += v * v
        v = x2 - spts[p, 2]
        s += v * v
        for c in range(3, pts.shape[1]):
            v = pts[i, c] - spts[p, c]
            s += v * v
    else:
        s = abs(x0 - spts[p, 0])
        s += abs(x1 - spts[p, 1])
        s += abs(x2 - spts[p, 2])
        for c in range(3, pts.shape[1]):
            s += abs(pts[i, c] - spts[p, c])
    return s


@numba.njit(cache=True, inline="always")
def _recurs(pts: np.ndarray, i: int, j: int, eps: float, s_max: float, metric: int) -> bool:
    """``_distance(pts, i, j, metric) < eps``, exactly (``s_max`` as in :func:`grid_line_histograms`)."""
    s = _raw_distance(pts, i, pts, j, metric)
    return s <= s_max if metric == 1 else s < eps


_NEAR_MARK = np.int64(1) << 62  # marks a candidate that is near (raw distance <= top) but does not recur


@numba.njit(cache=True, inline="always")
def _store(hits: np.ndarray, m: int, j: int, s: float, thr: float, top: float, metric: int, collect: bool) -> int:
    """Write candidate ``j`` at raw distance ``s`` to ``hits[m]``; the next ``m`` (see :func:`_cells_hits`)."""
    rec = (s <= thr) if metric == 1 else (s < thr)
    if collect:
        hits[m] = j | (_NEAR_MARK * (1 - rec))
        return m + (s <= top)
    hits[m] = j
    return m + rec


@numba.njit(cache=True, inline="always")
def _cells_hits(
    pts: np.ndarray, i: int, thr: float, top: float, metric: int, collect: bool, spts: np.ndarray, sidx: np.ndarray,
    home: int, start: np.ndarray, first: np.ndarray, offsets: np.ndarray, hits: np.ndarray,
) -> int:
    """:func:`_grid_row` for one metric, given as a literal (as is ``collect``) so that the loops compile without
    their branches.  Branch-free: every candidate is written, the count advances on a recurrence; with
    ``collect`` on a raw distance ``<= top`` instead, a non-recurrent candidate marked by :data:`_NEAR_MARK`."""
    m = 0
    if pts.shape[1] >= 3:
        x0, x1, x2 = pts[i, 0], pts[i, 1], pts[i, 2]
        for o in offsets:
            c = home + o
            for p in range(first[c], start[c + 1]):
                m = _store(hits, m, sidx[p], _raw_distance3(x0, x1, x2, pts, i, spts, p, metric), thr, top, metric,
                           collect)
    else:
        for o in offsets:
            c = home + o
            for p in range(first[c], start[c + 1]):
                m = _store(hits, m, sidx[p], _raw_distance(pts, i, spts, p, metric), thr, top, metric, collect)
    return m


@numba.njit(cache=True, inline="never")
def _grid_row(
    pts: np.ndarray, i: int, eps: float, s_max: float, metric: int, spts: np.ndarray, sidx: np.ndarray,
    home: int, start: np.ndarray, first: np.ndarray, offsets: np.ndarray, hits: np.ndarray,
) -> int:
    """The recurrent ``j`` of row ``i`` to ``hits`` (cell by cell, ascending within a cell); how many.

    Cell ``c``'s points from ``first[c]`` on are visited (those at times ``>= i + max(theiler, 1)``).
    """
    if metric == 0:
        return _cells_hits(pts, i, eps, -1.0, 0, False, spts, sidx, home, start, first, offsets, hits)
    if metric == 1:
        return _cells_hits(pts, i, s_max, -1.0, 1, False, spts, sidx, home, start, first, offsets, hits)
    return _cells_hits(pts, i, eps, -1.0, 2, False, spts, sidx, home, start, first, offsets, hits)


@numba.njit(cache=True, inline="never")
def _grid_row_collect(
    pts: np.ndarray, i: int, eps: float, s_max: float, top: float, metric: int, spts: np.ndarray, sidx: np.ndarray,
    home: int, start: np.ndarray, first: np.ndarray, offsets: np.ndarray, hits: np.ndarray, near_j: np.ndarray,
    near_s: np.ndarray,
) -> tuple[int, int]:
    """:func:`_grid_row`, and the non-recurrent candidates of raw distance ``<= top`` to ``near_j`` / ``near_s``
    (their times and raw distances): (recurrent, near).  The candidates up to ``top`` go to ``hits`` first, the
    non-recurrent ones marked (one store per candidate, as :func:`_grid_row`); the marked ones (rare) are then
    moved out."""
    if metric == 0:
        m = _cells_hits(pts, i, eps, top, 0, True, spts, sidx, home, start, first, offsets, hits)
    elif metric == 1:
        m = _cells_hits(pts, i, s_max, top, 1, True, spts, sidx, home, start, first, offsets, hits)
    else:
        m = _cells_hits(pts, i, eps, top, 2, True, spts, sidx, home, start, first, offsets, hits)
    k = 0
    q = 0
    for h in range(m):
        j = hits[h]
        hits[k] = j
        k += j < _NEAR_MARK
        if j >= _NEAR_MARK:
            j -= _NEAR_MARK
            near_j[q] = j
            near_s[q] = _raw_distance(pts, i, pts, j, metric)
            q += 1
    return k, q


@numba.njit(cache=True, inline="always")
def _advance(cell: np.ndarray, first: np.ndarray, j_from: int, j_to: int) -> None:
    """Points at times ``j_from <= t < j_to`` leave the visited part of their cells."""
    for t in range(j_from, min(j_to, cell.size)):
        first[cell[t]] += 1


@numba.njit(cache=True, inline="never")
def _grid_block(
    pts: np.ndarray, eps: float, s_max: float, metric: int, theiler: int, a: int, b: int, spts: np.ndarray,
    sidx: np.ndarray, cell: np.ndarray, start: np.ndarray, offsets: np.ndarray, diag: np.ndarray, vert: np.ndarray,
    dstate: np.ndarray, cstate: np.ndarray, hits: np.ndarray, first: np.ndarray, top: float,
    near_j: np.ndarray, near_s: np.ndarray, near: np.ndarray, n_near: int, rows: np.ndarray, collect: bool,
) -> tuple[int, int]:
    """Add the lines that start in rows ``a <= i < b`` to ``diag`` / ``vert``; return the recurrent pairs ``j > i`` of
    the rows, and ``n_near`` plus how many near pairs they hold.

    ``dstate[k]`` = (last row, run) of diagonal ``k``, ``cstate[j]`` the same for
    column ``j`` above the LOI; a run of -1 is one that began before row ``a``.
    ``first[c]`` (cells): where the visited part of cell ``c`` begins.  With ``top >= 0`` the
    near pairs of the rows (:func:`grid_line_histograms` with ``collect``) go to ``near`` from row ``n_near`` on
    while it has room, from the rows ``i`` with ``rows[i]`` (bool, N); ``near_j`` / ``near_s`` (N) are work space.
    """
    numba.literally(collect)  # two compiled versions: without collect, the plain loop over the rows
    n = pts.shape[0]
    kmin = max(theiler, 1)
    dstate[:, 0] = -3
    dstate[:, 1] = 0
    cstate[:, 0] = -3
    cstate[:, 1] = 0
    first[:] = start[:-1]
    j_min = max(a - 1, 0) + kmin
    _advance(cell, first, 0, j_min)
    if a > 0:  # runs through row a - 1 belong to an earlier block
        m = _grid_row(pts, a - 1, eps, s_max, metric, spts, sidx, cell[a - 1], start, first, offsets, hits)
        for h in range(m):
            j = hits[h]
            dstate[j - a + 1, 0] = a - 1
            dstate[j - a + 1, 1] = -1
            cstate[j, 0] = a - 1
            cstate[j, 1] = -1
    upper = 0
    for i in range(a, b):
        _advance(cell, first, j_min, i + kmin)
        j_min = i + kmin
        if collect and rows[i]:
            m, q = _grid_row_collect(
                pts, i, eps, s_max, top, metric, spts, sidx, cell[i], start, first, offsets, hits, near_j, near_s
            )
            for h in range(q):
                if n_near < near.shape[0]:
                    near[n_near, 0] = i
                    near[n_near, 1] = near_j[h]
                    near[n_near, 2] = near_s[h]
                n_near += 1
        else:
            m = _grid_row(pts, i, eps, s_max, metric, spts, sidx, cell[i], start, first, offsets, hits)
        upper += m
        for h in range(m):
            j = hits[h]
            k = j - i
            r = dstate[k, 1]
            if dstate[k, 0] == i - 1:
                if r > 0:
                    dstate[k, 1] = r + 1
            else:
                if r > 0:
                    diag[r] += 2
                dstate[k, 1] = 1
            dstate[k, 0] = i
            r = cstate[j, 1]
            if cstate[j, 0] == i - 1:
                if r > 0:
                    cstate[j, 1] = r + 1
            else:
                if r > 0:
                    vert[r] += 1
                cstate[j, 1] = 1
            cstate[j, 0] = i
        # column i: its part above the LOI is complete; with theiler 0 its run goes on through R_ii into row i
        r = cstate[i, 1]
        joined = cstate[i, 0] == i - 1
        cstate[i, 0] = -3
        cstate[i, 1] = 0
        if theiler == 0:
            if not joined:
                if r > 0:
                    vert[r] += 1
                r = 0
            if r >= 0:  # else the run began before row a: an earlier block counts it
                r += 1
                e = i + 1
                while e < n and cstate[e, 0] == i:
                    r += 1
                    e += 1
                vert[r] += 1
        elif r > 0:
            vert[r] += 1
        # the other runs of row i (column i below the LOI): each from a recurrence whose left neighbour does not recur
        for h in range(m):
            j = hits[h]
            if cstate[j - 1, 0] == i or (theiler == 0 and j == i + 1):
                continue
            e = j + 1
            while e < n and cstate[e, 0] == i:
                e += 1
            vert[e - j] += 1
    # lines started here and still open at row b - 1 are followed pair by pair
    for k in range(kmin, n):
        r = dstate[k, 1]
        if r > 0:
            if dstate[k, 0] == b - 1:
                i = b
                while i + k < n and _recurs(pts, i, i + k, eps, s_max, metric):
                    r += 1
                    i += 1
            diag[r] += 2
    for j in range(b, n):
        r = cstate[j, 1]
        if r > 0:
            if cstate[j, 0] == b - 1:
                i = b
                while i <= j - kmin and _recurs(pts, i, j, eps, s_max, metric):
                    r += 1
                    i += 1
                if i > j - kmin and theiler == 0:  # through R_jj into row j
                    r += 1
                    e = j + 1
                    while e < n and _recurs(pts, j, e, eps, s_max, metric):
                        r += 1
                        e += 1
            vert[r] += 1
    return upper, n_near


@numba.njit(cache=True, parallel=True)
def grid_line_histograms(
    pts: np.ndarray,
    eps: float,
    s_max: float,
    top: float,
    metric: int,
    theiler: int,
    spts: np.ndarray,
    sidx: np.ndarray,
    cell: np.ndarray,
    start: np.ndarray,
    offsets: np.ndarray,
    blocks: np.ndarray,
    diag_t: np.ndarray,
    vert_t: np.ndarray,
    dstate_t: np.ndarray,
    cstate_t: np.ndarray,
    hits_t: np.ndarray,
    first_t: np.ndarray,
    upper_t: np.ndarray,
    near_j_t: np.ndarray,
    near_s_t: np.ndarray,
    near_t: np.ndarray,
    n_near_t: np.ndarray,
    rows: np.ndarray,
    collect: bool,
) -> None:
    """:func:`line_histograms` over the candidate pairs of a :class:`Grid`: the same lines, exactly; with
    ``collect`` also the near pairs of the rows ``i`` with ``rows[i]`` (bool, N).

    ``pts`` (N, d) are the points, ``spts``/``sidx``/``cell``/``start``/``offsets``
    the grid (:func:`build_grid`), ``blocks`` (B + 1) the row blocks' bounds.  One
    parallel task per row of the work arrays ``diag_t``/``vert_t`` (T, N + 1),
    ``dstate_t``/``cstate_t`` (T, N, 2), ``hits_t`` (T, N), ``first_t`` (T, cells); task ``t`` takes blocks
    ``t, t + T, ...``, adds its lines to ``diag_t[t]``/``vert_t[t]`` (zeroed here;
    bin 0 unused) and its recurrent pairs ``j > i`` to ``upper_t[t]``.
    Recurrence: ``_distance < eps``; Euclidean: raw sum of squares ``<= s_max``.

    Near pairs (``collect``; each value runs its own compiled block kernel, and without it the rows' loop is the
    plain one):
    ``j - i >= max(theiler, 1)``, not recurrent, raw distance ``<= top`` (Euclidean: the sum of squares; the grid
    must hold every such pair).  Task ``t`` writes them as rows ``(i, j, raw distance)`` of ``near_t[t]`` (C, 3)
    while it has room and their number to ``n_near_t[t]`` (more than C: some were left out); ``near_j_t`` (T, N,
    int64) and ``near_s_t`` (T, N) are work space.  Without ``collect`` these may be empty (T, 0) arrays.
    """
    n_tasks = diag_t.shape[0]
    n_blocks = blocks.size - 1
    for t in numba.prange(n_tasks):
        diag_t[t, :] = 0
        vert_t[t, :] = 0
        upper = 0
        n_near = 0
        for blk in range(t, n_blocks, n_tasks):
            a, b = blocks[blk], blocks[blk + 1]
            if collect:  # constant arguments: _grid_block is compiled once for each
                u, n_near = _grid_block(
                    pts, eps, s_max, metric, theiler, a, b, spts, sidx, cell, start, offsets, diag_t[t], vert_t[t],
                    dstate_t[t], cstate_t[t], hits_t[t], first_t[t], top, near_j_t[t], near_s_t[t], near_t[t],
                    n_near, rows, True,
                )
            else:
                u, n_near = _grid_block(
                    pts, eps, s_max, metric, theiler, a, b, spts, sidx, cell, start, offsets, diag_t[t], vert_t[t],
                    dstate_t[t], cstate_t[t], hits_t[t], first_t[t], top, near_j_t[t], near_s_t[t], near_t[t],
                    n_near, rows, False,
                )
            upper += u
        upper_t[t] = upper
        n_near_t[t] = n_near


def without_near_pairs(tasks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """The last arguments of :func:`grid_line_histograms` for ``tasks`` tasks that collect no near pairs:
    empty work space and ``collect=False``."""
    return (np.empty((tasks, 0), np.int64), np.empty((tasks, 0)), np.empty((tasks, 0, 3)), np.empty(tasks, np.int64),
            np.empty(0, np.bool_), False)


@numba.njit(cache=True, inline="always")
def _entry(pts: np.ndarray, r: int, c: int, eps: float, s_max: float, metric: int, theiler: int) -> bool:
    """``R_rc`` of the whole matrix at threshold ``eps``: 0 inside the Theiler band, the LOI recurs when ``theiler == 0``."""
    if abs(r - c) < theiler:
        return False
    if r == c:
        return True
    return _recurs(pts, min(r, c), max(r, c), eps, s_max, metric)


@numba.njit(cache=True)
def add_recurrences(
    pts: np.ndarray, eps_lo: float, s_lo: float, eps: float, s_eps: float, metric: int, theiler: int,
    diag_pairs: np.ndarray, col_pairs: np.ndarray, diag: np.ndarray, vert: np.ndarray,
) -> None:
    """Turn the line histograms of the matrix at ``eps_lo`` into those at ``eps > eps_lo`` (both: ``_recurs`` with
    ``s_lo`` / ``s_eps`` as ``s_max``).

    The pairs recurrent at ``eps`` but not at ``eps_lo`` (``j - i >= max(theiler, 1)``) come as ``diag_pairs``
    (P, 2) = ``(k = j - i, i)`` sorted, and as ``col_pairs`` (2P, 2) = ``(column, row)`` of both of their entries,
    sorted.  Every line of the new matrix through such an entry is walked (``O(length)`` distances) and counted,
    and the old lines it joins are taken out: a line of the old matrix that holds no such entry is a line of the
    new one.  Diagonal lines count twice (both triangles), as in :func:`line_histograms`.
    """
    n = pts.shape[0]
    k_prev, covered = -1, -1
    for q in range(diag_pairs.shape[0]):
        k, i = diag_pairs[q, 0], diag_pairs[q, 1]
        if k == k_prev and i <= covered:
            continue
        a = i
        while a > 0 and _recurs(pts, a - 1, a - 1 + k, eps, s_eps, metric):
            a -= 1
        e = i
        while e + 1 + k < n and _recurs(pts, e + 1, e + 1 + k, eps, s_eps, metric):
            e += 1
        diag[e - a + 1] += 2
        run = 0
        for t in range(a, e + 2):
            if t <= e and _recurs(pts, t, t + k, eps_lo, s_lo, metric):
                run += 1
            elif run > 0:
                diag[run] -= 2
                run = 0
        k_prev, covered = k, e
    c_prev, covered = -1, -1
    for q in range(col_pairs.shape[0]):
        c, r = col_pairs[q, 0], col_pairs[q, 1]
        if c == c_prev and r <= covered:
            continue
        a = r
        while a > 0 and _entry(pts, a - 1, c, eps, s_eps, metric, theiler):
            a -= 1
        e = r
        while e + 1 < n and _entry(pts, e + 1, c, eps, s_eps, metric, theiler):
            e += 1
        vert[e - a + 1] += 1
        run = 0
        for t in range(a, e + 2):
            if t <= e and _entry(pts, t, c, eps_lo, s_lo, metric, theiler):
                run += 1
            elif run > 0:
                vert[run] -= 1
                run = 0
        c_prev, covered = c, e


class Grid(NamedTuple):
    """Points bucketed for :func:`grid_line_histograms` (built by :func:`build_grid`).

    ``spts`` (N, d): the points sorted by cell, by time within a cell; ``sidx`` (N):
    their times; ``cell`` (N): the cell of point ``i`` (by time); ``start``
    (cells + 1): where each cell begins in ``spts``; ``offsets``: the neighbour cells
    to visit; ``candidates``: ordered pairs ``(i, j)``, ``i != j``, they hold;
    ``row_work`` (N): the candidates of each row's cells; ``side``: the cells' side
    ``h``, ``subdivisions``: ``s`` (offsets ``|o_c| <= s``, ``s h >= eps (1 + 2^-20)``).
    """

    spts: np.ndarray
    sidx: np.ndarray
    cell: np.ndarray
    start: np.ndarray
    offsets: np.ndarray
    candidates: int
    row_work: np.ndarray
    side: float
    subdivisions: int


#: most cells a grid may have (with its padding), per point and in all
GRID_CELLS_PER_POINT = 4
GRID_MIN_CELLS = 1 << 16


def square_root_bound(eps: float) -> float:
    """The largest double ``s`` with ``sqrt(s) < eps`` (correctly rounded square root), for ``eps > 0``.

    ``sqrt`` is monotone, so ``sqrt(s) < eps`` iff ``s <= square_root_bound(eps)``.
    """
    s = np.float64(eps) * np.float64(eps)
    while s > 0 and not np.sqrt(s) < eps:
        s = np.nextafter(s, -np.inf)
    while np.sqrt(np.nextafter(s, np.inf)) < eps:
        s = np.nextafter(s, np.inf)
    return float(s)


def build_grid(pts: np.ndarray, eps: float, metric: int, subdivisions: int, sort: bool = True) -> Grid:
    """Bucket ``pts`` (N, d) so that every pair at distance ``< eps`` lies in neighbouring cells.

    The cells have side ``h >= (eps / subdivisions)(1 + 2^-20)`` along the (at most
    three) coordinates of largest span, enlarged until the padded grid has at most
    ``max(GRID_MIN_CELLS, GRID_CELLS_PER_POINT N)`` cells.  ``sort=False`` leaves
    ``spts`` / ``sidx`` empty (enough to compare costs; :func:`sort_grid` fills them).
    """
    n, d = pts.shape
    s = int(subdivisions)
    span = np.ptp(pts, axis=0)
    axes = np.sort(np.argsort(-span, kind="stable")[: min(d, 3)])
    low = pts[:, axes].min(axis=0)
    h = max(eps / s * (1 + 2.0**-20), np.finfo(np.float64).tiny)
    cap = max(GRID_MIN_CELLS, GRID_CELLS_PER_POINT * n)
    while True:
        with np.errstate(over="ignore", divide="ignore"):
            cells = float(np.prod(np.floor(span[axes] / h) + 1 + 2 * s))
        if cells <= cap:
            break
        h = max(1.25 * h, float(span[axes].max()) / cap ** (1 / axes.size))
    sizes = np.floor(span[axes] / h).astype(np.int64) + 1 + 2 * s
    q = np.floor((pts[:, axes] - low) / h).astype(np.int64) + s
    q = np.minimum(q, sizes - 1 - s)  # a coordinate at the top edge may round to the next cell
    strides = np.ones(axes.size, dtype=np.int64)
    for c in range(axes.size - 2, -1, -1):
        strides[c] = strides[c + 1] * sizes[c + 1]
    cell = q @ strides
    n_cells = int(np.prod(sizes))
    counts = np.bincount(cell, minlength=n_cells)
    start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    grid_o = np.stack(np.meshgrid(*[np.arange(-s, s + 1)] * axes.size, indexing="ij"), axis=-1).reshape(-1, axes.size)
    gap = np.maximum(np.abs(grid_o) - 1, 0)
    far = {0: gap.max(axis=1) >= s, 1: (gap**2).sum(axis=1) >= s * s, 2: gap.sum(axis=1) >= s}[metric]
    offsets = grid_o[~far] @ strides
    occupied = np.flatnonzero(counts)
    around = np.zeros(n_cells, dtype=np.int64)
    for o in offsets:
        around[occupied] += counts[occupied + o]
    grid = Grid(
        spts=np.empty((0, d)),
        sidx=np.empty(0, np.int64),
        cell=cell,
        start=start,
        offsets=np.ascontiguousarray(offsets.astype(np.int64)),
        candidates=int(around[occupied] @ counts[occupied]) - n,
        row_work=around[cell],
        side=float(h),
        subdivisions=s,
    )
    return sort_grid(grid, pts) if sort else grid


def sort_grid(grid: Grid, pts: np.ndarray) -> Grid:
    """``grid`` with its points sorted by cell, by time within a cell (a counting sort)."""
    order = _cell_order(grid.cell, grid.start)
    return grid._replace(spts=np.ascontiguousarray(pts[order]), sidx=order)


@numba.njit(cache=True)
def _cell_order(cell: np.ndarray, start: np.ndarray) -> np.ndarray:
    nxt = start[:-1].copy()
    order = np.empty(cell.size, np.int64)
    for t in range(cell.size):
        order[nxt[cell[t]]] = t
        nxt[cell[t]] += 1
    return order


@numba.njit(cache=True, inline="always")
def _raw_distance3_soa(x0: float, x1: float, x2: float, soa: np.ndarray, p: int, metric: int) -> float:
    """:func:`_raw_distance3` of three coordinates, the points given by coordinate (``soa`` (3, N)): the same
    operations in the same order."""
    if metric == 0:
        s = abs(x0 - soa[0, p])
        v = abs(x1 - soa[1, p])
        s = v if v > s else s
        v = abs(x2 - soa[2, p])
        return v if v > s else s
    if metric == 1:
        v = x0 - soa[0, p]
        s = v * v
        v = x1 - soa[1, p]
        s += v * v
        v = x2 - soa[2, p]
        return s + v * v
    s = abs(x0 - soa[0, p])
    s += abs(x1 - soa[1, p])
    return s + abs(x2 - soa[2, p])


@numba.njit(cache=True, inline="always")
def _cells_bracket(
    pts: np.ndarray, i: int, metric: int, below_max: float, top_max: float, spts: np.ndarray, home: int,
    start: np.ndarray, first: np.ndarray, offsets: np.ndarray, inside: np.ndarray, soa: np.ndarray, buf: np.ndarray,
) -> tuple[int, int]:
    """:func:`_grid_row_bracket` for one metric, given as a literal.

    Three coordinates with ``soa`` (the sorted points by coordinate, (3, N)): a cell's distances go to ``buf``
    first, in a loop of no stores but that one (vectorised), and are scanned for the bracket only when the cell
    holds some (a quarter less time than the one-loop form).
    """
    below = 0
    k = 0
    if pts.shape[1] == 3 and soa.shape[1] == spts.shape[0]:
        x0, x1, x2 = pts[i, 0], pts[i, 1], pts[i, 2]
        for o in offsets:
            c = home + o
            a, e = first[c], start[c + 1]
            cb = 0
            cn = 0
            for p in range(a, e):
                s = _raw_distance3_soa(x0, x1, x2, soa, p, metric)
                buf[p - a] = s
                cb += s <= below_max
                cn += s <= top_max
            below += cb
            if cn > cb:
                for p in range(e - a):
                    s = buf[p]
                    inside[k] = s
                    k += (s > below_max) & (s <= top_max)
    elif pts.shape[1] >= 3:
        x0, x1, x2 = pts[i, 0], pts[i, 1], pts[i, 2]
        for o in offsets:
            c = home + o
            for p in range(first[c], start[c + 1]):
                s = _raw_distance3(x0, x1, x2, pts, i, spts, p, metric)
                below += s <= below_max
                inside[k] = s
                k += (s > below_max) & (s <= top_max)
    else:
        for o in offsets:
            c = home + o
            for p in range(first[c], start[c + 1]):
                s = _raw_distance(pts, i, spts, p, metric)
                below += s <= below_max
                inside[k] = s
                k += (s > below_max) & (s <= top_max)
    return below, k


@numba.njit(cache=True, inline="never")
def _grid_row_bracket(
    pts: np.ndarray, i: int, metric: int, below_max: float, top_max: float, spts: np.ndarray, home: int,
    start: np.ndarray, first: np.ndarray, offsets: np.ndarray, inside: np.ndarray, soa: np.ndarray, buf: np.ndarray,
) -> tuple[int, int]:
    """Row ``i``'s candidates: (how many have a raw distance ``<= below_max``, how many in ``(below_max, top_max]``);
    the latter's raw distances to ``inside`` (branch-free)."""
    if metric == 0:
        return _cells_bracket(pts, i, 0, below_max, top_max, spts, home, start, first, offsets, inside, soa, buf)
    if metric == 1:
        return _cells_bracket(pts, i, 1, below_max, top_max, spts, home, start, first, offsets, inside, soa, buf)
    return _cells_bracket(pts, i, 2, below_max, top_max, spts, home, start, first, offsets, inside, soa, buf)


@numba.njit(cache=True, inline="never")
def _grid_distance_rows(
    pts: np.ndarray, metric: int, kmin: int, a: int, b: int, lo: float, below_max: float, top_max: float,
    scale: float, spts: np.ndarray, cell: np.ndarray, start: np.ndarray, offsets: np.ndarray,
    counts: np.ndarray, out: np.ndarray, first: np.ndarray, bounds: np.ndarray, inside: np.ndarray, masks: np.ndarray,
    soa: np.ndarray, buf: np.ndarray,
) -> tuple[int, int]:
    """Rows ``a <= i < b`` of :func:`grid_distance_histogram`: (pairs below ``lo``, pairs in ``[lo, hi]``)."""
    last = counts.size - 1
    words = masks.shape[1]
    below = 0
    m = 0
    first[:] = start[:-1]
    _advance(cell, first, 0, a + kmin - 1)
    for i in range(a, b):
        _advance(cell, first, i + kmin - 1, i + kmin)
        bl, k = _grid_row_bracket(
            pts, i, metric, below_max, top_max, spts, cell[i], start, first, offsets, inside, soa, buf
        )
        below += bl
        if words > 0:
            masks[i, :] = 0
        for h in range(k):
            dist = np.sqrt(inside[h]) if metric == 1 else inside[h]
            bin_ = min(int((dist - lo) * scale), last)
            counts[bin_] += 1
            if words > 0:
                masks[i, (bin_ >> 6) % words] |= np.uint64(1) << np.uint64(bin_ & 63)
            if m < out.size:
                out[m] = dist
            m += 1
            bounds[0] = min(bounds[0], dist)
            bounds[1] = max(bounds[1], dist)
    return below, m


@numba.njit(cache=True, parallel=True)
def grid_distance_histogram(
    pts: np.ndarray,
    metric: int,
    kmin: int,
    lo: float,
    below_max: float,
    top_max: float,
    scale: float,
    spts: np.ndarray,
    cell: np.ndarray,
    start: np.ndarray,
    offsets: np.ndarray,
    blocks: np.ndarray,
    counts_t: np.ndarray,
    out_t: np.ndarray,
    found_t: np.ndarray,
    bounds_t: np.ndarray,
    first_t: np.ndarray,
    inside_t: np.ndarray,
    masks: np.ndarray,
    soa: np.ndarray,
    buf_t: np.ndarray,
) -> None:
    """The upper-triangle distances ``d`` (``j - i >= kmin``) of a grid's candidate pairs, around ``[lo, hi]``.

    The grid must hold every pair with ``d <= hi``.  Task ``t`` (one per row of
    the work arrays) takes the row blocks ``t, t + T, ...`` (``blocks``, B + 1
    bounds) and writes ``found_t[t] = (pairs with d < lo, pairs with lo <= d <= hi)``;
    the latter go to ``counts_t[t]`` (bin ``min(int((d - lo) scale), bins - 1)``,
    zeroed here) and, while there is room, to ``out_t[t]``; their least and
    greatest to ``bounds_t[t]`` (inf, -inf if none).  Euclidean: the raw
    sums of squares are compared, ``below_max`` / ``top_max`` the largest with a
    square root below ``lo`` / at most ``hi``; the binned ``d`` is the square root,
    as ``_distance``; other metrics: ``below_max`` is the double before ``lo``,
    ``top_max = hi``.  ``first_t`` (T, cells) and ``inside_t`` (T, N) are work space.  ``masks`` (N, W)
    uint64, W a power of 2 (or 0: none): bit ``b % 64`` of word ``(b // 64) % W`` of row ``i`` is set when
    row ``i`` has a pair in bin ``b`` (a filter of the rows holding a bin's pairs).  ``soa``: ``spts`` by
    coordinate, (3, N) for three coordinates (else (3, 0)), with ``buf_t`` (T, N) work space.
    """
    n_tasks = counts_t.shape[0]
    n_blocks = blocks.size - 1
    for t in numba.prange(n_tasks):
        counts_t[t, :] = 0
        bounds_t[t, 0] = np.inf
        bounds_t[t, 1] = -np.inf
        below = 0
        inside = 0
        for blk in range(t, n_blocks, n_tasks):
            bl, m = _grid_distance_rows(
                pts, metric, kmin, blocks[blk], blocks[blk + 1], lo, below_max, top_max, scale, spts, cell, start,
                offsets, counts_t[t], out_t[t, min(inside, out_t.shape[1]):], first_t[t], bounds_t[t], inside_t[t],
                masks, soa, buf_t[t],
            )
            below += bl
            inside += m
        found_t[t, 0] = below
        found_t[t, 1] = inside


@numba.njit(cache=True)
def pair_distances(pts: np.ndarray, i: np.ndarray, j: np.ndarray, metric: int) -> np.ndarray:
    """``_distance(pts, i[q], j[q])`` for every ``q``."""
    out = np.empty(i.size)
    for q in range(i.size):
        out[q] = _distance(pts, i[q], j[q], metric)
    return out
