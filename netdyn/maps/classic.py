"""Reference maps with analytically known dynamics.

Everything in netdyn is a discrete map ``x_{t+1} = F(x_t, t)`` on a flat state
vector (the protocol: :mod:`netdyn.maps.base`).  A chaotic toy map, gradient
descent on a quadratic and Adam training an MLP are the same kind of object, so
each diagnostic is written once and checked on the maps here, whose answers are
known.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from netdyn.maps.base import MapBase, check_tangent

__all__ = [
    "LogisticMap",
    "HenonMap",
    "QuadraticGD",
    "PotentialGD",
    "CircleRotation",
    "LorenzRK4",
    "LinearMap",
]


def _rng(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g

class LogisticMap(MapBase):
    """Logistic map ``x -> r x (1 - x)`` on [0, 1].

    Known results: for ``r = 4`` the Lyapunov exponent is ``ln 2`` (conjugacy to the
    tent map); fixed point ``1 - 1/r`` stable for ``1 < r < 3``, period 2 for
    ``3 < r < 1 + sqrt(6)``, the period-3 window opens at ``1 + sqrt(8)``.
    """

    dim = 1

    def __init__(self, r: float = 4.0, dtype: torch.dtype = torch.float64):
        if not 0.0 <= r <= 4.0:
            raise ValueError(f"LogisticMap: expected 0 <= r <= 4, got r={r}")
        self.r = float(r)
        self.dtype = dtype

    def initial_state(self, seed: int | None = None) -> Tensor:
        """Uniform in (0.1, 0.9), from ``seed`` (default 0)."""
        return (0.1 + 0.8 * torch.rand(1, generator=_rng(seed), dtype=torch.float64)).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return self.r * x * (1.0 - x)

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Hand-written tangent ``r (1 - 2x) v`` (40x cheaper than generic forward AD)."""
        check_tangent(self, x, v)
        return self.step(x, t), self.r * (1.0 - 2.0 * x) * v

    def describe(self) -> dict[str, Any]:
        return {"map": "LogisticMap", "r": self.r}


class HenonMap(MapBase):
    """Hénon map ``(x, y) -> (1 - a x^2 + y, b x)``.

    ``det J = -b`` everywhere, so the exponents sum to ``ln|b|``.  For the classic
    ``a = 1.4, b = 0.3``: ``lambda_1 ~ 0.41922``, ``lambda_2 = ln 0.3 - lambda_1 ~ -1.62319``.
    """

    dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3, dtype: torch.dtype = torch.float64):
        self.a, self.b, self.dtype = float(a), float(b), dtype

    def initial_state(self, seed: int | None = None) -> Tensor:
        """A point near the attractor: ``(0.1, 0.1)`` plus U(-0.05, 0.05) from ``seed``."""
        jitter = 0.1 * (torch.rand(2, generator=_rng(seed), dtype=torch.float64) - 0.5)
        return (torch.tensor([0.1, 0.1], dtype=torch.float64) + jitter).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return torch.stack((1.0 - self.a * x[0] ** 2 + x[1], self.b * x[0]))

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Hand-written tangent ``J = [[-2 a x, 1], [b, 0]]`` applied to ``v`` (or each row)."""
        check_tangent(self, x, v)
        jacobian = torch.stack((torch.stack((-2.0 * self.a * x[0], torch.ones_like(x[0]))),
                                torch.stack((torch.full_like(x[0], self.b), torch.zeros_like(x[0])))))
        return self.step(x, t), v @ jacobian.T

    def describe(self) -> dict[str, Any]:
        return {"map": "HenonMap", "a": self.a, "b": self.b}


class LinearMap(MapBase):
    """Linear map ``x -> A x``; its exponents are ``ln|eigenvalues|`` of ``A`` and,
    for diagonalisable ``A``, its covariant Lyapunov vectors are the eigenvectors."""

    def __init__(self, matrix: Tensor | list[list[float]], dtype: torch.dtype = torch.float64):
        a = torch.as_tensor(matrix, dtype=dtype)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"LinearMap: expected a square matrix, got shape {tuple(a.shape)}")
        self.matrix, self.dim, self.dtype = a, a.shape[0], dtype

    def initial_state(self, seed: int | None = None) -> Tensor:
        return torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return self.matrix @ x

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        check_tangent(self, x, v)
        return self.matrix @ x, v @ self.matrix.T

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

    def __init__(self, hessian: Tensor | list[list[float]] | list[float], lr: float, dtype: torch.dtype = torch.float64):
        h = torch.as_tensor(hessian, dtype=dtype)
        if h.ndim == 1:
            h = torch.diag(h)
        if h.ndim != 2 or h.shape[0] != h.shape[1] or not torch.allclose(h, h.T):
            raise ValueError(f"QuadraticGD: expected a symmetric square Hessian, got shape {tuple(h.shape)}")
        self.hessian, self.lr, self.dim, self.dtype = h, float(lr), h.shape[0], dtype
        self.transition = torch.eye(self.dim, dtype=dtype) - self.lr * h

    @property
    def eigenvalues(self) -> Tensor:
        """Hessian eigenvalues ``h_i`` in ascending order, shape ``(dim,)``."""
        return torch.linalg.eigvalsh(self.hessian)

    def exact_exponents(self) -> Tensor:
        """``ln|1 - lr h_i|`` sorted in descending order, shape ``(dim,)``."""
        return torch.sort(torch.log(torch.abs(1.0 - self.lr * self.eigenvalues)), descending=True).values

    def initial_state(self, seed: int | None = None) -> Tensor:
        return torch.randn(self.dim, generator=_rng(seed), dtype=torch.float64).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return self.transition @ x

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        check_tangent(self, x, v)
        return self.transition @ x, v @ self.transition.T

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, float]]:
        g = self.hessian @ x
        return x - self.lr * g, {"loss": float(0.5 * x @ g), "grad_norm": float(g.norm())}

    def loss(self, theta: Tensor, t: int) -> Tensor:
        return 0.5 * theta @ (self.hessian @ theta)

    def describe(self) -> dict[str, Any]:
        return {"map": "QuadraticGD", "lr": self.lr, "dim": self.dim}


class CircleRotation(MapBase):
    """Rotation of the plane by angle ``2 pi omega``: ``(x, y) -> R (x, y)``.

    For irrational ``omega`` every orbit is quasi-periodic (dense on a circle); both
    exponents are 0.  The default ``omega`` is the golden mean ``(sqrt 5 - 1) / 2``.
    """

    dim = 2

    def __init__(self, omega: float = (math.sqrt(5.0) - 1.0) / 2.0, dtype: torch.dtype = torch.float64):
        self.omega, self.dtype = float(omega), dtype
        c, s = math.cos(2 * math.pi * omega), math.sin(2 * math.pi * omega)
        self.rotation = torch.tensor([[c, -s], [s, c]], dtype=dtype)

    def initial_state(self, seed: int | None = None) -> Tensor:
        angle = 2 * math.pi * float(torch.rand(1, generator=_rng(seed), dtype=torch.float64))
        return torch.tensor([math.cos(angle), math.sin(angle)], dtype=self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        return self.rotation @ x

    def describe(self) -> dict[str, Any]:
        return {"map": "CircleRotation", "omega": self.omega}


class LorenzRK4(MapBase):
    """The Lorenz flow sampled by one classical Runge-Kutta step of size ``dt``.

    With ``sigma=10, rho=28, beta=8/3`` the flow's exponents are about
    ``(0.9056, 0, -14.5723)`` per unit time; per *step* of the map they are these
    times ``dt`` (up to the O(dt^4) integration error).
    """

    dim = 3

    def __init__(
        self,
        sigma: float = 10.0,
        rho: float = 28.0,
        beta: float = 8.0 / 3.0,
        dt: float = 0.01,
        dtype: torch.dtype = torch.float64,
    ):
        if dt <= 0:
            raise ValueError(f"LorenzRK4: expected dt > 0, got dt={dt}")
        self.sigma, self.rho, self.beta, self.dt, self.dtype = float(sigma), float(rho), float(beta), float(dt), dtype

    def vector_field(self, x: Tensor) -> Tensor:
        return torch.stack(
            (
                self.sigma * (x[1] - x[0]),
                x[0] * (self.rho - x[2]) - x[1],
                x[0] * x[1] - self.beta * x[2],
            )
        )

    def initial_state(self, seed: int | None = None) -> Tensor:
        """A point on the attractor's neighbourhood: ``(1, 1, 20)`` plus U(-0.5, 0.5)."""
        jitter = torch.rand(3, generator=_rng(seed), dtype=torch.float64) - 0.5
        return (torch.tensor([1.0, 1.0, 20.0], dtype=torch.float64) + jitter).to(self.dtype)

    def step(self, x: Tensor, t: int) -> Tensor:
        h, f = self.dt, self.vector_field
        k1 = f(x)
        k2 = f(x + 0.5 * h * k1)
        k3 = f(x + 0.5 * h * k2)
        k4 = f(x + h * k3)
        return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)

    def describe(self) -> dict[str, Any]:
        return {"map": "LorenzRK4", "sigma": self.sigma, "rho": self.rho, "beta": self.beta, "dt": self.dt}
