"""Cost of LyapunovMonitor inside a plain training loop, as ratios to the bare loop.

Run by hand: ``python benchmarks/monitor_cost.py [--batch-size 64] [--optimizer sgd]``.
Digits MLP 64-32-10, tanh, float64, mini-batches of the training set, one thread
(``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``, set here before torch is imported).
Each variant trains a fresh copy from the same initial weights for ``--steps`` steps
(a multiple of 100, so ``every=10`` covers whole segment periods of
``10 x window = 100`` steps); the median of ``--repeats`` timings per step is
compared with the bare loop's, all measured in this one run.  Times are CPU time of this
process (``time.process_time``: on a shared machine wall time also counts the waits for a
core); the machine's load average is printed.
Targets (issue 8, again issue 14): every=1 <= 2.1x, every=10 <= 1.15x.  A fourth variant
prints the floor of ``every=1``: the same loop plus one plain step of a copy of the model
with its own optimiser on the same batch (zero_grad, forward, backward, ``step()``), i.e.
the twin's second step with no measuring, rescaling or RNG bookkeeping.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from netdyn.maps.problems import make_task  # noqa: E402
from netdyn.monitor import LyapunovMonitor  # noqa: E402


class SecondStep:
    """The floor of a twin step: a plain training step of a copy of the model on the same batch."""

    def __init__(self, model: torch.nn.Module, optimizer_name: str, loss_fn) -> None:
        self.model, self.loss_fn = copy.deepcopy(model), loss_fn
        self.optimizer = make_optimizer(optimizer_name, self.model)

    def step(self, batch) -> None:
        self.optimizer.zero_grad()
        self.loss_fn(self.model(batch[0]), batch[1]).backward()
        self.optimizer.step()


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3)
    return torch.optim.SGD(model.parameters(), lr=0.1)


def per_step_seconds(task, optimizer_name: str, batch_size: int, steps: int, monitor_kwargs) -> float:
    model = copy.deepcopy(task.model)
    optimizer = make_optimizer(optimizer_name, model)
    if monitor_kwargs == "second step":
        monitor = SecondStep(model, optimizer_name, task.loss_fn)
    else:
        monitor = None if monitor_kwargs is None else LyapunovMonitor(model, optimizer, task.loss_fn, **monitor_kwargs)
    inputs, targets = task.train
    n_batches = inputs.shape[0] // batch_size
    batches = [(inputs[i * batch_size : (i + 1) * batch_size], targets[i * batch_size : (i + 1) * batch_size])
               for i in range(n_batches)]
    start = time.process_time()
    for t in range(steps):
        batch = batches[t % n_batches]
        optimizer.zero_grad()
        task.loss_fn(model(batch[0]), batch[1]).backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(batch)
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = make_task("digits", hidden=(32,), activation="tanh")
    variants = [("bare loop", None), ("monitor every=1", {}), ("monitor every=10", {"every": 10}),
                ("floor: second step", "second step")]
    times = {label: [] for label, _ in variants}
    load_before = os.getloadavg()
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit all variants alike
        for label, kwargs in variants:
            times[label].append(per_step_seconds(task, args.optimizer, args.batch_size, args.steps, kwargs))
    base = statistics.median(times["bare loop"])
    print(f"digits MLP 64-32-10 float64, {args.optimizer}, batch {args.batch_size}, {args.steps} steps, "
          f"median of {args.repeats} (CPU time), torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for label, _ in variants:
        seconds = statistics.median(times[label])
        print(f"{label:18s} {seconds * 1e6:9.1f} us/step   ratio {seconds / base:5.2f}x")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
