"""A long, slowed-down streaming run, started as a subprocess and SIGKILLed by
tests/test_storage.py (the kill test), or interrupted by SIGINT/SIGTERM by
tests/test_faults.py.  Usage: python tests/_killed_run.py PATH [DELAY [--term-raises]]
(DELAY: seconds slept per step, default 0.05; ``--term-raises``: SIGTERM raises
``KeyboardInterrupt``, as the CLI's handler does).

It prints ``step t`` (flushed) when the map starts step ``t``; every row before
``t`` has been recorded by then, and the file holds every completed block of
FLUSH_EVERY rows.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdyn.maps.classic import QuadraticGD  # noqa: E402
from netdyn.orbits.trajectory import run  # noqa: E402

FLUSH_EVERY = 5
STEPS = 100_000
SEED = 3


class SlowQuadraticGD(QuadraticGD):
    """QuadraticGD (lr=0.01 on eigenvalues 0.5, 1, 2: a slow contraction) that
    sleeps ``delay`` seconds per step and announces each step on stdout."""

    def __init__(self, delay: float = 0.0, announce: bool = False):
        super().__init__(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
        self.delay, self.announce = delay, announce

    def step_with_metrics(self, x, t):
        if self.announce:
            print(f"step {t}", flush=True)
        time.sleep(self.delay)
        return super().step_with_metrics(x, t)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    if "--term-raises" in sys.argv:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    slow = SlowQuadraticGD(delay=delay, announce=True)
    run(slow, slow.initial_state(SEED), STEPS, path=sys.argv[1], flush_every=FLUSH_EVERY)
