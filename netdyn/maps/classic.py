"""The map protocol and reference maps with analytically known dynamics.

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
``evaluate(x) -> {"test_loss": float, "test_accuracy": float}``
    held-out metrics at ``x``;
``loss(theta, t) -> Tensor``
    for gradient-descent maps: the differentiable scalar loss at the parameters
    ``theta = x[:param_dim]`` on the data of step ``t`` (used for Hessians/sharpness),
    with the learning rate in ``lr``;
``param_labels() -> (names, layers)``
    two lists of ``param_dim`` strings labelling the parameters.
``batch_first = True``
    ``step(x, t)`` and ``step_jvp(x, v, t)`` accept a leading batch of states
    ``x (n, dim)`` natively (tangents ``v (n, dim)`` or ``(n, k, dim)``), so an
    ensemble advances in one tensor operation without ``torch.func.vmap`` (read it
    with :func:`is_batch_first`; :func:`batch_step` uses it);
``members`` and ``member(i)``
    a map built with a 1-D tensor of parameter values (e.g.
    ``LogisticMap(r=torch.linspace(2.5, 4, 2000))``) is a *parameter batch*: its
    ``members`` values step together on states ``(members, dim)``, and ``member(i)``
    is the ordinary map of value ``i`` (``members`` is ``None`` for scalar values).

Parameter batches: :class:`LogisticMap` (``r``), :class:`HenonMap` (``a``, ``b``),
:class:`QuadraticGD` (``lr``), :class:`CircleRotation` (``omega``) and
:class:`LorenzRK4` (``sigma``, ``rho``, ``beta``) accept tensors; every classic map
is ``batch_first``.

:class:`MapBase` supplies ``param_dim``, ``describe`` and a ``step_jvp`` obtained
by forward-mode automatic differentiation of ``step`` (``torch.func.jvp``,
vectorised over a batch of tangents with ``torch.func.vmap``), so a map written
with differentiable torch operations gets exact tangents for free.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "DiscreteMap",
    "MapBase",
    "LogisticMap",
    "HenonMap",
    "QuadraticGD",
    "PotentialGD",
    "CircleRotation",
    "LorenzRK4",
    "LinearMap",
    "has_jacobian",
    "require_jacobian",
    "param_dim_of",
    "describe_map",
    "is_batch_first",
    "batch_step",
]


@runtime_checkable
class DiscreteMap(Protocol):
    """Structural type of every map netdyn analyses: the three required members
    (see the module docstring for the optional ones)."""

    dim: int

    def initial_state(self, seed: int | None = None) -> Tensor: ...

    def step(self, x: Tensor, t: int) -> Tensor: ...


def param_dim_of(map_: Any) -> int:
    """``map_.param_dim`` when the map defines it, else ``map_.dim`` (every entry is a parameter)."""
    return int(getattr(map_, "param_dim", map_.dim))


def describe_map(map_: Any) -> dict[str, Any]:
    """A copy of ``map_.describe()`` when the map defines it, else ``{"map": <class name>}``."""
    describe = getattr(map_, "describe", None)
    return dict(describe()) if callable(describe) else {"map": type(map_).__name__}


def has_jacobian(map_: Any) -> bool:
    """True when ``map_`` provides an exact ``step_jvp``.

    A map whose ``step_jvp`` exists only to refuse (it sets ``no_jacobian_reason``,
    e.g. a :class:`~netdyn.maps.training.TrainingMap` driving a black-box optimiser) has none.
    """
    return callable(getattr(map_, "step_jvp", None)) and not getattr(map_, "no_jacobian_reason", None)


def require_jacobian(map_: Any, caller: str) -> None:
    """Raise a ``TypeError`` naming ``caller`` when ``map_`` has no ``step_jvp``.

    Maps without tangents still support every orbit-based diagnostic (twin
    trajectories, perturbation growth, orbital stability, recurrence).
    """
    if not has_jacobian(map_):
        reason = getattr(map_, "no_jacobian_reason", "it defines no step_jvp")
        raise TypeError(
            f"{caller}: {type(map_).__name__} has no exact Jacobian ({reason}); "
            "use an orbit-based method instead, e.g. max_lyapunov(..., method='twin')"
        )


def is_batch_first(map_: Any) -> bool:
    """True when ``map_`` declares ``batch_first``: its ``step``/``step_jvp`` take a
    leading batch of states natively (see the module docstring)."""
    return bool(getattr(map_, "batch_first", False))


def batch_step(map_: Any, xs: Tensor, t: int, stepper: Any = None) -> Tensor:
    """Advance a batch of states ``xs (n, dim)`` by one step of ``map_`` at time ``t``.

    A ``batch_first`` map is called once on the whole batch; any other map goes
    through ``stepper`` (a :class:`netdyn.lyapunov.maximal.BatchStepper`: ``torch.func.vmap``
    where the map allows it, else a loop over the members), which is required then.
    """
    if is_batch_first(map_):
        return map_.step(xs, t)
    if stepper is None:
        raise ValueError(f"batch_step: expected a BatchStepper for {type(map_).__name__}, which is not batch_first")
    return stepper.step(xs, t)


def _values(value: float | Tensor, name: str, caller: str, dtype: torch.dtype) -> float | Tensor:
    """A parameter as a float, or (a parameter batch) as a 1-D tensor of ``dtype``."""
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if tensor.ndim > 1 or tensor.numel() == 0:
        raise ValueError(f"{caller}: expected {name} as a number or a non-empty 1-D tensor, got shape {tuple(tensor.shape)}")
    return float(tensor) if tensor.ndim == 0 else tensor.to(dtype).clone()


def _members(caller: str, **params: float | Tensor) -> int | None:
    """The common number of members of the tensor-valued parameters (None: all scalars)."""
    sizes = {name: value.shape[0] for name, value in params.items() if isinstance(value, Tensor)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{caller}: expected parameter tensors of one length, got {sizes}")
    return next(iter(sizes.values()), None)


def _column(value: float | Tensor, x: Tensor) -> float | Tensor:
    """A parameter shaped to broadcast against ``x[..., i]`` (members first)."""
    return value if not isinstance(value, Tensor) else value.reshape(value.shape + (1,) * (x.ndim - 2))


def _describe_values(value: float | Tensor) -> float | list[float]:
    return value if not isinstance(value, Tensor) else [float(v) for v in value]


class MapBase:
    """Convenience base: exact ``step_jvp`` by forward-mode AD of ``step``.

    Subclasses set ``dim`` and ``dtype`` and implement ``initial_state`` and a
    differentiable ``step``.  ``step_jvp`` accepts one tangent ``(dim,)`` or a
    batch ``(k, dim)``; the batch is propagated with ``torch.func.vmap``.
    """

    dim: int
    dtype: torch.dtype = torch.float64
    members: int | None = None

    @property
    def param_dim(self) -> int:
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
        return {"map": type(self).__name__}

    def step(self, x: Tensor, t: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Exact ``(step(x), J(x) v)`` by forward AD; a ``batch_first`` subclass also takes
        ``x (n, dim)`` with ``v (n, dim)`` or ``(n, k, dim)`` (its members are independent,
        so the Jacobian of the batched step is block diagonal)."""
        if x.ndim == 2 and is_batch_first(self):
            many = _check_batch_tangent(self, x, v)
            if not many:
                return torch.func.jvp(lambda y: self.step(y, t), (x,), (v,))
            x_next, jv = torch.func.vmap(lambda u: torch.func.jvp(lambda y: self.step(y, t), (x,), (u,)),
                                         in_dims=1, out_dims=(None, 1))(v)
            return x_next, jv
        _check_tangent(self, x, v)

        def f(y: Tensor) -> Tensor:
            return self.step(y, t)

        if v.ndim == 1:
            return torch.func.jvp(f, (x,), (v,))
        x_next, jv = torch.func.vmap(lambda u: torch.func.jvp(f, (x,), (u,)), out_dims=(None, 0))(v)
        return x_next, jv

    def _state(self, values: list[float] | Tensor) -> Tensor:
        return torch.as_tensor(values, dtype=self.dtype).reshape(self.dim).clone()


def _check_tangent(map_: Any, x: Tensor, v: Tensor) -> None:
    if v.shape[-1] != map_.dim or v.ndim not in (1, 2):
        raise ValueError(
            f"step_jvp: expected tangent of shape (dim,) or (k, dim) with dim={map_.dim}, "
            f"got {tuple(v.shape)}"
        )
    if x.shape != (map_.dim,):
        raise ValueError(f"step_jvp: expected state of shape ({map_.dim},), got {tuple(x.shape)}")


def _check_batch_tangent(map_: Any, x: Tensor, v: Tensor) -> bool:
    """Validate ``(x, v)`` of a batch-first ``step_jvp``; True when ``v`` holds ``k``
    tangents per state (``(k, dim)`` for one state, ``(n, k, dim)`` for a batch)."""
    if x.ndim not in (1, 2) or x.shape[-1] != map_.dim:
        raise ValueError(f"step_jvp: expected state of shape ({map_.dim},) or (n, {map_.dim}), got {tuple(x.shape)}")
    if v.shape[-1] != map_.dim or v.ndim not in (x.ndim, x.ndim + 1) or v.shape[: x.ndim - 1] != x.shape[:-1]:
        raise ValueError(
            f"step_jvp: expected tangents of shape {tuple(x.shape)} or {tuple(x.shape[:-1])} + (k, {map_.dim}) "
            f"for a state of shape {tuple(x.shape)}, got {tuple(v.shape)}"
        )
    return v.ndim == x.ndim + 1


def _rng(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


class LogisticMap(MapBase):
    """Logistic map ``x -> r x (1 - x)`` on [0, 1].

    Known results: for ``r = 4`` the Lyapunov exponent is ``ln 2`` (conjugacy to the
    tent map); fixed point ``1 - 1/r`` stable for ``1 < r < 3``, period 2 for
    ``3 < r < 1 + sqrt(6)``, the period-3 window opens at ``1 + sqrt(8)``.

    ``r`` may be a 1-D tensor of values (a parameter batch, e.g. for an orbit
    diagram): the map then steps states ``(len(r), 1)``, member ``i`` with ``r[i]``.
    """

    dim = 1
    batch_first = True

    def __init__(self, r: float | Tensor = 4.0, dtype: torch.dtype = torch.float64):
        self.dtype = dtype
        self.r = _values(r, "r", "LogisticMap", dtype)
        self.members = _members("LogisticMap", r=self.r)
        if not bool((torch.as_tensor(self.r) >= 0).all() and (torch.as_tensor(self.r) <= 4).all()):
            raise ValueError(f"LogisticMap: expected 0 <= r <= 4, got r={_describe_values(self.r)}")

    def initial_state(self, seed: int | None = None) -> Tensor:
        """Uniform in (0.1, 0.9), from ``seed`` (default 0); ``(members, 1)`` copies for a batch."""
        return self._initial_batch((0.1 + 0.8 * torch.rand(1, generator=_rng(seed), dtype=torch.float64)).to(self.dtype))

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (1,)`` or a batch ``(n, 1)`` -> the next state(s)."""
        self._check_batch(x)
        return _column(self.r, x)[..., None] * x * (1.0 - x) if self.members else self.r * x * (1.0 - x)

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Hand-written tangent ``r (1 - 2x) v`` (40x cheaper than generic forward AD);
        ``x (1,)`` with ``v (1,)``/``(k, 1)``, or ``x (n, 1)`` with ``v (n, 1)``/``(n, k, 1)``."""
        many = _check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        slope = (_column(self.r, x)[..., None] if self.members else self.r) * (1.0 - 2.0 * x)
        return self.step(x, t), (slope.unsqueeze(-2) if many else slope) * v

    def _member(self, i: int) -> "LogisticMap":
        return LogisticMap(float(self.r[i]), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"map": "LogisticMap", "r": _describe_values(self.r)}


class HenonMap(MapBase):
    """Hénon map ``(x, y) -> (1 - a x^2 + y, b x)``.

    ``det J = -b`` everywhere, so the exponents sum to ``ln|b|``.  For the classic
    ``a = 1.4, b = 0.3``: ``lambda_1 ~ 0.41922``, ``lambda_2 = ln 0.3 - lambda_1 ~ -1.62319``.

    ``a`` and/or ``b`` may be 1-D tensors of one length (a parameter batch on states
    ``(members, 2)``).
    """

    dim = 2
    batch_first = True

    def __init__(self, a: float | Tensor = 1.4, b: float | Tensor = 0.3, dtype: torch.dtype = torch.float64):
        self.dtype = dtype
        self.a, self.b = _values(a, "a", "HenonMap", dtype), _values(b, "b", "HenonMap", dtype)
        self.members = _members("HenonMap", a=self.a, b=self.b)

    def initial_state(self, seed: int | None = None) -> Tensor:
        """A point near the attractor: ``(0.1, 0.1)`` plus U(-0.05, 0.05) from ``seed``."""
        jitter = 0.1 * (torch.rand(2, generator=_rng(seed), dtype=torch.float64) - 0.5)
        return self._initial_batch((torch.tensor([0.1, 0.1], dtype=torch.float64) + jitter).to(self.dtype))

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (2,)`` or a batch ``(n, 2)`` -> the next state(s)."""
        self._check_batch(x)
        u, w = x[..., 0], x[..., 1]
        return torch.stack((1.0 - _column(self.a, x) * u**2 + w, _column(self.b, x) * u), dim=-1)

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Hand-written tangent ``J = [[-2 a x, 1], [b, 0]]`` applied to ``v`` (or each row);
        ``x (2,)`` with ``v (2,)``/``(k, 2)``, or ``x (n, 2)`` with ``v (n, 2)``/``(n, k, 2)``."""
        many = _check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        slope, b = -2.0 * _column(self.a, x) * x[..., 0], _column(self.b, x)
        if many:
            slope, b = slope.unsqueeze(-1), (b.unsqueeze(-1) if isinstance(b, Tensor) else b)
        return self.step(x, t), torch.stack((slope * v[..., 0] + v[..., 1], b * v[..., 0]), dim=-1)

    def _member(self, i: int) -> "HenonMap":
        pick = lambda p: float(p[i]) if isinstance(p, Tensor) else p  # noqa: E731
        return HenonMap(pick(self.a), pick(self.b), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"map": "HenonMap", "a": _describe_values(self.a), "b": _describe_values(self.b)}


class LinearMap(MapBase):
    """Linear map ``x -> A x``; its exponents are ``ln|eigenvalues|`` of ``A`` and,
    for diagonalisable ``A``, its covariant Lyapunov vectors are the eigenvectors."""

    batch_first = True

    def __init__(self, matrix: Tensor | list[list[float]], dtype: torch.dtype = torch.float64):
        a = torch.as_tensor(matrix, dtype=dtype)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"LinearMap: expected a square matrix, got shape {tuple(a.shape)}")
        self.matrix, self.dim, self.dtype = a, a.shape[0], dtype

    def initial_state(self, seed: int | None = None) -> Tensor:
        return torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (dim,)`` or a batch ``(n, dim)`` -> ``A x`` for each."""
        return x @ self.matrix.T

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        _check_batch_tangent(self, x, v)
        return self.step(x, t), v @ self.matrix.T

    def describe(self) -> dict[str, Any]:
        return {"map": "LinearMap", "dim": self.dim}


class PotentialGD(MapBase):
    """Gradient descent ``x -> x - lr * grad f(x)`` on a potential ``f: R^dim -> R``.

    ``potential`` must be written with differentiable torch operations on a
    ``(dim,)`` tensor; the gradient comes from ``torch.func.grad`` and the exact
    tangent map ``I - lr * Hess f(x)`` from forward-over-reverse AD.

    Example: ``PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=2.1)`` has
    the stable 2-cycle ``±sqrt((lr - 2) / lr)`` with multiplier ``(2 lr - 5)^2``.
    """

    def __init__(
        self,
        potential: Callable[[Tensor], Tensor],
        dim: int,
        lr: float,
        dtype: torch.dtype = torch.float64,
        name: str = "PotentialGD",
    ):
        if dim < 1:
            raise ValueError(f"PotentialGD: expected dim >= 1, got {dim}")
        self.potential, self.dim, self.lr, self.dtype, self.name = potential, int(dim), float(lr), dtype, name
        self._grad = torch.func.grad(potential)

    def initial_state(self, seed: int | None = None) -> Tensor:
        return torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return x - self.lr * self._grad(x)

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, float]]:
        g = self._grad(x)
        return x - self.lr * g, {"loss": float(self.potential(x)), "grad_norm": float(g.norm())}

    def loss(self, theta: Tensor, t: int) -> Tensor:
        return self.potential(theta)

    def describe(self) -> dict[str, Any]:
        return {"map": self.name, "lr": self.lr, "dim": self.dim}


class QuadraticGD(MapBase):
    """Gradient descent on ``f(x) = ½ xᵀ H x`` with rate ``lr``: ``x -> (I - lr H) x``.

    The Lyapunov spectrum is exactly ``ln|1 - lr h_i|`` for the eigenvalues ``h_i`` of
    the symmetric ``H`` — also for ``lr > 2 / h_max``, where the orbit diverges.
    """

    batch_first = True

    def __init__(
        self, hessian: Tensor | list[list[float]] | list[float], lr: float | Tensor, dtype: torch.dtype = torch.float64
    ):
        h = torch.as_tensor(hessian, dtype=dtype)
        if h.ndim == 1:
            h = torch.diag(h)
        if h.ndim != 2 or h.shape[0] != h.shape[1] or not torch.allclose(h, h.T):
            raise ValueError(f"QuadraticGD: expected a symmetric square Hessian, got shape {tuple(h.shape)}")
        self.hessian, self.dim, self.dtype = h, h.shape[0], dtype
        self.lr = _values(lr, "lr", "QuadraticGD", dtype)
        self.members = _members("QuadraticGD", lr=self.lr)
        eye = torch.eye(self.dim, dtype=dtype)
        # (dim, dim), or (members, dim, dim) for a batch of rates
        self.transition = eye - self.lr * h if self.members is None else eye - self.lr[:, None, None] * h

    @property
    def eigenvalues(self) -> Tensor:
        """Hessian eigenvalues ``h_i`` in ascending order, shape ``(dim,)``."""
        return torch.linalg.eigvalsh(self.hessian)

    def exact_exponents(self) -> Tensor:
        """``ln|1 - lr h_i|`` sorted in descending order, shape ``(dim,)`` (``(members, dim)`` for a batch)."""
        lr = self.lr if self.members is None else self.lr[:, None]
        return torch.sort(torch.log(torch.abs(1.0 - lr * self.eigenvalues)), descending=True, dim=-1).values

    def initial_state(self, seed: int | None = None) -> Tensor:
        return self._initial_batch(torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype))

    def _apply(self, z: Tensor, states: int) -> Tensor:
        """``transition`` applied to the rows of ``z`` (``states`` leading state dims)."""
        if self.members is None:
            return z @ self.transition.T
        return torch.einsum("nij,n...j->n...i", self.transition, z)

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (dim,)`` or a batch ``(n, dim)`` -> ``(I - lr H) x`` for each."""
        self._check_batch(x)
        return self._apply(x, x.ndim - 1)

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        _check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        return self.step(x, t), self._apply(v, x.ndim - 1)

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, Any]]:
        """The step and ``loss``, ``grad_norm`` at ``x``: floats for one state, ``(n,)``
        tensors for a batch ``(n, dim)``."""
        self._check_batch(x)
        g = x @ self.hessian
        loss, grad_norm = 0.5 * (x * g).sum(-1), g.norm(dim=-1)
        if x.ndim == 1:
            return self.step(x, t), {"loss": float(loss), "grad_norm": float(grad_norm)}
        return self.step(x, t), {"loss": loss, "grad_norm": grad_norm}

    def loss(self, theta: Tensor, t: int) -> Tensor:
        return 0.5 * theta @ (self.hessian @ theta)

    def _member(self, i: int) -> "QuadraticGD":
        return QuadraticGD(self.hessian, float(self.lr[i]), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"map": "QuadraticGD", "lr": _describe_values(self.lr), "dim": self.dim}


class CircleRotation(MapBase):
    """Rotation of the plane by angle ``2 pi omega``: ``(x, y) -> R (x, y)``.

    For irrational ``omega`` every orbit is quasi-periodic (dense on a circle); both
    exponents are 0.  The default ``omega`` is the golden mean ``(sqrt 5 - 1) / 2``.
    """

    dim = 2

    batch_first = True

    def __init__(self, omega: float | Tensor = (math.sqrt(5.0) - 1.0) / 2.0, dtype: torch.dtype = torch.float64):
        self.dtype = dtype
        self.omega = _values(omega, "omega", "CircleRotation", dtype)
        self.members = _members("CircleRotation", omega=self.omega)
        angle = 2 * math.pi * torch.as_tensor(self.omega, dtype=torch.float64)
        c, s = torch.cos(angle), torch.sin(angle)
        # (2, 2), or (members, 2, 2) for a batch of angles
        self.rotation = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2).to(dtype)

    def initial_state(self, seed: int | None = None) -> Tensor:
        angle = 2 * math.pi * float(torch.rand(1, generator=_rng(seed), dtype=torch.float64))
        return self._initial_batch(torch.tensor([math.cos(angle), math.sin(angle)], dtype=self.dtype))

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (2,)`` or a batch ``(n, 2)`` -> the rotated state(s)."""
        self._check_batch(x)
        if self.members is None:
            return x @ self.rotation.T
        return torch.einsum("nij,nj->ni", self.rotation, x)

    def _member(self, i: int) -> "CircleRotation":
        return CircleRotation(float(self.omega[i]), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"map": "CircleRotation", "omega": _describe_values(self.omega)}


class LorenzRK4(MapBase):
    """The Lorenz flow sampled by one classical Runge-Kutta step of size ``dt``.

    With ``sigma=10, rho=28, beta=8/3`` the flow's exponents are about
    ``(0.9056, 0, -14.5723)`` per unit time; per *step* of the map they are these
    times ``dt`` (up to the O(dt^4) integration error).
    """

    dim = 3
    batch_first = True

    def __init__(
        self,
        sigma: float | Tensor = 10.0,
        rho: float | Tensor = 28.0,
        beta: float | Tensor = 8.0 / 3.0,
        dt: float = 0.01,
        dtype: torch.dtype = torch.float64,
    ):
        if dt <= 0:
            raise ValueError(f"LorenzRK4: expected dt > 0, got dt={dt}")
        self.dt, self.dtype = float(dt), dtype
        self.sigma, self.rho, self.beta = (_values(v, n, "LorenzRK4", dtype)
                                           for v, n in ((sigma, "sigma"), (rho, "rho"), (beta, "beta")))
        self.members = _members("LorenzRK4", sigma=self.sigma, rho=self.rho, beta=self.beta)

    def vector_field(self, x: Tensor) -> Tensor:
        """The Lorenz field at ``x (3,)`` or at each row of a batch ``(n, 3)``."""
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        sigma, rho, beta = (_column(p, x) for p in (self.sigma, self.rho, self.beta))
        return torch.stack((sigma * (v - u), u * (rho - w) - v, u * v - beta * w), dim=-1)

    def initial_state(self, seed: int | None = None) -> Tensor:
        """A point on the attractor's neighbourhood: ``(1, 1, 20)`` plus U(-0.5, 0.5)."""
        jitter = torch.rand(3, generator=_rng(seed), dtype=torch.float64) - 0.5
        return self._initial_batch((torch.tensor([1.0, 1.0, 20.0], dtype=torch.float64) + jitter).to(self.dtype))

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (3,)`` or a batch ``(n, 3)`` -> one RK4 step of each."""
        self._check_batch(x)
        h, f = self.dt, self.vector_field
        k1 = f(x)
        k2 = f(x + 0.5 * h * k1)
        k3 = f(x + 0.5 * h * k2)
        k4 = f(x + h * k3)
        return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)

    def _member(self, i: int) -> "LorenzRK4":
        pick = lambda p: float(p[i]) if isinstance(p, Tensor) else p  # noqa: E731
        return LorenzRK4(pick(self.sigma), pick(self.rho), pick(self.beta), self.dt, dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"map": "LorenzRK4", "sigma": _describe_values(self.sigma), "rho": _describe_values(self.rho),
                "beta": _describe_values(self.beta), "dt": self.dt}
