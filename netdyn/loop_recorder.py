"""Record a user's own training loop in netdyn's trajectory format.

:class:`LoopRecorder` streams what a hand-written loop does — parameters (all,
or a fixed random sketch), loss, gradient norm and any extra per-step scalar
(e.g. a running Lyapunov exponent) — to the same netCDF layout that
:func:`netdyn.trajectory.run` writes, so every offline diagnostic
(``netdyn analyze``, recurrence, Rosenstein, orbits) works on a monitored run.
:class:`netdyn.monitor.LyapunovMonitor` uses it through ``record_to=``.

Row ``t`` holds ``x_t`` (the parameters *before* the user's step ``t``) with the
loss and gradient norm at ``x_t``, exactly as :func:`~netdyn.trajectory.run`
does: call :meth:`LoopRecorder.record` after ``optimizer.step()`` with the loss
that the step's backward pass used; the recorder keeps ``x_t`` from the previous
call (or from construction).  ``final_state`` is the full parameter vector
reached (optimiser buffers are not recorded: the user's optimiser owns them).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from ._version import __version__
from .recording import SketchProjection
from .storage import RowBuffer, TrajectoryWriter

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
        rows kept in memory between appends; a killed process loses at most these.
    extra : tuple of str, default ()
        names of additional per-step float variables passed to :meth:`record`.
    attrs : mapping, optional
        extra attributes (hyper-parameters, task name, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        path: str | os.PathLike,
        sketch: int | None = 64,
        flush_every: int = 100,
        extra: tuple[str, ...] = (),
        attrs: Mapping[str, Any] | None = None,
    ):
        if flush_every < 1:
            raise ValueError(f"LoopRecorder: expected flush_every >= 1, got {flush_every}")
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
        self.step = 0
        self._row_state, self._last_finite = self._recorded(theta), theta
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
        self.writer = TrajectoryWriter(path, names, layers, theta.dtype, theta, 0, False, all_attrs, flush_every, self.extra)
        self.buffer = RowBuffer(flush_every, len(names), theta.dtype, False, self.extra)
        self.closed = False

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
        self.buffer.add({
            "step": self.step, "state": self._row_state, "loss": float(loss), "grad_norm": grad_norm,
            **{name: float(extra.get(name, math.nan)) for name in self.extra},
        })
        self.step += 1
        theta = self._theta()
        if not math.isfinite(float(loss)) or not np.isfinite(theta).all():
            self.close(diverged=True)
            return
        self._row_state, self._last_finite = self._recorded(theta), theta
        if self.buffer.full:
            self.writer.append(self.buffer.rows(), theta, self.step)
            self.buffer.clear()

    def close(self, diverged: bool = False) -> None:
        """Write the remaining rows and mark the file complete (idempotent).

        ``final_state`` is the last finite parameter vector reached."""
        if self.closed:
            return
        self.writer.finish(self.buffer.rows(), self._last_finite, self.step, diverged)
        self.buffer.clear()
        self.closed = True
