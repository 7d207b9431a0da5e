"""Cost of the distance curves: fast path (flat states) versus graph path (networkx).

A 10 000-step full-batch GD trajectory of a digits-sized MLP (64 -> 32 -> 10, tanh,
float64, lr 0.5, on scikit-learn's bundled 8x8 digits) is generated in torch; then

* the fast path :func:`netdyn.orbits.distances.trajectory_distances` runs on all 10 000
  steps, with and without Kendall's tau;
* on the first 200 steps the fast path and the graph path
  (:func:`netdyn.orbits.graphs.to_graph` per step + :func:`netdyn.orbits.distances.graph_distances`)
  are timed and compared per step, and their results checked equal.

Run by hand:  python benchmarks/graph_cost.py [--steps 10000] [--compare 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from netdyn.orbits.distances import graph_distances, trajectory_distances
from netdyn.orbits.graphs import to_graph

SIZES = [64, 32, 10]


def gd_trajectory(steps: int, lr: float = 0.5, seed: int = 0) -> np.ndarray:
    """States (steps, 2410) of full-batch GD with cross-entropy on the digits."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / np.sqrt(p.shape[-1]))
    params = list(model.parameters())
    states = np.empty((steps, sum(p.numel() for p in params)))
    for t in range(steps):
        states[t] = nn.utils.parameters_to_vector(params).detach().numpy()
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
    return states


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=200)
    args = parser.parse_args()

    torch.set_num_threads(1)  # tiny matmuls: extra threads only contend on a shared machine
    states, t_gen = timed(gd_trajectory, args.steps)
    print(f"trajectory: {states.shape[0]} steps x {states.shape[1]} parameters, generated in {t_gen:.1f} s")

    full, t_fast = timed(trajectory_distances, states, SIZES)
    _, t_fast_nok = timed(trajectory_distances, states, SIZES, kendall=False)
    print(f"fast path, {args.steps} steps:           {t_fast:7.2f} s  ({1e3 * t_fast / args.steps:.3f} ms/step)")
    print(f"fast path without Kendall:         {t_fast_nok:7.2f} s  ({1e3 * t_fast_nok / args.steps:.3f} ms/step)")

    sub, n = states[: args.compare], args.compare
    graphs, t_build = timed(lambda: [to_graph(x, layer_sizes=SIZES) for x in sub])
    print(f"on {n} steps (graph path = to_graph per step {1e3 * t_build / n:.3f} ms + graph_distances):")
    per_graph = {}
    for kendall in (True, False):
        fast, t_fast_sub = timed(trajectory_distances, sub, SIZES, kendall=kendall)
        slow, t_measure = timed(graph_distances, graphs, kendall=kendall)
        per_fast, per_graph[kendall] = t_fast_sub / n, (t_build + t_measure) / n
        worst = max(float(np.nanmax(np.abs(fast[v].values - slow[v].values))) for v in fast.data_vars)
        print(f"  kendall={kendall!s:5}: fast {1e3 * per_fast:7.3f} ms/step, graph {1e3 * per_graph[kendall]:7.3f} "
              f"ms/step, ratio {per_graph[kendall] / per_fast:6.1f}x, max |fast - graph| {worst:.1e}")
    print(f"graph path extrapolated to {args.steps} steps: {per_graph[True] * args.steps:.0f} s with Kendall, "
          f"{per_graph[False] * args.steps:.0f} s without")
    print("curves at the last step:", {v: round(float(full[v][-1]), 6) for v in full.data_vars})


if __name__ == "__main__":
    main()
