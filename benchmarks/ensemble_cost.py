"""Many orbits at once (issue 14): batched ensembles vs one orbit, vs a compiled loop, vs loops.

Run by hand from the repository root: ``python benchmarks/ensemble_cost.py`` (one torch
thread; about a minute).  Prints, from one run:

1. ``lyapunov_spectrum`` of one Hénon orbit and of 1 000 orbits, 2 000 steps each
   (target: the batch in <= 30x one orbit), and the cost per member-step against two
   numba-compiled Hénon loops doing the same QR work per member-step (2x2 Jacobian
   times the basis, Gram-Schmidt by hand): "minimal" keeps only the two sums of
   ``ln R_ii``; "same outputs" also stores every ``ln R_ii`` and the running means,
   the arrays ``lyapunov_spectrum`` returns (target: within 10x of a compiled loop),
   also for 10 000 orbits x 500 steps, where a step's fixed cost is shared by more members;
   both ensembles' mean exponents (literature: 0.41922, -1.62319);
2. the logistic map's orbit diagram at 2 000 values of r x 1 000 steps (tail 200) as
   one parameter batch without classification (target <= 2 s), one map per value
   (measured on 100 values, scaled), and the classification's cost per value;
3. ensembles of 32 seeds of a small MLP (iris 4-16-3, SGD full batch): a 32-member
   twin ``max_lyapunov`` with ``VmapTrainingMap`` (torch.func.grad + vmap) against
   32 separate runs of the ``TrainingMap`` and against today's batched call (which
   loops), and the plain step of 64 states of the digits MLP (64-32-10) both ways.
"""
from __future__ import annotations

import math
import os
import time

import numba
import numpy as np
import torch

from netdyn import HenonMap, LogisticMap, lyapunov_spectrum
from netdyn.orbits.bifurcation import orbit_diagram
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.problems import make_task, training_map
from netdyn.maps.vmap_training import VmapTrainingMap

STEPS, MEMBERS = 2000, 1000


@numba.njit(cache=True)
def compiled_henon_spectra(x0: np.ndarray, steps: int, a: float = 1.4, b: float = 0.3) -> np.ndarray:
    """Both exponents of each orbit by 2x2 Gram-Schmidt every step (the compiled reference)."""
    out = np.zeros((x0.shape[0], 2))
    for m in range(x0.shape[0]):
        x, y = x0[m, 0], x0[m, 1]
        q11, q21, q12, q22 = 1.0, 0.0, 0.0, 1.0
        s1 = s2 = 0.0
        for _ in range(steps):
            j11, j12, j21 = -2.0 * a * x, 1.0, b
            w11, w21 = j11 * q11 + j12 * q21, j21 * q11
            w12, w22 = j11 * q12 + j12 * q22, j21 * q12
            r11 = math.sqrt(w11 * w11 + w21 * w21)
            q11, q21 = w11 / r11, w21 / r11
            r12 = q11 * w12 + q21 * w22
            w12, w22 = w12 - r12 * q11, w22 - r12 * q21
            r22 = math.sqrt(w12 * w12 + w22 * w22)
            q12, q22 = w12 / r22, w22 / r22
            s1 += math.log(r11)
            s2 += math.log(r22)
            x, y = 1.0 - a * x * x + y, b * x
        out[m, 0], out[m, 1] = s1 / steps, s2 / steps
    return out


@numba.njit(cache=True)
def compiled_henon_outputs(x0: np.ndarray, steps: int, a: float = 1.4, b: float = 0.3) -> tuple:
    """The same QR loop storing what ``lyapunov_spectrum`` returns: every ``ln R_ii``
    ``(n, steps, 2)`` and the running means ``(n, steps, 2)``."""
    n = x0.shape[0]
    logs, running = np.empty((n, steps, 2)), np.empty((n, steps, 2))
    for m in range(n):
        x, y = x0[m, 0], x0[m, 1]
        q11, q21, q12, q22 = 1.0, 0.0, 0.0, 1.0
        s1 = s2 = 0.0
        for t in range(steps):
            j11, j12, j21 = -2.0 * a * x, 1.0, b
            w11, w21 = j11 * q11 + j12 * q21, j21 * q11
            w12, w22 = j11 * q12 + j12 * q22, j21 * q12
            r11 = math.sqrt(w11 * w11 + w21 * w21)
            q11, q21 = w11 / r11, w21 / r11
            r12 = q11 * w12 + q21 * w22
            w12, w22 = w12 - r12 * q11, w22 - r12 * q21
            r22 = math.sqrt(w12 * w12 + w22 * w22)
            q12, q22 = w12 / r22, w22 / r22
            logs[m, t, 0], logs[m, t, 1] = math.log(r11), math.log(r22)
            s1 += logs[m, t, 0]
            s2 += logs[m, t, 1]
            running[m, t, 0], running[m, t, 1] = s1 / (t + 1), s2 / (t + 1)
            x, y = 1.0 - a * x * x + y, b * x
    return logs, running


def timed(f, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls (the machine is shared: the best is the least disturbed)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def spectra() -> None:
    henon = HenonMap()
    starts = torch.stack([henon.initial_state(seed) for seed in range(MEMBERS)])
    lyapunov_spectrum(henon, starts[:4], 10)  # warm-up (numba QR kernel)
    one = timed(lambda: lyapunov_spectrum(henon, starts[0], STEPS), repeat=3)
    many = timed(lambda: lyapunov_spectrum(henon, starts, STEPS), repeat=2)
    compiled_henon_spectra(starts[:2].numpy(), 10)  # compile
    compiled_henon_outputs(starts[:2].numpy(), 10)
    minimal = timed(lambda: compiled_henon_spectra(starts.numpy(), STEPS), repeat=3)
    same = timed(lambda: compiled_henon_outputs(starts.numpy(), STEPS), repeat=3)
    ours = lyapunov_spectrum(henon, starts, STEPS)["lyapunov"].values
    ref = compiled_henon_spectra(starts.numpy(), STEPS)
    work = MEMBERS * STEPS
    print(f"1. lyapunov_spectrum, Hénon, {STEPS} steps: 1 orbit {one:.3f} s, {MEMBERS} orbits {many:.3f} s "
          f"= {many / one:.1f}x one orbit (target <= 30x)")
    print(f"   per member-step: ours {many / work * 1e6:.3f} us; compiled minimal {minimal / work * 1e6:.3f} us "
          f"(ours {many / minimal:.1f}x); compiled same outputs {same / work * 1e6:.3f} us "
          f"(ours {many / same:.1f}x; target <= 10x)")
    big = torch.stack([henon.initial_state(seed) for seed in range(10 * MEMBERS)])
    ours_big = timed(lambda: lyapunov_spectrum(henon, big, STEPS // 4))
    same_big = timed(lambda: compiled_henon_outputs(big.numpy(), STEPS // 4), repeat=3)
    print(f"   {10 * MEMBERS} orbits x {STEPS // 4} steps (the fixed cost of a step shared by more members): ours "
          f"{ours_big / (10 * work / 4) * 1e6:.3f} us per member-step = {ours_big / same_big:.1f}x compiled same outputs")
    # float rounding differs between the two codes, so the chaotic orbits part after ~100 steps: compare ensembles
    for name, values in (("ours", ours), ("compiled", ref)):
        mean, err = values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(MEMBERS)
        print(f"   {name:9s} ensemble mean exponents {mean[0]:.5f} +- {err[0]:.5f}, {mean[1]:.5f} +- {err[1]:.5f}")


def diagram() -> None:
    r = np.linspace(2.5, 4.0, 2000)
    batch = timed(lambda: orbit_diagram(LogisticMap, r, 1000, tail=200, classify=False, name="r"), repeat=2)
    loop = timed(lambda: orbit_diagram(LogisticMap, r[::20], 1000, tail=200, classify=False, vectorize=False)) * 20
    with_map = timed(lambda: orbit_diagram(LogisticMap, r[::100], 1000, tail=200, name="r")) / 20
    no_map = timed(lambda: orbit_diagram(LogisticMap, r[::100], 1000, tail=200, name="r", use_map=False)) / 20
    print(f"2. orbit diagram, logistic, 2000 values x 1000 steps (tail 200), classify=False: parameter batch "
          f"{batch:.2f} s (target <= 2 s), one map per value {loop:.1f} s (100 values scaled) = {loop / batch:.0f}x")
    print(f"   classification per value (orbital_stability, one call each): {with_map * 1e3:.0f} ms with the map's "
          f"exponent (use_map=True, default), {no_map * 1e3:.0f} ms with use_map=False "
          f"-> {2000 * with_map:.0f} s / {2000 * no_map:.0f} s for 2000 values")


def training() -> None:
    tmap = training_map(make_task("iris", hidden=(16,)), lr=0.5)
    vm = VmapTrainingMap(tmap)
    xs = torch.stack([tmap.initial_state(s) for s in range(32)])
    steps = 20
    runs = timed(lambda: [max_lyapunov(tmap, x, steps, method="twin") for x in xs])
    today = timed(lambda: max_lyapunov(tmap, xs, steps, method="twin"))
    vmapped = timed(lambda: max_lyapunov(vm, xs, steps, method="twin"), repeat=2)
    print(f"3. 32 seeds of the iris MLP {tmap.describe()['layer_sizes']} ({tmap.param_dim} parameters), twin "
          f"max_lyapunov, {steps} steps: VmapTrainingMap {vmapped:.2f} s = {runs / vmapped:.1f}x faster than 32 runs "
          f"({runs:.2f} s), {today / vmapped:.1f}x faster than the batched TrainingMap call ({today:.2f} s, loops)")
    for name, task in (("iris", make_task("iris", hidden=(16,))), ("digits", make_task("digits"))):
        tm = training_map(task, lr=0.5)
        wrapped = VmapTrainingMap(tm)
        states = torch.stack([tm.initial_state(s) for s in range(64)])
        loop = timed(lambda: [tm.step(x, 0) for x in states], repeat=3)
        batch = timed(lambda: wrapped.step(states, 0), repeat=3)
        print(f"   plain step of 64 states, {name} ({tm.param_dim} parameters): loop {loop * 1e3:.1f} ms, "
              f"vmap {batch * 1e3:.1f} ms = {loop / batch:.1f}x")


def main() -> None:
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} (2 shared CPUs: ratios are measured in one run); torch threads 1")
    spectra()
    diagram()
    training()


if __name__ == "__main__":
    main()
