"""SIGTERM as an exception, so that an interrupted run cleans up like a Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt`; SIGTERM (``kill PID``, a batch
scheduler ending a job) kills the process without unwinding.  Inside
:func:`terminate_as_exception`, SIGTERM raises :class:`Terminated` instead, a
subclass of ``KeyboardInterrupt``: code that already flushes and re-raises on
``KeyboardInterrupt`` (``netdyn.run(..., path=)``) handles both, and the command
line tells them apart by type (exit status 130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "terminate_as_exception", "exit_status"]


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
