"""Functional optimisers: the update rule as a pure function of a flat state.

Each :class:`FunctionalOptimizer` maps ``(theta, buffers, grad, t) -> (theta', buffers')``
with torch operations only, so a training step built on it can be differentiated
with ``torch.func.jvp`` (exact tangent map) and vectorised with ``torch.func.vmap``.
The formulas follow ``torch.optim`` (PyTorch 2.x, ``maximize=False``,
``differentiable=False``) line for line; the tests check that trajectories agree
with ``torch.optim`` to 1e-10 relative in float64 over 200 steps.

What is linearised
------------------
The dynamical state of a training map is ``(theta, buffers)``: parameters plus
every optimiser buffer that carries memory (momentum, first/second moments).
The step counter is *not* part of the state: it is the map's time ``t`` (number
of steps already taken), so Adam's bias correction uses ``t + 1`` and SGD's first
momentum step (``t == 0``) sets the buffer to the gradient, exactly as
``torch.optim`` does.  Perturbing the state (twin trajectories) therefore never
perturbs the clock.

Departures from ``torch.optim``, all without effect on the values:
square roots of second moments use :func:`safe_sqrt`, whose derivative at 0 is
taken as 0 instead of ``inf`` (a coordinate whose gradient has always been
exactly zero, e.g. a dead ReLU unit, would otherwise turn tangents into NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["FunctionalOptimizer", "SGD", "Adam", "RMSprop", "safe_sqrt", "functional_optimizer", "FUNCTIONAL_OPTIMIZERS"]


def safe_sqrt(v: Tensor) -> Tensor:
    """``sqrt(v)`` for ``v >= 0`` whose derivative at ``v == 0`` is 0, not ``inf``."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), torch.zeros_like(v))


@dataclass(frozen=True)
class FunctionalOptimizer:
    """Base class.  ``n_buffers`` flat buffers of the parameters' size form its state."""

    lr: float
    weight_decay: float = 0.0

    name = "base"
    n_buffers = 0

    def update(self, theta: Tensor, buffers: Tensor, grad: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """One step.  ``theta, grad``: ``(P,)``; ``buffers``: ``(n_buffers * P,)``; ``t``: steps taken."""
        raise NotImplementedError

    def init_buffers(self, theta: Tensor) -> Tensor:
        """The buffers of a fresh optimiser, shape ``(n_buffers * P,)`` (zeros)."""
        return theta.new_zeros(self.n_buffers * theta.numel())

    def buffer_names(self) -> list[str]:
        return []

    def hyperparameters(self) -> dict[str, Any]:
        out = {"optimizer": self.name}
        out.update({k: v for k, v in self.__dict__.items()})
        return out


@dataclass(frozen=True)
class SGD(FunctionalOptimizer):
    r"""Stochastic gradient descent as ``torch.optim.SGD``.

    .. math::
        g = \nabla L(\theta) + \mathrm{wd}\,\theta,\quad
        b_t = \begin{cases} g & t = 0\\ \mu b_{t-1} + (1-\tau) g & t > 0\end{cases},\quad
        \theta \leftarrow \theta - \eta\,(g + \mu b_t \text{ if Nesterov else } b_t)

    Without momentum (``momentum=0``) the state is the parameters alone.
    """

    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False

    name = "sgd"

    def __post_init__(self) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and zero dampening")

    @property
    def n_buffers(self) -> int:  # type: ignore[override]
        return 1 if self.momentum != 0 else 0

    def buffer_names(self) -> list[str]:
        return ["momentum_buffer"] if self.momentum != 0 else []

    def update(self, theta: Tensor, buffers: Tensor, grad: Tensor, t: int) -> tuple[Tensor, Tensor]:
        g = grad + self.weight_decay * theta if self.weight_decay != 0 else grad
        if self.momentum == 0:
            return theta - self.lr * g, buffers
        buf = g if t == 0 else self.momentum * buffers + (1.0 - self.dampening) * g
        direction = g + self.momentum * buf if self.nesterov else buf
        return theta - self.lr * direction, buf


@dataclass(frozen=True)
class Adam(FunctionalOptimizer):
    r"""Adam (``decoupled=False``, as ``torch.optim.Adam``) or AdamW (``decoupled=True``).

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^{t+1}}\,\frac{m}{\sqrt{v}/\sqrt{1-\beta_2^{t+1}} + \epsilon}

    with ``g = grad + wd * theta`` (Adam) or ``theta <- theta (1 - eta wd)`` first (AdamW).
    ``amsgrad=True`` adds the running maximum of ``v`` as a third buffer.
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    decoupled: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return "adamw" if self.decoupled else "adam"

    @property
    def n_buffers(self) -> int:  # type: ignore[override]
        return 3 if self.amsgrad else 2

    def buffer_names(self) -> list[str]:
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if self.amsgrad else [])

    def update(self, theta: Tensor, buffers: Tensor, grad: Tensor, t: int) -> tuple[Tensor, Tensor]:
        beta1, beta2 = self.betas
        parts = buffers.chunk(self.n_buffers)
        m, v = parts[0], parts[1]
        if self.decoupled:
            theta = theta * (1.0 - self.lr * self.weight_decay)
            g = grad
        else:
            g = grad + self.weight_decay * theta if self.weight_decay != 0 else grad
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        step = t + 1
        bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        second = torch.maximum(parts[2], v) if self.amsgrad else v
        denom = safe_sqrt(second) / math.sqrt(bias2) + self.eps
        theta = theta - (self.lr / bias1) * (m / denom)
        new = (m, v, second) if self.amsgrad else (m, v)
        return theta, torch.cat(new)


@dataclass(frozen=True)
class RMSprop(FunctionalOptimizer):
    r"""RMSprop as ``torch.optim.RMSprop``.

    .. math::
        v \leftarrow \alpha v + (1-\alpha) g^2,\quad
        a = \sqrt{v - \bar g^2} + \epsilon \ (\text{centred}) \text{ or } \sqrt{v} + \epsilon,\quad
        \theta \leftarrow \theta - \eta\, g / a \ \text{ or, with momentum, } b \leftarrow \mu b + g/a,\ \theta \leftarrow \theta - \eta b
    """

    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    name = "rmsprop"

    @property
    def n_buffers(self) -> int:  # type: ignore[override]
        return 1 + int(self.momentum > 0) + int(self.centered)

    def buffer_names(self) -> list[str]:
        return ["square_avg"] + (["momentum_buffer"] if self.momentum > 0 else []) + (["grad_avg"] if self.centered else [])

    def update(self, theta: Tensor, buffers: Tensor, grad: Tensor, t: int) -> tuple[Tensor, Tensor]:
        parts = list(buffers.chunk(self.n_buffers))
        g = grad + self.weight_decay * theta if self.weight_decay != 0 else grad
        v = self.alpha * parts[0] + (1.0 - self.alpha) * g * g
        new = [v]
        if self.centered:
            grad_avg = self.alpha * parts[-1] + (1.0 - self.alpha) * g
            avg = safe_sqrt(v - grad_avg * grad_avg) + self.eps
        else:
            avg = safe_sqrt(v) + self.eps
        if self.momentum > 0:
            buf = self.momentum * parts[1] + g / avg
            theta = theta - self.lr * buf
            new.append(buf)
        else:
            theta = theta - self.lr * g / avg
        if self.centered:
            new.append(grad_avg)
        return theta, torch.cat(new)


FUNCTIONAL_OPTIMIZERS: dict[str, type[FunctionalOptimizer]] = {"sgd": SGD, "adam": Adam, "adamw": Adam, "rmsprop": RMSprop}

_TORCH_EQUIVALENTS = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw", torch.optim.RMSprop: "rmsprop"}
_UNSUPPORTED_FLAGS = ("maximize", "differentiable", "capturable", "fused", "foreach")


def functional_optimizer(optimizer: str | type, lr: float, **kwargs: Any) -> FunctionalOptimizer | None:
    """The functional equivalent of ``optimizer`` with these hyper-parameters, or ``None``.

    ``optimizer`` is a name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``) or one of
    the matching ``torch.optim`` classes.  ``None`` means "no exact functional form":
    another class, or a flag such as ``maximize=True`` that we do not mirror.
    Unknown names raise ``ValueError``.
    """
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in FUNCTIONAL_OPTIMIZERS:
            raise ValueError(
                f"functional_optimizer: unknown optimizer {optimizer!r}; expected one of "
                f"{sorted(FUNCTIONAL_OPTIMIZERS)} or a torch.optim.Optimizer class"
            )
    elif optimizer in _TORCH_EQUIVALENTS:
        name = _TORCH_EQUIVALENTS[optimizer]
    else:
        return None
    if any(kwargs.get(flag) for flag in _UNSUPPORTED_FLAGS if flag != "foreach"):
        return None
    kwargs = {k: v for k, v in kwargs.items() if k not in _UNSUPPORTED_FLAGS}
    if name == "adamw":
        kwargs.setdefault("weight_decay", 1e-2)  # torch.optim.AdamW's default
        kwargs["decoupled"] = True
    if "betas" in kwargs:
        kwargs["betas"] = tuple(float(b) for b in kwargs["betas"])
    try:
        return FUNCTIONAL_OPTIMIZERS[name](lr=float(lr), **kwargs)
    except TypeError as err:
        raise ValueError(f"functional_optimizer: bad hyper-parameters for {name}: {err}") from None
