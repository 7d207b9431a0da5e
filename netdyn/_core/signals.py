"""SIGTERM as an exception, so that an interrupted run cleans up like a Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt`; SIGTERM (``kill PID``, a batch
scheduler ending a job) kills the process without unwinding.  Inside
:func:`terminate_as_exception`, SIGTERM raises :class:`Terminated` instead, a
subclass of ``KeyboardInterrupt``: code that already flushes and re-raises on
``KeyboardInterrupt`` (``netdyn.run(..., path=)``) handles both, and the command
line tells them apart by type (exit status 130 for SIGINT, 143 for SIGTERM).

Critical sections
-----------------
An exception must not be raised inside some code: a netCDF/HDF5 call (netCDF4's compiled
code can swallow a ``KeyboardInterrupt`` raised while it opens a file or writes a variable,
so the interrupt is lost and the run goes on; one landing mid-write leaves a half-written
block), or the
few statements that add a row and advance the state together.  Inside
:func:`holding_signals` (a streaming :func:`netdyn.run`) or between :func:`hold_signals`
and :func:`release_signals` (an open :class:`netdyn.io.loop_recorder.LoopRecorder`, whose
clean-up appends its buffered rows before the signal acts), SIGINT and SIGTERM that arrive
during a :class:`critical_section` wait until the outermost section ends, and then do
exactly what their previous handler would have done (raise ``KeyboardInterrupt`` or
:class:`Terminated`, call the user's handler, or end the process for a default
SIGTERM).  Outside a section they act at once, as before.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = [
    "Terminated", "terminate_as_exception", "exit_status", "hold_signals", "release_signals", "holding_signals",
    "critical_section",
]

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum} (SIGTERM)")


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread.

    The previous handler is restored on exit.  Outside the main thread (where
    Python cannot install signal handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's exit status for a process ended by this interrupt: 128 + signal number.

    143 (128 + SIGTERM) for :class:`Terminated`, 130 (128 + SIGINT) for any other
    ``KeyboardInterrupt``.
    """
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


class _Holder:
    """The state shared by :func:`hold_signals` and :class:`critical_section`: the handlers
    replaced (``previous``), how many holds are open (``users``), the section depth, the
    first signal that arrived inside a section (``pending``) and the clean-ups to run
    before a signal is acted on (``cleanups``, in registration order)."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.users = 0
        self.depth = 0
        self.pending: int | None = None
        self.cleanups: dict[Callable[[bool], None], None] = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler installed by :func:`hold_signals`."""
        if self.depth:
            if self.pending is None:
                self.pending = signum
            return
        self.pending = None  # acting now: an earlier held signal is this same interruption
        self.act(signum, frame)

    def act(self, signum: int, frame: FrameType | None) -> None:
        """Run the clean-ups, then do what the handler replaced for ``signum`` does."""
        previous = self.previous.get(signum, signal.SIG_DFL)
        try:
            for cleanup in list(self.cleanups):
                cleanup(previous == signal.SIG_DFL)  # True: the process ends without unwinding
        finally:  # a failed clean-up (a write) must not swallow the signal
            if callable(previous):
                previous(signum, frame)  # SIGINT: signal.default_int_handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)  # e.g. a default SIGTERM ends the process, now
            # SIG_IGN: nothing


_HOLDER = _Holder()


def hold_signals(cleanup: Callable[[bool], None] | None = None) -> None:
    """Start holding SIGINT and SIGTERM during :class:`critical_section` s (see
    :func:`holding_signals`); each call is ended by one :func:`release_signals`.

    ``cleanup(terminating)``, if given, runs before a signal is acted on (e.g. append
    buffered rows; ``terminating``: the process is about to end without unwinding, so
    close files now) until ``release_signals(cleanup)``.  Registered from any thread;
    the handlers are installed from the main thread only (Python runs them there).

    Examples
    --------
    >>> import signal
    >>> from netdyn._core.signals import hold_signals, release_signals
    >>> flushed = []
    >>> hold_signals(flushed.append)
    >>> try:
    ...     signal.raise_signal(signal.SIGINT)
    ... except KeyboardInterrupt:
    ...     flushed.append("KeyboardInterrupt")
    >>> release_signals(flushed.append)
    >>> flushed  # the clean-up ran first (False: SIGINT unwinds), then the usual interrupt
    [False, 'KeyboardInterrupt']
    """
    holder = _HOLDER
    if cleanup is not None:
        holder.cleanups[cleanup] = None
    if threading.current_thread() is not threading.main_thread():
        return
    if not holder.users:
        holder.pending = None
        for signum in HELD_SIGNALS:
            current = signal.getsignal(signum)
            if current is not None and current != holder.handle:
                holder.previous[signum] = current
                signal.signal(signum, holder.handle)
    holder.users += 1


def release_signals(cleanup: Callable[[bool], None] | None = None) -> None:
    """End one :func:`hold_signals` (with the same ``cleanup``); the last one restores the
    replaced handlers (unless someone replaced ours since; a copy of ours restored later
    still acts as the handler it replaced)."""
    holder = _HOLDER
    if cleanup is not None:
        holder.cleanups.pop(cleanup, None)
    if threading.current_thread() is not threading.main_thread() or not holder.users:
        return
    holder.users -= 1
    if not holder.users:
        for signum, previous in list(holder.previous.items()):
            if signal.getsignal(signum) == holder.handle:
                signal.signal(signum, previous)


@contextmanager
def holding_signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM that arrive in a :class:`critical_section` wait for its end.

    Installs a handler for both signals that acts as the handler it replaced, except
    inside a critical section, where it remembers the (first) signal and lets the
    section finish.  Nests (with :func:`hold_signals` too); the replaced handlers are
    restored when the outermost hold ends.  Outside the main thread (where Python cannot
    install signal handlers, and runs none) this does nothing.  A signal whose handler
    was not set from Python (``signal.getsignal`` gives None) is left alone.

    Examples
    --------
    >>> import signal
    >>> from netdyn._core.signals import critical_section, holding_signals
    >>> caught = []
    >>> with holding_signals():
    ...     try:
    ...         with critical_section():
    ...             signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of a write
    ...             caught.append("the section finished")
    ...     except KeyboardInterrupt:
    ...         caught.append("then KeyboardInterrupt")
    >>> caught
    ['the section finished', 'then KeyboardInterrupt']
    """
    hold_signals()
    try:
        yield
    finally:
        release_signals()


class critical_section:
    """Code that no exception may cut: SIGINT/SIGTERM wait until the outermost section ends.

    Takes effect inside :func:`holding_signals` (elsewhere it only counts its depth).
    At the end of the outermost section a signal that arrived during it is acted on
    (e.g. ``KeyboardInterrupt`` is raised from the ``with`` statement), after the
    section's own exception, if any, which it then replaces.  Only the main thread
    counts (Python runs signal handlers there only).  Cheap: no system call.
    """

    __slots__ = ("counted",)

    def __enter__(self) -> None:
        self.counted = threading.current_thread() is threading.main_thread()
        if self.counted:
            _HOLDER.depth += 1

    def __exit__(self, *exc: object) -> None:
        if not self.counted:
            return
        holder = _HOLDER
        holder.depth -= 1
        if not holder.depth and holder.pending is not None:
            signum, holder.pending = holder.pending, None
            holder.act(signum, None)
