"""Edge of stability for any optimiser: the preconditioner of a step and the threshold it must stay below.

Gradient descent with rate ``eta`` on a quadratic is stable iff every Hessian
eigenvalue lies below ``2 / eta``, and real training drives the top eigenvalue to that
line (Cohen et al. 2021).  Momentum and adaptive methods have their own line, for the
*preconditioned* Hessian ``P^-1 H`` where ``P`` is the diagonal the optimiser divides the
gradient by (Cohen et al. 2022):

==========================================  ============================================
optimiser (torch's update rule)             stable iff ``lambda_max(P^-1 H) <``
==========================================  ============================================
SGD                                         ``2 / eta``
SGD, heavy-ball momentum ``mu``, damp. tau  ``(2 + 2 mu) / (eta (1 - tau))``
SGD, Nesterov momentum ``mu``               ``(2 + 2 mu) / (eta (1 + 2 mu))``
Adam / AdamW (``beta1``)                    ``(2 + 2 beta1) / ((1 - beta1) eta)``  (38/eta at 0.9)
RMSprop (momentum ``mu``, 0 without)        ``(2 + 2 mu) / eta``
==========================================  ============================================

Each line is where the linear iteration of the optimiser on a one-dimensional quadratic
``a theta^2 / 2`` with the preconditioner held fixed gets an eigenvalue -1 (the tests
check every row against the spectral radius of that iteration).  Adam's bias correction
``1 / (1 - beta1^(t+1))`` is left out: it tends to 1 within a few ``1 / (1 - beta1)``
steps.  Weight decay is part of the loss for SGD/Adam/RMSprop (L2: it adds ``wd`` to the
Hessian, which :func:`netdyn.sharpness.hessian.sharpness` of ``map.loss`` does not include) and
a shrink factor for AdamW; neither enters the threshold.

References
----------
Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient descent on neural networks typically
occurs at the edge of stability", ICLR 2021; Cohen, Ghorbani, Krishnan, Agarwal et al.,
"Adaptive gradient methods at the edge of stability", arXiv:2207.14484 (2022).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from netdyn._core.devices import map_device
from netdyn.maps.base import param_dim_of
from netdyn.maps.optim import SGD, Adam, FunctionalOptimizer, RMSprop, safe_sqrt

__all__ = ["stability_threshold", "step_preconditioner"]


def _optimizer(map_: Any, caller: str) -> FunctionalOptimizer | None:
    """The map's functional optimiser, None for a plain-GD map (``lr`` only)."""
    opt = getattr(map_, "functional_optimizer", None)
    if opt is None and getattr(map_, "optimizer_spec", None) is not None:
        raise ValueError(
            f"{caller}: the map drives {getattr(map_, 'optimizer_label', 'its optimiser')} as a black box; "
            "the preconditioner is known only for the functional sgd/adam/adamw/rmsprop"
        )
    return opt


def stability_threshold(map_: Any, *, t: int | None = None) -> float:
    """The largest stable eigenvalue of ``P^-1 H`` for the map's optimiser (module table).

    Parameters
    ----------
    map_
        a :class:`~netdyn.maps.training.TrainingMap` with a functional optimiser, or any map
        with an attribute ``lr`` (plain gradient descent).
    t
        the step whose rate ``eta = map_.lr_at(t)`` counts for a map with a learning-rate
        schedule; default None: the base rate ``lr`` (for a named schedule its peak).

    Returns
    -------
    float, in units of the loss Hessian (1 / parameter^2 times loss); NaN for a map
    without a learning rate.

    Raises
    ------
    ValueError
        for a black-box optimiser or an optimiser without a known threshold.

    Examples
    --------
    >>> import netdyn as nd
    >>> nd.stability_threshold(nd.QuadraticGD([1.0, 2.0], lr=0.25))  # 2 / lr
    8.0
    """
    opt = _optimizer(map_, "stability_threshold")
    scheduled = t is not None and callable(getattr(map_, "lr_at", None))
    if opt is None:
        lr = map_.lr_at(int(t)) if scheduled else getattr(map_, "lr", None)
        return 2.0 / float(lr) if lr else math.nan
    eta = float(map_.lr_at(int(t))) if scheduled else opt.lr
    if isinstance(opt, SGD):
        mu = opt.momentum
        if mu == 0:
            return 2.0 / eta
        if opt.nesterov:
            return (2.0 + 2.0 * mu) / (eta * (1.0 + 2.0 * mu))
        return (2.0 + 2.0 * mu) / (eta * (1.0 - opt.dampening))
    if isinstance(opt, Adam):
        beta1 = opt.betas[0]
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * eta)
    if isinstance(opt, RMSprop):
        return (2.0 + 2.0 * opt.momentum) / eta
    raise ValueError(f"stability_threshold: no threshold known for optimizer {opt.name!r}")


def step_preconditioner(map_: Any, x: Tensor, *, t: int = 0) -> Tensor:
    """The diagonal ``P`` (shape ``(param_dim,)``) that the step from state ``x`` at time ``t`` divides by.

    The step from ``x_t`` first folds the gradient ``g_t`` of step ``t``'s batch into the
    second moment and then divides by it, so ``P`` is that of the step itself:
    Adam ``sqrt(v_{t+1} / (1 - beta2^(t+1))) + eps`` with
    ``v_{t+1} = beta2 v_t + (1 - beta2) g_t^2`` (AMSGrad: the running maximum), RMSprop
    ``sqrt(v_{t+1}) + eps`` (centred: of ``v - gbar^2``); ones for SGD.  ``v_t`` is read
    from the optimiser buffers in ``x``.

    Parameters
    ----------
    map_
        a :class:`~netdyn.maps.training.TrainingMap` (functional optimiser) with ``loss(theta, t)``.
    x
        the full state ``(dim,)``: parameters and optimiser buffers.
    t
        steps already taken (bias correction, mini-batch); default 0.

    Returns
    -------
    Tensor ``(param_dim,)``
        the diagonal of ``P`` (ones for SGD and plain gradient descent).

    Raises
    ------
    ValueError
        for a black-box optimiser, a state that is not the full ``(dim,)`` one, or an
        optimiser without a known preconditioner.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 2.0], lr=0.25)
    >>> nd.step_preconditioner(m, m.initial_state()).tolist()  # plain GD: P = I
    [1.0, 1.0]
    """
    caller = "step_preconditioner"
    opt = _optimizer(map_, caller)
    x = torch.as_tensor(x, device=map_device(map_))
    if x.shape != (map_.dim,):
        raise ValueError(f"{caller}: expected the full state of shape ({map_.dim},) (parameters and optimiser "
                         f"buffers), got {tuple(x.shape)}")
    p = param_dim_of(map_)
    theta = x[:p].detach()
    if opt is None or isinstance(opt, SGD):
        return torch.ones_like(theta)
    with torch.enable_grad():
        leaf = theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(map_.loss(leaf, int(t)), leaf)
    if opt.weight_decay != 0 and not getattr(opt, "decoupled", False):
        grad = grad + opt.weight_decay * theta
    parts = x[p:].detach().chunk(opt.n_buffers)
    if isinstance(opt, Adam):
        beta2 = opt.betas[1]
        second = beta2 * parts[1] + (1.0 - beta2) * grad * grad
        if opt.amsgrad:
            second = torch.maximum(parts[2], second)
        return safe_sqrt(second) / math.sqrt(1.0 - beta2 ** (int(t) + 1)) + opt.eps
    if isinstance(opt, RMSprop):
        square = opt.alpha * parts[0] + (1.0 - opt.alpha) * grad * grad
        if opt.centered:
            mean = opt.alpha * parts[-1] + (1.0 - opt.alpha) * grad
            square = square - mean * mean
        return safe_sqrt(square) + opt.eps
    raise ValueError(f"{caller}: no preconditioner known for optimizer {opt.name!r}")
