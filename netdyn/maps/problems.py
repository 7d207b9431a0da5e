"""Reference training problems: MLP classifiers on scikit-learn's bundled data sets.

* ``digits`` — 1 797 handwritten digits, 8×8 pixels scaled to [0, 1] (an offline
  stand-in for MNIST), 10 classes;
* ``iris`` — 150 flowers, 4 standardised features, 3 classes (the shallow-network
  task of Danovski, Soriano & Lacasa 2024).

Both ship inside scikit-learn, so nothing is downloaded.  The train/test split is
fixed (stratified, 25 % test, ``random_state=0``) so that results compare across
machines and sessions.  :func:`training_map` builds a :class:`~netdyn.maps.training.TrainingMap`
and :func:`map_from_attrs` rebuilds one from a saved trajectory's attributes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from netdyn._core.validation import check_choice
from netdyn.maps.schedules import schedule_from_attrs
from netdyn.maps.training import TrainingMap

__all__ = ["Task", "ACTIVATIONS", "INITS", "mlp", "make_task", "training_map", "map_from_attrs"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "linear": nn.Identity,
}

DATASETS = ("digits", "iris")


def _init_torch(model: nn.Module, generator: torch.Generator, scale: float) -> None:
    """PyTorch's default ``nn.Linear`` initialisation U(±1/sqrt(fan_in)), times ``scale``."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            bound = scale / math.sqrt(layer.in_features)
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
            layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)


def _init_normal(model: nn.Module, generator: torch.Generator, scale: float) -> None:
    """Weights ~ N(0, scale²), biases 0 (the set-up of Jiménez-González et al. 2025)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64) * scale)
            layer.bias.zero_()


def _init_lecun(model: nn.Module, generator: torch.Generator, scale: float) -> None:
    """Weights ~ N(0, scale² / fan_in), biases 0."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            std = scale / math.sqrt(layer.in_features)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64) * std)
            layer.bias.zero_()


INITS: dict[str, Callable[[nn.Module, torch.Generator, float], None]] = {
    "torch": _init_torch,
    "normal": _init_normal,
    "lecun": _init_lecun,
}


@dataclass(frozen=True)
class Task:
    """A classification problem with its network: everything a :class:`TrainingMap` needs.

    Parameters
    ----------
    name : str
        Data set name.
    model : nn.Module
        The network (initial parameters included).
    loss_fn : nn.Module
        The training loss.
    train, test : (Tensor, Tensor)
        ``(inputs, targets)`` of the training and test splits.
    init : callable
        ``init(module, generator)`` re-initialises the parameters from a seed.
    info : dict
        Scalar descriptions stored with recorded trajectories.

    Examples
    --------
    >>> import netdyn as nd
    >>> task = nd.make_task("iris", hidden=(4,))
    >>> task.name, tuple(task.train[0].shape)
    ('iris', (112, 4))
    """

    name: str
    model: nn.Module
    loss_fn: nn.Module
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    init: Callable[[nn.Module, torch.Generator], None]
    info: dict[str, Any] = field(default_factory=dict)


def mlp(layer_sizes: Sequence[int], *, activation: str = "tanh", dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """``nn.Sequential`` of ``Linear`` layers with ``activation`` between them (none after the last).

    ``layer_sizes = [n_in, n_hidden_1, ..., n_out]`` (at least two entries).

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, n_hidden_1, ..., n_out]``, at least two positive entries.
    activation : str, default "tanh"
        A key of :data:`ACTIVATIONS`.
    dtype : torch.dtype, default torch.float64
        Parameter dtype.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    ValueError
        For fewer than two or non-positive sizes, or an unknown activation.

    Examples
    --------
    >>> from netdyn.maps.problems import mlp
    >>> net = mlp([4, 3, 2])
    >>> sum(p.numel() for p in net.parameters())  # 4*3 + 3 + 3*2 + 2
    23
    """
    if len(layer_sizes) < 2 or any(int(n) < 1 for n in layer_sizes):
        raise ValueError(f"mlp: expected at least two positive layer sizes, got {list(layer_sizes)}")
    check_choice(activation, "activation", "mlp", sorted(ACTIVATIONS))
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        layers.append(nn.Linear(int(n_in), int(n_out), dtype=dtype))
        if i < len(layer_sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _load(dataset: str) -> tuple[Any, Any]:
    from sklearn import datasets

    if dataset == "digits":
        bunch = datasets.load_digits()
        return bunch.data / 16.0, bunch.target
    bunch = datasets.load_iris()
    x = bunch.data
    return (x - x.mean(axis=0)) / x.std(axis=0), bunch.target


def make_task(
    dataset: str = "digits",
    *,
    hidden: Sequence[int] = (32,),
    activation: str = "tanh",
    dtype: torch.dtype | str = torch.float64,
    init: str = "torch",
    init_scale: float = 1.0,
    seed: int = 0,
    n_train: int | None = None,
) -> Task:
    """A classification :class:`Task` on a bundled data set.

    Parameters
    ----------
    dataset :
        ``"digits"`` (64 inputs, 10 classes) or ``"iris"`` (4 inputs, 3 classes).
    hidden :
        widths of the hidden layers (default one layer of 32).
    activation :
        a key of :data:`ACTIVATIONS`.
    dtype :
        parameter and data dtype (default float64, as exponent estimates need).
    init :
        ``"torch"`` (U(±scale/sqrt(fan_in))), ``"normal"`` (N(0, scale²), biases 0) or
        ``"lecun"`` (N(0, scale²/fan_in), biases 0).
    init_scale :
        multiplies the initial weights.
    seed :
        seed of the initial parameters held by ``task.model``.
    n_train :
        keep only the first ``n_train`` training samples (for fast tests).

    Returns
    -------
    Task

    Raises
    ------
    ValueError
        For an unknown data set or initialisation.

    Examples
    --------
    >>> import netdyn as nd
    >>> task = nd.make_task("iris", hidden=(4,), seed=1)
    >>> sum(p.numel() for p in task.model.parameters())  # 4*4 + 4 + 4*3 + 3
    35
    """
    check_choice(dataset, "dataset", "make_task", list(DATASETS))
    check_choice(init, "init", "make_task", sorted(INITS))
    from sklearn.model_selection import train_test_split

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    x, y = _load(dataset)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    layer_sizes = [x.shape[1], *[int(h) for h in hidden], int(y.max()) + 1]
    model = mlp(layer_sizes, activation=activation, dtype=dtype)

    def initializer(module: nn.Module, generator: torch.Generator) -> None:
        INITS[init](module, generator, init_scale)

    with torch.no_grad():
        initializer(model, torch.Generator().manual_seed(int(seed)))
    as_x = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    info = {
        "dataset": dataset,
        "hidden": [int(h) for h in hidden],
        "layer_sizes": layer_sizes,
        "activation": activation,
        "init": init,
        "init_scale": float(init_scale),
        "init_seed": int(seed),
        "n_train": int(len(y_train)),
    }
    return Task(
        name=dataset,
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        train=(as_x(x_train), as_y(y_train)),
        test=(as_x(x_test), as_y(y_test)),
        init=initializer,
        info=info,
    )


def training_map(
    task: Task | str = "digits",
    *,
    lr: float = 0.1,
    optimizer: Any = "sgd",
    batch_size: int | None = None,
    seed: int = 0,
    schedule: Any = None,
    warmup: int = 0,
    total: int | None = None,
    schedule_options: Mapping[str, Any] | None = None,
    **optimizer_kwargs: Any,
) -> TrainingMap:
    """A :class:`TrainingMap` for ``task`` (a :class:`Task` or a data set name with defaults).

    ``schedule`` is any spec of :mod:`netdyn.maps.schedules`; with a schedule *name*,
    ``warmup`` (linear warm-up steps), ``total`` (steps of the whole schedule) and
    ``schedule_options`` (e.g. ``{"min_factor": 0.1}``, ``{"step_size": 50}``) complete it,
    and ``lr`` is the peak rate.  ``warmup > 0`` without a schedule is a linear warm-up to
    the constant ``lr`` (the ``"warmup"`` schedule).

    Parameters
    ----------
    task : Task or str, default "digits"
        The problem, or a bundled data set name (built with :func:`make_task` defaults).
    lr : float, default 0.1
        (Peak) learning rate.
    optimizer : str, type or callable, default "sgd"
        See :class:`~netdyn.maps.training.TrainingMap`.
    batch_size : int or None
        Mini-batch size (None: full batch).
    seed : int, default 0
        Seed of the mini-batch schedule and of ``initial_state``.
    schedule, warmup, total, schedule_options
        The learning-rate schedule, as above.
    **optimizer_kwargs
        The optimiser's hyper-parameters.

    Returns
    -------
    TrainingMap

    Raises
    ------
    ValueError
        When ``warmup``/``total``/``schedule_options`` come without a schedule name.

    Examples
    --------
    >>> import netdyn as nd
    >>> tmap = nd.training_map(nd.make_task("iris", hidden=(4,)), lr=0.5)
    >>> tmap.dim, tmap.describe()["lr"]
    (35, 0.5)
    """
    if isinstance(task, str):
        task = make_task(task)
    schedule = _schedule_spec(schedule, warmup, total, schedule_options)
    return TrainingMap(
        task.model,
        task.loss_fn,
        task.train,
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        test_data=task.test,
        init=task.init,
        name=task.name,
        info=task.info,
        schedule=schedule,
        **optimizer_kwargs,
    )


def _schedule_spec(schedule: Any, warmup: int, total: int | None, options: Mapping[str, Any] | None) -> Any:
    """The schedule spec of :func:`training_map`'s arguments."""
    extra = {**({"warmup": warmup} if warmup else {}), **({"total": total} if total is not None else {}),
             **dict(options or {})}
    if schedule is None:
        if set(extra) - {"warmup"}:
            raise ValueError(f"training_map: expected a schedule name with options {sorted(extra)}, got schedule=None")
        return {"name": "warmup", **extra} if extra else None
    if isinstance(schedule, str):
        return {"name": schedule, **extra}
    if extra:
        raise ValueError(
            f"training_map: expected warmup/total/schedule_options only with a schedule name, got them with {schedule!r} "
            "(put the options in the schedule's dict or factory)"
        )
    return schedule


def map_from_attrs(attrs: Mapping[str, Any], **overrides: Any) -> TrainingMap:
    """Rebuild the :class:`TrainingMap` that recorded a trajectory, from its attributes.

    ``overrides`` replace recorded values (e.g. ``lr=1.0``, ``schedule=None``).  Only maps
    built by :func:`training_map` on a bundled task can be rebuilt; others raise
    ``ValueError``, and so does a map whose learning-rate schedule was a Python function or
    a torch scheduler factory (not serialisable) unless ``schedule=`` is given again.

    Parameters
    ----------
    attrs : mapping
        Attributes of a recorded trajectory (``ds.attrs``).
    **overrides
        Values replacing recorded ones.

    Returns
    -------
    TrainingMap

    Raises
    ------
    ValueError
        For attributes not written by a :func:`training_map` on a bundled task, or a
        non-serialisable schedule without ``schedule=``.

    Examples
    --------
    >>> import netdyn as nd
    >>> tmap = nd.training_map("iris", lr=0.5)
    >>> nd.map_from_attrs(tmap.describe(), lr=0.25).describe()["lr"]
    0.25
    """
    override_schedule = "schedule" in overrides
    schedule = overrides.pop("schedule", None)
    attrs = {**attrs, **overrides}
    if attrs.get("map") != "TrainingMap" or attrs.get("task") not in DATASETS:
        raise ValueError(
            f"map_from_attrs: expected attributes of a TrainingMap on one of {list(DATASETS)}, "
            f"got map={attrs.get('map')!r}, task={attrs.get('task')!r}"
        )
    if not override_schedule:
        schedule = schedule_from_attrs(attrs)

    def as_list(value: Any) -> list[int]:
        if isinstance(value, str):
            value = json.loads(value)
        return [int(v) for v in (value if hasattr(value, "__iter__") else [value])]

    task = make_task(
        attrs["task"],
        hidden=as_list(attrs["hidden"]),
        activation=str(attrs["activation"]),
        dtype=str(attrs.get("dtype", "float64")),
        init=str(attrs.get("init", "torch")),
        init_scale=float(attrs.get("init_scale", 1.0)),
        seed=int(attrs.get("init_seed", 0)),
        n_train=int(attrs["n_train"]) if "n_train" in attrs else None,
    )
    kwargs = {k[len("optim_") :]: _attr_value(v) for k, v in attrs.items() if k.startswith("optim_")}
    batch = int(attrs.get("batch_size", -1))
    return training_map(
        task,
        lr=float(attrs["lr"]),
        optimizer=str(attrs.get("optimizer", "sgd")),
        batch_size=None if batch < 0 else batch,
        seed=int(attrs.get("batch_seed", 0)),
        schedule=schedule,
        **kwargs,
    )


def _attr_value(value: Any) -> Any:
    """netCDF attributes come back as numpy scalars/arrays: make them plain Python."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return tuple(value)
    return value
