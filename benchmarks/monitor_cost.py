"""Cost of LyapunovMonitor inside a plain training loop, as ratios to the bare loop.

Run by hand: ``python benchmarks/monitor_cost.py [--batch-size 64] [--optimizer sgd]``.
Digits MLP 64-32-10 (``--hidden`` sets the 32), tanh, float64, mini-batches of the training set, one thread
(``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``, set here before torch is imported).
Each variant trains its own copy from the same initial weights.  The variants run
in turns of ``--chunk`` steps (a multiple of 100, so ``every=10`` covers whole segment
periods of ``10 x window = 100`` steps), in a new random order each round, and each
round's times are divided by the bare loop's of the same round: a drift of the
machine's speed (on a shared machine the same loop varies by +-20% over minutes) hits
numerator and denominator alike.  The median over ``--rounds`` rounds is printed with
its interquartile range.  Times are CPU time of this thread (``time.thread_time``: wall
time would also count the waits for a core); the load average is printed.
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
import random  # noqa: E402
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


class Loop:
    """One variant: a copy of the model, its optimiser and what runs after each step."""

    def __init__(self, task, optimizer_name: str, batches, extra) -> None:
        self.task, self.batches, self.t = task, batches, 0
        self.model = copy.deepcopy(task.model)
        self.optimizer = make_optimizer(optimizer_name, self.model)
        if extra == "second step":
            self.after = SecondStep(self.model, optimizer_name, task.loss_fn)
        else:
            self.after = None if extra is None else LyapunovMonitor(self.model, self.optimizer, task.loss_fn, **extra)

    def seconds_per_step(self, steps: int) -> float:
        model, optimizer, loss_fn, after = self.model, self.optimizer, self.task.loss_fn, self.after
        start = time.thread_time()
        for t in range(self.t, self.t + steps):
            batch = self.batches[t % len(self.batches)]
            optimizer.zero_grad()
            loss_fn(model(batch[0]), batch[1]).backward()
            optimizer.step()
            if after is not None:
                after.step(batch)
        self.t += steps
        return (time.thread_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32, help="hidden width of the MLP (the targets are for 32)")
    args = parser.parse_args()
    if args.chunk % 100:
        parser.error("--chunk must be a multiple of 100")
    torch.set_num_threads(1)
    task = make_task("digits", hidden=(args.hidden,), activation="tanh")
    inputs, targets = task.train
    n_batches = inputs.shape[0] // args.batch_size
    batches = [(inputs[i * args.batch_size : (i + 1) * args.batch_size],
                targets[i * args.batch_size : (i + 1) * args.batch_size]) for i in range(n_batches)]
    variants = {"bare loop": None, "monitor every=1": {}, "monitor every=10": {"every": 10},
                "floor: second step": "second step"}
    loops = {label: Loop(task, args.optimizer, batches, extra) for label, extra in variants.items()}
    for loop in loops.values():  # warm-up: compiled kernels, allocator, the monitor's first steps
        loop.seconds_per_step(100)
    order = random.Random(0)
    ratios: dict[str, list[float]] = {label: [] for label in variants}
    bare: list[float] = []
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        labels = list(variants)
        order.shuffle(labels)
        seconds = {label: loops[label].seconds_per_step(args.chunk) for label in labels}
        bare.append(seconds["bare loop"])
        for label in variants:
            ratios[label].append(seconds[label] / seconds["bare loop"])
    print(f"digits MLP 64-{args.hidden}-10 float64, {args.optimizer}, batch {args.batch_size}, {args.rounds} rounds of "
          f"{args.chunk} steps per variant (CPU time), torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; bare step {statistics.median(bare) * 1e6:.1f} us "
          f"(median; range {min(bare) * 1e6:.0f}-{max(bare) * 1e6:.0f})")
    for label in variants:
        q1, q2, q3 = statistics.quantiles(ratios[label], n=4)
        print(f"{label:20s} ratio {q2:5.2f}x  (interquartile {q1:.2f}-{q3:.2f})")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
