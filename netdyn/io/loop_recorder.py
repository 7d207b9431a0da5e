"""Record a user's own training loop in netdyn's trajectory format.

:class:`LoopRecorder` streams what a hand-written loop does — parameters (all,
or a fixed random sketch), loss, gradient norm and any extra per-step scalar
(e.g. a running Lyapunov exponent) — to the same netCDF layout that
:func:`netdyn.orbits.trajectory.run` writes, so every offline diagnostic
(``netdyn analyze``, recurrence, Rosenstein, orbits) works on a monitored run.
:class:`netdyn.monitor.LyapunovMonitor` uses it through ``record_to=``.

Row ``t`` holds ``x_t`` (the parameters *before* the user's step ``t``) with the
loss and gradient norm at ``x_t``, exactly as :func:`~netdyn.orbits.trajectory.run`
does: call :meth:`LoopRecorder.record` after ``optimizer.step()`` with the loss
that the step's backward pass used; the recorder keeps ``x_t`` from the previous
call (or from construction).  ``final_state`` is the full parameter vector
reached (optimiser buffers are not recorded: the user's optimiser owns them).

Interrupted loops (Ctrl-C, ``kill``)
------------------------------------
Rows are buffered (``flush_every``) and appended in blocks, so an interrupted loop
must not lose its buffer.  While a recorder is open (and it was built in the main
thread) netdyn handles SIGINT and SIGTERM itself, then hands the signal on:

* it first appends every buffered row to the file (the file on disk is then a
  readable trajectory holding every row recorded so far);
* then it does what the signal did before: SIGINT raises ``KeyboardInterrupt`` in the
  user's loop as usual (netdyn never swallows it); a default SIGTERM first closes
  the file (``complete = 1``) and then terminates the process by the signal; a
  handler the user installed before is called.

A signal that arrives while a row is being added or written waits until that row
is consistent (milliseconds).  The file is closed (``complete = 1``) by
:meth:`LoopRecorder.close`, by leaving a ``with LoopRecorder(...)`` block (e.g. on
that ``KeyboardInterrupt``), or, if neither happens, when the recorder is garbage
collected or the interpreter exits (``weakref.finalize``).  Only SIGKILL (or a
crash of the interpreter) loses the rows buffered since the last append.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import weakref
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from netdyn._core.signals import critical_section, hold_signals, release_signals
from netdyn._core.validation import check_int
from netdyn._version import __version__
from netdyn.io.recording import SketchProjection
from netdyn.io.storage import RowBuffer, TrajectoryWriter

__all__ = ["LoopRecorder"]


class LoopRecorder:
    """Stream a training loop to a trajectory file (netCDF4, netdyn data model).

    Parameters
    ----------
    model : nn.Module
        the user's model; only read.  Its parameters at construction are ``x_0``.
    path : str or PathLike
        file to create (overwritten).
    sketch : int or None, default 64
        record a fixed Gaussian projection of the parameters to ``sketch`` numbers
        (seed 0, as ``run(record=k)``); ``None`` records every parameter.
    flush_every : int, default 100
        rows kept in memory between appends; SIGINT, SIGTERM and interpreter exit
        append them (module docstring), SIGKILL loses at most these.
    extra : tuple of str, default ()
        names of additional per-step float variables passed to :meth:`record`.
    attrs : mapping, optional
        extra attributes (hyper-parameters, task name, ...).

    A context manager: ``with LoopRecorder(...) as rec:`` closes the file on leaving
    the block, also when the loop raises (``KeyboardInterrupt`` included).

    Examples
    --------
    >>> import os, tempfile
    >>> import torch
    >>> from torch import nn
    >>> import netdyn as nd
    >>> from netdyn.io.loop_recorder import LoopRecorder
    >>> model = nn.Linear(2, 1)
    >>> path = os.path.join(tempfile.mkdtemp(), "loop.nc")
    >>> with LoopRecorder(model, path, sketch=None) as rec:
    ...     for _ in range(3):
    ...         rec.record(loss=1.0)
    >>> with nd.open_trajectory(path) as ds:
    ...     ds.sizes["step"], ds.sizes["param"]
    (3, 3)
    """

    def __init__(
        self,
        model: nn.Module,
        path: str | os.PathLike,
        *,
        sketch: int | None = 64,
        flush_every: int = 100,
        extra: tuple[str, ...] = (),
        attrs: Mapping[str, Any] | None = None,
    ):
        flush_every = check_int(flush_every, "flush_every", "LoopRecorder", minimum=1)
        self.params = [p for p in model.parameters() if p.requires_grad]
        theta = self._theta()
        self.extra = tuple(extra)
        if sketch is None:
            self.projection = None
            names, layers = [], []
            for name, p in model.named_parameters():
                if p.requires_grad:
                    names += [f"{name}[{i}]" for i in range(p.numel())]
                    layers += [name] * p.numel()
            record = "all"
        else:
            self.projection = SketchProjection(theta.size, int(sketch), seed=0)
            names, layers, record = [f"sketch[{i}]" for i in range(int(sketch))], ["sketch"] * int(sketch), f"sketch:{int(sketch)}:0"
        self._row_state = self._recorded(theta)
        all_attrs = {
            "map": "user loop",
            "model": repr(model),
            "record": record,
            "record_every": 1,
            "t0": 0,
            "dtype": str(theta.dtype),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "netdyn_version": __version__,
            **dict(attrs or {}),
        }
        writer = TrajectoryWriter(path, names, layers, theta.dtype, theta, 0, False, all_attrs, flush_every, self.extra)
        self._stream = _Stream(writer, RowBuffer(flush_every, len(names), theta.dtype, False, self.extra), theta)
        hold_signals(self._stream.on_signal)
        self._finalizer = weakref.finalize(self, self._stream.close)

    @property
    def step(self) -> int:
        """Rows recorded so far (the index of the next row)."""
        return self._stream.step

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def __enter__(self) -> "LoopRecorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _theta(self) -> np.ndarray:
        return parameters_to_vector([p.detach() for p in self.params]).cpu().numpy()

    def _recorded(self, theta: np.ndarray) -> np.ndarray:
        if self.projection is None:
            return theta
        return self.projection(torch.from_numpy(theta)).numpy()

    def record(self, loss: float, **extra: float) -> None:
        """Append row ``t``: ``x_t``, ``loss`` (at ``x_t``), ``‖grad‖`` read from ``p.grad``.

        ``extra`` gives the values of the variables named at construction (NaN if
        missing).  A non-finite loss closes the file with ``diverged = 1``.
        """
        if self.closed:
            raise ValueError("LoopRecorder.record: the recorder is closed")
        grads = [p.grad.detach().reshape(-1) for p in self.params if p.grad is not None]
        grad_norm = float(torch.linalg.vector_norm(torch.cat(grads))) if grads else math.nan
        row = {
            "state": self._row_state, "loss": float(loss), "grad_norm": grad_norm,
            **{name: float(extra.get(name, math.nan)) for name in self.extra},
        }
        theta = self._theta()
        diverged = not math.isfinite(float(loss)) or not np.isfinite(theta).all()
        if not diverged:
            self._row_state = self._recorded(theta)
        self._stream.add(row, None if diverged else theta)

    def close(self, *, diverged: bool = False) -> None:
        """Write the remaining rows and mark the file complete (idempotent).

        ``final_state`` is the last finite parameter vector reached."""
        self._stream.close(diverged)
        self._finalizer.detach()


class _Stream:
    """The writer and row buffer of one recording: everything :meth:`close` needs,
    without a reference to its :class:`LoopRecorder` (so that a finaliser and the
    signal handler can close it).  Every change of its rows happens inside a
    :class:`~netdyn._core.signals.critical_section`, so a signal never sees a
    half-added row or a half-written block."""

    def __init__(self, writer: TrajectoryWriter, buffer: RowBuffer, theta: np.ndarray):
        self.writer, self.buffer, self.last_finite = writer, buffer, theta
        self.step, self.closed = 0, False

    def add(self, row: Mapping[str, Any], theta: np.ndarray | None) -> None:
        """Add ``row`` as step ``self.step``; ``theta`` is the state reached, ``None``
        if it (or the loss) is not finite, which closes the file with ``diverged = 1``."""
        with critical_section():
            self.buffer.add({"step": self.step, **row})
            self.step += 1
            if theta is None:
                self.close(diverged=True)
                return
            self.last_finite = theta
            if self.buffer.full:
                self.flush()

    def on_signal(self, terminating: bool) -> None:
        """Before SIGINT/SIGTERM is acted on: append the buffered rows, or close the
        file when the process is about to end without unwinding (``terminating``)."""
        if terminating:
            self.close()
        else:
            self.flush()

    def flush(self) -> None:
        with critical_section():
            if self.closed or not self.buffer.n:
                return
            self.writer.append(self.buffer.rows(), self.last_finite, self.step)
            self.buffer.clear()

    def close(self, diverged: bool = False) -> None:
        with critical_section():
            if self.closed:
                return
            self.writer.finish(self.buffer.rows(), self.last_finite, self.step, diverged)
            self.buffer.clear()
            self.closed = True
            release_signals(self.on_signal)


