"""Fault injection: nothing computed is lost.

Interrupts (SIGINT, SIGTERM turned into ``KeyboardInterrupt``, an error of the map)
at seeded random moments of a streamed ``run`` and of a sweep; a reader holding the
trajectory file open (HDF5 file locking); truncated and zero-byte point files; two
identical sweeps sharing one store; a Dask worker killed mid-sweep.  Each test
checks that every row or point computed before the fault is on disk and equal, bit
for bit, to an undisturbed computation.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import netdyn.io.storage as storage
from netdyn.maps.classic import QuadraticGD
from netdyn.io.storage import consolidate, open_trajectory, pending_files
from netdyn.sweep.grid import run_sweep
from netdyn.sweep.store import stored_keys
from netdyn.orbits.trajectory import run

from _killed_run import SEED, SlowQuadraticGD

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
# 4 iris points of 60 steps: ~0.2 s each here, long enough to be interrupted midway
SWEEP = dict(lr=[0.3, 0.6, 1.2, 2.4], seed=[0], steps=60, progress=False)


def quadratic() -> QuadraticGD:
    return QuadraticGD(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """A sweep result without what depends on where and when points ran."""
    return ds.drop_vars("wall_time").assign_attrs(backend="", points_loaded=0, points_computed=0)


def same_rows(disk: xr.Dataset, ref: xr.Dataset) -> None:
    """Rows of ``disk`` equal the first rows of ``ref``, bit for bit."""
    n = disk.sizes["step"]
    for name in ("step", "state", "loss", "grad_norm"):
        assert disk[name].values.tobytes() == ref[name].values[:n].tobytes(), name


@pytest.fixture(scope="module")
def reference_sweep():
    return run_sweep(task="iris", n_workers=0, **SWEEP)


# ------------------------------------------------------------------ run(): interrupts
class Interrupted(QuadraticGD):
    """QuadraticGD that raises ``error`` when it starts step ``at``."""

    def __init__(self, at: int, error: BaseException):
        super().__init__(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
        self.at, self.error = at, error

    def step_with_metrics(self, x, t):
        if t == self.at:
            raise self.error
        return super().step_with_metrics(x, t)


@pytest.mark.parametrize("at,record_every", [(0, 1), (3, 1), (10, 1), (17, 1), (17, 2)])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")], ids=["ctrl-c", "error"])
def test_interrupted_run_writes_every_computed_row(tmp_path, at, record_every, error):
    path = tmp_path / "i.nc"
    with pytest.raises(type(error)):
        run(Interrupted(at, error), Interrupted(at, error).initial_state(1), 40, path=path, flush_every=5, record_every=record_every)
    with pytest.warns(RuntimeWarning, match=f"interrupted at step {at}"):
        disk = open_trajectory(path)
    ref = run(quadratic(), quadratic().initial_state(1), at, record_every=record_every) if at else None
    assert disk.sizes["step"] == len(range(0, at, record_every))
    assert disk.attrs["complete"] == 0 and disk.attrs["interrupted_at"] == at == int(disk["final_step"])
    if ref is not None:
        same_rows(disk, ref)
        np.testing.assert_array_equal(disk["final_state"], ref["final_state"])
    disk.close()


def test_interrupt_during_a_block_write_neither_loses_nor_doubles_rows(tmp_path, monkeypatch):
    """Ctrl-C inside the second block's write (rows 5..9 queued, still in the buffer)."""
    calls, write = [], storage.TrajectoryWriter._write

    def interrupted_write(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(self, *args)

    monkeypatch.setattr(storage.TrajectoryWriter, "_write", interrupted_write)
    path = tmp_path / "w.nc"
    with pytest.raises(KeyboardInterrupt):
        run(quadratic(), quadratic().initial_state(6), 40, path=path, flush_every=5)
    with pytest.warns(RuntimeWarning, match="interrupted at step 9"):
        disk = open_trajectory(path)
    # row 9 was recorded before its step's state x_10 became the current state
    assert disk.sizes["step"] == 10 and int(disk["final_step"]) == 9
    same_rows(disk, run(quadratic(), quadratic().initial_state(6), 10))
    np.testing.assert_array_equal(disk["final_state"], run(quadratic(), quadratic().initial_state(6), 9)["final_state"])
    disk.close()


def _interrupt_child(tmp_path: Path, sig: signal.Signals, rng: np.random.Generator) -> tuple[Path, int]:
    """Start tests/_killed_run.py (0.01 s a step, a write every 5 rows), send ``sig``
    at a random moment after a random step; returns the path and that step."""
    path = tmp_path / f"{sig.name}.nc"
    target, pause = int(rng.integers(5, 40)), float(rng.uniform(0, 0.03))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "_killed_run.py"), str(path), "0.01", "--term-raises"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.strip() == f"step {target}" or time.monotonic() > deadline:
                break
        time.sleep(pause)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, (sig.name, proc.returncode, err[-2000:])
    return path, target


def test_signalled_run_keeps_every_row_computed_before_the_signal(tmp_path):
    """SIGINT and SIGTERM (which the child turns into KeyboardInterrupt, as the CLI
    does), each at a seeded random moment; both children run at once to save time."""
    signals = (signal.SIGINT, signal.SIGTERM)
    with ThreadPoolExecutor(2) as pool:
        children = list(pool.map(lambda sig: _interrupt_child(tmp_path, sig, np.random.default_rng(int(sig))), signals))
    for sig, (path, target) in zip(signals, children):
        with pytest.warns(RuntimeWarning, match="interrupted at step"):
            disk = open_trajectory(path)
        n, final_step = disk.sizes["step"], int(disk["final_step"])
        # "step t" is printed as step t starts: rows 0..t-1 existed when the signal was sent
        assert n >= target and disk.attrs["interrupted_at"] == final_step, sig.name
        # the last row may be recorded while x_{t+1} was not yet taken as the state
        assert final_step in (n - 1, n) and disk.attrs["complete"] == 0, sig.name
        same_rows(disk, run(SlowQuadraticGD(), SlowQuadraticGD().initial_state(SEED), n))
        np.testing.assert_array_equal(disk["final_state"], run(SlowQuadraticGD(), SlowQuadraticGD().initial_state(SEED), final_step)["final_state"])
        disk.close()


# ------------------------------------------------------------------ run(): a locked file
READER = (
    "import sys, xarray as xr\n"
    "ds = xr.open_dataset(sys.argv[1]); ds['state'].values\n"
    "print('open', flush=True); sys.stdin.read(); ds.close()\n"
)


class Watched(QuadraticGD):
    """QuadraticGD whose file a notebook-like reader process opens at step 5."""

    def __init__(self, path: Path):
        super().__init__(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
        self.path, self.reader = path, None

    def step_with_metrics(self, x, t):
        if t == 5:
            self.reader = subprocess.Popen([sys.executable, "-c", READER, str(self.path)], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, env=ENV)
            assert self.reader.stdout.readline().strip() == "open"
        return super().step_with_metrics(x, t)


def test_reader_process_holding_the_file_loses_no_row(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "FINISH_RETRY_S", 0.3)
    path = tmp_path / "locked.nc"
    m = Watched(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            merged = run(m, m.initial_state(2), 50, path=path, flush_every=4)
        messages = " | ".join(str(w.message) for w in caught)
        sides = pending_files(path)
        assert len(sides) == 1 and sides[0] in messages and "consolidate" in messages, messages
        ref = run(quadratic(), quadratic().initial_state(2), 50)
        same_rows(merged, ref)
        assert merged.sizes["step"] == 50 and merged.attrs["complete"] == 1
        np.testing.assert_array_equal(merged["final_state"], ref["final_state"])
        with netCDF4.Dataset(path) as nc:  # the main file got the rows written before the reader came
            assert len(nc["step"]) == 4
        with pytest.raises(OSError, match="consolidate: cannot open"):
            consolidate(path)
    finally:
        m.reader.stdin.close()
        m.reader.wait(timeout=30)
        m.reader.stdout.close()
    assert consolidate(path) == 46 and pending_files(path) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        disk = open_trajectory(path)
    same_rows(disk, ref)
    assert disk.sizes["step"] == 50 and disk.attrs["complete"] == 1 and "interrupted_at" not in disk.attrs
    np.testing.assert_array_equal(disk["final_state"], ref["final_state"])
    disk.close()


def test_interrupt_while_a_handle_holds_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "INTERRUPT_RETRY_S", 0.2)
    path = tmp_path / "held.nc"

    class HeldThenInterrupted(QuadraticGD):
        def step_with_metrics(self, x, t):
            if t == 6:
                self.handle = netCDF4.Dataset(path, "r")
            if t == 23:
                raise KeyboardInterrupt
            return super().step_with_metrics(x, t)

    m = HeldThenInterrupted(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
    with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning, match="pending-5.nc"):
        run(m, m.initial_state(4), 100, path=path, flush_every=5)
    m.handle.close()
    with pytest.warns(RuntimeWarning, match="side file"):
        disk = open_trajectory(path)
    same_rows(disk, run(quadratic(), quadratic().initial_state(4), 23))
    assert disk.sizes["step"] == 23 and disk.attrs["interrupted_at"] == 23 == int(disk["final_step"])
    assert consolidate(path) == 18
    with pytest.warns(RuntimeWarning, match=r"interrupted at step 23\); it holds 23 steps"):
        open_trajectory(path).close()


@pytest.mark.parametrize("release_at", [30, None], ids=["released", "held-to-the-end"])
def test_a_long_lock_spills_rows_to_side_files_instead_of_memory(tmp_path, monkeypatch, release_at):
    """With SPILL_BYTES tiny, every block the locked file refuses goes to a side file;
    a write after the lock moves them in (none left), else open_trajectory merges them."""
    monkeypatch.setattr(storage, "SPILL_BYTES", 1)
    monkeypatch.setattr(storage, "FINISH_RETRY_S", 0.2)
    path = tmp_path / "spill.nc"
    seen = []

    class Held(QuadraticGD):
        def step_with_metrics(self, x, t):
            if t == 6:
                self.handle = netCDF4.Dataset(path, "r")
            if t == 19:
                seen.append(len(pending_files(path)))
            if t == release_at:
                self.handle.close()
            return super().step_with_metrics(x, t)

    m = Held(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = run(m, m.initial_state(7), 50, path=path, flush_every=4)
    if release_at is None:
        m.handle.close()
    ref = run(quadratic(), quadratic().initial_state(7), 50)
    # blocks ending at rows 7, 11, 15 were refused and spilled by step 19
    assert seen == [3]
    assert len(pending_files(path)) == (0 if release_at else 12)
    same_rows(ds, ref)
    assert ds.sizes["step"] == 50 and ds.attrs["complete"] == 1
    np.testing.assert_array_equal(ds["final_state"], ref["final_state"])
    ds.close()
    assert consolidate(path) == (0 if release_at else 46)  # rows 4..49: the lock came before row 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        disk = open_trajectory(path)
    same_rows(disk, ref)
    assert disk.sizes["step"] == 50 and disk.attrs["complete"] == 1
    disk.close()
    assert any("side files" in str(w.message) for w in caught)


def test_ctrl_c_while_waiting_for_the_lock_keeps_the_rows(tmp_path, monkeypatch):
    """The user gives up during the FINISH_RETRY_S wait: the rows still go to a side file."""
    monkeypatch.setattr(storage, "FINISH_RETRY_S", 30.0)
    path = tmp_path / "wait.nc"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    class HeldToTheEnd(QuadraticGD):
        def step_with_metrics(self, x, t):
            if t == 2:
                self.handle = netCDF4.Dataset(path, "r")
            if t == 19:  # Ctrl-C 0.3 s later, while run waits for the lock to finish the file
                signal.setitimer(signal.ITIMER_REAL, 0.3)
            return super().step_with_metrics(x, t)

    previous = signal.signal(signal.SIGALRM, interrupt)
    m = HeldToTheEnd(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning, match="interrupted while waiting"):
            run(m, m.initial_state(5), 20, path=path, flush_every=5)
    finally:
        signal.signal(signal.SIGALRM, previous)
        m.handle.close()
    assert time.monotonic() - start < 20
    with pytest.warns(RuntimeWarning, match="side file"):
        disk = open_trajectory(path)
    same_rows(disk, run(quadratic(), quadratic().initial_state(5), 20))
    assert disk.sizes["step"] == 20 and disk.attrs["complete"] == 0 and int(disk["final_step"]) == 20
    assert disk.attrs["interrupted_at"] == 20


# ------------------------------------------------------------------ sweeps
def test_damaged_point_files_are_reported_moved_aside_and_recomputed(tmp_path, reference_sweep):
    store = tmp_path / "points"
    run_sweep(task="iris", store=store, n_workers=0, **SWEEP)
    files = sorted(glob.glob(str(store / "*.nc")))
    truncated, empty = files[0], files[1]
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    open(empty, "wb").close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_sweep(task="iris", store=store, n_workers=0, **SWEEP)
    damaged = [str(w.message) for w in caught if "damaged" in str(w.message)]
    assert len(damaged) == 2 and any(truncated in m for m in damaged) and any(empty in m for m in damaged)
    assert all("\n" not in m for m in damaged)
    assert os.path.exists(truncated + ".damaged") and os.path.exists(empty + ".damaged")
    assert again.attrs["points_computed"] == 2 and again.attrs["points_loaded"] == 2
    xr.testing.assert_identical(comparable(again), comparable(reference_sweep))
    assert len(stored_keys(store)) == 4


def test_two_identical_sweeps_share_one_store(tmp_path, reference_sweep):
    out = tmp_path / "out"
    argv = ["sweep", "--task", "iris", "--lr", "0.3,0.6,1.2,2.4", "--seeds", "1", "--steps", "60", "--workers", "0",
            "--no-progress", "-o", str(out)]
    code = f"import sys; from netdyn.cli import main; sys.exit(main({argv!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, env=ENV) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    computed = [int(re.search(r"(\d+) points computed", out).group(1)) for out, _ in outputs]
    assert sum(computed) == 4, computed  # no point computed twice
    tables = [out.split("wrote")[0] for out, _ in outputs]
    assert tables[0] == tables[1]
    assert len(stored_keys(out / "points")) == 4 and not glob.glob(str(out / "points" / "*.claim"))
    with xr.open_dataset(out / "result.nc") as ds:  # (netCDF turns the attribute hidden=[32] into 32)
        xr.testing.assert_equal(ds.load().drop_vars("wall_time"), reference_sweep.drop_vars("wall_time"))
        assert ds.attrs["grid_key"] == reference_sweep.attrs["grid_key"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing in the working directory
    assert sorted(os.listdir(out)) == ["points", "result.nc", "sweep.png"]


def test_another_grid_does_not_overwrite_the_result(tmp_path):
    from netdyn.commands.sweep import register

    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())

    def cli(lr: str) -> None:
        args = parser.parse_args(["sweep", "--task", "iris", "--lr", lr, "--steps", "40", "--workers", "0",
                                  "--no-progress", "-o", str(tmp_path)])
        assert args.func(args) == 0

    cli("0.5,1")
    first = (tmp_path / "result.nc").read_bytes()
    cli("0.5,2")
    others = sorted(name for name in os.listdir(tmp_path) if name.startswith(("result-", "sweep-")))
    assert len(others) == 2 and (tmp_path / "result.nc").read_bytes() == first
    with xr.open_dataset(tmp_path / [n for n in others if n.endswith(".nc")][0]) as ds:
        assert list(ds["lr"].values) == [0.5, 2.0] and ds.attrs["points_loaded"] == 1
    cli("0.5,1")  # the same grid again replaces its own files
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith(("result", "sweep"))) == sorted(
        ["result.nc", "sweep.png"] + others)


SWEEP_CHILD = (
    "import signal, sys\n"
    "def stop(signum, frame): raise KeyboardInterrupt\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "from netdyn.sweep.grid import run_sweep\n"
    "if __name__ == '__main__':\n"
    "    run_sweep(task='iris', store=sys.argv[1], n_workers=int(sys.argv[2]), lr=[0.3, 0.6, 1.2, 2.4], seed=[0, 1],"
    " steps=60, progress=False)\n"
)


def _worker_processes(pid: int) -> list:
    """The Dask worker processes under process ``pid`` (spawned, not the resource tracker)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
            found.append(child)
    return found


def _signal_sweep(folder: Path, sig: signal.Signals, workers: int) -> tuple[Path, list, int]:
    """Start a sweep child into ``folder/points`` and send it ``sig`` at a seeded random
    moment after its first stored point.  With Dask workers, SIGKILL the worker after
    the first point first and wait for a second point (the nanny restarts the worker,
    Dask reruns its task).  Returns the store, the processes the child had started
    that are still alive (its cluster must be gone) and the points stored when the
    worker was killed (0: none killed)."""
    import psutil

    folder.mkdir()
    store, script = folder / "points", folder / "child.py"
    script.write_text(SWEEP_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(workers)], stderr=subprocess.PIPE,
                            text=True, cwd=folder, env=ENV)

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 120
        while len(stored_keys(store)) < n:
            assert proc.poll() is None and time.monotonic() < deadline, f"{sig.name}: {n} points not stored"
            time.sleep(0.01)

    killed_at = 0
    try:
        wait_for(1)
        if workers:
            (worker,) = _worker_processes(proc.pid)
            worker.kill()
            killed_at = len(stored_keys(store))
            wait_for(killed_at + 1)
        time.sleep(float(np.random.default_rng(int(sig)).uniform(0, 0.2)))
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, (sig.name, err[-2000:])
    _, alive = psutil.wait_procs(descendants, timeout=10)
    return store, alive, killed_at


def test_signalled_sweeps_keep_finished_points_and_stop_their_cluster(tmp_path):
    """SIGINT to a plain-loop sweep, and SIGTERM (turned into KeyboardInterrupt) to a
    sweep on a one-worker LocalCluster whose worker was SIGKILLed mid-sweep before;
    both at once, 8 points each so that neither ends first."""
    pytest.importorskip("psutil")
    cases = ((signal.SIGINT, 0), (signal.SIGTERM, 1))
    with ThreadPoolExecutor(2) as pool:
        children = list(pool.map(lambda case: _signal_sweep(tmp_path / case[0].name, *case), cases))
    reference = None
    for (sig, workers), (store, alive, killed_at) in zip(cases, children):
        assert not alive, f"{sig.name}: processes left running: {alive}"
        assert not glob.glob(str(store / "*.claim")) and not glob.glob(str(store / "*.tmp")), sig.name
        kept = {name: os.stat(store / name).st_mtime_ns for name in os.listdir(store) if name.endswith(".nc")}
        assert 1 <= len(kept) < 8, sig.name  # interrupted midway
        if workers:  # the sweep went on after its worker was killed mid-sweep
            assert 1 <= killed_at < len(kept)
        resumed = run_sweep(task="iris", store=store, n_workers=0, **{**SWEEP, "seed": [0, 1]})
        assert resumed.attrs["points_loaded"] == len(kept) and resumed.attrs["points_computed"] == 8 - len(kept)
        assert all(os.stat(store / name).st_mtime_ns == t for name, t in kept.items()), sig.name
        if reference is None:
            reference = run_sweep(task="iris", n_workers=0, **{**SWEEP, "seed": [0, 1]})
        xr.testing.assert_identical(comparable(resumed), comparable(reference))
