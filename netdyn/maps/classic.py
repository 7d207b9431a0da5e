"""Reference maps with analytically known dynamics.

Everything in netdyn is a discrete map ``x_{t+1} = F(x_t, t)`` on a flat state
vector (the protocol: :mod:`netdyn.maps.base`).  A chaotic toy map, gradient
descent on a quadratic and Adam training an MLP are the same kind of object, so
each diagnostic is written once and checked on the maps here, whose answers are
known.

Parameter batches: :class:`LogisticMap` (``r``), :class:`HenonMap` (``a``, ``b``),
:class:`QuadraticGD` (``lr``), :class:`CircleRotation` (``omega``) and
:class:`LorenzRK4` (``sigma``, ``rho``, ``beta``) accept tensors; every classic map
is ``batch_first``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from netdyn._core.validation import check_float, check_int
from netdyn.maps.base import MapBase, check_batch_tangent

__all__ = [
    "LogisticMap",
    "HenonMap",
    "QuadraticGD",
    "PotentialGD",
    "CircleRotation",
    "LorenzRK4",
    "LinearMap",
]



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


def _rng(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


class LogisticMap(MapBase):
    """Logistic map ``x -> r x (1 - x)`` on [0, 1].

    Parameters
    ----------
    r : float, default 4.0
        Growth rate, in ``[0, 4]`` (so that [0, 1] maps into itself).
    dtype : torch.dtype, default torch.float64
        Floating-point type of the state, shape ``(1,)``.

    Raises
    ------
    ValueError
        When ``r`` lies outside ``[0, 4]``.

    Notes
    -----
    For ``r = 4`` the Lyapunov exponent is ``ln 2`` (conjugacy to the tent map);
    fixed point ``1 - 1/r`` stable for ``1 < r < 3``, period 2 for
    ``3 < r < 1 + sqrt(6)``, the period-3 window opens at ``1 + sqrt(8)``.

    ``r`` may be a 1-D tensor of values (a parameter batch, e.g. for an orbit
    diagram): the map then steps states ``(len(r), 1)``, member ``i`` with ``r[i]``.


    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.LogisticMap(r=4.0)
    >>> res = nd.max_lyapunov(m, m.initial_state(), 500, transient=20)
    >>> round(float(res["lyapunov"]), 2)  # ln 2
    0.69
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
        many = check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        slope = (_column(self.r, x)[..., None] if self.members else self.r) * (1.0 - 2.0 * x)
        return self.step(x, t), (slope.unsqueeze(-2) if many else slope) * v

    def _member(self, i: int) -> "LogisticMap":
        return LogisticMap(float(self.r[i]), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        """``{"map": "LogisticMap", "r": r}``."""
        return {"map": "LogisticMap", "r": _describe_values(self.r)}


class HenonMap(MapBase):
    """Hénon map ``(x, y) -> (1 - a x^2 + y, b x)``.

    Parameters
    ----------
    a, b : float, default 1.4, 0.3
        The map's parameters (the classic chaotic attractor at the defaults).
    dtype : torch.dtype, default torch.float64
        Floating-point type of the state, shape ``(2,)``.

    Notes
    -----
    ``det J = -b`` everywhere, so the exponents sum to ``ln|b|``.  For the classic
    ``a = 1.4, b = 0.3``: ``lambda_1 ~ 0.41922``, ``lambda_2 = ln 0.3 - lambda_1 ~ -1.62319``.

    References
    ----------
    Hénon, Commun. Math. Phys. 50, 69 (1976); Sprott, *Chaos and Time-Series
    Analysis* (2003), table 5.1.

    ``a`` and/or ``b`` may be 1-D tensors of one length (a parameter batch on states
    ``(members, 2)``).


    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.HenonMap()
    >>> res = nd.lyapunov_spectrum(m, m.initial_state(), 500, transient=20)
    >>> [round(float(v), 1) for v in res["lyapunov"]]
    [0.4, -1.6]
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
        many = check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        slope, b = -2.0 * _column(self.a, x) * x[..., 0], _column(self.b, x)
        if many:
            slope, b = slope.unsqueeze(-1), (b.unsqueeze(-1) if isinstance(b, Tensor) else b)
        return self.step(x, t), torch.stack((slope * v[..., 0] + v[..., 1], b * v[..., 0]), dim=-1)

    def _member(self, i: int) -> "HenonMap":
        pick = lambda p: float(p[i]) if isinstance(p, Tensor) else p  # noqa: E731
        return HenonMap(pick(self.a), pick(self.b), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        """``{"map": "HenonMap", "a": a, "b": b}``."""
        return {"map": "HenonMap", "a": _describe_values(self.a), "b": _describe_values(self.b)}


class LinearMap(MapBase):
    """Linear map ``x -> A x``.

    Parameters
    ----------
    matrix : Tensor or nested list, shape ``(dim, dim)``
        The matrix ``A``.
    dtype : torch.dtype, default torch.float64
        Floating-point type of ``A`` and of the state ``(dim,)``.

    Raises
    ------
    ValueError
        When ``matrix`` is not square.

    Notes
    -----
    The exponents are ``ln|eigenvalues|`` of ``A`` and, for diagonalisable ``A``,
    the covariant Lyapunov vectors are the eigenvectors.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.LinearMap([[1.2, 0.0], [0.0, 0.5]])
    >>> res = nd.lyapunov_spectrum(m, m.initial_state(), 10, transient=20)
    >>> [round(float(v), 4) for v in res["lyapunov"]]  # ln 1.2, ln 0.5
    [0.1823, -0.6931]
    """

    batch_first = True

    def __init__(self, matrix: Tensor | list[list[float]], dtype: torch.dtype = torch.float64):
        a = torch.as_tensor(matrix, dtype=dtype)
        if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"LinearMap: expected a square matrix (or a batch of them), got shape {tuple(a.shape)}")
        # (dim, dim), or (members, dim, dim): a parameter batch, one matrix per member
        self.matrix, self.dim, self.dtype = a, a.shape[-1], dtype
        self.members = None if a.ndim == 2 else a.shape[0]

    def initial_state(self, seed: int | None = None) -> Tensor:
        """Standard normal entries from ``seed`` (default 0), shape ``(dim,)`` (``(members, dim)`` copies for a batch)."""
        return self._initial_batch(torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype))

    def _apply(self, z: Tensor) -> Tensor:
        """``A`` applied to the rows of ``z`` (member ``n``'s matrix to ``z[n]`` for a batch)."""
        if self.members is None:
            return z @ self.matrix.T
        return torch.einsum("nij,n...j->n...i", self.matrix, z)

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x (dim,)`` or a batch ``(n, dim)`` -> ``A x`` for each."""
        self._check_batch(x)
        return self._apply(x)

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """``(A x, A v)``; a batch ``v (k, dim)`` gives ``v A^T``."""
        check_batch_tangent(self, x, v)
        self._check_batch(x, "step_jvp")
        return self.step(x, t), self._apply(v)

    def _member(self, i: int) -> "LinearMap":
        return LinearMap(self.matrix[i], dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        """``{"map": "LinearMap", "dim": dim}``."""
        return {"map": "LinearMap", "dim": self.dim}


class PotentialGD(MapBase):
    """Gradient descent ``x -> x - lr * grad f(x)`` on a potential ``f: R^dim -> R``.

    Parameters
    ----------
    potential : callable
        ``f``, written with differentiable torch operations on a ``(dim,)`` tensor,
        returning a scalar tensor.
    dim : int
        Size of the state (>= 1).
    lr : float
        Learning rate ``lr`` (step size, units of state per unit gradient).
    dtype : torch.dtype, default torch.float64
        Floating-point type of the state.
    name : str, default "PotentialGD"
        The ``map`` entry of :meth:`describe`.

    Raises
    ------
    ValueError
        When ``dim`` is not an int >= 1.

    Notes
    -----
    The gradient comes from ``torch.func.grad`` and the exact tangent map
    ``I - lr * Hess f(x)`` from forward-over-reverse AD.  The double well
    ``f(x) = x^2 / 2 - x^4 / 4`` with ``lr = 2.1`` has the stable 2-cycle
    ``±sqrt((lr - 2) / lr)`` with multiplier ``(2 lr - 5)^2``.

    ``potential`` must be written with differentiable torch operations on a
    ``(dim,)`` tensor; the gradient comes from ``torch.func.grad`` and the exact
    tangent map ``I - lr * Hess f(x)`` from forward-over-reverse AD.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> m = nd.PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=2.1)
    >>> x = torch.tensor([0.3], dtype=torch.float64)
    >>> for t in range(200):
    ...     x = m.step(x, t)
    >>> round(abs(float(x[0])), 4)  # sqrt(0.1 / 2.1)
    0.2182
    """

    def __init__(
        self,
        potential: Callable[[Tensor], Tensor],
        dim: int,
        lr: float,
        dtype: torch.dtype = torch.float64,
        name: str = "PotentialGD",
    ):
        dim = check_int(dim, "dim", "PotentialGD", minimum=1)
        self.potential, self.dim, self.lr, self.dtype, self.name = potential, int(dim), float(lr), dtype, name
        self._grad = torch.func.grad(potential)

    def initial_state(self, seed: int | None = None) -> Tensor:
        """Standard normal entries from ``seed`` (default 0), shape ``(dim,)``."""
        return torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        """``x - lr * grad f(x)``."""
        return x - self.lr * self._grad(x)

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, float]]:
        """The step and ``{"loss": f(x), "grad_norm": |grad f(x)|}`` at ``x``."""
        g = self._grad(x)
        return x - self.lr * g, {"loss": float(self.potential(x)), "grad_norm": float(g.norm())}

    def loss(self, theta: Tensor, t: int) -> Tensor:
        """``f(theta)`` (differentiable; used for Hessians)."""
        return self.potential(theta)

    def describe(self) -> dict[str, Any]:
        """``{"map": name, "lr": lr, "dim": dim}``."""
        return {"map": self.name, "lr": self.lr, "dim": self.dim}


class QuadraticGD(LinearMap):
    """Gradient descent on ``f(x) = ½ xᵀ H x`` with rate ``lr``: the linear map ``x -> (I - lr H) x``.

    Parameters
    ----------
    hessian : Tensor or nested list, shape ``(dim, dim)``, or its diagonal ``(dim,)``
        The symmetric Hessian ``H``.
    lr : float
        Learning rate.
    dtype : torch.dtype, default torch.float64
        Floating-point type of ``H`` and of the state ``(dim,)``.

    Raises
    ------
    ValueError
        When ``hessian`` is not square and symmetric.

    Notes
    -----
    A :class:`LinearMap` with ``matrix = I - lr H``, plus the loss and metrics of
    gradient descent.  The Lyapunov spectrum is exactly ``ln|1 - lr h_i|`` for the
    eigenvalues ``h_i`` of ``H`` — also for ``lr > 2 / h_max``, where the orbit
    diverges.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 3.0], lr=0.5)
    >>> [round(float(v), 4) for v in m.exact_exponents()]  # ln 0.5, ln 0.5
    [-0.6931, -0.6931]
    >>> res = nd.lyapunov_spectrum(m, m.initial_state(), 10)
    >>> [round(float(v), 4) for v in res["lyapunov"]]
    [-0.6931, -0.6931]
    """

    def __init__(
        self, hessian: Tensor | list[list[float]] | list[float], lr: float | Tensor, dtype: torch.dtype = torch.float64
    ):
        h = torch.as_tensor(hessian, dtype=dtype)
        if h.ndim == 1:
            h = torch.diag(h)
        if h.ndim != 2 or h.shape[0] != h.shape[1] or not torch.allclose(h, h.T):
            raise ValueError(f"QuadraticGD: expected a symmetric square Hessian, got shape {tuple(h.shape)}")
        self.hessian, self.lr = h, _values(lr, "lr", "QuadraticGD", dtype)
        eye = torch.eye(h.shape[0], dtype=dtype)
        # one LinearMap: I - lr H, or a batch (members, dim, dim) for a tensor of rates
        super().__init__(eye - self.lr * h if isinstance(self.lr, float) else eye - self.lr[:, None, None] * h, dtype)

    @property
    def eigenvalues(self) -> Tensor:
        """Hessian eigenvalues ``h_i`` in ascending order, shape ``(dim,)``."""
        return torch.linalg.eigvalsh(self.hessian)

    def exact_exponents(self) -> Tensor:
        """``ln|1 - lr h_i|`` sorted in descending order, shape ``(dim,)`` (``(members, dim)`` for a batch)."""
        lr = self.lr if self.members is None else self.lr[:, None]
        return torch.sort(torch.log(torch.abs(1.0 - lr * self.eigenvalues)), descending=True, dim=-1).values

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
        """``½ θᵀ H θ`` (differentiable; used for Hessians)."""
        return 0.5 * theta @ (self.hessian @ theta)

    def _member(self, i: int) -> "QuadraticGD":  # type: ignore[override]
        return QuadraticGD(self.hessian, float(self.lr[i]), dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        """``{"map": "QuadraticGD", "lr": lr, "dim": dim}``."""
        return {"map": "QuadraticGD", "lr": _describe_values(self.lr), "dim": self.dim}


class CircleRotation(MapBase):
    """Rotation of the plane by angle ``2 pi omega``: ``(x, y) -> R (x, y)``.

    Parameters
    ----------
    omega : float, default ``(sqrt 5 - 1) / 2``
        Rotation number (turns per step); the default is the golden mean.
    dtype : torch.dtype, default torch.float64
        Floating-point type of the state, shape ``(2,)``.

    Notes
    -----
    For irrational ``omega`` every orbit is quasi-periodic (dense on a circle);
    both exponents are 0.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.CircleRotation()
    >>> res = nd.max_lyapunov(m, m.initial_state(), 100, method="twin")
    >>> abs(float(res["lyapunov"])) < 1e-6
    True
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
        """A point on the unit circle at a uniform angle from ``seed`` (default 0)."""
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
        """``{"map": "CircleRotation", "omega": omega}``."""
        return {"map": "CircleRotation", "omega": _describe_values(self.omega)}


class LorenzRK4(MapBase):
    """The Lorenz flow sampled by one classical Runge-Kutta step of size ``dt``.

    Parameters
    ----------
    sigma, rho, beta : float, default 10, 28, 8/3
        The Lorenz parameters.
    dt : float, default 0.01
        Step size (time units per map step), > 0.
    dtype : torch.dtype, default torch.float64
        Floating-point type of the state, shape ``(3,)``.

    Raises
    ------
    ValueError
        When ``dt`` is not > 0.

    Notes
    -----
    With ``sigma=10, rho=28, beta=8/3`` the flow's exponents are about
    ``(0.9056, 0, -14.5723)`` per unit time; per *step* of the map they are these
    times ``dt`` (up to the O(dt^4) integration error).

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.LorenzRK4()
    >>> x = m.initial_state()
    >>> for t in range(100):
    ...     x = m.step(x, t)
    >>> tuple(x.shape)
    (3,)
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
        self.dt, self.dtype = check_float(dt, "dt", "LorenzRK4", minimum=0.0, exclusive=True), dtype
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
        """The four parameters under ``sigma``, ``rho``, ``beta``, ``dt``."""
        return {"map": "LorenzRK4", "sigma": _describe_values(self.sigma), "rho": _describe_values(self.rho),
                "beta": _describe_values(self.beta), "dt": self.dt}
