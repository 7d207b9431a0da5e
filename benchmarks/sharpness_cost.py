"""Cost of tracking the (preconditioned) sharpness along training, as a ratio to plain steps.

Run by hand: ``python benchmarks/sharpness_cost.py``.  Digits MLP 64-32-10, tanh, float64,
full batch, Adam at lr 1e-3, 200 steps; the top eigenvalue of ``P^-1 H`` every 10 steps
(``netdyn.track_sharpness``), warm-started from the previous top eigenvector vs a fresh
random start each time.  Prints, from one run: wall time of the bare 200 map steps, of
the tracked run with either start, their ratios, and the Hessian-vector products used.
"""
from __future__ import annotations

import os
import time

import torch

from netdyn import make_task, sharpness_at, track_sharpness, training_map

STEPS, EVERY = 200, 10


def main() -> None:
    torch.set_num_threads(1)
    tmap = training_map(make_task("digits", hidden=(32,), activation="tanh"), lr=1e-3, optimizer="adam")
    x0 = tmap.initial_state()

    start = time.perf_counter()
    x, states = x0, []
    for t in range(STEPS):
        if t % EVERY == 0:
            states.append((t, x))
        x = tmap.step(x, t)
    bare = time.perf_counter() - start

    start = time.perf_counter()
    warm = track_sharpness(tmap, x0, STEPS, every=EVERY)
    tracked = time.perf_counter() - start

    start = time.perf_counter()
    cold = [sharpness_at(tmap, x, t=t, preconditioned=True) for t, x in states]
    cold_time = time.perf_counter() - start + bare

    print(f"load average {os.getloadavg()[0]:.2f}; digits MLP, {tmap.param_dim} parameters, Adam lr 1e-3, 1 thread")
    print(f"bare run, {STEPS} steps:                     {bare:7.2f} s")
    print(f"with sharpness every {EVERY} (warm start):   {tracked:7.2f} s = {tracked / bare:5.2f}x, "
          f"{int(warm['n_hvp'].sum())} HVPs")
    print(f"with sharpness every {EVERY} (cold start):   {cold_time:7.2f} s = {cold_time / bare:5.2f}x, "
          f"{sum(c.n_hvp for c in cold)} HVPs")
    print(f"top eigenvalue of P^-1 H over training: {float(warm['sharpness'][0, 0]):.4g} -> "
          f"{float(warm['sharpness'][-1, 0]):.4g}; threshold 38/lr = {warm.attrs['threshold']:.4g}")


if __name__ == "__main__":
    main()
