"""Ctrl-C (SIGINT) and SIGTERM during ``netdyn train``: exit 130 / 143, one line saying up to
which step the file is complete (read back from the file), no traceback, every computed row kept.

These run the real command in a subprocess and signal it at a seeded random moment.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netdyn.io.storage import open_trajectory

pytestmark = pytest.mark.filterwarnings("ignore:open_trajectory.*incomplete:RuntimeWarning")
ROOT = Path(__file__).resolve().parents[1]
STEPS = 1_000_000


def interrupt_train(tmp_path: Path, signum: int, seed: int) -> tuple[int, str, Path]:
    """Start ``netdyn train`` with a huge --steps, send ``signum`` a random 0.5-2 s after the
    file appears; returns (exit status, stderr, file)."""
    path = tmp_path / "run.nc"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    env.pop("NETDYN_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netdyn", "train", "--task", "iris", "--hidden", "5", "--steps", str(STEPS),
         "--eval-every", "1000", "-o", str(path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "netdyn train never created its file"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.5, 2.0))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err, path


CASES = [(signal.SIGINT, 130, 0), (signal.SIGTERM, 143, 1)]


@pytest.mark.parametrize("signum,status,seed", CASES, ids=["SIGINT", "SIGTERM"])
def test_interrupted_train_says_where_the_file_ends(tmp_path, signum, status, seed):
    code, err, path = interrupt_train(tmp_path, signum, seed)
    assert code == status, err
    assert "Traceback" not in err, err
    last_line = re.split(r"[\r\n]+", err.strip())[-1]
    match = re.fullmatch(r"netdyn train: interrupted at step (\d+); (.+) is complete up to step (\d+) "
                         r"\((\d+) recorded steps\)", last_line)
    assert match, last_line
    with open_trajectory(path) as ds:  # an incomplete file opens with a warning, not an error
        steps = ds["step"].values
        at = int(ds.attrs.get("interrupted_at", steps[-1]))
    assert int(match[1]) == at and int(match[3]) == int(steps[-1]) and int(match[4]) == steps.size
    np.testing.assert_array_equal(steps, np.arange(steps.size))  # rows are contiguous from step 0


@pytest.mark.parametrize("signum,status,seed", CASES, ids=["SIGINT", "SIGTERM"])
def test_interrupted_train_keeps_every_computed_row(tmp_path, signum, status, seed):
    code, err, path = interrupt_train(tmp_path, signum, seed + 10)
    assert code == status, err
    shown = [int(n) for n in re.findall(rf"(\d+)/{STEPS}", err)]  # tqdm counts finished steps
    assert shown and max(shown) > 0, err
    with open_trajectory(path) as ds:
        assert ds.sizes["step"] >= max(shown)
        # the file says where the run was interrupted, and holds every step before it (record_every = 1)
        assert "interrupted_at" in ds.attrs, sorted(ds.attrs)
        assert int(ds["step"][-1]) >= int(ds.attrs["interrupted_at"]) - 1
