"""A signal must never be lost or land half-way: critical sections (netdyn._core.signals).

The bug these guard against: ``netdyn train`` sometimes ignored Ctrl-C / SIGTERM and ran on
(the CLI signal tests timed out after 120 s on a loaded machine).  A ``KeyboardInterrupt``
raised while netCDF4 (1.7.5) opens the trajectory file to append a block, or writes a
variable of it, can be swallowed by its compiled code: the call returns normally, the
interrupt is gone and the run goes on for its million steps.  Seen in ``netdyn train`` run
in-process with SIGINT at random moments: runs still training 8-25 s after a Ctrl-C whose
handler had fired inside ``TrajectoryWriter._write`` -> ``netCDF4.Dataset(path, "a")``
(``_get_vars``) or -> ``nc[name][...] = rows``; and with ``netCDF4.Dataset(path, "a")``
alone, which returned an open file although the handler had raised inside it.

Now SIGINT/SIGTERM that arrive during a file write (or while a step's row and state are being
committed) wait for the end of that critical section and are acted on there.  The tests below
deliver the signal at those exact points (``signal.raise_signal`` from inside the region), so
they are deterministic; the swallowing itself is imitated by a ``netCDF4.Dataset`` that catches
the ``KeyboardInterrupt``, as the compiled code did.
"""
from __future__ import annotations

import signal
import threading
import types

import netCDF4
import numpy as np
import pytest
import torch

import netdyn.io.storage as storage
from netdyn._core.signals import Terminated, critical_section, holding_signals, terminate_as_exception
from netdyn.io.storage import RowBuffer, open_trajectory
from netdyn.maps.classic import QuadraticGD
from netdyn.orbits.trajectory import run

pytestmark = [pytest.mark.skipif(not hasattr(signal, "raise_signal") or not hasattr(signal, "SIGTERM"),
                                 reason="POSIX signals"),
              pytest.mark.filterwarnings("ignore:open_trajectory.*incomplete:RuntimeWarning")]

SIGNALS = [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]


def quadratic() -> QuadraticGD:
    return QuadraticGD(torch.tensor([0.5, 1.0, 2.0]), lr=0.01)


def same_rows(disk, ref) -> None:
    """Rows of ``disk`` equal the first rows of ``ref``, bit for bit."""
    n = disk.sizes["step"]
    for name in ("step", "state", "loss", "grad_norm"):
        assert disk[name].values.tobytes() == ref[name].values[:n].tobytes(), name


def swallowing_dataset(signum: int, at_append: int = 2):
    """A ``netCDF4.Dataset`` whose ``at_append``-th open for appending receives ``signum``
    and swallows the ``KeyboardInterrupt`` the handler raises there, as netCDF4's compiled
    open did."""
    real, opened = netCDF4.Dataset, []

    def dataset(path, mode="r", *args, **kwargs):
        if mode == "a":
            opened.append(path)
            if len(opened) == at_append:
                try:
                    signal.raise_signal(signum)  # Ctrl-C / kill while the file is being opened ...
                except KeyboardInterrupt:
                    pass  # ... and netCDF4's compiled open swallowed what the handler raised
        return real(path, mode, *args, **kwargs)

    return dataset


# ------------------------------------------------------------------ the sections themselves
@pytest.mark.parametrize("signum,error", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_nested_sections_waits_for_the_outermost_end(signum, error):
    said = []
    with terminate_as_exception(), holding_signals():
        with pytest.raises(error):
            with critical_section():
                with critical_section():
                    signal.raise_signal(signum)
                    said.append("inner section finished")
                said.append("outer section finished")
        said.append("after")
    assert said == ["inner section finished", "outer section finished", "after"]


def test_outside_a_section_the_signal_acts_at_once():
    with holding_signals(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        pytest.fail("SIGINT did not interrupt")  # pragma: no cover


def test_the_held_signal_replaces_the_sections_own_error():
    with holding_signals(), pytest.raises(KeyboardInterrupt) as caught:
        with critical_section():
            signal.raise_signal(signal.SIGINT)
            raise OSError("disk full")
    assert isinstance(caught.value.__context__, OSError)


def test_two_signals_in_a_section_are_one_interruption():
    with holding_signals():
        with pytest.raises(KeyboardInterrupt):
            with critical_section():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
        with critical_section():  # nothing left over to interrupt the next section
            pass


def test_handlers_are_restored_and_a_stale_copy_acts_as_the_one_it_replaced():
    mine = []

    def handler(signum, frame):
        mine.append(signum)

    before = signal.signal(signal.SIGINT, handler)
    try:
        with holding_signals():
            ours = signal.getsignal(signal.SIGINT)
            assert ours is not handler
            with holding_signals():  # nested: still ours, restored by the outermost block only
                pass
            assert signal.getsignal(signal.SIGINT) == ours
        assert signal.getsignal(signal.SIGINT) is handler
        signal.signal(signal.SIGINT, ours)  # someone restores a copy saved during the run
        signal.raise_signal(signal.SIGINT)
        assert mine == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with holding_signals():
            with critical_section():
                signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_section_in_another_thread_does_not_hold_the_main_threads_signals():
    entered, release = threading.Event(), threading.Event()

    def writer_thread():
        with critical_section():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=writer_thread)
    thread.start()
    try:
        entered.wait(10)
        with holding_signals(), pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        release.set()
        thread.join()


# ------------------------------------------------------------------ run(path=...): the regressions
@pytest.mark.parametrize("signum,error", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_netcdf_would_swallow_still_stops_the_run(tmp_path, monkeypatch, signum, error):
    """The signal arrives while the second block's append opens the file, and netCDF4 catches
    the exception raised there: before the fix the run went on to its last step."""
    monkeypatch.setattr(storage, "netCDF4", types.SimpleNamespace(Dataset=swallowing_dataset(signum)))
    path = tmp_path / "swallowed.nc"
    with terminate_as_exception(), pytest.raises(error):
        run(quadratic(), quadratic().initial_state(6), 400, path=path, flush_every=5)
    monkeypatch.undo()
    with open_trajectory(path) as disk:
        n, final_step = disk.sizes["step"], int(disk["final_step"])
        # the second block (rows 5..9) was written whole, then the interrupt acted: nothing more ran
        assert n == 10 and final_step == 10 and disk.attrs["interrupted_at"] == 10
        assert disk.attrs["complete"] == 0
        same_rows(disk, run(quadratic(), quadratic().initial_state(6), n))
        np.testing.assert_array_equal(disk["final_state"],
                                      run(quadratic(), quadratic().initial_state(6), final_step)["final_state"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # run() restored the handlers


def test_an_interrupt_right_after_a_row_is_buffered_neither_doubles_nor_loses_it(tmp_path, monkeypatch):
    """Ctrl-C just after row 7 entered the buffer, before its step was taken off the pending
    ones: before the fix the clean-up replayed that step and wrote row 7 twice."""
    add, added = RowBuffer.add, []

    def add_then_interrupt(self, values):
        add(self, values)
        added.append(int(values["step"]))
        if added == [0, 1, 2, 3, 4, 5, 6, 7]:  # once
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(RowBuffer, "add", add_then_interrupt)
    path = tmp_path / "row.nc"
    with pytest.raises(KeyboardInterrupt):
        run(quadratic(), quadratic().initial_state(3), 400, path=path, flush_every=5)
    monkeypatch.undo()
    with open_trajectory(path) as disk:
        steps = disk["step"].values
        np.testing.assert_array_equal(steps, np.arange(steps.size))  # contiguous: no row twice
        # steps 5..9 were computed (one block) when row 7 was added: all are kept
        assert steps.size == 10 and int(disk["final_step"]) == disk.attrs["interrupted_at"] == 10
        same_rows(disk, run(quadratic(), quadratic().initial_state(3), 10))


def test_an_interrupt_while_the_file_is_created_marks_it_interrupted(tmp_path, monkeypatch):
    """Ctrl-C while netCDF4 creates the file: the file is finished first and says it was interrupted."""
    real = netCDF4.Dataset

    def interrupted_create(path, mode="r", *args, **kwargs):
        if mode == "w":
            signal.raise_signal(signal.SIGINT)
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(storage, "netCDF4", types.SimpleNamespace(Dataset=interrupted_create))
    path = tmp_path / "created.nc"
    with pytest.raises(KeyboardInterrupt):
        run(quadratic(), quadratic().initial_state(3), 400, path=path, flush_every=5, t0=4)
    monkeypatch.undo()
    with open_trajectory(path) as disk:
        assert disk.sizes["step"] == 0 and disk.attrs["interrupted_at"] == 4 == int(disk["final_step"])
        np.testing.assert_array_equal(disk["final_state"], quadratic().initial_state(3).numpy())


def test_an_interrupt_while_the_progress_bar_redraws_leaves_its_lock_free(tmp_path, monkeypatch):
    """tqdm's refresh takes its lock and draws without try/finally: an interrupt raised while it
    draws leaked the lock (a tqdm whose close() joins its monitor thread then deadlocks on it)."""
    import netdyn.orbits.trajectory as trajectory

    drawn = []

    class Bar(trajectory.tqdm):
        def display(self, *args, **kwargs):
            drawn.append(1)
            if len(drawn) == 2:  # the first redraw after the one of the constructor
                signal.raise_signal(signal.SIGINT)
            return super().display(*args, **kwargs)

    monkeypatch.setattr(trajectory, "tqdm", Bar)
    with pytest.raises(KeyboardInterrupt):
        run(quadratic(), quadratic().initial_state(3), 10**7, path=tmp_path / "bar.nc", flush_every=1000,
            progress=True)
    assert len(drawn) >= 2
    thread_lock, free = type(Bar.get_lock()).th_lock, []

    def other_thread():  # what tqdm's monitor thread does every 10 s
        if thread_lock.acquire(timeout=2):
            thread_lock.release()
            free.append(True)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert free == [True]


# ------------------------------------------------------------------ a user's loop: LoopRecorder
def test_a_recorded_user_loop_gets_the_interrupt_netcdf_would_swallow(tmp_path, monkeypatch):
    """The recorder's file writes are the same critical sections (one mechanism for run and the
    user's loop): SIGINT while its second block opens the file, swallowed by netCDF4, still
    reaches the user's loop as KeyboardInterrupt at that record() call, after the buffered rows
    are on disk; then the handlers are the user's again."""
    from netdyn.io.loop_recorder import LoopRecorder

    model = torch.nn.Linear(3, 1).double()
    recorder = LoopRecorder(model, tmp_path / "loop.nc", sketch=None, flush_every=4)
    monkeypatch.setattr(storage, "netCDF4", types.SimpleNamespace(Dataset=swallowing_dataset(signal.SIGINT)))
    recorded = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in range(100):
            recorder.record(1.0)
            recorded += 1
    monkeypatch.undo()
    assert recorded == 7  # the 8th row filled the second block; its record() raised after the write
    recorder.close()
    with open_trajectory(tmp_path / "loop.nc") as disk:
        assert disk.sizes["step"] == 8 and disk.attrs["complete"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
