"""Per-step cost of recording a trajectory, as a ratio to a bare step loop.

Run by hand from the repository root: ``python -m benchmarks.record_cost [steps]``.  Two maps with about
2.4k parameters: the digits MLP (64-32-10, tanh, full-batch SGD; a realistic step)
and gradient descent on a quartic potential (a very cheap step, so the ratio is an
upper bound on the recorder's relative overhead).  Each timing is the best of
``repeats``, with the cases interleaved.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from netdyn.maps.classic import PotentialGD
from netdyn.maps.problems import make_task, training_map
from netdyn.orbits.trajectory import run


def best_times(cases: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each case; cases are interleaved so that load drift on a
    shared machine affects them alike."""
    best = {label: float("inf") for label in cases}
    for _ in range(repeats):
        for label, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def bare(map_, steps: int) -> None:
    x = map_.initial_state(0)
    for t in range(steps):
        x, _ = map_.step_with_metrics(x, t)


def main(steps: int = 1000, repeats: int = 5) -> None:
    torch.set_num_threads(1)
    maps = {
        "digits MLP 64-32-10": training_map(make_task("digits", hidden=(32,)), lr=0.5),
        "quartic PotentialGD": PotentialGD(lambda x: (x**2).sum() / 2 + (x**4).sum() / 4, dim=2442, lr=0.01),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.nc"
        for name, m in maps.items():
            n = int(getattr(m, "param_dim", m.dim))
            cases = {
                "bare": lambda: bare(m, steps),
                "in memory": lambda: run(m, m.initial_state(0), steps),
                "netCDF stream (flush_every=100)": lambda: run(m, m.initial_state(0), steps, path=path).close(),
                "sketch k=64 (in memory)": lambda: run(m, m.initial_state(0), steps, record=64),
            }
            times = best_times(cases, repeats)
            base = times.pop("bare")
            print(f"{name}: {n} parameters, {steps} steps, bare step_with_metrics loop {1e6 * base / steps:.1f} us/step")
            for label, t in times.items():
                print(f"  {label:<32} {1e6 * t / steps:8.1f} us/step   ratio {t / base:.3f}")

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
