"""Sweep throughput: plain loop vs a LocalCluster of 1 and 2 workers, in one run.

What the speed-up means (issue 14: >= 1.8x for 2 workers over 1): the steady-state
throughput of the same grid (default: 8 digits points of 100 steps, 4 learning rates x 2
seeds) on an already started, warmed cluster — cluster start-up is excluded (printed
apart: a sweep pays it once), and before the clock every worker has imported torch,
loaded the data and trained one short point (torch's first-call costs, ~0.1 s a worker).
Both clusters are started first and the runs are interleaved (loop, 1 worker, 2 workers,
repeated ``--repeat`` times), each figure the best of its runs, so that a slow spell of the
shared machine (the host's speed drifts by several % over a minute) does not land on one
configuration only.  Every ``run_sweep`` call computes each of its points (task keys are
unique to the call: no result of an earlier sweep is reused).

Printed: points per minute for each, the 2-vs-1-worker speed-up, the per-point
overhead of the Dask path against the plain loop (1 worker vs loop; target <= 5 %; and,
robust to other load, elapsed time over the points' own summed run time), the CPU time
this process (client and LocalCluster's in-process scheduler) spends per sweep, the
cluster start-up time, the machine's load average (other processes compete for the same
cores), and the CPU that the idle cluster's own housekeeping takes (scheduler, nannies,
workers and this client: a share of a core that, with one worker per core, the points
lose), measured by the processes' CPU times and so robust to other load.  One thread per
point everywhere (``OMP_NUM_THREADS=1``, set here before torch is imported; the points
run under ``torch.set_num_threads(1)``, :func:`netdyn.sweep.grid.train_point`).

    python benchmarks/sweep_scaling.py [--points 8] [--steps 100] [--repeat 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def timed_sweep(grid: dict, **where) -> tuple[float, float, float]:
    """One run: (elapsed seconds, summed in-point seconds, this process's CPU seconds)."""
    from netdyn.sweep.grid import run_sweep

    cpu, start = time.process_time(), time.perf_counter()
    ds = run_sweep(**grid, progress=False, **where)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert (ds["status"] == "ok").all(), ds["error"].values
    assert ds.attrs["points_computed"] == ds.attrs["points_total"], ds.attrs
    return elapsed, float(ds["wall_time"].sum()), cpu


def _warm() -> None:
    """Imports, data and torch's first-call costs: one short digits point."""
    from netdyn.sweep.grid import point_specs, train_point

    (_, spec), = point_specs(task="digits", lr=0.3, steps=32)[1]
    assert train_point(spec)["status"] == "ok"


def idle_share(client, seconds: float = 5.0) -> float:
    """Share of one core that an idle cluster uses: its workers, their nannies and this
    process (which holds both clusters' schedulers and clients, so a little is counted twice)."""
    import psutil

    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    procs = [psutil.Process()] + workers + [w.parent() for w in workers]
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
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each configuration (default 3)")
    args = parser.parse_args()
    grid = dict(task="digits", lr=list(np.geomspace(0.3, 3.0, args.points // 2)), seed=[0, 1], steps=args.steps)
    _warm()  # this process, for the plain loop
    clusters, clients, startup = {}, {}, {}
    with contextlib.ExitStack() as stack:
        for n in (1, 2):
            start = time.perf_counter()
            clusters[n] = stack.enter_context(local_cluster(n_workers=n))
            clients[n] = stack.enter_context(Client(clusters[n]))
            clients[n].run(_warm)  # every worker, before the clock
            startup[n] = time.perf_counter() - start
        print(f"{args.points} points of {args.steps} steps (digits 64-32-10 MLP), best of {args.repeat} interleaved "
              f"runs; load average before: {os.getloadavg()}")
        runs: dict[int, list[tuple[float, float, float]]] = {0: [], 1: [], 2: []}
        for _ in range(args.repeat):
            runs[0].append(timed_sweep(grid, n_workers=0))
            for n in (1, 2):
                runs[n].append(timed_sweep(grid, client=clients[n]))
            print("  run: " + ", ".join(f"{n} worker(s) {runs[n][-1][0]:.2f} s" for n in (0, 1, 2))
                  + f"  (load {os.getloadavg()[0]:.2f})")
        best = {n: min(r) for n, r in runs.items()}
        idle = {n: idle_share(clients[n]) for n in (1, 2)}
    loop, times = best[0][0], {n: best[n][0] for n in (1, 2)}
    rate = lambda seconds: 60 * args.points / seconds  # noqa: E731
    print(f"plain loop          : {loop:7.2f} s  {rate(loop):6.1f} points/min")
    for n in (1, 2):
        print(f"LocalCluster({n})     : {times[n]:7.2f} s  {rate(times[n]):6.1f} points/min  (start-up {startup[n]:.1f} s; "
              f"client+scheduler CPU {best[n][2]:.2f} s a sweep)")
    print(f"speed-up 2 vs 1 worker: {times[1] / times[2]:.2f}x  (target >= 1.8x); "
          f"points' summed run time 1 vs 2 workers: {best[1][1]:.2f} s vs {best[2][1]:.2f} s")
    print("idle cluster housekeeping: " + ", ".join(f"{n} worker(s) {100 * idle[n]:.1f} % of a core" for n in (1, 2)))
    print(f"Dask per-point overhead vs loop (1 worker, start-up excluded): {100 * (times[1] / loop - 1):+.1f} %  "
          f"(target <= 5 %); with start-up: {100 * ((times[1] + startup[1]) / loop - 1):+.1f} %")
    print(f"Dask dispatch overhead (1 worker: elapsed / summed in-point time - 1; robust to load): "
          f"{100 * (times[1] / best[1][1] - 1):+.1f} %")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
