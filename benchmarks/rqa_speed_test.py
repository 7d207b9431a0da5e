"""RQA on the public RP_Speed_Test workload: ours (numba, all cores and one) vs pyunicorn.

Run by hand from the repository root: ``python benchmarks/rqa_speed_test.py [N ...] [--rate-all]``
(default N = 5 000, 20 000, 70 963; add 474275 for the largest published size; ``--rate-all``
times the fixed recurrence rate above N = 100 000 too).

The workload (the one RQA tools are compared on): x of the Rössler system
``x' = -y - z, y' = x + a y, z' = b + z (x - c)`` with a = b = 0.25, c = 4, sampled
every Δt = 0.05 (here: classical RK4 with that step) from (1, 1, 1), the first 1 000
samples dropped; delay embedding m = 3, τ = 6; Euclidean norm; ε = 1.2; minimum
line length 2; measures RR, DET, L, ENTR, LAM, TT.  No Theiler window (theiler = 0,
as pyunicorn).  Ours (``engine="auto"``: the neighbour grid on this workload) is timed
best of 3 (once above N = 100 000) after a warm-up call (the JIT compile is excluded),
on all numba threads and on one, with the tracemalloc peak of the all-threads call;
pyunicorn once, at the sizes whose N x N matrix fits in memory (N <= 20 000 by
default).  Up to N = 100 000 (or with ``--rate-all``) a second line times the fixed
recurrence rate (``recurrence_rate`` = the RR found at eps = 1.2; its threshold is the
distance of rank ``int(RR (N^2 - 1))``, just below 1.2) against the fixed threshold, on
all threads and on one, the two calls alternated, best of 3 each (once above N = 100 000):
the price of the threshold search (target, issue 14: at most 2x).  Published figures, for reference only (other machines):
AccRQA 64-core CPU 9.9 s and H100 4.3 s at N = 474 275; PyRQA (OpenCL, H100) 8.5 s at
N = 70 963; pyunicorn 30.7 s at N = 50 238; DynamicalSystems.jl (threads) 42.8 s at
N = 200 000.  Target (issue 14): N = 474 275 exact in <= 90 s on 2 CPUs.

Measured (2-CPU machine shared with other jobs, run under ``nice``): N = 474 275 in
56.0 s on 2 threads (48.7 s CPU) and 73.9 s on 1, tracemalloc peak 71 MiB; RR 0.0341875,
DET 0.999112, L 19.4454, ENTR 3.64727, LAM 0.996748, TT 6.58607 (the exhaustive
kernel: ~272 s).  Fixed rate / fixed threshold (one counting pass of the threshold
bracket, then the RQA pass on the same grid; load average 1.6-2.7 on the 2 CPUs, ratios
of alternated calls in one run): N = 20 000 1.48-1.61x on 2 threads, 1.56-1.59x on 1
(before: 1.77-2.15x and 1.78-1.82x); N = 70 963 1.39-1.56x on 2, 1.53-1.56x on 1 (before,
two counting passes: 1.99-2.09x and 2.00-2.03x); N = 474 275 (``--rate-all``) 1.26x on 2
threads (33.5 s vs 26.6 s) and 1.45x on 1 (59.5 s vs 41.2 s) (before: 1.67x).  tracemalloc
peak at a fixed rate, N = 70 963: 22 MiB (the search's 8 MiB buffer; 24 MiB before).
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
import warnings

import numba
import numpy as np

from netdyn.series.recurrence import rqa

PYUNICORN_MAX = 20_000
RATE_MAX = 100_000
MEASURES = ("RR", "DET", "L", "ENTR", "LAM", "TT")
SETTINGS = dict(metric="euclidean", theiler=0, l_min=2, v_min=2)


def rossler_x(n: int, a: float = 0.25, b: float = 0.25, c: float = 4.0, dt: float = 0.05, drop: int = 1000) -> np.ndarray:
    """``n`` samples of x(t) every ``dt`` after ``drop`` transient samples (RK4, one step per sample)."""
    def f(s: np.ndarray) -> np.ndarray:
        x, y, z = s
        return np.array([-y - z, x + a * y, b + z * (x - c)])

    s = np.array([1.0, 1.0, 1.0])
    out = np.empty(n + drop)
    for i in range(n + drop):
        out[i] = s[0]
        k1 = f(s)
        k2 = f(s + 0.5 * dt * k1)
        k3 = f(s + 0.5 * dt * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out[drop:]


def embedded(n: int) -> np.ndarray:
    """``n`` delay vectors (m = 3, τ = 6) of the Rössler x series."""
    x = rossler_x(n + 12)
    return np.stack([x[:n], x[6 : n + 6], x[12 : n + 12]], axis=1)


def timed(pts: np.ndarray, threads: int, repeat: int, **how: float) -> tuple[float, float, int, dict]:
    """Best wall time of ``repeat`` calls of ``rqa(pts, **how)`` on ``threads`` numba threads, the CPU time of
    that call (all threads: on a busy machine wall time overstates the work), the tracemalloc peak (bytes) of
    the last call, and its measures."""
    numba.set_num_threads(threads)
    rqa(pts[:3000], **how, **SETTINGS)  # warm-up: compile or load the cache (3000 points: the grid engine)
    best, cpu = np.inf, np.inf
    for _ in range(repeat):
        tracemalloc.start()
        start, before = time.perf_counter(), os.times()
        result = rqa(pts, **how, **SETTINGS)
        wall, after = time.perf_counter() - start, os.times()
        if wall < best:
            best, cpu = wall, after.user + after.system - before.user - before.system
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return best, cpu, peak, {m: getattr(result, m) for m in MEASURES}


def theirs(pts: np.ndarray) -> tuple[float, dict]:
    from pyunicorn.timeseries import RecurrencePlot

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rp = RecurrencePlot(pts, threshold=1.2, metric="euclidean", silence_level=10)
        values = {
            "RR": rp.recurrence_rate(), "DET": rp.determinism(l_min=2), "L": rp.average_diaglength(l_min=2),
            "ENTR": rp.diag_entropy(l_min=2), "LAM": rp.laminarity(v_min=2), "TT": rp.trapping_time(v_min=2),
        }
    return time.perf_counter() - start, values


def rate_ratio(pts: np.ndarray, threads: int, repeat: int, rate: float) -> tuple[float, float, float]:
    """Best wall times of ``rqa`` at eps = 1.2 and at ``recurrence_rate=rate`` on ``threads`` numba threads, the
    two calls alternated ``repeat`` times (the shared host drifts), and the RR at that rate."""
    numba.set_num_threads(threads)
    rqa(pts[:3000], threshold=1.2, **SETTINGS)  # warm-up: compile or load the caches of both roads
    rqa(pts[:3000], recurrence_rate=rate, **SETTINGS)
    fixed, at_rate, rr = np.inf, np.inf, float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        rqa(pts, threshold=1.2, **SETTINGS)
        fixed = min(fixed, time.perf_counter() - start)
        start = time.perf_counter()
        rr = rqa(pts, recurrence_rate=rate, **SETTINGS).RR
        at_rate = min(at_rate, time.perf_counter() - start)
    return fixed, at_rate, rr


def main(sizes: list[int], rate_all: bool = False) -> None:
    cores = numba.config.NUMBA_NUM_THREADS
    print(f"RP_Speed_Test workload; numba threads available: {cores}; load average {os.getloadavg()[0]:.2f}", flush=True)
    for n in sizes:
        pts = embedded(n)
        repeat = 3 if n <= RATE_MAX else 1
        t_all, cpu_all, peak, v_all = timed(pts, cores, repeat, threshold=1.2)
        t_one, cpu_one, _, v_one = timed(pts, 1, repeat, threshold=1.2)
        assert v_all == v_one, "the multi-core kernel must give the single-core result exactly"
        line = (
            f"N = {n:7d}: ours {t_all:7.2f} s on {cores} threads (CPU {cpu_all:.2f} s), {t_one:7.2f} s on 1 "
            f"(CPU {cpu_one:.2f} s; {t_one / t_all:.2f}x), peak {peak / 2**20:.0f} MiB ({peak / n:.0f} B/point)"
        )
        if n <= PYUNICORN_MAX:
            t_pu, v_pu = theirs(pts)
            gap = max(abs(v_all[m] - v_pu[m]) / max(abs(v_pu[m]), 1e-12) for m in MEASURES)
            line += f"; pyunicorn {t_pu:7.2f} s (ours {t_pu / t_all:.1f}x faster, measures agree to {gap:.1e})"
        print(line)
        print("   " + ", ".join(f"{m} {v_all[m]:.6g}" for m in MEASURES), flush=True)
        if n <= RATE_MAX or rate_all:
            for threads in (cores, 1):
                fixed, at_rate, rr = rate_ratio(pts, threads, repeat, v_all["RR"])
                print(
                    f"   fixed rate {v_all['RR']:.6g} on {threads} thread(s): {at_rate:8.3f} s vs {fixed:8.3f} s at eps = 1.2 "
                    f"= {at_rate / fixed:.2f}x (target <= 2x); RR {rr:.6g}; load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:] if a != "--rate-all"] or [5_000, 20_000, 70_963], "--rate-all" in sys.argv[1:])
