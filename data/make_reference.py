"""Regenerate ``data/iris_sgd_reference.nc``, the saved reference trajectory.

    python data/make_reference.py            # writes data/iris_sgd_reference.nc

An MLP 4-8-3 (tanh, float64, PyTorch's default initialisation drawn with seed 0)
trained by full-batch gradient descent at learning rate 20 on the bundled iris
data for 3 000 steps, every parameter recorded, test accuracy every 10 steps.
At this learning rate training still learns through a chaotic transient (twin
exponent ~0.27 per step over the first 600 steps, tutorial 05) and then settles
on a contracting period-2 cycle: a good subject for offline analysis, where
windowed recurrence measures show the change of regime.
Deterministic: the same file contents on every CPU run of the same torch build.
"""
from __future__ import annotations

from pathlib import Path

from netdyn.maps.problems import make_task, training_map
from netdyn.orbits.trajectory import run

OUTPUT = Path(__file__).with_name("iris_sgd_reference.nc")


def main() -> None:
    task = make_task("iris", hidden=(8,), activation="tanh", seed=0)
    tmap = training_map(task, lr=20.0, optimizer="sgd")
    OUTPUT.unlink(missing_ok=True)
    ds = run(tmap, None, 3000, record="all", eval_every=10, path=OUTPUT, progress=True)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.2f} MB): {ds.sizes['step']} steps, diverged={bool(ds.diverged)}")


if __name__ == "__main__":
    main()
