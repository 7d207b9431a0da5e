"""Cost of the data-driven diagnostics against the reference implementations.

Run by hand from the repository root: ``python -m benchmarks.datadriven_cost``
(or ``PYTHONPATH=. python benchmarks/datadriven_cost.py``).  Prints, from one run,
our Rosenstein vs ``nolds.lyap_r`` (time ratio, exponent difference) at
N = 2000, 5000, 10000 and our streamed RQA vs pyunicorn's ``RecurrencePlot``
(time and tracemalloc peak) at N = 5000, plus ours alone at N = 20000.
Targets: Rosenstein >= 20x faster at N = 10 000 with the same value +-2 %;
RQA >= 10x faster and <= 1/8 of the memory of pyunicorn at N = 5000.
"""
from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import nolds
from pyunicorn.timeseries import RecurrencePlot

from netdyn.datadriven import rosenstein
from netdyn.recurrence import rqa


def logistic(n: int, x0: float = 0.3) -> np.ndarray:
    x = np.empty(n)
    x[0] = x0
    for i in range(n - 1):
        x[i + 1] = 4 * x[i] * (1 - x[i])
    return x


def measured(fn):
    """(result, seconds, peak bytes) of one call; time and memory from separate calls."""
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    params = dict(emb_dim=4, lag=1, min_tsep=10, trajectory_len=20)
    print("Rosenstein (logistic r=4, emb_dim=4, lag=1, min_tsep=10, trajectory_len=20, fit='poly' on all k)")
    print(f"{'N':>6} {'nolds s':>9} {'ours s':>8} {'speed-up':>9} {'nolds':>9} {'ours':>9} {'rel diff':>9}")
    for n in (2000, 5000, 10000):
        x = logistic(n)
        t = time.perf_counter()
        ref = nolds.lyap_r(x, fit="poly", **params)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = rosenstein(x, fit_range=None, **params).exponent
        t_ours = time.perf_counter() - t
        print(f"{n:6d} {t_ref:9.3f} {t_ours:8.3f} {t_ref / t_ours:8.1f}x {ref:9.5f} {ours:9.5f} {abs(ours - ref) / abs(ref):9.2e}")

    print("\nRQA (logistic r=4, supremum, eps=0.05, theiler=0 as pyunicorn, l_min=v_min=2)")
    x = logistic(5000).astype(np.float32).astype(np.float64)

    def pyunicorn_rqa():
        rp = RecurrencePlot(x, threshold=0.05, metric="supremum", silence_level=2)
        return rp.recurrence_rate(), rp.determinism(2), rp.laminarity(2), rp.max_diaglength()

    ref, t_ref, m_ref = measured(pyunicorn_rqa)
    ours, t_ours, m_ours = measured(lambda: rqa(x, threshold=0.05, theiler=0))
    print(f"N=5000  pyunicorn: {t_ref:.3f} s, peak {m_ref / 1e6:.1f} MB   (RR, DET, LAM, Lmax) = {tuple(round(float(v), 6) for v in ref)}")
    print(f"N=5000  netdyn:    {t_ours:.3f} s, peak {m_ours / 1e6:.1f} MB   (RR, DET, LAM, Lmax) = "
          f"{(round(ours.RR, 6), round(ours.DET, 6), round(ours.LAM, 6), ours.Lmax)}")
    print(f"        speed-up {t_ref / t_ours:.1f}x, memory ratio {m_ours / m_ref:.3f}")
    x = logistic(20000)
    ours, t_ours, m_ours = measured(lambda: rqa(x, threshold=0.05, theiler=0))
    print(f"N=20000 netdyn:    {t_ours:.3f} s, peak {m_ours / 1e6:.1f} MB (N^2 bytes = {20000**2 / 1e6:.0f} MB), "
          f"RR={ours.RR:.4f} DET={ours.DET:.4f}")


if __name__ == "__main__":
    main()
