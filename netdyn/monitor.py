"""Chaos diagnostics inside a user's own training loop: a twin that shadows the optimiser.

:class:`LyapunovMonitor` estimates the maximal Lyapunov exponent of the training
map that a user's loop *is*, with one extra line in that loop::

    monitor = LyapunovMonitor(model, optimizer, loss_fn)   # before the first step
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
        monitor.step((inputs, targets))                     # the one added call
    print(monitor.exponent, "+-", monitor.stderr)

It is Benettin's twin-orbit method (the ``method="twin"`` convention of
:func:`netdyn.lyapunov.maximal.max_lyapunov`) where the reference orbit is the user's own
run: a *shadow* copy of the model and a second optimiser of the same class (same
``param_groups`` hyper-parameters, a copy of the optimiser state) is advanced on
the same batch, the distance between shadow and user state is measured and the
shadow is pulled back to distance ``d0``.  The user's model, optimiser,
gradients and random-number stream are never touched.

Order of events (why the shadow lags by one step)
-------------------------------------------------
The monitor is built *before* the user's first step and snapshots the reference
state ``x_0`` (parameters + optimiser state) there, as the twin ``y_0 = x_0 + d0 u``.
The user's ``optimizer.step()`` on batch ``t`` maps ``x_t -> x_{t+1}``; the following
``monitor.step(batch_t)`` maps the shadow ``y_t -> y_{t+1}`` with the same batch and
the hyper-parameters of that step, then compares ``y_{t+1}`` with the user's
``x_{t+1}``.  Call ``monitor.step`` right after ``optimizer.step()`` and before
``scheduler.step()`` (or call :meth:`LyapunovMonitor.snapshot_hyperparameters` before
the user's step, as the Lightning callback does).

What the state is
-----------------
As in :class:`netdyn.maps.training.TrainingMap`, the state is the parameters that the
optimiser updates (in ``model.parameters()`` order) followed by the optimiser
buffers: every floating-point tensor in ``optimizer.state`` except ``step``,
buffer by buffer in the order the optimiser creates them (for SGD/Adam/AdamW/
RMSprop exactly the functional ``TrainingMap`` layout).  The step counter is the
map's time and is never perturbed.  A fresh optimiser has no buffers yet: they are
zero in the flat state, and a perturbation of them is discarded by the first step
(torch creates them from the first gradient), exactly as the black-box
``TrainingMap`` does at ``t = 0``.

Separation norm (``params_only``)
---------------------------------
By default (``params_only=True``) the perturbation starts on the parameters and the
separation is measured on the parameters; the buffers of the shadow still evolve
and are rescaled with it.  Reasons: parameters and buffers (Adam's second moments
are squared gradients) have different units, so a Euclidean norm over both is
arbitrary; and a direct perturbation of a second moment that is (nearly) zero
can make it negative, which ``torch.optim.Adam`` turns into NaN.  Lyapunov
exponents do not depend on the norm, so both choices estimate the same number
(finite-time estimates differ by O(1/steps)).  ``params_only=False`` is the full
state norm of ``max_lyapunov``'s default; agreement with ``max_lyapunov`` to 1e-8
needs the same choice on both sides.

Every k-th step (``every``)
---------------------------
``every=1`` runs one uninterrupted twin: the classic estimator, one extra forward/
backward per step.  ``every=k > 1`` runs the twin in *segments* of ``window``
consecutive steps, one segment per ``k * window`` steps (cost spread to ``1/k``).
Each segment starts from the user's current state plus the separation vector the
previous segment ended with (a random direction for the first one), spends its
first ``transient`` steps re-aligning (renormalised, not counted) and counts the
log-growth of the rest.  What is measured: the time average of the growth rate of
a separation that has followed the tangent dynamics for at least ``transient``
steps, sampled at a ``(window - transient) / (k window)`` fraction of the steps.
On a stationary (or slowly drifting) run this is the same exponent, with a larger
statistical error from fewer samples and a small alignment bias of order
``exp(-(lambda_1 - lambda_2) transient)`` that the uninterrupted twin does not
have.  Carrying the direction over (instead of a fresh random one per segment)
keeps that bias small: the leading Lyapunov direction of a training run drifts
slowly, while a random direction in ``P`` dimensions has overlap ``~1/sqrt(P)``.

Randomness
----------
The twin must see the same noise as the user's step (dropout masks, noise layers),
or the measured "exponent" is the distance between two noise realisations
(``~ lr |grad| / d0`` per step, i.e. ``ln`` of a huge ratio) and not a sensitivity.
The monitor therefore records the global CPU (and CUDA) RNG state at the moment
the user's forward pass starts: after each ``monitor.step`` that the next twin step
follows, it registers a global forward pre-hook
(``torch.nn.modules.module.register_module_forward_pre_hook``) that waits for the
first call, with gradients enabled, of the model or any of its submodules (a
LightningModule's ``training_step`` may call ``self.net(x)``), reads
``torch.get_rng_state()`` there and removes itself.  It only reads the state,
costs nothing on the steps the twin skips, and leaves no hook on the model.  The
shadow's forward replays exactly that state, so whatever the loop draws between steps (a shuffling ``DataLoader``,
``torch.randint`` batch indices, augmentation on the global RNG) the shadow draws
the user's masks.  The shadow pass saves the user's RNG state and
restores it afterwards, so the user's stream is untouched.  Forward passes under
``torch.no_grad()`` (evaluation) do not count as the step's forward.  If no forward
of the model was seen since the previous call (a loss computed without calling the
model or one of its modules), the state at the end of the previous ``monitor.step``
is replayed.  Randomness drawn inside the user's step *before* the model's forward
(noise added to the inputs in ``training_step``) is not replayed: the shadow
computes ``loss_fn(model(inputs), targets)`` (or ``batch_loss``) only.

A model that draws no random numbers needs none of this, and most do not (no
dropout, or dropout in eval mode): its pass gives the same result under any RNG
state.  The first twin step replays as above and compares the RNG state after the
shadow's pass with the state it replayed.  If the pass drew nothing, later twin
steps run the shadow directly on the user's stream, with no hook, and compare the
state before and after each pass: a pass that draws nothing leaves the stream as
it was.  A pass that does draw (dropout switched on later, a model whose draws
depend on the data) has drawn from the wrong state: the monitor restores the
user's state, warns, does not count that step's interval, pulls the twin back to
``d0`` along the separation it has there, and replays the user's forward state
(the hook) from then on.  ``result().attrs["rng_replay"]`` says which mode ran.

Twin distance
-------------
``d0`` defaults to ``sqrt(eps) * max(|theta_0|, 1)`` (:func:`netdyn._core.perturbation.default_d0`):
``eps`` of the parameters' dtype (the least precise one), ``|theta_0|`` the Euclidean
norm of the trained parameters at construction.  The rounding of the state
(``~ eps |theta|``) and the nonlinearity over a separation ``d0`` (relative
``~ d0 / |theta|``) then both disturb a growth factor by ``~ sqrt(eps)``: 1.5e-8 in
float64, 3.5e-4 in float32, 0.09 in bfloat16 (per step, relative; they average
down over the run).  ``result().attrs`` gives the ``d0`` used and how it was chosen.

Interrupted loops
-----------------
With ``record_to=`` the rows are buffered; SIGINT / SIGTERM append them to the file
before the signal acts (``KeyboardInterrupt`` still reaches the user's loop), and
leaving a ``with LyapunovMonitor(...) as monitor:`` block (or :meth:`close` in a
``finally``) closes the file; see :mod:`netdyn.io.loop_recorder`.

Other caveats: the shadow is a ``copy.deepcopy`` of the model, so hooks registered
on the model run for the shadow too; module buffers (BatchNorm running
statistics) evolve in the shadow but are not part of the measured state; an
optimiser whose ``step`` needs a closure (L-BFGS) is not supported.
"""
from __future__ import annotations

import copy
import ctypes
import functools
import inspect
import math
import os
import warnings
import weakref
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from netdyn._core.devices import SYNC_EVERY, host_block
from netdyn._core.twin_rescale import TwinRescale
from netdyn._core.perturbation import default_d0, resolution_tolerance
from netdyn.io.loop_recorder import LoopRecorder
from netdyn.maps.divergence import DivergenceCheck
from netdyn._core.stats import block_stderr
from netdyn._core.validation import check_float, check_int

__all__ = ["LyapunovMonitor"]

BatchLoss = Callable[[nn.Module, Any], Tensor]
RngState = tuple[Tensor, ...]  # the global CPU generator's state, then one per CUDA device of the monitor

_RNG_REPLAY = {
    None: "not known yet (no twin step taken)",
    False: "none needed: the model's pass draws no random numbers",
    True: "the RNG state at the start of the user's forward",
}


class LyapunovMonitor:
    """Running maximal Lyapunov exponent of a user's training loop (twin method).

    Parameters
    ----------
    model : nn.Module
        the user's model; copied once (the shadow), never modified.
    optimizer : torch.optim.Optimizer
        the user's optimiser, any class whose ``step()`` works without a closure;
        its state at construction is the reference state ``x_0``.
    loss_fn : callable, optional
        ``loss_fn(model(inputs), targets) -> scalar``; the batch passed to
        :meth:`step` is then ``(inputs, targets)``.
    d0 : float, optional
        twin distance, in the units of the parameters.  Default:
        ``sqrt(eps(dtype)) * max(|theta_0|, 1)`` (module docstring, "Twin distance"),
        e.g. ``1.5e-8 |theta_0|`` in float64 and ``3.5e-4 |theta_0|`` in float32.  An
        explicit ``d0`` below the resolution of the parameters raises ``ValueError``.
    renorm_every : int, default 1
        steps between renormalisations.
    every : int, default 1
        the twin runs on one step in ``every`` (segments, see the module docstring).
    window : int, default 10
        segment length in steps when ``every > 1`` (unused for ``every = 1``).
    transient : int, optional
        uncounted alignment steps at the start of each segment.  Default: 0 for
        ``every = 1`` (as ``max_lyapunov``), ``window // 2`` for ``every > 1`` so that
        a carried-over direction re-aligns before it is counted.
    seed : int, default 0
        seed of the random initial direction (``torch.Generator``), drawn exactly as
        ``max_lyapunov`` draws it.
    params_only : bool, default True
        start and measure the separation on the parameters only (see the module
        docstring); ``False``: the full state (parameters and optimiser buffers).
    n_blocks : int, default 10
        blocks for the standard error (:func:`netdyn._core.stats.block_stderr`).
    batch_loss : callable, optional
        ``batch_loss(model, batch) -> scalar`` for batches that are not
        ``(inputs, targets)``; replaces ``loss_fn``.
    record_to : str or PathLike, optional
        stream the run to this netCDF file (:class:`netdyn.io.loop_recorder.LoopRecorder`):
        parameters (or a sketch), the ``loss`` passed to :meth:`step`, the gradient
        norm and the running exponent ``lyapunov_running``; call :meth:`close` at
        the end, or use the monitor as a context manager (``with LyapunovMonitor(...)
        as monitor:``); SIGINT/SIGTERM flush the buffered rows first, and an unclosed
        file is closed when the interpreter exits.
    sketch : int or None, default 64
        with ``record_to``: record a seeded random projection to this many numbers,
        or every parameter with ``None``.
    flush_every : int, default 100
        with ``record_to``: rows buffered between appends to the file.
    sharpness_every : int, optional
        every this many calls of :meth:`step`, the top eigenvalue of the loss Hessian on
        that step's batch at the parameters just reached (Lanczos, warm-started from the
        previous top vector), *preconditioned* for Adam/AdamW/RMSprop by the optimiser's
        own second moments (``P = sqrt(v / (1 - beta2^t)) + eps``), with the optimiser's
        stability threshold at the current learning rate (2/lr for SGD, 38/lr for
        Adam at beta1 = 0.9; :mod:`netdyn.sharpness.threshold`).  Stored in
        :attr:`sharpness_history` and in :meth:`result`.  Costs ~60 Hessian-vector products
        per measurement (fewer warm-started).
    sync_every : int, optional (keyword-only)
        measurements between the reads of the separations back to the host.  Default:
        1 for parameters on the CPU (nothing to save there: warnings and stops come at the
        step itself), :data:`netdyn._core.devices.SYNC_EVERY` (64) on an accelerator, where
        every read waits for the device.  Between reads the separations stay on the device;
        a stop (non-finite or collapsed separation) or divergence is then found, warned
        about and dated to its step at the next read or whenever a result or verdict
        (:attr:`exponent`, :attr:`history`, :meth:`result`, :attr:`diverged`, ...) is
        read; until then :meth:`step` keeps returning ``True`` for counted intervals.
        With ``record_to`` every recorded row reads the running exponent (a read per step).
    max_grad_norm : float, optional
        the user's loop clips the gradient to this total norm before its step
        (``torch.nn.utils.clip_grad_norm_``, as the Hugging Face Trainer does by
        default); the shadow clips its own the same way, so it repeats the user's map.

    Attributes
    ----------
    exponent : float
        running estimate (per step; NaN before the first counted interval,
        ``+inf`` after a divergence, ``-inf`` after a collapse to 0).
    stderr : float
        block-average standard error of the local rates.
    history : list of (step, local_rate)
        each counted interval: the number of user steps taken since construction
        at its end, and ``ln(g) / renorm_every``.
    d0 : float
        the twin distance used (units of the parameters); ``d0_source`` says how it
        was chosen (``"given"`` or the default's formula), ``dtype`` is the
        parameters' (least precise) dtype it was chosen for.
    closed : bool
        True after :meth:`close` (or leaving a ``with`` block).

    Raises
    ------
    ValueError
        on a non-optimiser, not exactly one of ``loss_fn`` / ``batch_loss``, counts
        out of range, an inconsistent ``window``/``transient``/``renorm_every``, a
        ``d0 <= 0`` or below the parameters' resolution, or non-finite parameters.

    Notes
    -----
    ``lambda = 1/(N m) sum_j ln(|y - x|_j / |y - x|_{j-1}^+)`` with ``|.|^+`` the
    *measured* distance after the previous rescale ``y <- x + (y - x) d0 / |y - x|``;
    identical to ``max_lyapunov(method="twin")`` on the equivalent ``TrainingMap``
    for ``every = 1``.  Cost: one extra forward/backward and optimiser step per
    twin step, plus the measure-and-rescale (on the CPU one compiled pass,
    :mod:`netdyn._core.twin_rescale`) and the RNG bookkeeping (two state reads a step for
    a model that draws nothing; the forward hook and a replay for one that draws).
    Measured on a digits MLP with batches of 64 (``benchmarks/monitor_cost.py``, ratios
    taken round by round): ``every=1`` 2.13-2.20x the bare SGD loop (Adam 2.22-2.30x) where
    a plain second step of a copy costs 1.99-2.05x; ``every=10`` 1.14-1.16x.  The
    bookkeeping is a fixed cost per step (about 40 us there): at width 512 instead of 32,
    2.13x against a floor of 2.06x.

    References
    ----------
    Benettin, Galgani, Giorgilli, Strelcyn, Meccanica 15 (1980); ChaosTools.jl
    ``lyapunov``.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> g = torch.Generator().manual_seed(0)
    >>> inputs, targets = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    >>> loss_fn = torch.nn.MSELoss()
    >>> monitor = nd.LyapunovMonitor(model, optimizer, loss_fn)
    >>> for step in range(20):
    ...     optimizer.zero_grad()
    ...     loss_fn(model(inputs), targets).backward()
    ...     optimizer.step()
    ...     _ = monitor.step((inputs, targets))
    >>> monitor.close()
    >>> len(monitor.history), monitor.exponent < 0  # full-batch GD on a smooth loss: contracting
    (20, True)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        d0: float | None = None,
        renorm_every: int = 1,
        every: int = 1,
        window: int = 10,
        transient: int | None = None,
        seed: int = 0,
        params_only: bool = True,
        n_blocks: int = 10,
        batch_loss: BatchLoss | None = None,
        record_to: str | os.PathLike | None = None,
        sketch: int | None = 64,
        flush_every: int = 100,
        max_grad_norm: float | None = None,
        sharpness_every: int | None = None,
        sync_every: int | None = None,
    ):
        caller = "LyapunovMonitor"
        if sharpness_every is not None:
            sharpness_every = check_int(sharpness_every, "sharpness_every", caller, minimum=1)
        self.sharpness_every = sharpness_every
        self.sharpness_history: list[tuple[int, float, float]] = []
        if max_grad_norm is not None:
            max_grad_norm = check_float(max_grad_norm, "max_grad_norm", caller, minimum=0.0, exclusive=True)
        self.max_grad_norm = max_grad_norm
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"{caller}: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if (loss_fn is None) == (batch_loss is None):
            raise ValueError(f"{caller}: expected exactly one of loss_fn and batch_loss, got {'both' if loss_fn else 'neither'}")
        if transient is None:
            transient = 0 if every == 1 else window // 2
        renorm_every = check_int(renorm_every, "renorm_every", caller, minimum=1)
        every = check_int(every, "every", caller, minimum=1)
        window = check_int(window, "window", caller, minimum=1)
        transient = check_int(transient, "transient", caller, minimum=0)
        n_blocks = check_int(n_blocks, "n_blocks", caller, minimum=1)
        if every > 1 and (window <= transient or (window - transient) % renorm_every):
            raise ValueError(
                f"{caller}: expected window - transient to be a positive multiple of renorm_every={renorm_every}, "
                f"got window={window}, transient={transient}"
            )
        if d0 is not None:
            d0 = check_float(d0, "d0", caller, minimum=0.0, exclusive=True)
        self.model, self.optimizer = model, optimizer
        self.renorm_every, self.every, self.window = renorm_every, every, window
        self.transient, self.seed, self.params_only, self.n_blocks = transient, int(seed), bool(params_only), n_blocks
        self._batch_loss: BatchLoss = batch_loss or _loss_of_pair(loss_fn)
        self._params = _tracked_parameters(model, optimizer)
        self.dtype = _least_precise_dtype(self._params)
        if d0 is None:
            scale = _parameter_norm(self._params)
            if not math.isfinite(scale):
                raise ValueError(f"{caller}: expected finite parameters, got |theta| = {scale}")
            d0, self.d0_source = default_d0(self.dtype, scale), "sqrt(eps(dtype)) * max(|theta_0|, 1)"
        else:
            self.d0_source = "given"
        self.d0 = float(d0)
        self._norm_dtype = torch.float32 if torch.finfo(self.dtype).bits < 32 else None
        self._shadow_model, self._shadow_params = _shadow_model(model, self._params)
        self._modules = list(zip(model.modules(), self._shadow_model.modules()))
        self._flat: Tensor | None = None
        self._views: list[Tensor] = []
        self._theta: Tensor | None = None  # the parameters' part of _flat
        self._rescale = TwinRescale(len(self._params), len(self._params) if self.params_only else None, self.d0)
        self._measured: Tensor | None = None
        self._shadow_opt = _shadow_optimizer(optimizer, self._params, self._shadow_params)
        self._shadow_step = _step_without_hooks(self._shadow_opt)
        self._shadow_opt_params = [p for g in self._shadow_opt.param_groups for p in g["params"]]
        self._devices = sorted({p.device.index or 0 for p in self._params if p.device.type == "cuda"})
        self._calls = 0
        self._logs: list[float] = []
        self._steps: list[int] = []
        self._sum = 0.0
        self._hyper: list[dict[str, Any]] | None = None
        self._stopped = False
        self._pending: list[tuple[int, bool, Tensor]] = []  # measurements not yet read back (see _flush)
        on_cpu = all(p.device.type == "cpu" for p in self._params)
        self.sync_every = (1 if on_cpu else SYNC_EVERY) if sync_every is None else sync_every
        if isinstance(self.sync_every, bool) or not isinstance(self.sync_every, int) or self.sync_every < 1:
            raise ValueError(f"{caller}: expected an integer sync_every >= 1 (or None), got {sync_every!r}")
        self._unresolved, self._unresolved_step = False, -1
        self._divergence = DivergenceCheck()
        self._diverged, self._diverged_step, self._divergence_reason = False, -1, ""
        self._check_divergence(0, _parameter_norm(self._params))
        self._norm_limit = self._divergence.norm_limit  # below it the rule has nothing to say (_check)
        self._prev = self._arm_random()
        if not math.isclose(float(self._prev), self.d0, rel_tol=resolution_tolerance(self.dtype)):
            raise ValueError(
                f"{caller}: expected d0 above the resolution of the {self.dtype} parameters, got d0={d0} "
                f"(measured {float(self._prev):.3g}; leave d0 at its default, use a larger d0 or float64 parameters)"
            )
        self._rng = _capture_rng(self._devices)
        # whether the twin's pass draws random numbers (module docstring, "Randomness"): None until
        # the first twin step has compared the states, then False (run on the user's stream) or True
        # (replay the user's forward state); _redrawn: a pass ran directly and drew, from the wrong state
        self._draws: bool | None = None
        self._redrawn, self._skip_count = False, False
        self.closed = False
        self._capture = _ForwardRngCapture(self, model)
        self._capture.arm()
        weakref.finalize(self, self._capture.disarm)
        self.recorder = None if record_to is None else LoopRecorder(
            model, record_to, sketch=sketch, flush_every=flush_every, extra=("lyapunov_running",),
            attrs={"optimizer": type(optimizer).__name__, "lr": float(optimizer.param_groups[0].get("lr", math.nan)),
                   "monitor_d0": self.d0, "monitor_d0_source": self.d0_source, "monitor_every": every,
                   "monitor_params_only": int(self.params_only)},
        )

    # ------------------------------------------------------------------ public
    def step(self, batch: Any, loss: float | Tensor | None = None) -> bool:
        """Advance the shadow on ``batch`` (the batch of the user's step just taken).

        ``loss``: the loss of that step (before the update), recorded when the
        monitor was built with ``record_to``.  Returns True when this call completed
        a counted interval (a new entry of :attr:`history`).  After a divergence or
        collapse the monitor is stopped and every call returns False.  Raises
        ``ValueError`` after :meth:`close`.
        """
        if self.closed:
            raise ValueError("LyapunovMonitor.step: the monitor is closed")
        if self.sharpness_every is not None and self._calls % self.sharpness_every == 0:
            self._measure_sharpness(batch)
        counted_new = self._advance_twin(batch)
        if self.recorder is not None and not self.recorder.closed:
            value = math.nan if loss is None else float(loss.detach() if torch.is_tensor(loss) else loss)
            self.recorder.record(value, lyapunov_running=self.exponent)
        return counted_new

    def close(self) -> None:
        """Stop monitoring: remove the forward hook (if armed) and finish the recording
        (if any: remaining rows, ``complete = 1``).  Idempotent; :meth:`result` and
        the attributes stay available."""
        self._flush()
        self._capture.disarm()
        self.closed = True
        if self.recorder is not None:
            self.recorder.close(diverged=self.diverged)

    def __enter__(self) -> "LyapunovMonitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _advance_twin(self, batch: Any) -> bool:
        if self._stopped:
            return False
        c = self._calls
        self._calls += 1
        period = self.every * self.window
        i = c if self.every == 1 else c % period
        counted_new, user_rng = False, None
        if i < (c + 1 if self.every == 1 else self.window):
            user_rng = self._advance(batch)
            counted = i - self.transient + 1
            measured = counted <= 0 or counted % self.renorm_every == 0
            if self._redrawn:
                self._realign_after_redraw(c + 1, measured)
            elif measured:
                counted_new = self._measure(c + 1, counted > 0 and not self._skip_count)
                self._skip_count = False
            if self.every > 1 and i == self.window - 1 and not self._stopped:
                self._to_separation()
        if self._stopped:
            return counted_new
        following = c + 1 if self.every == 1 else (c + 1) % period
        if self.every > 1 and following == 0:
            self._prev = self._arm_carried()
        if self._draws is not False and following < (c + 2 if self.every == 1 else self.window):
            # replayed if no forward of the model is seen: the state now, which is the user's
            # state _advance restored (nothing since draws random numbers)
            self._rng = user_rng if user_rng is not None else _capture_rng(self._devices)
            self._capture.arm()
        return counted_new

    def _realign_after_redraw(self, step: int, at_renorm: bool) -> None:
        """The shadow's pass drew random numbers from the user's stream instead of the user's
        forward state (module docstring, "Randomness"): pull the twin back to ``d0`` along its
        separation now, and count no interval before the next renormalisation."""
        self._redrawn = False
        self._measure(step, False)
        self._skip_count = not at_renorm
        warnings.warn(
            f"LyapunovMonitor: the model drew random numbers at step {step} and drew none on the steps before "
            "(dropout switched on?); the twin ran that step with other random numbers than the user's, so that "
            "interval is not counted and the twin was pulled back to d0 there; from now on it replays the RNG "
            "state of the user's forward",
            RuntimeWarning,
            stacklevel=4,
        )

    def snapshot_hyperparameters(self) -> None:
        """Freeze the optimiser's current ``param_groups`` hyper-parameters for the next
        :meth:`step` (call it before the user's ``optimizer.step()`` when a scheduler
        changes them between that step and the monitor call)."""
        self._hyper = [dict(g) for g in self.optimizer.param_groups]

    # The verdicts below are read back from the device on access (see _flush).
    @property
    def unresolved(self) -> bool:
        self._flush()
        return self._unresolved

    @property
    def unresolved_step(self) -> int:
        self._flush()
        return self._unresolved_step

    @property
    def diverged(self) -> bool:
        self._flush()
        return self._diverged

    @property
    def diverged_step(self) -> int:
        self._flush()
        return self._diverged_step

    @property
    def divergence_reason(self) -> str:
        self._flush()
        return self._divergence_reason

    @property
    def exponent(self) -> float:
        self._flush()
        if self.unresolved:
            return math.inf
        if self._stopped:
            return -math.inf
        return self._sum / (self.renorm_every * len(self._logs)) if self._logs else math.nan

    @property
    def stderr(self) -> float:
        self._flush()
        if self._stopped:
            return math.nan
        return float(block_stderr(np.asarray(self._logs) / self.renorm_every, self.n_blocks))

    @property
    def history(self) -> list[tuple[int, float]]:
        self._flush()
        return [(s, g / self.renorm_every) for s, g in zip(self._steps, self._logs)]

    def result(self) -> xr.Dataset:
        """The estimate as a Dataset with the variables of ``max_lyapunov`` (single orbit).

        ``lyapunov`` (+inf once unresolved), ``lyapunov_resolved`` (the estimate
        reached), ``lyapunov_stderr``, ``unresolved``, ``unresolved_step`` (the twin's
        separation became non-finite), ``diverged``, ``diverged_step``,
        ``divergence_reason`` (the user's parameters broke the divergence rule of
        :mod:`netdyn.maps.divergence`; a flag, monitoring goes on) () and
        ``lyapunov_running``, ``local_rate`` (step); coordinate ``step`` = user steps
        taken since construction at the end of each counted interval.  attrs:
        ``method="twin"``, ``source="LyapunovMonitor"``, ``optimizer``, ``d0``,
        ``d0_source`` (``"given"`` or the default's formula), ``dtype`` (of the
        parameters), ``renorm_every``, ``transient``, ``every``, ``window``,
        ``perturbation_seed``, ``params_only``, ``rng_replay`` (whether the twin replays the
        RNG state of the user's forward: module docstring, "Randomness"), ``steps`` (calls so
        far), ``units``.
        """
        self._flush()
        logs = np.asarray(self._logs, dtype=np.float64)
        m = self.renorm_every
        running = np.cumsum(logs) / (m * np.arange(1, logs.size + 1))
        finite = running[np.isfinite(running)]
        ds = xr.Dataset(
            {
                "lyapunov": ((), self.exponent),
                "lyapunov_resolved": ((), float(finite[-1]) if finite.size else math.nan),
                "lyapunov_stderr": ((), self.stderr),
                "lyapunov_running": (("step",), running),
                "local_rate": (("step",), logs / m),
                "unresolved": ((), self.unresolved),
                "unresolved_step": ((), self.unresolved_step),
                "diverged": ((), self.diverged),
                "diverged_step": ((), self.diverged_step),
                "divergence_reason": ((), self.divergence_reason),
                **self._sharpness_variables(),
            },
            coords={"step": np.asarray(self._steps, dtype=np.int64)},
            attrs={
                "method": "twin",
                "source": "LyapunovMonitor",
                "optimizer": type(self.optimizer).__name__,
                "d0": self.d0,
                "d0_source": self.d0_source,
                "dtype": str(self.dtype),
                "renorm_every": m,
                "transient": self.transient,
                "every": self.every,
                "window": self.window,
                "perturbation_seed": self.seed,
                "params_only": int(self.params_only),
                "rng_replay": _RNG_REPLAY[self._draws],
                "steps": self._calls,
                "units": "per step",
            },
        )
        ds["lyapunov"].attrs["units"] = "1/step"
        return ds

    # ------------------------------------------------------------------ internals
    def _pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        """``(reference, shadow)`` tensors of the state: parameters, then buffers (lists not to be modified)."""
        state = self.optimizer.state
        if not any(state.values()):  # no optimiser state (plain SGD): the parameters, the same lists each step
            return self._params, self._shadow_params
        ref, sha = list(self._params), list(self._shadow_params)
        shadow_state = self._shadow_opt.state
        for key in _buffer_keys(self.optimizer, self._params):
            for p, s in zip(self._params, self._shadow_params):
                value = state[p].get(key) if p in state else None
                if _is_buffer(key, value):
                    ref.append(value)
                    sha.append(shadow_state[s][key])
        return ref, sha

    def _separation(
        self, pairs: tuple[list[Tensor], list[Tensor]] | None = None, extra: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(|y - x|, |theta|)``: the distance over the measured entries (the norm of one flat
        vector, as in ``max_lyapunov``) and the norm of the user's parameters (the divergence
        rule's, float64), 0-dim tensors on the parameters' device (not read back).  Leaves
        ``x - y`` in ``self._flat`` / ``self._views``.  Call under ``torch.no_grad()``."""
        ref, sha = pairs or self._pairs()
        if self._flat is None or len(self._views) != len(ref):
            sizes = [r.numel() for r in ref]
            self._flat = torch.empty(sum(sizes), dtype=ref[0].dtype, device=ref[0].device)
            self._views = [v.view_as(r) for v, r in zip(self._flat.split(sizes), ref)]
            self._theta = self._flat[: sum(sizes[: len(self._params)])]
            self._measured = self._theta if self.params_only else self._flat
        torch._foreach_copy_(self._views, ref)  # x, then x - y: the same pass gives |theta|
        theta = torch.linalg.vector_norm(self._theta, dtype=torch.float64)
        torch._foreach_sub_(self._views, sha)
        measured = self._measured if extra is None else torch.cat((self._measured, extra))
        return torch.linalg.vector_norm(measured, dtype=self._norm_dtype), theta

    def _arm_random(self) -> Tensor:
        """Shadow = reference + ``d0 u``, ``u`` drawn as ``max_lyapunov`` draws it; returns
        the measured distance.  Buffers that do not exist yet (fresh optimiser) are
        zero: their part of ``u`` only enters the initial distance."""
        self._copy_reference()
        ref, sha = self._pairs()
        sizes = [r.numel() for r in ref]
        missing = 0
        if not self.params_only and len(ref) == len(self._params):
            missing = _fresh_buffer_size(self.optimizer, self._params)
        p = sum(sizes[: len(self._params)] if self.params_only else sizes) + missing
        gen = torch.Generator().manual_seed(self.seed)
        dtype = self._params[0].dtype
        u = torch.randn(1, p, generator=gen, dtype=torch.float64).to(dtype)
        u = (u / u.norm(dim=1, keepdim=True))[0]
        chunks = u.split(sizes[: len(self._params)] if self.params_only else sizes + [missing])
        with torch.no_grad():
            for r, s, chunk in zip(ref, sha, chunks):
                s.copy_(r + self.d0 * chunk.to(r.device).view_as(r))
            return self._separation(extra=self.d0 * chunks[-1].to(ref[0].device) if missing else None)[0]

    def _arm_carried(self) -> Tensor:
        """Shadow = current reference + the separation stored by :meth:`_to_separation`."""
        ref, sha = self._pairs()
        separation = [s.clone() for s in sha]
        self._copy_reference()
        _, sha = self._pairs()
        with torch.no_grad():
            for r, s, d in zip(ref, sha, separation):
                s.copy_(r + d)
            return self._separation()[0]

    def _to_separation(self) -> None:
        ref, sha = self._pairs()
        with torch.no_grad():
            for r, s in zip(ref, sha):
                s.sub_(r)

    def _copy_reference(self) -> None:
        with torch.no_grad():
            for p, s in zip(self._params, self._shadow_params):
                s.copy_(p)
                if p in self.optimizer.state and self.optimizer.state[p]:
                    self._shadow_opt.state[s] = {
                        k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in self.optimizer.state[p].items()
                    }
                else:
                    self._shadow_opt.state.pop(s, None)

    def _advance(self, batch: Any) -> RngState | None:
        """One step of the shadow on ``batch`` under the RNG state of the user's forward; returns
        the user's RNG state (restored after), or None when the pass ran on the user's stream
        and drew nothing (:meth:`_advance_directly`)."""
        hyper = self._hyper or self.optimizer.param_groups
        self._hyper = None
        for group, values in zip(self._shadow_opt.param_groups, hyper):
            params = group["params"]
            group.update(values)  # every hyper-parameter; the shadow keeps its own parameters
            group["params"] = params
        for user, shadow in self._modules:
            if shadow.training is not user.training:  # (nn.Module.__setattr__ costs microseconds)
                shadow.training = user.training
        if self._draws is False:
            return self._advance_directly(batch)
        user_rng = _capture_rng(self._devices)
        _restore_rng(self._rng, self._devices)
        try:
            self._shadow_pass(batch)
            if self._draws is None:
                self._draws = not _same_rng(self._rng, _capture_rng(self._devices))
                if not self._draws:
                    self._capture.disarm()
        finally:
            _restore_rng(user_rng, self._devices)
        return user_rng

    def _advance_directly(self, batch: Any) -> RngState | None:
        """The shadow's pass on the user's RNG stream, for a model found to draw no random
        numbers: None when it drew none (the stream is as it was); otherwise the user's state,
        restored, with ``_redrawn`` set and replays from now on."""
        before = _capture_rng(self._devices)
        try:
            self._shadow_pass(batch)
        except BaseException:
            _restore_rng(before, self._devices)
            raise
        if _same_rng(before, _capture_rng(self._devices)):
            return None
        _restore_rng(before, self._devices)
        self._draws, self._redrawn = True, True
        return before

    def _shadow_pass(self, batch: Any) -> None:
        """zero_grad, forward, backward, clipping and the optimiser's step of the shadow."""
        if type(self._shadow_opt).zero_grad is torch.optim.Optimizer.zero_grad:
            # what zero_grad(set_to_none=True) does, without its profiler annotation
            for p in self._shadow_opt_params:
                if p.grad is not None:
                    p.grad = None
        else:
            self._shadow_opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            self._batch_loss(self._shadow_model, batch).backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self._shadow_params, self.max_grad_norm)
        self._shadow_step()

    def _measure_sharpness(self, batch: Any) -> None:
        """Top eigenvalue of (P^-1) H of the loss on ``batch`` at the user's current parameters,
        under the RNG state of the user's forward of this step (same dropout masks)."""
        from netdyn.sharpness.hessian import top_eigenvalues

        if not hasattr(self, "_probe"):  # a third copy of the model, for the Hessian only
            self._probe = copy.deepcopy(self._shadow_model)
            twin = dict(zip(map(id, self._shadow_model.parameters()), self._probe.parameters()))
            self._probe_params = [twin[id(s)] for s in self._shadow_params]
        with torch.no_grad():
            for probe, user in zip(self._probe_params, self._params):
                probe.copy_(user)
        for user, probe in zip((m for m, _ in self._modules), self._probe.modules()):
            probe.training = user.training
        for p in self._probe_params:
            p.requires_grad_(True)
        scale, threshold = _preconditioner(self.optimizer, self._params)
        user_rng = _capture_rng(self._devices)
        if self._draws is not False:  # (a model that draws nothing runs on the user's stream)
            _restore_rng(self._rng, self._devices)
        try:
            with torch.enable_grad():
                grads = torch.autograd.grad(self._batch_loss(self._probe, batch), self._probe_params, create_graph=True)
        finally:
            _restore_rng(user_rng, self._devices)
        flat = torch.cat([g.reshape(-1) for g in grads])
        sizes = [p.numel() for p in self._probe_params]

        def hvp(v: Tensor) -> Tensor:
            w = v if scale is None else scale * v
            parts = torch.autograd.grad(flat, self._probe_params, w, retain_graph=True, allow_unused=True)
            out = torch.cat([torch.zeros(n, dtype=v.dtype, device=v.device) if g is None else g.reshape(-1)
                             for g, n in zip(parts, sizes)])
            return out if scale is None else scale * out

        previous = getattr(self, "_sharpness_vector", None)
        result = top_eigenvalues(hvp, flat.numel(), dtype=flat.dtype, seed=self.seed, v0=previous, device=flat.device)
        self._sharpness_vector = torch.from_numpy(result.vectors[0].copy()).to(flat.dtype)
        if not np.isfinite(result.vectors[0]).all():
            self._sharpness_vector = None
        self.sharpness_history.append((self._calls + 1, float(result.values[0]), threshold))
        for p in self._probe_params:
            p.requires_grad_(False)

    def _sharpness_variables(self) -> dict[str, Any]:
        if not self.sharpness_history:
            return {}
        steps, values, thresholds = (np.array(v) for v in zip(*self.sharpness_history))
        return {
            "sharpness": (("sharpness_step",), values),
            "sharpness_threshold": (("sharpness_step",), thresholds),
            "sharpness_step": (("sharpness_step",), steps.astype(np.int64)),
        }

    def _check_divergence(self, step: int, norm: float) -> None:
        """Flag (once) the user's run when its parameters (norm ``norm``) break the divergence rule."""
        if self._diverged:
            return
        reason = self._divergence.check_norm(norm)
        if reason:
            self._diverged, self._diverged_step, self._divergence_reason = True, step, reason
            warnings.warn(f"LyapunovMonitor: the training run diverged at step {step} ({reason})", RuntimeWarning,
                          stacklevel=4)

    def _measure(self, step: int, counted: bool) -> bool:
        """Measure and renormalise.  CPU float32/float64 states with ``sync_every=1`` (the CPU
        default) take one compiled pass and are checked at once; otherwise all stays on the
        device, the host reads the numbers back once per ``sync_every`` measurements (or
        when a result is read) and :meth:`_flush` replays the checks in order.  Until then a
        call after a stop (non-finite or collapsed separation) still returns ``counted``; its
        numbers are dropped."""
        pairs = self._pairs()
        compiled = self._rescale(*pairs) if self.sync_every == 1 else None
        if compiled is not None:  # the CPU's usual case: one compiled pass, the same quantities
            g_host, after, norm_host = compiled
            self._check(step, counted, g_host, float(self._prev), norm_host)
            self._prev = after
            return counted
        with torch.no_grad():
            g, norm = self._separation(pairs)
            self._pending.append((step, counted, torch.stack((g.double(), torch.as_tensor(self._prev).double(), norm))))
            # y <- x + (y - x) d0 / g, as max_lyapunov (the flat buffer holds x - y); the next denominator is measured
            self._flat.mul_(torch.where(g > 0, -self.d0 / g.double(), -self.d0).to(self._flat.dtype))
            torch._foreach_copy_(pairs[1], pairs[0])
            torch._foreach_add_(pairs[1], self._views)
            self._prev = self._separation(pairs)[0]
        if len(self._pending) >= self.sync_every:
            self._flush()
        return counted

    def _flush(self) -> None:
        """Read the pending measurements back (one device-to-host copy) and apply, in order,
        the checks of :meth:`_check`, as if each had been read at its step."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = host_block([v for _, _, v in pending])
        for (step, counted, _), (g, prev, norm) in zip(pending, values):
            self._check(step, counted, float(g), float(prev), float(norm))

    def _check(self, step: int, counted: bool, g: float, prev: float, norm: float) -> None:
        """The divergence rule on the user's parameter norm ``norm``, the stops (non-finite or
        collapsed separation ``g``) and the log of ``g / prev`` of a counted interval."""
        if self._stopped:
            return
        if not norm <= self._norm_limit:  # NaN, inf or beyond the limit: the rule says why
            self._check_divergence(step, norm)
        if not math.isfinite(g):
            self._stop(step, unresolved=True)
            warnings.warn(
                f"LyapunovMonitor: the training state or its twin became non-finite at step {step}; "
                "the exponent is unresolved (reported as +inf) and monitoring stopped",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        if counted:
            log = math.log(g / prev) if g > 0 else -math.inf
            self._logs.append(log)
            self._steps.append(step)
            self._sum += log
            if g == 0:
                self._stop(step, unresolved=False)
                warnings.warn(
                    f"LyapunovMonitor: the separation collapsed to 0 at step {step}; exponent -inf, monitoring stopped",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _stop(self, step: int, unresolved: bool) -> None:
        self._stopped, self._unresolved = True, unresolved
        self._unresolved_step = step if unresolved else -1


class _ForwardRngCapture:
    """Takes the RNG state at the start of the user's next forward pass.

    :meth:`arm` registers ``self`` as a global forward pre-hook; the first call of
    one of the model's modules with gradients enabled stores the RNG state in the
    monitor's ``_rng`` and removes the hook.  It holds the monitor weakly (a hook
    of a monitor that was garbage collected removes itself).
    """

    def __init__(self, monitor: "LyapunovMonitor", model: nn.Module):
        self.monitor = weakref.ref(monitor)
        self.own = frozenset(id(m) for m in model.modules())
        self.handle: Any = None

    def arm(self) -> None:
        if self.handle is None:
            self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self)

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def __call__(self, module: nn.Module, args: Any) -> None:
        monitor = self.monitor()
        if monitor is None:
            self.disarm()
        elif id(module) in self.own and torch.is_grad_enabled():
            self.disarm()
            monitor._rng = _capture_rng(monitor._devices)


def _least_precise_dtype(params: list[nn.Parameter]) -> torch.dtype:
    return max((p.dtype for p in params), key=lambda d: torch.finfo(d).eps)


def _parameter_norm(params: list[nn.Parameter]) -> float:
    """Euclidean norm of the parameters, accumulated in float64."""
    with torch.no_grad():
        return float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.detach(), dtype=torch.float64).cpu() for p in params]
        )))


def _loss_of_pair(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> BatchLoss:
    def batch_loss(model: nn.Module, batch: Any) -> Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"LyapunovMonitor.step: expected batch = (inputs, targets), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                + "; pass batch_loss=... for other batch structures"
            )
        return loss_fn(model(batch[0]), batch[1])

    return batch_loss


def _tracked_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The model's parameters that the optimiser updates, in ``model.parameters()`` order."""
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    params = list(model.parameters())
    foreign = in_optimizer - {id(p) for p in params}
    if foreign:
        raise ValueError(f"LyapunovMonitor: expected the optimiser's parameters to be the model's, got {len(foreign)} foreign")
    tracked = [p for p in params if id(p) in in_optimizer]
    if not tracked:
        raise ValueError("LyapunovMonitor: expected the optimiser to update some of the model's parameters, got none")
    return tracked


def _shadow_model(model: nn.Module, tracked: list[nn.Parameter]) -> tuple[nn.Module, list[nn.Parameter]]:
    index = {id(p): i for i, p in enumerate(model.parameters())}
    shadow = copy.deepcopy(model)
    shadow_params = list(shadow.parameters())
    for p in shadow_params:
        p.grad = None
    return shadow, [shadow_params[index[id(p)]] for p in tracked]


def _shadow_optimizer(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], shadow_params: list[nn.Parameter]
) -> torch.optim.Optimizer:
    """A second instance of the optimiser's class on the shadow parameters, same groups."""
    twin_of = {id(p): s for p, s in zip(params, shadow_params)}
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [twin_of[id(p)] for p in g["params"] if id(p) in twin_of]}
        for g in optimizer.param_groups
    ]
    cls = type(optimizer)
    signature = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    defaults = {k: v for k, v in optimizer.defaults.items() if takes_any or k in signature}
    try:  # the groups carry every hyper-parameter; defaults only satisfy required arguments
        return cls(groups, **defaults)
    except TypeError as err:
        raise ValueError(
            f"LyapunovMonitor: cannot build a second {cls.__name__} from its param_groups and defaults: {err}"
        ) from None


def _step_without_hooks(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer.step`` without the wrapper ``torch.optim.Optimizer`` puts around every
    class's ``step`` (a profiler annotation and the global and per-optimiser step hooks):
    the same update, which the shadow takes without firing hooks a user registered for
    real steps (and without the wrapper's cost, ~10 us a step).  Plain ``step`` when the
    class's ``step`` is not so wrapped."""
    step = type(optimizer).step
    inner = getattr(step, "__wrapped__", None)
    if getattr(step, "hooked", False) and callable(inner):
        return functools.partial(inner, optimizer)
    return optimizer.step


def _is_buffer(key: str, value: Any) -> bool:
    return key != "step" and torch.is_tensor(value) and value.is_floating_point()


def _buffer_keys(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> list[str]:
    keys: list[str] = []
    state = optimizer.state
    for p in params:
        entries = state.get(p)  # (not state[p]: the defaultdict would add an entry)
        if entries:
            keys.extend(k for k, v in entries.items() if k not in keys and _is_buffer(k, v))
    return keys


def _fresh_buffer_size(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> int:
    """Number of buffer entries a fresh optimiser creates: one zero-gradient step of a
    throw-away instance on throw-away parameters."""
    probes = [torch.zeros_like(p, requires_grad=True) for p in params]
    probe = _shadow_optimizer(optimizer, params, probes)
    for q in probes:
        q.grad = torch.zeros_like(q)
    with torch.random.fork_rng(devices=[]):
        try:
            probe.step()
        except Exception as err:  # e.g. L-BFGS, whose step needs a closure
            raise ValueError(
                f"LyapunovMonitor: expected an optimiser whose step() works without a closure, "
                f"got {type(optimizer).__name__} ({err})"
            ) from None
    return sum(v.numel() for q in probes for k, v in probe.state[q].items() if _is_buffer(k, v))


def _preconditioner(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> tuple[Tensor | None, float]:
    """``(P^-1/2 as a flat vector or None, stability threshold at the current rate)`` of a torch optimiser.

    Adam/AdamW: ``P = sqrt(exp_avg_sq / (1 - beta2^t)) + eps`` from the optimiser's state
    (the preconditioner of the step just taken); RMSprop: ``sqrt(square_avg) + eps``;
    SGD and others: none (the raw Hessian).  Before the first step no state exists: none.
    """
    from netdyn.maps.optim import functional_optimizer
    from netdyn.sharpness.threshold import stability_threshold

    group = optimizer.param_groups[0]
    kwargs = {k: group[k] for k in ("momentum", "dampening", "nesterov", "betas", "eps", "alpha", "centered",
                                    "amsgrad", "weight_decay") if k in group}
    try:
        functional = functional_optimizer(type(optimizer), float(group["lr"]), **kwargs)
    except (TypeError, ValueError):
        functional = None
    threshold = math.nan if functional is None else stability_threshold(_Threshold(functional))
    name = type(optimizer).__name__
    states = [optimizer.state.get(p, {}) for p in params]
    if name in ("Adam", "AdamW") and all("exp_avg_sq" in s for s in states):
        beta2, eps = group["betas"][1], group["eps"]
        parts = []
        for p, s in zip(params, states):
            step = float(s["step"])
            v = (s["max_exp_avg_sq"] if group.get("amsgrad") else s["exp_avg_sq"]).detach().reshape(-1)
            parts.append(v / (1.0 - beta2 ** step))
        return (torch.cat(parts).sqrt() + eps).rsqrt(), threshold
    if name == "RMSprop" and all("square_avg" in s for s in states):
        eps = group["eps"]
        square = torch.cat([s["square_avg"].detach().reshape(-1) for s in states])
        if group.get("centered"):
            square = square - torch.cat([s["grad_avg"].detach().reshape(-1) for s in states]) ** 2
        return (square.clamp_min(0).sqrt() + eps).rsqrt(), threshold
    if name in ("Adam", "AdamW", "RMSprop"):  # no state yet: the raw Hessian has no threshold
        return None, math.nan
    return None, threshold


class _Threshold:
    """The minimal map :func:`netdyn.sharpness.threshold.stability_threshold` reads."""

    optimizer_spec = None

    def __init__(self, functional: Any):
        self.functional_optimizer = functional


def _capture_rng(devices: list[int]) -> RngState:
    cpu = torch.default_generator.get_state()
    return (cpu, *(torch.cuda.get_rng_state(d) for d in devices)) if devices else (cpu,)


def _same_rng(a: RngState, b: RngState) -> bool:
    """Whether two captured RNG states are equal, byte for byte: ``memcmp`` on their memory (the
    states are contiguous CPU byte tensors, also for CUDA generators), a sixth of ``torch.equal``'s
    time, with no allocation and no tensor read back.  One generator's states have one size."""
    if len(a) == 1:
        return _memcmp(a[0].data_ptr(), b[0].data_ptr(), a[0].numel()) == 0
    return all(_memcmp(x.data_ptr(), y.data_ptr(), x.numel()) == 0 for x, y in zip(a, b))


def _c_memcmp() -> Callable[[int, int, int], int]:
    """The C library's ``memcmp(a, b, n)`` on addresses; where the process's C library cannot be
    opened by ``CDLL(None)`` (Windows), a comparison of the bytes that is 0 when they are equal."""
    try:
        memcmp = ctypes.CDLL(None).memcmp
    except (OSError, TypeError, AttributeError):
        return lambda a, b, n: int(ctypes.string_at(a, n) != ctypes.string_at(b, n))
    memcmp.restype, memcmp.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


_memcmp = _c_memcmp()


def _restore_rng(state: RngState, devices: list[int]) -> None:
    torch.default_generator.set_state(state[0])
    for d, device_state in zip(devices, state[1:]):
        torch.cuda.set_rng_state(device_state, d)
