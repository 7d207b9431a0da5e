"""Sweep throughput: plain loop vs a LocalCluster of 1 and 2 workers, in one run.

Prints points per minute for each, the 2-vs-1-worker speed-up (target >= 1.8x on
two free cores, issue 14) and the per-point overhead of the Dask path against the plain
loop (1 worker vs loop, cluster start excluded; target <= 5 %; and, robust to
other load, elapsed time over the points' own summed run time), plus the cluster
start-up time, which a sweep pays once.  The machine's load average is printed
because other processes compete for the same cores, and so is the CPU that the idle
cluster's own housekeeping takes (scheduler, nannies, workers and this client: a share
of a core that, with one worker per core, the points lose), measured by the processes'
CPU times and so robust to other load.  One thread per point everywhere
(``OMP_NUM_THREADS=1``, set here before torch is imported; the points run under
``torch.set_num_threads(1)``, :func:`netdyn.sweep.grid.train_point`).

    python benchmarks/sweep_scaling.py [--points 8] [--steps 100]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def timed_sweep(grid: dict, repeat: int = 2, **where) -> tuple[float, float]:
    """Best of ``repeat`` runs: (elapsed seconds, summed in-point seconds of that run)."""
    from netdyn.sweep.grid import run_sweep

    best = (float("inf"), float("nan"))
    for _ in range(repeat):
        start = time.perf_counter()
        ds = run_sweep(**grid, progress=False, **where)
        elapsed = time.perf_counter() - start
        assert (ds["status"] == "ok").all(), ds["error"].values
        best = min(best, (elapsed, float(ds["wall_time"].sum())))
    return best


def _warm() -> None:
    from netdyn.maps.problems import make_task

    make_task("digits")


def idle_share(seconds: float = 5.0) -> float:
    """Share of one core that this process and its children (the cluster) use while idle."""
    import psutil

    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    used = lambda: sum(sum(p.cpu_times()[:2]) for p in procs)  # noqa: E731
    before = used()
    time.sleep(seconds)
    return (used() - before) / seconds


def main() -> None:
    from distributed import Client

    from netdyn.sweep.grid import local_cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="points per sweep (even; default 8)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per point (default 100)")
    args = parser.parse_args()
    grid = dict(task="digits", lr=list(np.geomspace(0.3, 3.0, args.points // 2)), seed=[0, 1], steps=args.steps)
    timed_sweep(dict(grid, lr=grid["lr"][:1], seed=[0]), repeat=1, n_workers=0)  # imports and data, once
    print(f"{args.points} points of {args.steps} steps (digits 64-32-10 MLP); load average before: {os.getloadavg()}")
    loop, _ = timed_sweep(grid, n_workers=0)
    times, startup, inside, idle = {}, {}, {}, {}
    for n in (1, 2):
        start = time.perf_counter()
        with local_cluster(n_workers=n) as cluster, Client(cluster) as client:
            client.run(_warm)  # each worker imports torch/sklearn and loads the data before the clock
            startup[n] = time.perf_counter() - start
            times[n], inside[n] = timed_sweep(grid, client=client)
            idle[n] = idle_share()
    rate = lambda seconds: 60 * args.points / seconds  # noqa: E731
    print(f"plain loop          : {loop:7.2f} s  {rate(loop):6.1f} points/min")
    for n in (1, 2):
        print(f"LocalCluster({n})     : {times[n]:7.2f} s  {rate(times[n]):6.1f} points/min  (start-up {startup[n]:.1f} s)")
    print(f"speed-up 2 vs 1 worker: {times[1] / times[2]:.2f}x  (target >= 1.8x)")
    print("idle cluster housekeeping: " + ", ".join(f"{n} worker(s) {100 * idle[n]:.1f} % of a core" for n in (1, 2)))
    print(f"Dask per-point overhead vs loop (1 worker, start-up excluded): {100 * (times[1] / loop - 1):+.1f} %  "
          f"(target <= 5 %); with start-up: {100 * ((times[1] + startup[1]) / loop - 1):+.1f} %")
    print(f"Dask dispatch overhead (1 worker: elapsed / summed in-point time - 1; robust to load): "
          f"{100 * (times[1] / inside[1] - 1):+.1f} %")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
