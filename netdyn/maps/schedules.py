"""Learning-rate schedules: the time dependence of a training map's rate.

A schedule makes the training map non-autonomous, ``x_{t+1} = F(x_t, t)`` with the
rate ``lr(t)`` of optimiser step ``t`` (``t`` = steps already taken, the map's time).
:class:`Schedule` turns any of the forms users write into that sequence:

* ``None`` — constant rate ``lr``;
* a **function of t** ``f(t) -> multiplier``: ``lr(t) = lr * f(t)``, the convention of
  ``torch.optim.lr_scheduler.LambdaLR`` (so ``f`` and ``LambdaLR(opt, f)`` give the same
  floats);
* a **torch scheduler factory** ``lambda opt: CosineAnnealingLR(opt, T_max=1000)``: any
  ``torch.optim.lr_scheduler.LRScheduler`` (chained, sequential, one-cycle ...) built on
  an optimiser whose rate is ``lr``;
* a **named spec** — a name (``"constant"``, ``"step"``, ``"exponential"``, ``"warmup"``,
  ``"cosine"``, ``"linear_warmup_cosine"``, ``"onecycle"``) or a dict
  ``{"name": "cosine", "warmup": 100, "total": 1000}``.  For every named schedule ``lr`` is
  the **peak** rate, so scanning ``lr`` scans the peak of the schedule.  Named specs are
  plain data: they are recorded in ``describe()`` and rebuilt by
  :func:`netdyn.maps.problems.map_from_attrs`; functions and factories cannot be serialised.

Torch schedulers (factories and the named specs, which are built from torch's own
classes) are *replayed* on a one-parameter dummy ``SGD`` optimiser and the rate before
each optimiser step is cached, so ``lr(t)`` is exactly the float that ``torch.optim`` +
``lr_scheduler`` would use at step ``t`` (recursive forms such as ``CosineAnnealingLR``'s
depend on the history, which the replay reproduces).  The rate does not depend on the
state, so the tangent map of a scheduled step is that of a constant-rate step with rate
``lr(t)``.

Schedules of other hyper-parameters (``OneCycleLR(cycle_momentum=True)`` cycling
momentum or ``beta1``) are detected during the replay and rejected: only the rate is
time-dependent in a :class:`~netdyn.maps.training.TrainingMap`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch.optim import lr_scheduler as torch_schedulers

from netdyn._core.validation import check_float, check_int

__all__ = ["Schedule", "as_schedule", "NAMED_SCHEDULES", "schedule_from_attrs"]

#: named schedules and their options (defaults; ``None`` = required)
NAMED_SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "warmup": {"warmup": None, "start_factor": None},
    "cosine": {"total": None, "warmup": 0, "min_factor": 0.0, "start_factor": None},
    "linear_warmup_cosine": {"total": None, "warmup": None, "min_factor": 0.0, "start_factor": None},
    "onecycle": {"total": None, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
                 "anneal_strategy": "cos", "three_phase": False},
}

Factory = Callable[[torch.optim.Optimizer], Any]


class Schedule:
    """The learning rate of every optimiser step, ``schedule(t) -> float``.

    Parameters
    ----------
    spec
        ``None``, a function ``t -> multiplier``, a torch scheduler factory
        ``optimizer -> LRScheduler``, a name of :data:`NAMED_SCHEDULES` or a dict
        ``{"name": ..., **options}`` (module docstring).
    lr
        the base rate (for named schedules: the peak rate), > 0.

    Attributes
    ----------
    kind : {"constant", "named", "function", "torch"}
    name : str — the named schedule, or ``"function"`` / ``"torch_scheduler"``.
    options : dict — the named schedule's options with defaults filled in.
    serialisable : bool — True for named schedules and constants.

    Raises
    ------
    ValueError
        For a bad ``lr``, an unknown spec or schedule name, or bad options.

    Examples
    --------
    >>> import netdyn as nd
    >>> sched = nd.Schedule({"name": "step", "step_size": 2, "gamma": 0.5}, 0.1)
    >>> [round(r, 4) for r in sched.rates(0, 5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, spec: Any, lr: float):
        self.lr = check_float(lr, "lr", "Schedule", minimum=0.0, exclusive=True)
        self.options: dict[str, Any] = {}
        self._function: Callable[[int], float] | None = None
        self._factory: Factory | None = None
        if spec is None:
            self.kind, self.name = "constant", "constant"
        elif isinstance(spec, (str, Mapping)):
            self.name, self.options = _named_options(spec)
            self.kind = "constant" if self.name == "constant" else "named"
            self._factory = None if self.kind == "constant" else _named_factory(self.name, self.options, self.lr)
        elif callable(spec):
            if _is_scheduler_factory(spec, self.lr):
                self.kind, self.name, self._factory = "torch", "torch_scheduler", spec
            else:
                self.kind, self.name, self._function = "function", "function", spec
        else:
            raise ValueError(
                "Schedule: expected None, a name, a dict {'name': ...}, a function t -> multiplier or a factory "
                f"optimizer -> torch.optim.lr_scheduler.LRScheduler, got {spec!r}"
            )
        self.serialisable = self.kind in ("constant", "named")
        self._lrs: list[float] = []
        self._live: tuple[torch.optim.Optimizer, Any] | None = None

    def __call__(self, t: int) -> float:
        """The rate of optimiser step ``t`` (``t >= 0`` steps already taken)."""
        t = int(t)
        if t < 0:
            raise ValueError(f"Schedule: expected a step t >= 0, got {t}")
        if self.kind == "constant":
            return self.lr
        if self._function is not None:
            return self._checked(t, self.lr * float(self._function(t)))
        while len(self._lrs) <= t:
            self._advance()
        return self._lrs[t]

    def rates(self, t0: int, steps: int) -> list[float]:
        """``[lr(t0), ..., lr(t0 + steps - 1)]``."""
        return [self(t) for t in range(int(t0), int(t0) + int(steps))]

    def describe(self) -> dict[str, Any]:
        """netCDF-safe attributes: ``schedule`` (name) and ``schedule_<option>`` for each option."""
        out: dict[str, Any] = {"schedule": self.name, "schedule_serialisable": int(self.serialisable)}
        for key, value in self.options.items():
            out[f"schedule_{key}"] = "none" if value is None else (int(value) if isinstance(value, bool) else value)
        return out

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Schedule({self.name}{', ' if options else ''}{options}, lr={self.lr})"

    # pickling (Dask): the live dummy optimiser and scheduler are rebuilt on demand
    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_live": None, "_lrs": []}
        if self.kind == "named":  # its factory is a closure: rebuilt from (name, options, lr)
            state["_factory"] = None
        return state

    def _advance(self) -> None:
        """Replay the torch scheduler one optimiser step further."""
        if self._live is None:
            self._lrs = []
            if self._factory is None:
                self._factory = _named_factory(self.name, self.options, self.lr)
            self._live = _replay_start(self._factory, self.lr)
        optimizer, scheduler = self._live
        t = len(self._lrs)
        if t > 0:
            optimizer.step()  # no gradient: parameters untouched; keeps torch's order check quiet
            try:
                scheduler.step()
            except ValueError as err:  # OneCycleLR past total_steps
                raise ValueError(f"Schedule: the {self.name} schedule is not defined at step {t}: {err}") from None
        group = optimizer.param_groups[0]
        if group["momentum"] != 0.0:
            raise ValueError(
                f"Schedule: the {self.name} schedule changes the momentum (e.g. OneCycleLR's cycle_momentum=True); "
                "only the learning rate may depend on t: pass cycle_momentum=False"
            )
        self._lrs.append(self._checked(t, float(group["lr"])))

    def _checked(self, t: int, rate: float) -> float:
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(
                f"Schedule: expected a finite rate >= 0 at step {t}, got {rate!r} from the {self.name} schedule"
            )
        return rate


def as_schedule(spec: Any, lr: float) -> Schedule | None:
    """``None`` for a constant rate (``spec`` None or ``"constant"``), else a :class:`Schedule`;
    a :class:`Schedule` passes through (its own ``lr`` must match).

    Parameters
    ----------
    spec : any
        A :class:`Schedule` spec, or a :class:`Schedule`.
    lr : float
        The base (peak) rate, > 0.

    Returns
    -------
    Schedule or None

    Raises
    ------
    ValueError
        For a :class:`Schedule` built with another ``lr``, or a bad spec.

    Examples
    --------
    >>> from netdyn.maps.schedules import as_schedule
    >>> as_schedule("constant", 0.1) is None
    True
    >>> as_schedule({"name": "exponential", "gamma": 0.5}, 0.1)(2)
    0.025
    """
    if isinstance(spec, Schedule):
        if spec.lr != float(lr):
            raise ValueError(f"as_schedule: expected a Schedule built with lr={lr}, got one with lr={spec.lr}")
        return None if spec.kind == "constant" else spec
    schedule = Schedule(spec, lr)
    return None if schedule.kind == "constant" else schedule


def schedule_from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The named spec recorded by :meth:`Schedule.describe` (``None`` for a constant rate).

    Raises ``ValueError`` for a schedule that was a function or a factory: those cannot be
    serialised, so the map cannot be rebuilt from attributes (pass ``schedule=`` again as an
    override).

    Parameters
    ----------
    attrs : mapping
        Attributes of a recorded trajectory.

    Returns
    -------
    dict or None
        ``{"name": ..., **options}``, or None for a constant rate.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.schedules import schedule_from_attrs
    >>> attrs = nd.Schedule({"name": "exponential", "gamma": 0.9}, 0.1).describe()
    >>> schedule_from_attrs(attrs)
    {'name': 'exponential', 'gamma': 0.9}
    """
    name = str(attrs.get("schedule", "constant"))
    if name in ("constant", "none"):
        return None
    if name not in NAMED_SCHEDULES:
        raise ValueError(
            f"schedule_from_attrs: the recorded schedule {name!r} was a Python function or torch scheduler factory, "
            "which cannot be saved; pass schedule=... explicitly to rebuild the map"
        )
    spec: dict[str, Any] = {"name": name}
    for key, default in NAMED_SCHEDULES[name].items():
        value = attrs.get(f"schedule_{key}", default)
        if hasattr(value, "item"):
            value = value.item()
        spec[key] = None if value == "none" else (bool(value) if isinstance(default, bool) else value)
    return spec


# ---------------------------------------------------------------- internals
def _named_options(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    given = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = str(given.pop("name", "")).lower()
    if name not in NAMED_SCHEDULES:
        raise ValueError(f"Schedule: expected a schedule name among {sorted(NAMED_SCHEDULES)}, got {name!r}")
    defaults = NAMED_SCHEDULES[name]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"Schedule: expected options of {name!r} among {sorted(defaults)}, got {unknown}")
    options = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    if name == "cosine" and options["warmup"]:
        name = "linear_warmup_cosine"
    for key in ("step_size", "total", "warmup"):
        if key in options and options[key] is not None:
            options[key] = check_int(options[key], key, "Schedule", minimum=0 if key == "warmup" else 1)
    missing = [k for k, v in options.items() if v is None and k != "start_factor"]
    if name == "warmup" and options["warmup"] is None:
        missing = ["warmup"]
    if name == "linear_warmup_cosine" and not options.get("warmup"):
        missing = missing + ["warmup >= 1"]
    if missing:
        raise ValueError(f"Schedule: the {name!r} schedule needs {missing}, got {given}")
    if "total" in options and options.get("warmup") and options["warmup"] >= options["total"]:
        raise ValueError(f"Schedule: expected warmup < total, got warmup={options['warmup']}, total={options['total']}")
    if "warmup" in options and options.get("warmup"):
        options["start_factor"] = float(options["start_factor"] or 1.0 / options["warmup"])
    elif "start_factor" in options:
        options.pop("start_factor")
    return name, options


def _named_factory(name: str, o: dict[str, Any], lr: float) -> Factory:
    """The torch scheduler of a named spec, as a factory (``lr`` is the peak rate)."""
    s = torch_schedulers
    if name == "step":
        return lambda opt: s.StepLR(opt, step_size=o["step_size"], gamma=float(o["gamma"]))
    if name == "exponential":
        return lambda opt: s.ExponentialLR(opt, gamma=float(o["gamma"]))
    if name == "warmup":
        return lambda opt: s.LinearLR(opt, start_factor=o["start_factor"], end_factor=1.0, total_iters=o["warmup"])
    if name == "cosine":
        return lambda opt: s.CosineAnnealingLR(opt, T_max=o["total"], eta_min=float(o["min_factor"]) * lr)
    if name == "linear_warmup_cosine":
        warmup = o["warmup"]

        def factory(opt: torch.optim.Optimizer) -> Any:
            rise = s.LinearLR(opt, start_factor=o["start_factor"], end_factor=1.0, total_iters=warmup)
            decay = s.CosineAnnealingLR(opt, T_max=o["total"] - warmup, eta_min=float(o["min_factor"]) * lr)
            return s.SequentialLR(opt, [rise, decay], milestones=[warmup])

        return factory
    # onecycle; momentum is not cycled (module docstring)
    return lambda opt: s.OneCycleLR(
        opt, max_lr=lr, total_steps=o["total"], pct_start=float(o["pct_start"]), div_factor=float(o["div_factor"]),
        final_div_factor=float(o["final_div_factor"]), anneal_strategy=str(o["anneal_strategy"]),
        three_phase=bool(o["three_phase"]), cycle_momentum=False,
    )


def _dummy_optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, dtype=torch.float64, requires_grad=True)], lr=lr)


def _replay_start(factory: Factory | None, lr: float) -> tuple[torch.optim.Optimizer, Any]:
    optimizer = _dummy_optimizer(lr)
    scheduler = factory(optimizer)
    if not isinstance(scheduler, torch_schedulers.LRScheduler):
        raise ValueError(
            f"Schedule: expected the factory to return a torch.optim.lr_scheduler.LRScheduler, got "
            f"{type(scheduler).__name__} (ReduceLROnPlateau depends on the loss, not on t: unsupported)"
        )
    return optimizer, scheduler


def _is_scheduler_factory(spec: Callable, lr: float) -> bool:
    """A callable is a torch scheduler factory when it accepts an optimiser and returns a scheduler;
    anything else (a function of t, which fails on an optimiser or returns a number) is ``t -> multiplier``."""
    try:
        made = spec(_dummy_optimizer(lr))
    except Exception:  # a function of t given an optimiser: any failure means "not a factory"
        return False
    if isinstance(made, torch_schedulers.ReduceLROnPlateau):
        raise ValueError("Schedule: ReduceLROnPlateau depends on the loss, not on t: unsupported")
    return isinstance(made, torch_schedulers.LRScheduler)
