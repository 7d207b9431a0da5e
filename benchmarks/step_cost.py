"""Cost of a TrainingMap step, of step_jvp and of a twin exponent step against a plain torch.optim.SGD step.

Run by hand: ``python benchmarks/step_cost.py [--twin-steps 200] [--repeats 7]``.  Digits
MLP 64-32-10, tanh, float64, full batch (1 347 samples), one thread (``OMP_NUM_THREADS=1``
and ``torch.set_num_threads(1)``, set here before torch is imported).  Prints the median
time per step of each variant and its ratio to the plain loop, all measured in this one
run, interleaved (each repeat times every variant once, so drifts in the machine's load
hit all alike); times are CPU time of this process (``time.process_time``: on a shared
machine, wall time also counts the waits for a core).  The twin row is
``max_lyapunov(method="twin")`` over ``--twin-steps`` steps (one call, its set-up and
result included) divided by the steps.  The machine's load average is printed.
Targets: step <= 1.2x and step_jvp with one tangent <= 3x (issue 2); twin <= 2.1x (issue 14:
the second forward/backward is the floor, 2x).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from netdyn.lyapunov.maximal import max_lyapunov  # noqa: E402
from netdyn.maps.problems import make_task, training_map  # noqa: E402


def per_step(fn, steps: int) -> float:
    """CPU seconds per step of ``fn()``, which takes ``steps`` steps."""
    start = time.process_time()
    fn()
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inner", type=int, default=30, help="steps per timing of the single-step variants")
    parser.add_argument("--twin-steps", type=int, default=200, help="steps of the timed max_lyapunov call")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = make_task("digits", hidden=(32,), activation="tanh")
    model = task.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = task.train

    def plain(n: int) -> None:
        for _ in range(n):
            optimizer.zero_grad()
            task.loss_fn(model(inputs), targets).backward()
            optimizer.step()

    tmap = training_map(task, lr=0.1)
    x0 = tmap.initial_state()
    v = torch.randn(tmap.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def map_steps(n: int) -> None:
        x = x0
        for t in range(n):
            x = tmap.step(x, t)

    def jvp_steps(n: int) -> None:
        x = x0
        for t in range(n):
            x, _ = tmap.step_jvp(x, v, t)

    inner, twin_steps = args.inner, args.twin_steps
    variants = {
        "plain torch.optim.SGD step": lambda: per_step(lambda: plain(inner), inner),
        "TrainingMap.step": lambda: per_step(lambda: map_steps(inner), inner),
        "TrainingMap.step_jvp (1 tangent)": lambda: per_step(lambda: jvp_steps(inner), inner),
        "max_lyapunov twin, per step": lambda: per_step(
            lambda: max_lyapunov(tmap, x0, twin_steps, method="twin"), twin_steps
        ),
    }
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {label: [] for label in variants}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for label, run in variants.items():
            times[label].append(run())
    base = statistics.median(times["plain torch.optim.SGD step"])
    print(f"digits MLP 64-32-10, {tmap.param_dim} parameters, {len(targets)} samples, float64, "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"median of {args.repeats} (CPU time)")
    for label, samples in times.items():
        seconds = statistics.median(samples)
        print(f"{label:36s} {seconds * 1e3:8.3f} ms   ratio {seconds / base:5.2f}x")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
