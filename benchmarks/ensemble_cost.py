"""Many orbits at once: batched Lyapunov spectra vs one orbit, and vs a compiled loop.

Run by hand from the repository root: ``python benchmarks/ensemble_cost.py``.
Prints, from one run: the time of ``lyapunov_spectrum`` for one Hénon orbit and for
1 000 orbits (2 000 steps each; target: the batch in <= 30x the single orbit), the
cost per member-step, and the same per member-step cost of a numba-compiled
Hénon QR loop (2x2 Gram-Schmidt by hand) as the compiled reference, and both
ensembles' mean exponents (literature: 0.41922, -1.62319).
"""
from __future__ import annotations

import math
import os
import time

import numba
import numpy as np
import torch

from netdyn import HenonMap, lyapunov_spectrum

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


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    henon = HenonMap()
    starts = torch.stack([henon.initial_state(seed) for seed in range(MEMBERS)])
    lyapunov_spectrum(henon, starts[:4], 10)  # warm-up (vmap tracing)
    one = min(timed(lambda: lyapunov_spectrum(henon, starts[0], STEPS)) for _ in range(3))
    many = timed(lambda: lyapunov_spectrum(henon, starts, STEPS))
    compiled_henon_spectra(starts[:2].numpy(), 10)  # compile
    ref_time = timed(lambda: compiled_henon_spectra(starts.numpy(), STEPS))
    ours = lyapunov_spectrum(henon, starts, STEPS)["lyapunov"].values
    ref = compiled_henon_spectra(starts.numpy(), STEPS)
    per_member_step = many / (MEMBERS * STEPS)
    print(f"load average {os.getloadavg()[0]:.2f}; torch threads 1")
    print(f"lyapunov_spectrum, Hénon, {STEPS} steps: 1 orbit {one:.3f} s, {MEMBERS} orbits {many:.3f} s "
          f"= {many / one:.1f}x one orbit (target <= 30x)")
    print(f"per member-step: ours {per_member_step * 1e6:.3f} us, compiled loop {ref_time / (MEMBERS * STEPS) * 1e6:.3f} us "
          f"({per_member_step / (ref_time / (MEMBERS * STEPS)):.1f}x)")
    # float rounding differs between the two codes, so the chaotic orbits part after ~100 steps: compare ensembles
    for name, values in (("ours", ours), ("compiled", ref)):
        mean, err = values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(MEMBERS)
        print(f"{name:9s} ensemble mean exponents {mean[0]:.5f} +- {err[0]:.5f}, {mean[1]:.5f} +- {err[1]:.5f}")


if __name__ == "__main__":
    main()
