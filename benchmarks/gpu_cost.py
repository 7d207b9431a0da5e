"""Cost of netdyn's step loops on a CUDA device, as ratios measured in one run (issue 14, "Any device").

Run where a GPU exists: ``python benchmarks/gpu_cost.py`` (exits with a message
otherwise); ``--device cpu`` runs the same measurements on the CPU (to check the
script, or to compare).  Model: the digits MLP 64-``--hidden``-10 (tanh), mini-batches
of ``--batch`` samples, model and data on the device, ``--dtype`` float32 or float64.

Printed, each as a ratio to a baseline timed in the same run (per step, marginal cost:
the difference of two run lengths, so set-up and the final read-back cancel):

* ``TrainingMap.step`` vs a plain ``torch.optim`` loop (same optimiser, same batches);
* ``max_lyapunov`` twin and tangent per step vs ``TrainingMap.step``;
* ``run()`` in memory and streamed to netCDF (``record="all"`` and a 64-d sketch) vs
  ``TrainingMap.step``;
* ``LyapunovMonitor.step`` overhead on the plain loop;
* host reads (``.item()``, ``.cpu()``, ``float()`` ...) per step of ``run``, ``max_lyapunov`` and
  the monitor, counted (on a GPU: reads of GPU tensors only, i.e. syncs), so a regression to
  one sync per step shows as >= 1 instead of a few per 64 steps.  On the CPU the monitor reads
  every step by default (``sync_every=1``: nothing to save there) and torch.optim's own reads
  of its CPU step counters are counted too.

Targets: no host read per step (reads/step <= 0.1), ``TrainingMap.step`` <= 1.2x the plain
loop, twin <= 2.5x and tangent <= 4x a map step, ``run`` in memory <= 1.3x.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netdyn.lyapunov.maximal import max_lyapunov  # noqa: E402
from netdyn.maps.problems import make_task  # noqa: E402
from netdyn.maps.training import TrainingMap  # noqa: E402
from netdyn.monitor import LyapunovMonitor  # noqa: E402
from netdyn.orbits.trajectory import run  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--hidden", type=int, default=512, help="hidden width of the digits MLP (default 512)")
    parser.add_argument("--batch", type=int, default=128, help="mini-batch size (default 128)")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "adam"])
    parser.add_argument("--steps", type=int, default=256, help="steps of the longer timed run (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement, median kept (default 3)")
    return parser.parse_args(argv)


class Timer:
    """Wall time of ``f`` with the device drained before and after (CUDA runs asynchronously)."""

    def __init__(self, device: torch.device, repeats: int):
        self.device, self.repeats = device, repeats

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds(self, f: Callable[[], Any]) -> float:
        samples = []
        for _ in range(self.repeats):
            self.sync()
            start = time.perf_counter()
            f()
            self.sync()
            samples.append(time.perf_counter() - start)
        return sorted(samples)[len(samples) // 2]

    def per_step(self, f: Callable[[int], Any], steps: int) -> float:
        """Marginal seconds per step: ``(T(steps) - T(steps / 4)) / (3 steps / 4)``."""
        short = max(1, steps // 4)
        f(short)  # warm-up (allocator, kernels, vmap probe)
        return (self.seconds(lambda: f(steps)) - self.seconds(lambda: f(short))) / (steps - short)


class HostReads:
    """Counts reads of tensors back to the host while active (as tests/test_devices.py): on an
    accelerator only reads of tensors that live there (each waits for the device); on the CPU
    every read (a proxy: the same calls would sync on a GPU, but so would torch.optim's reads
    of its CPU step counters, which do not)."""

    METHODS = ("item", "cpu", "numpy", "tolist", "__float__", "__int__", "__bool__", "__index__")

    def __init__(self, device_only: bool) -> None:
        self.count, self.saved, self.device_only = 0, {}, device_only

    def __enter__(self) -> "HostReads":
        for name in self.METHODS:
            original = self.saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._counting(original))
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)

    def _counting(self, method: Callable) -> Callable:
        def counted(tensor, *args, **kwargs):
            if not self.device_only or tensor.device.type != "cpu":
                self.count += 1
            return method(tensor, *args, **kwargs)

        return counted


def reads_per_step(f: Callable[[int], Any], steps: int, device_only: bool) -> float:
    counts = []
    for n in (steps // 4, steps):
        with HostReads(device_only) as reads:
            f(n)
        counts.append(reads.count)
    return (counts[1] - counts[0]) / (steps - steps // 4)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_cost: no CUDA device on this machine (torch.cuda.is_available() is False); "
              "run it where a GPU exists, or with --device cpu to check the script", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    warnings.simplefilter("ignore", RuntimeWarning)
    task = make_task("digits", hidden=(args.hidden,), dtype=dtype)
    model = copy.deepcopy(task.model).to(device)
    inputs, targets = (a.to(device) for a in task.train)
    opt_class = torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD
    lr = 1e-3 if args.optimizer == "adam" else 0.05
    tmap = TrainingMap(model, task.loss_fn, (inputs, targets), optimizer=args.optimizer, lr=lr, batch_size=args.batch)
    timer = Timer(device, args.repeats)
    x0 = tmap.initial_state()

    def plain(n: int, monitored: bool = False) -> None:
        user = copy.deepcopy(model)
        optimizer = opt_class(user.parameters(), lr=lr)
        monitor = LyapunovMonitor(user, optimizer, nn.CrossEntropyLoss()) if monitored else None
        for t in range(n):
            idx = tmap.batch_indices(t)  # the same batches as the map (cached per epoch on the device)
            optimizer.zero_grad()
            loss = task.loss_fn(user(inputs[idx]), targets[idx])
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.step((inputs[idx], targets[idx]), loss)
        if monitor is not None:
            monitor.close()

    def map_steps(n: int) -> None:
        x = x0
        for t in range(n):
            x = tmap.step(x, t)

    def twin(n: int) -> None:
        max_lyapunov(tmap, x0, n, method="twin")

    def tangent(n: int) -> None:
        max_lyapunov(tmap, x0, n, method="tangent")

    folder = tempfile.mkdtemp(prefix="gpu_cost_")
    files = iter(range(10**6))

    def recorded(record: Any, path: bool) -> Callable[[int], None]:
        def f(n: int) -> None:
            run(tmap, n, record=record, path=os.path.join(folder, f"{next(files)}.nc") if path else None)
        return f

    base = timer.per_step(plain, args.steps)
    step = timer.per_step(map_steps, args.steps)
    rows = [
        ("plain torch.optim loop", base, base),
        ("TrainingMap.step", step, base),
        ("LyapunovMonitor on the plain loop", timer.per_step(lambda n: plain(n, True), args.steps), base),
        ("max_lyapunov twin", timer.per_step(twin, args.steps), step),
        ("max_lyapunov tangent", timer.per_step(tangent, args.steps), step),
        ("run() in memory, record='all'", timer.per_step(recorded("all", False), args.steps), step),
        ("run() in memory, sketch 64", timer.per_step(recorded(64, False), args.steps), step),
        ("run() to netCDF, record='all'", timer.per_step(recorded("all", True), args.steps), step),
        ("run() to netCDF, sketch 64", timer.per_step(recorded(64, True), args.steps), step),
    ]
    reads = [
        ("run() in memory", reads_per_step(recorded("all", False), args.steps, device.type != "cpu")),
        ("run() to netCDF", reads_per_step(recorded("all", True), args.steps, device.type != "cpu")),
        ("max_lyapunov twin", reads_per_step(twin, args.steps, device.type != "cpu")),
        ("max_lyapunov tangent", reads_per_step(tangent, args.steps, device.type != "cpu")),
        ("LyapunovMonitor (plain loop included)",
         reads_per_step(lambda n: plain(n, True), args.steps, device.type != "cpu")),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {load[0]:.2f}")
    print(f"digits MLP 64-{args.hidden}-10 {args.dtype}, {tmap.param_dim} parameters, {args.optimizer}, "
          f"batch {args.batch}; per step, marginal over {args.steps - args.steps // 4} steps, median of "
          f"{args.repeats}")
    print(f"{'':40s} {'ms/step':>9s} {'ratio':>7s}  (to)")
    for label, seconds, ref in rows:
        print(f"{label:40s} {seconds * 1e3:9.3f} {seconds / ref:7.2f}x  "
              f"({'plain loop' if ref is base else 'TrainingMap.step'})")
    print("host reads per step (device -> host copies and scalar conversions)")
    for label, value in reads:
        print(f"{label:40s} {value:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
