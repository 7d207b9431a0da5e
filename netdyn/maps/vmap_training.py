"""Ensembles of one training map in one tensor operation: ``VmapTrainingMap``.

:meth:`netdyn.maps.training.TrainingMap.step` takes its gradient with plain reverse-mode
autograd, which ``torch.func.vmap`` cannot trace, so an ensemble of training
states (seeds of one model, a twin pair, perturbed copies) is stepped member by
member.  :class:`VmapTrainingMap` wraps a ``TrainingMap`` whose optimiser is
functional (SGD, Adam, AdamW, RMSprop of :mod:`netdyn.maps.optim`) and writes the same
step with ``torch.func.grad`` and ``torch.func.functional_call``, vectorised over a
leading batch of states by ``torch.func.vmap`` (the map is ``batch_first``).  The
members see the same mini-batch and the same dropout masks (``randomness="same"``:
the noise of step ``t`` is a function of ``(seed, t)``), and the values equal the
wrapped map's to the last bit on the models tested (checked at construction).

When it pays (measured by ``benchmarks/ensemble_cost.py``, one CPU thread, 64
states, a shared machine): the iris MLP 4-16-3 (131 parameters) steps 5.7-8.7x
faster than 64 calls of ``TrainingMap.step`` (a 32-seed twin ``max_lyapunov`` 8-9.5x
faster than 32 runs); the digits MLP 64-32-10 (2 410 parameters, 1 347 samples)
0.8-1.2x, its step being dominated by matrix products that batching cannot share.
Use it for ensembles of small models; large models gain nothing.

Its own batched calls (``step`` on ``(n, dim)``, hence :func:`netdyn.run` and
:func:`netdyn.perturbation_growth`) cover mini-batches and dropout.  Functions that
vectorise through :class:`netdyn.lyapunov.maximal.BatchStepper` (``max_lyapunov``) call
``step`` one state at a time inside their own ``torch.func.vmap``, whose random
operations are refused: there a full-batch, dropout-free model is vectorised and
any other falls back to BatchStepper's loop (same values, no speed-up).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from netdyn.maps.base import check_batch_tangent
from netdyn.maps.training import TrainingMap

__all__ = ["VmapTrainingMap"]


class VmapTrainingMap:
    """A functional :class:`~netdyn.maps.training.TrainingMap` whose ``step`` takes a batch of states.

    Parameters
    ----------
    training_map : TrainingMap
        with a functional optimiser (``training_map.functional_optimizer`` not None).

    Attributes ``dim``, ``param_dim``, ``dtype``, ``initial_state``, ``loss``,
    ``evaluate``, ``param_labels`` and ``describe`` (plus ``"batching": "vmap"``)
    are those of the wrapped map.

    ``step(x, t)``: ``x (dim,)`` or ``(n, dim)``; ``step_with_metrics`` returns
    ``loss``/``grad_norm`` as floats for one state and ``(n,)`` tensors for a batch;
    ``step_jvp`` is the wrapped map's exact tangent (member by member for a batch).

    Raises
    ------
    ValueError
        When the optimiser is not functional, or when the vectorised step fails or
        differs from the wrapped map's on a probe of two states (e.g. BatchNorm
        layers, whose statistics are updated in place).

    Notes
    -----
    It pays for small models (an iris MLP: a twin ensemble of 32 seeds 8-10x faster
    than 32 runs) and not for larger ones (a digits MLP: no gain), so
    :class:`~netdyn.maps.training.TrainingMap` keeps its loop and this wrapper is
    opt-in (``benchmarks/ensemble_cost.py``).

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> tmap = nd.training_map(nd.make_task("iris", hidden=(4,), n_train=30), lr=0.1)
    >>> fast = nd.VmapTrainingMap(tmap)
    >>> xs = torch.stack([tmap.initial_state(s) for s in range(3)])
    >>> bool(torch.allclose(fast.step(xs, 0)[1], tmap.step(xs[1], 0), rtol=1e-12, atol=1e-14))
    True
    """

    batch_first = True

    def __init__(self, training_map: TrainingMap):
        if getattr(training_map, "functional_optimizer", None) is None:
            raise ValueError(
                "VmapTrainingMap: expected a TrainingMap with a functional optimizer (sgd, adam, adamw, rmsprop), "
                f"got {getattr(training_map, 'optimizer_label', type(training_map).__name__)}"
            )
        self.map = training_map
        self.dim, self.param_dim, self.dtype = training_map.dim, training_map.param_dim, training_map.dtype
        self._probe()

    # ------------------------------------------------------------------ the wrapped map's members
    def initial_state(self, seed: int | None = None) -> Tensor:
        """The wrapped map's :meth:`TrainingMap.initial_state`."""
        return self.map.initial_state(seed)

    def loss(self, theta: Tensor, t: int) -> Tensor:
        """The wrapped map's :meth:`TrainingMap.loss` at ``theta`` on the data of step ``t``."""
        return self.map.loss(theta, t)

    def evaluate(self, x: Tensor) -> dict[str, float]:
        """The wrapped map's held-out metrics at ``x``."""
        return self.map.evaluate(x)

    def param_labels(self) -> tuple[list[str], list[str]]:
        """The wrapped map's parameter names and layers."""
        return self.map.param_labels()

    def describe(self) -> dict[str, Any]:
        """The wrapped map's hyper-parameters plus ``batching: vmap``."""
        return {**self.map.describe(), "batching": "vmap"}

    # ------------------------------------------------------------------ the step
    def _one(self, x: Tensor, t: int, indices: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_next, loss, grad)`` of one state on the samples ``indices``, traceable by ``torch.func``."""
        p = self.param_dim
        theta, buffers = x[:p], x[p:]
        grad, loss = torch.func.grad_and_value(lambda th: self.map._loss_flat(th, indices, t))(theta)
        theta_next, buffers_next = self.map._optimizer_at(t).update(theta, buffers, grad, t)
        return torch.cat((theta_next, buffers_next)), loss, grad

    def _all(self, x: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor]:
        indices = self.map.batch_indices(t)
        if x.ndim == 1:
            return self._one(x, t, indices)
        return torch.func.vmap(lambda y: self._one(y, t, indices), randomness="same")(x)

    def _check(self, x: Tensor, caller: str) -> None:
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(f"VmapTrainingMap.{caller}: expected a state ({self.dim},) or states (n, {self.dim}), "
                             f"got {tuple(x.shape)}")

    def step(self, x: Tensor, t: int) -> Tensor:
        """The state(s) after one optimiser step: ``x (dim,)`` or ``(n, dim)``."""
        self._check(x, "step")
        with torch.no_grad():
            return self._all(x, t)[0]

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, Any]]:
        """``(x_next, {"loss", "grad_norm"})`` at ``x``: floats for one state, ``(n,)`` tensors for a batch."""
        self._check(x, "step")
        with torch.no_grad():
            x_next, loss, grad = self._all(x, t)
        grad_norm = torch.linalg.vector_norm(grad, dim=-1)
        if x.ndim == 1:
            return x_next, {"loss": float(loss), "grad_norm": float(grad_norm)}
        return x_next, {"loss": loss, "grad_norm": grad_norm}

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """The wrapped map's exact ``(x_next, J v)``; a batch ``x (n, dim)`` with ``v (n, dim)``
        or ``(n, k, dim)`` is done member by member (its double backward does not vectorise)."""
        check_batch_tangent(self, x, v)
        if x.ndim == 1:
            return self.map.step_jvp(x, v, t)
        pairs = [self.map.step_jvp(x[i], v[i], t) for i in range(x.shape[0])]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def _probe(self) -> None:
        x = torch.stack([self.map.initial_state(None), self.map.initial_state(1)])
        try:
            with torch.no_grad():
                out = self._all(x, 0)[0]
        except Exception as err:  # any failure of vmap: this model cannot be vectorised
            raise ValueError(f"VmapTrainingMap: expected a model whose step torch.func.vmap can trace, got {err}") from err
        ref = torch.stack([self.map.step(row, 0) for row in x])
        if not torch.allclose(out, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()), equal_nan=True):
            raise ValueError("VmapTrainingMap: expected the vectorised step to equal TrainingMap.step on a probe, "
                             f"got a difference of {float((out - ref).abs().max()):.3g}")
