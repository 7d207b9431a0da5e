"""Cost of the data-driven diagnostics against the reference implementations.

Run by hand from the repository root: ``python -m benchmarks.datadriven_cost``
(or ``PYTHONPATH=. python benchmarks/datadriven_cost.py``).  Prints, from one run,
our Rosenstein vs ``nolds.lyap_r`` (time ratio, exponent difference) at
N = 2000, 5000, 10000 and our RQA vs pyunicorn's ``RecurrencePlot`` (time and
tracemalloc peak) at N = 5000, with a given threshold and with a fixed
recurrence rate, for both engines (numba kernels, numpy row blocks), plus ours
alone at N = 20000.  RQA times are the best of 5 runs (numpy at N = 20000: 2) after a warm-up call, so
the numba JIT compile is excluded; it is timed separately, in fresh processes
(first with an empty cache: compile; then with that cache: load).
Targets: Rosenstein >= 20x faster at N = 10 000 with the same value +-2 %;
RQA >= 10x faster and <= 1/8 of the memory of pyunicorn at N = 5000.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import nolds
from pyunicorn.timeseries import RecurrencePlot

from netdyn.series.datadriven import rosenstein
import netdyn.series.recurrence as recurrence
from netdyn.series.recurrence import rqa

REPEAT = 5


def logistic(n: int, x0: float = 0.3) -> np.ndarray:
    x = np.empty(n)
    x[0] = x0
    for i in range(n - 1):
        x[i + 1] = 4 * x[i] * (1 - x[i])
    return x


def measured(fn, repeat: int = 1):
    """(result, seconds, peak bytes): best time of ``repeat`` calls; memory from one more, traced, call."""
    seconds = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        seconds = min(seconds, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


FIRST_CALL = """
import time, numpy as np, numba
from netdyn.series.recurrence import rqa
x = np.random.default_rng(0).random(50)
t = time.perf_counter()
rqa(x, recurrence_rate=0.1, engine="numba")
print(time.perf_counter() - t)
"""


def first_call_seconds() -> tuple[float, float]:
    """Seconds of the first numba RQA call of a process: with an empty kernel cache, then with that cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join(sys.path))
        run = lambda: float(subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True).stdout)
        return run(), run()


def rqa_row(label: str, n: int, fn, ref: tuple[float, float] | None = None, repeat: int = REPEAT) -> None:
    res, t, m = measured(fn, repeat)
    values = (round(res.RR, 6), round(res.DET, 6), round(res.LAM, 6), res.Lmax)
    print(f"N={n:<5d} {label:<14} {t:.3f} s, peak {m / 1e6:.1f} MB   (RR, DET, LAM, Lmax) = {values}")
    if ref is not None:
        print(f"{'':14}speed-up {ref[0] / t:.1f}x, memory ratio {m / ref[1]:.3f}")


def pyunicorn_row(n: int, fn) -> tuple[float, float]:
    ref, t, m = measured(fn, REPEAT)
    print(f"N={n:<5d} {'pyunicorn:':<14} {t:.3f} s, peak {m / 1e6:.1f} MB   (RR, DET, LAM, Lmax) = {tuple(round(float(v), 6) for v in ref)}")
    return t, m


def main() -> None:
    params = dict(emb_dim=4, lag=1, trajectory_len=20)
    print("Rosenstein (logistic r=4, emb_dim=4, lag=1, theiler (min_tsep)=10, trajectory_len=20, fit='poly' on all k)")
    print(f"{'N':>6} {'nolds s':>9} {'ours s':>8} {'speed-up':>9} {'nolds':>9} {'ours':>9} {'rel diff':>9}")
    for n in (2000, 5000, 10000):
        x = logistic(n)
        t = time.perf_counter()
        ref = nolds.lyap_r(x, fit="poly", min_tsep=10, **params)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = rosenstein(x, fit_range=None, theiler=10, **params).exponent
        t_ours = time.perf_counter() - t
        print(f"{n:6d} {t_ref:9.3f} {t_ours:8.3f} {t_ref / t_ours:8.1f}x {ref:9.5f} {ours:9.5f} {abs(ours - ref) / abs(ref):9.2e}")

    kernels = recurrence._kernels("auto", "benchmark")
    engines = ["numba", "numpy"] if kernels is not None else ["numpy"]
    print(f"\nRQA kernel path: engine='auto' runs {'numba ' + kernels.numba.__version__ if kernels else 'numpy (numba missing)'}; "
          f"times best of {REPEAT} after a warm-up call")
    if kernels is not None:
        compile_s, load_s = first_call_seconds()
        print(f"numba first call in a new process: {compile_s:.2f} s with an empty cache (JIT compile), "
              f"{load_s:.2f} s with the cache (load); excluded from the times below")
        rqa(logistic(100), recurrence_rate=0.1, engine="numba")

    print("\nRQA (logistic r=4, supremum, eps=0.05, theiler=0 as pyunicorn, l_min=v_min=2)")
    x = logistic(5000).astype(np.float32).astype(np.float64)

    def pyunicorn_rqa(**kw):
        rp = RecurrencePlot(x, metric="supremum", silence_level=2, **kw)
        return rp.recurrence_rate(), rp.determinism(2), rp.laminarity(2), rp.max_diaglength()

    ref = pyunicorn_row(5000, lambda: pyunicorn_rqa(threshold=0.05))
    for engine in engines:
        rqa_row(f"netdyn {engine}:", 5000, lambda: rqa(x, threshold=0.05, theiler=0, engine=engine), ref)
    print("\nRQA at a fixed recurrence rate 0.1 (threshold = that quantile of the distances, then RQA; otherwise as above)")
    ref = pyunicorn_row(5000, lambda: pyunicorn_rqa(recurrence_rate=0.1))
    for engine in engines:
        rqa_row(f"netdyn {engine}:", 5000, lambda: rqa(x, recurrence_rate=0.1, theiler=0, engine=engine), ref)
    x = logistic(20000)
    print(f"\nN=20000 (N^2 bytes = {20000**2 / 1e6:.0f} MB; eps=0.05, then the rate 0.1; the numpy engine best of 2)")
    for engine in engines:
        repeat = REPEAT if engine == "numba" else 2
        rqa_row(f"netdyn {engine}:", 20000, lambda: rqa(x, threshold=0.05, theiler=0, engine=engine), repeat=repeat)
        rqa_row(f"{engine}, RR=0.1:", 20000, lambda: rqa(x, recurrence_rate=0.1, theiler=0, engine=engine), repeat=repeat)


if __name__ == "__main__":
    main()
