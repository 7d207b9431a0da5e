"""Cost of exponent estimates on the digits MLP, as ratios to a plain training step.

Run by hand: ``python benchmarks/lyapunov_cost.py [--steps 60] [--threads 1]``.
Targets: tangent <= 3x and twin <= 2.1x a plain step; the per-tangent cost of the
top-k spectrum should fall as k grows; a K = 32 ensemble should beat 32 sequential
runs.  All numbers come from one run on one machine.
"""
from __future__ import annotations

import argparse
import time

import torch

from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.problems import make_task, training_map
from netdyn.lyapunov.spectrum import lyapunov_spectrum


def timed(f, repeat: int = 3) -> float:
    f()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmap = training_map(make_task("digits"), lr=args.lr)
    x0 = tmap.initial_state(0)
    n = args.steps
    print(f"digits MLP {tmap.describe()['layer_sizes']}, {tmap.param_dim} parameters, full batch "
          f"({tmap.inputs.shape[0]} samples), float64, {args.threads} thread(s), {n} steps")

    def plain() -> None:
        x = x0
        for t in range(n):
            x = tmap.step(x, t)

    step = timed(plain) / n
    print(f"plain step: {step * 1e3:.2f} ms")
    for method in ("tangent", "twin"):
        cost = timed(lambda: max_lyapunov(tmap, x0, n, method=method)) / n
        print(f"max_lyapunov {method:7s}: {cost / step:5.2f} x a plain step")
    for k in (1, 8, 32):
        cost = timed(lambda: lyapunov_spectrum(tmap, x0, max(n // 4, 5), k=k), repeat=1) / max(n // 4, 5)
        print(f"spectrum k={k:2d}: {cost / step:6.2f} x a step in all, {cost / step / k:5.2f} x per tangent")
    runs = 32
    xs = torch.stack([tmap.initial_state(s) for s in range(runs)])
    few = max(n // 6, 5)
    one = timed(lambda: [max_lyapunov(tmap, x, few, method="twin") for x in xs], repeat=1)
    batch = {}
    both = timed(lambda: batch.setdefault("r", max_lyapunov(tmap, xs, few, method="twin")), repeat=1)
    print(f"ensemble of {runs} (twin, {few} steps): {one / both:.2f}x faster than {runs} sequential runs "
          f"(batching: {batch['r'].attrs['batching']})")


if __name__ == "__main__":
    main()
