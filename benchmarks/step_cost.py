"""Cost of a TrainingMap step and of step_jvp against a plain torch.optim.SGD step.

Run by hand: ``python benchmarks/step_cost.py``.  Digits MLP 64-32-10, tanh,
float64, full batch (1 347 samples).  Prints median wall time per step of each
variant and its ratio to the plain loop, all measured in this one run.
Targets (issue 2): step <= 1.2x, step_jvp with one tangent <= 3x.
"""
from __future__ import annotations

import statistics
import time

import torch

from netdyn.maps.problems import make_task, training_map


def median_time(fn, repeats: int = 7, inner: int = 30) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    torch.set_num_threads(1)
    task = make_task("digits", hidden=(32,), activation="tanh")
    model = task.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = task.train

    def plain_step() -> None:
        optimizer.zero_grad()
        task.loss_fn(model(inputs), targets).backward()
        optimizer.step()

    tmap = training_map(task, lr=0.1)
    state = {"x": tmap.initial_state(), "t": 0}

    def map_step() -> None:
        state["x"] = tmap.step(state["x"], state["t"])
        state["t"] += 1

    v = torch.randn(tmap.dim, dtype=torch.float64)

    def jvp_step() -> None:
        state["x"], _ = tmap.step_jvp(state["x"], v, state["t"])
        state["t"] += 1

    base = median_time(plain_step)
    rows = [("plain torch.optim.SGD step", base), ("TrainingMap.step", median_time(map_step)),
            ("TrainingMap.step_jvp (1 tangent)", median_time(jvp_step))]
    print(f"digits MLP 64-32-10, {tmap.param_dim} parameters, {len(targets)} samples, 1 thread")
    for label, seconds in rows:
        print(f"{label:36s} {seconds * 1e3:8.3f} ms   ratio {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
