"""The map protocol: what every map netdyn analyses provides, and the helpers that read it.

Everything in netdyn is a discrete map ``x_{t+1} = F(x_t, t)`` on a flat state
vector.  A chaotic toy map, gradient descent on a quadratic and Adam training an
MLP are the same kind of object, so each diagnostic is written once and checked
on maps whose answers are known.

The protocol
------------
A :class:`DiscreteMap` needs only

``dim``
    size of the flat state vector (int);
``initial_state(seed=None) -> Tensor``
    a state of shape ``(dim,)``;
``step(x, t) -> Tensor``
    the next state; ``t`` is the integer step index, so random maps (mini-batch
    training) are functions of ``(x, t)`` and twin/tangent copies see the same noise.

Optional members, detected with :func:`param_dim_of`, :func:`describe_map`,
:func:`has_jacobian` / ``hasattr``:

``param_dim``
    how many *leading* entries of the state are the system's "parameters" (for a
    training map: the network weights; the rest are optimiser buffers); default
    ``dim`` (read it with :func:`param_dim_of`);
``describe() -> dict``
    scalar/str hyper-parameters, stored as attributes of recorded trajectories;
    default ``{"map": <class name>}`` (read it with :func:`describe_map`);

``step_jvp(x, v, t) -> (x_next, J(x) v)``
    exact Jacobian-vector product; ``v`` is ``(dim,)`` or a batch ``(k, dim)``;
``step_with_metrics(x, t) -> (x_next, {"loss": float, "grad_norm": float, ...})``
    the step plus scalar observables *at* ``x`` (used by the recorder);
``step_with_metric_tensors(x, t) -> (x_next, {"loss": Tensor, "grad_norm": Tensor, ...})``
    the same with 0-dim tensors on the state's device (no host sync per step; the
    recorder prefers it and copies the values once per block of steps);
``batch_first = True``
    ``step(x, t)`` and ``step_jvp(x, v, t)`` accept a leading batch of states
    ``x (n, dim)`` natively (tangents ``v (n, dim)`` or ``(n, k, dim)``), so an
    ensemble advances in one tensor operation without ``torch.func.vmap`` (read it
    with :func:`is_batch_first`; :func:`batch_step` uses it);
``members`` and ``member(i)``
    a map built with a 1-D tensor of parameter values (e.g.
    ``LogisticMap(r=torch.linspace(2.5, 4, 2000))``) is a *parameter batch*: its
    ``members`` values step together on states ``(members, dim)``, and ``member(i)``
    is the ordinary map of value ``i`` (``members`` is ``None`` for scalar values);
``evaluate(x) -> {"test_loss": float, "test_accuracy": float}``
    held-out metrics at ``x``;
``loss(theta, t) -> Tensor``
    for gradient-descent maps: the differentiable scalar loss at the parameters
    ``theta = x[:param_dim]`` on the data of step ``t`` (used for Hessians/sharpness),
    with the learning rate in ``lr``;
``param_labels() -> (names, layers)``
    two lists of ``param_dim`` strings labelling the parameters.

:class:`MapBase` supplies ``param_dim``, ``describe`` and a ``step_jvp`` obtained
by forward-mode automatic differentiation of ``step`` (``torch.func.jvp``,
vectorised over a batch of tangents with ``torch.func.vmap``), so a map written
with differentiable torch operations gets exact tangents for free.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from netdyn._core.devices import map_device

__all__ = [
    "DiscreteMap",
    "MapBase",
    "as_states",
    "batch_step",
    "check_batch_tangent",
    "check_tangent",
    "describe_map",
    "has_jacobian",
    "is_batch_first",
    "map_attrs",
    "param_dim_of",
    "require_jacobian",
]


@runtime_checkable
class DiscreteMap(Protocol):
    """Structural type of every map netdyn analyses: ``x_{t+1} = step(x_t, t)``.

    Attributes
    ----------
    dim : int
        Size of the flat state vector.

    Notes
    -----
    Only the three members below are required; the optional ones (``param_dim``,
    ``describe``, ``step_jvp``, ``step_with_metrics``, ``evaluate``, ``loss``,
    ``param_labels``) are listed in the module docstring.

    Examples
    --------
    >>> import netdyn as nd
    >>> isinstance(nd.LogisticMap(), nd.DiscreteMap)
    True
    """

    dim: int

    def initial_state(self, seed: int | None = None) -> Tensor:
        """A start state of shape ``(dim,)``, reproducible from ``seed``."""
        ...

    def step(self, x: Tensor, t: int) -> Tensor:
        """The next state ``F(x, t)``, shape ``(dim,)``."""
        ...


def param_dim_of(map_: Any) -> int:
    """How many leading state entries are the system's parameters.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.

    Returns
    -------
    int
        ``map_.param_dim`` when the map defines it, else ``map_.dim`` (every entry
        is a parameter).

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.base import param_dim_of
    >>> param_dim_of(nd.HenonMap())
    2
    """
    return int(getattr(map_, "param_dim", map_.dim))


def describe_map(map_: Any) -> dict[str, Any]:
    """The map's scalar/str hyper-parameters.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.

    Returns
    -------
    dict
        A copy of ``map_.describe()`` when the map defines it, else
        ``{"map": <class name>}``.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.base import describe_map
    >>> describe_map(nd.LogisticMap(r=3.5))
    {'map': 'LogisticMap', 'r': 3.5}
    """
    describe = getattr(map_, "describe", None)
    return dict(describe()) if callable(describe) else {"map": type(map_).__name__}


def map_attrs(map_: Any) -> dict[str, Any]:
    """The map's :func:`describe_map` made netCDF-safe (bools -> int, None -> ``"none"``).

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.

    Returns
    -------
    dict
        Attributes ready for an ``xarray.Dataset`` saved with ``to_netcdf``.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.base import map_attrs
    >>> map_attrs(nd.HenonMap())
    {'map': 'HenonMap', 'a': 1.4, 'b': 0.3}
    """
    attrs = {}
    for key, value in describe_map(map_).items():
        if isinstance(value, bool):
            value = int(value)
        elif value is None:
            value = "none"
        attrs[key] = value
    return attrs


def has_jacobian(map_: Any) -> bool:
    """Whether ``map_`` provides an exact ``step_jvp``.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.

    Returns
    -------
    bool
        False also for a map whose ``step_jvp`` exists only to refuse (it sets
        ``no_jacobian_reason``, e.g. a :class:`~netdyn.maps.training.TrainingMap`
        driving a black-box optimiser).

    Examples
    --------
    >>> import netdyn as nd
    >>> nd.has_jacobian(nd.HenonMap())
    True
    """
    return callable(getattr(map_, "step_jvp", None)) and not getattr(map_, "no_jacobian_reason", None)


def require_jacobian(map_: Any, caller: str) -> None:
    """Refuse a map without an exact Jacobian, naming the public function ``caller``.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.
    caller : str
        The public function's name, for the message.

    Raises
    ------
    TypeError
        When :func:`has_jacobian` is False.  Maps without tangents still support
        every orbit-based diagnostic (twin trajectories, perturbation growth,
        orbital stability, recurrence).

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.base import require_jacobian
    >>> require_jacobian(nd.LogisticMap(), "ftle") is None
    True
    """
    if not has_jacobian(map_):
        reason = getattr(map_, "no_jacobian_reason", "it defines no step_jvp")
        raise TypeError(
            f"{caller}: {type(map_).__name__} has no exact Jacobian ({reason}); "
            "use an orbit-based method instead, e.g. max_lyapunov(..., method='twin')"
        )


def check_tangent(map_: Any, x: Tensor, v: Tensor) -> None:
    """Check the shapes of a ``step_jvp`` call: state ``(dim,)``, tangent ``(dim,)`` or ``(k, dim)``.

    Parameters
    ----------
    map_ : DiscreteMap
        The map whose ``dim`` the shapes must match.
    x : Tensor
        State, shape ``(dim,)``.
    v : Tensor
        One tangent ``(dim,)`` or a batch ``(k, dim)``.

    Raises
    ------
    ValueError
        On any other shape.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.maps.base import check_tangent
    >>> check_tangent(nd.HenonMap(), torch.zeros(2), torch.zeros(3, 2)) is None
    True
    >>> check_tangent(nd.HenonMap(), torch.zeros(2), torch.zeros(3))
    Traceback (most recent call last):
    ...
    ValueError: step_jvp: expected tangent of shape (dim,) or (k, dim) with dim=2, got (3,)
    """
    if v.shape[-1] != map_.dim or v.ndim not in (1, 2):
        raise ValueError(
            f"step_jvp: expected tangent of shape (dim,) or (k, dim) with dim={map_.dim}, "
            f"got {tuple(v.shape)}"
        )
    if x.shape != (map_.dim,):
        raise ValueError(f"step_jvp: expected state of shape ({map_.dim},), got {tuple(x.shape)}")


def as_states(map_: Any, x0: Tensor | np.ndarray, caller: str) -> tuple[Tensor, bool]:
    """Validate start states and bring them to a batch.

    Parameters
    ----------
    map_ : DiscreteMap
        The map whose ``dim`` the states must match.
    x0 : Tensor or ndarray
        One state ``(dim,)`` or ``n`` states ``(n, dim)``, floating point.
    caller : str
        The public function's name, for the message.

    Returns
    -------
    states : Tensor
        A copy, shape ``(n, dim)`` (``n = 1`` for a single state).
    batched : bool
        Whether ``x0`` was a batch.

    Raises
    ------
    ValueError
        On a wrong shape, an empty batch or an integer dtype.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.maps.base import as_states
    >>> xs, batched = as_states(nd.HenonMap(), torch.zeros(2), "max_lyapunov")
    >>> tuple(xs.shape), batched
    ((1, 2), False)
    """
    x = torch.as_tensor(x0, device=map_device(map_))
    if x.ndim not in (1, 2) or x.shape[-1] != map_.dim or x.shape[0] == 0:
        raise ValueError(f"{caller}: expected x0 of shape ({map_.dim},) or (n, {map_.dim}), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{caller}: expected a floating-point x0, got dtype {x.dtype}")
    return (x.unsqueeze(0) if x.ndim == 1 else x).clone(), x.ndim == 2


def is_batch_first(map_: Any) -> bool:
    """True when ``map_`` declares ``batch_first``: its ``step``/``step_jvp`` take a
    leading batch of states natively (see the module docstring).

    Parameters
    ----------
    map_ : DiscreteMap

    Returns
    -------
    bool

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.maps.base import is_batch_first
    >>> is_batch_first(nd.HenonMap())
    True
    """
    return bool(getattr(map_, "batch_first", False))


def batch_step(map_: Any, xs: Tensor, t: int, stepper: Any = None) -> Tensor:
    """Advance a batch of states ``xs (n, dim)`` by one step of ``map_`` at time ``t``.

    A ``batch_first`` map is called once on the whole batch; any other map goes
    through ``stepper`` (a :class:`netdyn.maps.batching.BatchStepper`: ``torch.func.vmap``
    where the map allows it, else a loop over the members), which is required then.
    """
    if is_batch_first(map_):
        return map_.step(xs, t)
    if stepper is None:
        raise ValueError(f"batch_step: expected a BatchStepper for {type(map_).__name__}, which is not batch_first")
    return stepper.step(xs, t)


def check_batch_tangent(map_: Any, x: Tensor, v: Tensor) -> bool:
    """Validate ``(x, v)`` of a batch-first ``step_jvp``.

    Parameters
    ----------
    map_ : DiscreteMap
        The map (its ``dim``).
    x : Tensor
        One state ``(dim,)`` or a batch ``(n, dim)``.
    v : Tensor
        Tangents: ``x``'s shape, or ``k`` per state (``(k, dim)`` / ``(n, k, dim)``).

    Returns
    -------
    bool
        True when ``v`` holds ``k`` tangents per state.

    Raises
    ------
    ValueError
        On mismatched shapes.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.maps.base import check_batch_tangent
    >>> check_batch_tangent(nd.HenonMap(), torch.zeros(5, 2), torch.zeros(5, 3, 2))
    True
    """
    if x.ndim not in (1, 2) or x.shape[-1] != map_.dim:
        raise ValueError(f"step_jvp: expected state of shape ({map_.dim},) or (n, {map_.dim}), got {tuple(x.shape)}")
    if v.shape[-1] != map_.dim or v.ndim not in (x.ndim, x.ndim + 1) or v.shape[: x.ndim - 1] != x.shape[:-1]:
        raise ValueError(
            f"step_jvp: expected tangents of shape {tuple(x.shape)} or {tuple(x.shape[:-1])} + (k, {map_.dim}) "
            f"for a state of shape {tuple(x.shape)}, got {tuple(v.shape)}"
        )
    return v.ndim == x.ndim + 1


class MapBase:
    """Convenience base class: ``param_dim``, ``describe`` and an exact ``step_jvp`` by forward-mode AD.

    Subclasses set ``dim`` and ``dtype`` and implement ``initial_state`` and a
    differentiable ``step``.  ``step_jvp`` accepts one tangent ``(dim,)`` or a
    batch ``(k, dim)``; the batch is propagated with ``torch.func.vmap``.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> class Doubling(nd.MapBase):
    ...     dim = 1
    ...     def initial_state(self, seed=None):
    ...         return torch.tensor([0.1], dtype=torch.float64)
    ...     def step(self, x, t):
    ...         return 2.0 * x
    >>> m = Doubling()
    >>> _, jv = m.step_jvp(m.initial_state(), torch.ones(1, dtype=torch.float64), 0)
    >>> float(jv[0])
    2.0
    """

    dim: int
    dtype: torch.dtype = torch.float64
    members: int | None = None

    @property
    def param_dim(self) -> int:
        """Number of parameter entries: all ``dim`` of them."""
        return self.dim

    def member(self, i: int) -> "MapBase":
        """The ordinary (scalar-parameter) map of member ``i`` of a parameter batch."""
        if self.members is None:
            raise ValueError(f"{type(self).__name__}.member: expected a parameter batch, got scalar parameters")
        if not -self.members <= i < self.members:
            raise ValueError(f"{type(self).__name__}.member: expected 0 <= i < {self.members}, got {i}")
        return self._member(int(i) % self.members)

    def _member(self, i: int) -> "MapBase":  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_batch(self, x: Tensor, caller: str = "step") -> None:
        """A parameter batch steps states ``(members, dim)`` only."""
        if self.members is not None and x.shape != (self.members, self.dim):
            raise ValueError(
                f"{type(self).__name__}.{caller}: expected states of shape ({self.members}, {self.dim}) for a "
                f"parameter batch of {self.members} members, got {tuple(x.shape)}"
            )

    def _initial_batch(self, x: Tensor) -> Tensor:
        """``initial_state`` of a parameter batch: the same start for every member."""
        return x if self.members is None else x.expand(self.members, self.dim).clone()

    def describe(self) -> dict[str, Any]:
        """``{"map": <class name>}``; subclasses add their hyper-parameters."""
        return {"map": type(self).__name__}

    def step(self, x: Tensor, t: int) -> Tensor:  # pragma: no cover - abstract
        """The next state; subclasses implement it with differentiable torch operations."""
        raise NotImplementedError

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """``(step(x, t), J(x) v)`` by ``torch.func.jvp`` (``vmap`` over a batch ``v (k, dim)``);
        a ``batch_first`` subclass also takes ``x (n, dim)`` with ``v (n, dim)`` or ``(n, k, dim)``
        (its members are independent, so the Jacobian of the batched step is block diagonal)."""
        if x.ndim == 2 and is_batch_first(self):
            if not check_batch_tangent(self, x, v):
                return torch.func.jvp(lambda y: self.step(y, t), (x,), (v,))
            return torch.func.vmap(lambda u: torch.func.jvp(lambda y: self.step(y, t), (x,), (u,)),
                                   in_dims=1, out_dims=(None, 1))(v)
        check_tangent(self, x, v)

        def f(y: Tensor) -> Tensor:
            return self.step(y, t)

        if v.ndim == 1:
            return torch.func.jvp(f, (x,), (v,))
        x_next, jv = torch.func.vmap(lambda u: torch.func.jvp(f, (x,), (u,)), out_dims=(None, 0))(v)
        return x_next, jv
