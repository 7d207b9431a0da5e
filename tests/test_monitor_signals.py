"""Issue 12: Ctrl-C (SIGINT) or SIGTERM in a monitored loop with record_to= keeps every row."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netdyn.io.loop_recorder import LoopRecorder
from netdyn.io.storage import TrajectoryWriter, open_trajectory

REPO = Path(__file__).resolve().parents[1]
SIGNAL_AFTER_ROW = 7

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def interrupted_loop(path: Path, mode: str, signum: int) -> tuple[subprocess.CompletedProcess, list[float]]:
    """Run tests/_interrupted_loop.py, send ``signum`` once it printed row
    ``SIGNAL_AFTER_ROW``; returns the finished process and the losses it printed."""
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_interrupted_loop.py"), mode, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    losses: list[float] = []
    deadline = time.monotonic() + 120
    try:
        while len(losses) <= SIGNAL_AFTER_ROW:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"_interrupted_loop.py ended early: {proc.stderr.read()}"
            losses.append(float(line.split()[2]))
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    rows = [line for line in out.splitlines() if line.startswith("row ")]
    losses += [float(line.split()[2]) for line in rows]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), losses


def assert_every_printed_row_recorded(path: Path, losses: list[float]) -> None:
    with open_trajectory(path) as ds:  # no "incomplete" warning: the file was finished
        n = ds.sizes["step"]
        # a row is recorded before it is printed: the signal may fall between the two
        assert n in (len(losses), len(losses) + 1) and len(losses) > SIGNAL_AFTER_ROW
        np.testing.assert_array_equal(ds.loss.values[: len(losses)], losses)
        np.testing.assert_array_equal(ds.step.values, np.arange(n))
        assert int(ds.attrs["complete"]) == 1 and int(ds.final_step) == n
        assert np.isfinite(ds.state.values).all() and np.isfinite(ds.lyapunov_running.values[1:]).all()


class TestInterruptedLoop:
    @pytest.mark.parametrize("mode", ["plain", "with"])
    def test_sigint_keeps_every_row_and_raises_keyboard_interrupt(self, tmp_path, mode):
        # The buffer (flush_every = 100000) holds every row when Ctrl-C arrives; the
        # handler appends them, KeyboardInterrupt reaches the user's code, and the
        # file is closed by the `with` block or, without one, at interpreter exit.
        path = tmp_path / "interrupted.nc"
        done, losses = interrupted_loop(path, mode, signal.SIGINT)
        assert done.returncode == -signal.SIGINT, done.stderr  # Python's exit for an uncaught Ctrl-C
        assert "KeyboardInterrupt" in done.stderr
        assert ("caught KeyboardInterrupt" in done.stdout) == (mode == "with")
        assert_every_printed_row_recorded(path, losses)

    def test_sigterm_keeps_every_row_and_still_terminates(self, tmp_path):
        path = tmp_path / "terminated.nc"
        done, losses = interrupted_loop(path, "plain", signal.SIGTERM)
        assert done.returncode == -signal.SIGTERM, done.stderr  # the default action, after the file is closed
        assert_every_printed_row_recorded(path, losses)


def small_recorder(path: Path, flush_every: int) -> tuple[LoopRecorder, nn.Module]:
    model = nn.Linear(3, 2, dtype=torch.float64)
    return LoopRecorder(model, path, sketch=None, flush_every=flush_every), model


class TestSignalDuringAWrite:
    def test_signal_waits_for_the_block_then_raises(self, tmp_path, monkeypatch):
        # Ctrl-C while a block of rows is being written: the write finishes, then
        # KeyboardInterrupt is raised from record(); no row is lost or written twice.
        path = tmp_path / "r.nc"
        recorder, model = small_recorder(path, flush_every=3)
        write = TrajectoryWriter._write
        sent = []

        def write_with_ctrl_c(self, *args):
            if not sent:
                sent.append(True)
                signal.raise_signal(signal.SIGINT)  # arrives mid-write
            return write(self, *args)

        monkeypatch.setattr(TrajectoryWriter, "_write", write_with_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            for t in range(5):
                recorder.record(float(t))
        assert recorder.step == 3 and sent
        recorder.record(3.0)  # the user caught it and goes on
        recorder.close()
        with open_trajectory(path) as ds:
            np.testing.assert_array_equal(ds.loss.values, [0.0, 1.0, 2.0, 3.0])
            np.testing.assert_array_equal(ds.step.values, np.arange(4))

    def test_handlers_restored_after_close(self, tmp_path):
        before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
        first, _ = small_recorder(tmp_path / "a.nc", 10)
        second, _ = small_recorder(tmp_path / "b.nc", 10)
        assert signal.getsignal(signal.SIGINT) is not before[0]
        first.close()
        assert signal.getsignal(signal.SIGINT) is not before[0]  # the second is still open
        second.close()
        assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before

    def test_stale_handler_acts_as_the_one_it_replaced(self, tmp_path):
        # A library that saved our handler and restores it after the recording closed
        # (Lightning's signal connector does) must still get a KeyboardInterrupt on Ctrl-C.
        before = signal.getsignal(signal.SIGINT)
        recorder, _ = small_recorder(tmp_path / "a.nc", 10)
        ours = signal.getsignal(signal.SIGINT)
        recorder.close()
        signal.signal(signal.SIGINT, ours)
        try:
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        finally:
            signal.signal(signal.SIGINT, before)

    def test_unclosed_recorder_finished_when_collected(self, tmp_path):
        path = tmp_path / "dropped.nc"
        recorder, _ = small_recorder(path, flush_every=100)
        recorder.record(1.5)
        del recorder  # the finaliser writes the buffered row and closes the file
        with open_trajectory(path) as ds:
            assert ds.sizes["step"] == 1 and float(ds.loss[0]) == 1.5 and int(ds.attrs["complete"]) == 1
            assert np.isnan(float(ds.grad_norm[0]))  # no gradient was computed
