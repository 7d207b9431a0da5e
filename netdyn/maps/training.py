"""Training as a map: model + loss + data + optimiser -> :class:`~netdyn.maps.base.DiscreteMap`.

:class:`TrainingMap` is the adapter between a working PyTorch set-up and every
diagnostic in netdyn.  Its state vector is

    ``x = [theta (param_dim entries) | optimiser buffers]``

where ``theta`` is ``parameters_to_vector(model.parameters())`` (module order,
each tensor row-major) and the buffers are those listed by
:meth:`TrainingMap.state_layout` (momentum, Adam moments, ...).  The step index
``t`` counts optimiser steps already taken; it drives Adam's bias correction and
selects the mini-batch, so the map is a function of ``(x, t)`` alone.

Two kinds of optimiser:

* **functional** (SGD with momentum/dampening/Nesterov/weight decay, Adam, AdamW,
  RMSprop; see :mod:`netdyn.maps.optim`): the whole update is a pure torch function of
  ``x``, so :meth:`TrainingMap.step_jvp` is its exact Jacobian-vector product
  (forward-over-reverse AD, i.e. Hessian-vector products through the loss);
* **generic**: any other ``torch.optim.Optimizer`` class or factory, driven as a
  black box: ``step`` (orbits, twin trajectories, perturbation growth) but no
  ``step_jvp``.

Learning-rate schedules (``schedule=``, see :mod:`netdyn.maps.schedules`) make the rate a
function of ``t``: step ``t`` uses ``lr_at(t)``, the rate ``torch.optim`` + its
``lr_scheduler`` would use at optimiser step ``t``.  The rate does not depend on the
state, so the exact tangents of a functional optimiser are those of a constant-rate
step with rate ``lr_at(t)``; the black-box path sets each parameter group's ``lr``
before its step.

Mini-batches: ``batch_size=None`` is full-batch GD (a deterministic map).  With
``batch_size=k`` the data are reshuffled every epoch by a permutation that is a
function of ``(seed, epoch)`` only, and step ``t`` uses batch ``t mod n_batches`` of
epoch ``t // n_batches`` — a random dynamical system whose noise every twin or
tangent copy shares.

Randomness in the forward (dropout masks, noise layers, anything drawing from
torch's global generator) is made a function of ``(seed, t)`` too: every forward of
step ``t`` runs with torch's default generator seeded by :func:`step_seed` and restored
afterwards (the effect of :func:`torch.random.fork_rng` + ``manual_seed``), so
the orbit, its twin, its tangent (the Hessian-vector products see the gradient's
masks) and every ensemble member see the same noise, and the user's global RNG is
left as it was.

Frozen parameters (``requires_grad=False``) are not part of the state: they keep
the model's values, constants of the map, as ``torch.optim`` leaves them.

Buffers (BatchNorm running statistics, ...) are not part of the state either.
Training steps run the model in train mode on *copies* of the buffers, so
normalisation layers use the batch's statistics and no stored buffer ever
changes.  :meth:`TrainingMap.evaluate` runs the model in eval mode with running
statistics recomputed from the training set at ``theta`` (see its docstring).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.utils import parameters_to_vector

from netdyn._core.validation import check_int
from netdyn.maps.base import check_tangent, require_jacobian
from netdyn.maps.optim import FunctionalOptimizer, functional_optimizer
from netdyn.maps.schedules import Schedule, as_schedule

__all__ = ["TrainingMap", "step_seed"]

LossFn = Callable[[Tensor, Tensor], Tensor]
Initializer = Callable[[nn.Module, torch.Generator], None]


class TrainingMap:
    """A training procedure as a discrete map on ``(parameters, optimiser buffers)``.

    Parameters
    ----------
    model :
        any ``nn.Module``; it is copied, never modified.  Its current trainable
        parameters (``requires_grad=True``) are the default initial state; frozen ones
        (``requires_grad=False``) stay at their values, constants of the map.
    loss_fn :
        ``loss_fn(model_output, targets) -> scalar`` (e.g. ``nn.CrossEntropyLoss()``).
    data :
        ``(inputs, targets)`` tensors of the training set; first dimension = samples.
        Floating inputs and targets must have the parameters' dtype.
    optimizer :
        ``"sgd"`` (default), ``"adam"``, ``"adamw"``, ``"rmsprop"``, a ``torch.optim``
        class, or a factory ``params -> Optimizer``.  torch's SGD/Adam/AdamW/RMSprop
        become functional (exact tangents) unless ``functional=False``.
    lr :
        learning rate (required); with a named ``schedule`` its peak rate.
    batch_size :
        ``None`` for full batch, else the mini-batch size.
    seed :
        seed of the batch schedule and of the forward's random numbers (dropout), and
        the default seed of :meth:`initial_state`.
    test_data :
        optional ``(inputs, targets)`` for :meth:`evaluate`.
    init :
        optional ``init(model, generator)`` that re-draws parameters in place; used by
        ``initial_state(seed)`` (default: each module's ``reset_parameters`` under a
        forked, seeded RNG).
    functional :
        force the generic black-box path with ``False``.
    name, info :
        task name and extra scalar attributes (activation, layer sizes, ...) that
        :meth:`describe` reports.
    schedule :
        learning-rate schedule (:mod:`netdyn.maps.schedules`): ``None`` (constant ``lr``), a
        function ``t -> multiplier`` (``lr(t) = lr * f(t)``, as ``LambdaLR``), a factory
        ``optimizer -> torch.optim.lr_scheduler.LRScheduler`` (replayed exactly), a name
        or a dict ``{"name": "cosine", "warmup": 100, "total": 1000}`` (``lr`` = peak), or a
        :class:`~netdyn.maps.schedules.Schedule`.  Only named schedules are recorded well
        enough by :meth:`describe` to be rebuilt.
    **optimizer_kwargs :
        hyper-parameters passed to the optimiser (momentum, betas, weight_decay, ...).

    Notes
    -----
    How the model is run, so that the map is a function of ``(x, t)`` alone:

    * training forwards (``step``, ``step_jvp``, ``loss``, both optimiser paths) run in
      train mode, with torch's generator seeded by ``step_seed(seed, t)`` (and restored), the
      trainable parameters taken from ``x`` and every buffer *cloned*: BatchNorm
      normalises by the batch's statistics and updates only the clones, so the
      model's stored buffers never change;
    * :meth:`evaluate` runs in eval mode (dropout off) with running statistics of
      normalisation layers recomputed at ``theta`` (cumulative average over the
      training set, see :meth:`evaluate`).

    Devices: the state lives on the device of the model's parameters (attribute
    ``device``; put model and data there, e.g. ``model.to("cuda")``).  Every random draw
    that is not the forward's own (initial parameters for ``initial_state(seed)``, the
    epoch's batch order) is made on the CPU and moved, so every device sees the same
    batches and starts; the step itself reads nothing back to the host
    (:meth:`step_with_metric_tensors` gives the metrics without a sync).

    Raises
    ------
    ValueError
        When ``lr`` is not > 0, the data are empty or mismatched, ``batch_size`` is
        out of range, the model has no trainable parameter, mixes parameter dtypes,
        gets data of another dtype, or fails (or returns a non-scalar loss) on a probe
        forward of two training samples.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> g = torch.Generator().manual_seed(0)
    >>> inputs, targets = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.zeros(16, 1, dtype=torch.float64)
    >>> model = torch.nn.Linear(3, 1, dtype=torch.float64)
    >>> tmap = nd.TrainingMap(model, torch.nn.MSELoss(), (inputs, targets), optimizer="adam", lr=0.01)
    >>> tmap.param_dim, tmap.dim  # 4 weights, plus Adam's two moments of each
    (4, 12)
    >>> x1 = tmap.step(tmap.initial_state(), 0)
    >>> tuple(x1.shape), nd.has_jacobian(tmap)
    ((12,), True)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: tuple[Tensor, Tensor],
        optimizer: str | type | Callable[..., torch.optim.Optimizer] = "sgd",
        lr: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        test_data: tuple[Tensor, Tensor] | None = None,
        init: Initializer | None = None,
        functional: bool = True,
        name: str = "custom",
        info: dict[str, Any] | None = None,
        schedule: Any = None,
        **optimizer_kwargs: Any,
    ):
        if lr is None or not lr > 0:
            raise ValueError(f"TrainingMap: expected a learning rate lr > 0, got {lr!r}")
        inputs, targets = data
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(
                f"TrainingMap: inputs and targets must have the same positive number of samples, "
                f"got {inputs.shape[0]} and {targets.shape[0]}"
            )
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", "TrainingMap", minimum=1, maximum=inputs.shape[0])
        self.model = copy.deepcopy(model).train()
        trainable = _trainable_parameters(self.model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.loss_fn, self.inputs, self.targets = loss_fn, inputs, targets
        self.test_data, self.lr, self.batch_size, self.seed = test_data, float(lr), batch_size, int(seed)
        self.init, self.name, self.info = init, name, dict(info or {})
        self.schedule: Schedule | None = as_schedule(schedule, float(lr))
        self.dtype, self.device = trainable[0][1].dtype, trainable[0][1].device
        self._order: tuple[int, Tensor | None] = (-1, None)  # the batch order of one epoch, cached
        self._check_data("data", inputs, targets)
        if test_data is not None:
            self._check_data("test_data", *test_data)
            if test_data[0].shape[1:] != inputs.shape[1:]:
                raise ValueError(
                    f"TrainingMap: expected test inputs of the training inputs' sample shape {tuple(inputs.shape[1:])}, "
                    f"got {tuple(test_data[0].shape[1:])}"
                )
        self._names = [n for n, _ in trainable]
        self._shapes = [p.shape for _, p in trainable]
        self._sizes = [p.numel() for _, p in trainable]
        self.n_frozen = sum(p.numel() for p in self.model.parameters()) - sum(self._sizes)
        self.param_dim = sum(self._sizes)
        self._rng_devices = sorted({p.device.index or 0 for p in self.model.parameters() if p.device.type == "cuda"})
        self._slots: dict[int, _TensorSlots] = {}  # id(module) -> its tensor slots (self.model, the black box's copy)
        self._probe_forward()
        self.optimizer_spec, self.optimizer_kwargs = optimizer, dict(optimizer_kwargs)
        self.functional_optimizer: FunctionalOptimizer | None = (
            functional_optimizer(optimizer, lr, **optimizer_kwargs) if functional and not callable_factory(optimizer) else None
        )
        if self.functional_optimizer is not None:
            self._buffer_layout = [(b, None) for b in self.functional_optimizer.buffer_names()]
            self.dim = self.param_dim * (1 + self.functional_optimizer.n_buffers)
        else:
            self._black_box = _BlackBoxOptimizer(self, optimizer, lr, optimizer_kwargs)
            self._buffer_layout = self._black_box.layout
            self.dim = self.param_dim + self._black_box.buffer_dim
            self.no_jacobian_reason = (
                f"optimizer {self.optimizer_label} is driven as a black box; exact tangents exist only for "
                "the functional sgd/adam/adamw/rmsprop"
            )
        self.n_batches = 1 if batch_size is None else -(-inputs.shape[0] // batch_size)

    # ------------------------------------------------------------------ protocol
    @property
    def optimizer_label(self) -> str:
        if isinstance(self.optimizer_spec, str):
            return self.optimizer_spec.lower()
        return getattr(self.optimizer_spec, "__name__", type(self.optimizer_spec).__name__)

    def lr_at(self, t: int) -> float:
        """The learning rate of optimiser step ``t`` (``lr`` without a schedule)."""
        return self.lr if self.schedule is None else self.schedule(t)

    def initial_state(self, seed: int | None = None) -> Tensor:
        """The state ``(dim,)``: the model's trainable parameters (``seed=None``) or freshly
        drawn ones (``seed`` given; reproducible, global RNG untouched), fresh optimiser
        buffers.  Frozen parameters are not drawn: they stay constants of the map."""
        model = self.model
        if seed is not None:  # drawn on a CPU copy, so every device starts from the CPU's parameters
            model = copy.deepcopy(self.model).to("cpu")
            generator = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                if self.init is not None:
                    self.init(model, generator)
                else:
                    with torch.random.fork_rng(devices=[]):  # the CPU generator only: the copy is on the CPU
                        torch.default_generator.manual_seed(int(seed))
                        for module in model.modules():
                            if hasattr(module, "reset_parameters"):
                                module.reset_parameters()
        named = dict(model.named_parameters())
        theta = parameters_to_vector([named[n] for n in self._names]).detach().clone().to(self.device)
        return torch.cat((theta, theta.new_zeros(self.dim - self.param_dim)))

    def step(self, x: Tensor, t: int) -> Tensor:
        """The state after one optimiser step from ``x`` at time ``t``.

        The gradient comes from plain reverse-mode autograd (the cheapest way on
        CPU), so ``step`` is not traced by ``torch.func.vmap``: ensembles loop.
        Unlike :meth:`step_with_metrics` it computes no observables (twin and
        ensemble loops call it twice per step or more).
        """
        self._check_state(x, "step")
        if self.functional_optimizer is None:
            return self._black_box.step(x, t)[0]
        return self._update(x, t, self.batch_indices(t))[0]

    def step_with_metrics(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, float]]:
        """``(x_next, {"loss", "grad_norm"})`` with loss and gradient norm *at* ``x``."""
        x_next, metrics = self.step_with_metric_tensors(x, t)
        return x_next, {key: float(value) for key, value in metrics.items()}

    def step_with_metric_tensors(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`step_with_metrics` with the metrics as 0-dim float tensors on the state's
        device: no host sync (``float()`` of a CUDA tensor waits for the device), so a
        recorder can copy them to the host once per block of steps."""
        self._check_state(x, "step")
        if self.functional_optimizer is None:
            return self._black_box.step(x, t)
        x_next, loss, grad = self._update(x, t, self.batch_indices(t))
        return x_next, {"loss": loss, "grad_norm": torch.linalg.vector_norm(grad)}

    def step_jvp(self, x: Tensor, v: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """``(x_next, J(x) v)``, exact; ``v`` of shape ``(dim,)`` or ``(k, dim)``.

        The gradient and the Hessian-vector products ``H v_theta`` come from one
        forward pass and a double backward pass (reverse-over-reverse, which costs
        about two gradients here, less than forward-over-reverse); a batch of ``k``
        tangents reuses that graph.  The optimiser's element-wise update is then
        linearised by its closed-form derivative (:meth:`FunctionalOptimizer.update_jvp`).
        The double backward reuses the forward's graph, so the Hessian-vector products
        see the same dropout masks as the gradient.
        """
        if self.functional_optimizer is None:
            require_jacobian(self, "TrainingMap.step_jvp")
        self._check_state(x, "step_jvp")
        check_tangent(self, x, v)
        tangents = v.reshape(-1, self.dim)
        theta, buffers = x[: self.param_dim], x[self.param_dim :]
        grad, hvps = self._grad_and_hvps(theta, tangents[:, : self.param_dim], self.batch_indices(t), t)

        d_theta, d_buffers = tangents[:, : self.param_dim], tangents[:, self.param_dim :]
        if v.ndim == 1:
            d_theta, d_buffers, hvps = d_theta[0], d_buffers[0], hvps[0]
        return self._optimizer_at(t).update_jvp(theta, buffers, grad, t, d_theta, d_buffers, hvps)

    def loss(self, theta: Tensor, t: int) -> Tensor:
        """Differentiable training loss at parameters ``theta`` ``(param_dim,)`` on step ``t``'s
        batch, with step ``t``'s random numbers (dropout masks)."""
        return self._loss_flat(theta, self.batch_indices(t), t)

    def evaluate(self, x: Tensor) -> dict[str, float]:
        """Loss and accuracy (classification: arg-max) on the test data at state ``x``.

        The model runs in eval mode (dropout off, normalisation layers use running
        statistics).  The running statistics are not the stored buffers (training never
        updates them, see the class notes) but are recomputed at ``theta = x[:param_dim]``,
        as ``torch.optim.swa_utils.update_bn`` does: reset, then one pass over the
        training set in order (batches of ``batch_size``, or all of it) with momentum
        ``None`` (cumulative average of the batches' means and unbiased variances),
        normalisation layers in train mode and every other module in eval mode (no
        dropout, no random numbers).  So ``evaluate`` is a function of ``x`` alone.
        """
        if self.test_data is None:
            raise ValueError("TrainingMap.evaluate: this map was built without test_data")
        inputs, targets = self.test_data
        params = self._unflatten(x[: self.param_dim])
        with torch.no_grad():
            buffers = self._recomputed_buffers(params)
            with _modes(self.model, lambda module: False):
                out = torch.func.functional_call(self.model, (params, buffers), (inputs,))
            metrics = {"test_loss": float(self.loss_fn(out, targets))}
            if out.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point():
                metrics["test_accuracy"] = float((out.argmax(dim=1) == targets).double().mean())
        return metrics

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild the map: task, optimiser and hyper-parameters."""
        out: dict[str, Any] = {
            "map": "TrainingMap",
            "task": self.name,
            "optimizer": self.optimizer_label,
            "lr": self.lr,
            "batch_size": -1 if self.batch_size is None else self.batch_size,
            "batch_seed": self.seed,
            "functional": int(self.functional_optimizer is not None),
            "param_dim": self.param_dim,
            "n_frozen": self.n_frozen,
            "dtype": str(self.dtype).replace("torch.", ""),
            "loss_fn": type(self.loss_fn).__name__,
            "model": repr(self.model),
        }
        out.update({f"optim_{k}": v for k, v in self.optimizer_kwargs.items()})
        out.update(Schedule(None, self.lr).describe() if self.schedule is None else self.schedule.describe())
        out.update(self.info)
        return out

    def param_labels(self) -> tuple[list[str], list[str]]:
        """``(names, layers)``: e.g. ``"0.weight[3,1]"`` and ``"0.weight"`` for each parameter entry."""
        names: list[str] = []
        layers: list[str] = []
        for name, shape in zip(self._names, self._shapes):
            for index in _row_major_indices(shape):
                names.append(f"{name}[{','.join(map(str, index))}]" if index else name)
                layers.append(name)
        return names, layers

    def state_layout(self) -> list[tuple[str, int, int]]:
        """``(label, start, stop)`` of each block of the state vector."""
        blocks = [("params", 0, self.param_dim)]
        start = self.param_dim
        for label, size in self._buffer_layout:
            width = self.param_dim if size is None else size
            blocks.append((label, start, start + width))
            start += width
        return blocks

    def batch_indices(self, t: int) -> Tensor | None:
        """Sample indices of step ``t``'s batch (``None`` = all), a function of ``(seed, t)``."""
        if self.batch_size is None:
            return None
        epoch, position = divmod(int(t), self.n_batches)
        if self._order[0] != epoch:  # drawn on the CPU (same batches on every device), moved once per epoch
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(self.inputs.shape[0], generator=generator).to(self.inputs.device))
        return self._order[1][position * self.batch_size : (position + 1) * self.batch_size]

    # ------------------------------------------------------------------ internals
    def _unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        return {n: p.view(s) for n, p, s in zip(self._names, theta.split(self._sizes), self._shapes)}

    def _batch(self, indices: Tensor | None) -> tuple[Tensor, Tensor]:
        return (self.inputs, self.targets) if indices is None else (self.inputs[indices], self.targets[indices])

    def _forward(self, module: nn.Module, params: dict[str, Tensor], inputs: Tensor, t: int) -> Tensor:
        """``module(inputs)`` in its current mode with ``params`` (others: the module's own),
        *copies* of its buffers (BatchNorm updates those, never the stored ones) and the
        random numbers of step ``t`` (global RNG restored afterwards).

        What ``torch.func.functional_call`` does, through the module's tensor slots found
        once (:class:`_TensorSlots`): functional_call walks the module tree on every call,
        ~70 us of a ~1 ms digits step, paid twice per twin step."""
        slots = self._slots.get(id(module))
        if slots is None or slots.module is not module:  # (a copied or unpickled map has new modules)
            slots = self._slots[id(module)] = _TensorSlots(module)
        with _seeded_rng(step_seed(self.seed, t), self._rng_devices):
            return slots.call(module, params, inputs)

    def _loss_flat(self, theta: Tensor, indices: Tensor | None, t: int) -> Tensor:
        inputs, targets = self._batch(indices)
        return self.loss_fn(self._forward(self.model, self._unflatten(theta), inputs, t), targets)

    def _recomputed_buffers(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """The model's buffers with running statistics re-estimated at ``params`` (see :meth:`evaluate`)."""
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        norms = [m for m in self.model.modules() if isinstance(m, _NormBase) and m.track_running_stats]
        if not norms:
            return buffers
        prefix = {id(m): n for n, m in self.model.named_modules()}
        for module in norms:  # the values of _NormBase.reset_running_stats, on the copies
            for key, fill in (("running_mean", 0), ("running_var", 1), ("num_batches_tracked", 0)):
                full = f"{prefix[id(module)]}.{key}" if prefix[id(module)] else key
                buffers[full] = torch.full_like(self.model.get_buffer(full), fill)
        momenta = [m.momentum for m in norms]
        step = self.inputs.shape[0] if self.batch_size is None else self.batch_size
        try:
            for module in norms:
                module.momentum = None
            with _modes(self.model, lambda module: isinstance(module, _NormBase)):
                for start in range(0, self.inputs.shape[0], step):
                    torch.func.functional_call(self.model, (params, buffers), (self.inputs[start : start + step],))
        finally:
            for module, momentum in zip(norms, momenta):
                module.momentum = momentum
        return buffers

    def _check_data(self, which: str, inputs: Tensor, targets: Tensor) -> None:
        for label, tensor in (("inputs", inputs), ("targets", targets)):
            if tensor.is_floating_point() and tensor.dtype != self.dtype:
                raise ValueError(
                    f"TrainingMap: expected floating {which} {label} of the parameters' dtype {self.dtype}, "
                    f"got {tensor.dtype} (convert with .to({self.dtype}))"
                )

    def _probe_forward(self) -> None:
        """One forward and loss on two training samples: a clear error now, not a raw one later."""
        inputs, targets = self.inputs[:2], self.targets[:2]
        try:
            with torch.no_grad():
                loss = self.loss_fn(self._forward(self.model, {}, inputs, 0), targets)
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            raise ValueError(
                f"TrainingMap: expected a model and loss_fn that accept the data, got an error on two training "
                f"samples (inputs {tuple(inputs.shape)} {inputs.dtype}, targets {tuple(targets.shape)} "
                f"{targets.dtype}): {err}"
            ) from err
        if not torch.is_tensor(loss) or loss.numel() != 1 or not loss.is_floating_point():
            shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
            raise ValueError(
                f"TrainingMap: expected loss_fn to return a floating scalar (e.g. reduction='mean'), got {shape}"
            )

    def _grad_and_hvps(
        self, theta: Tensor, directions: Tensor, indices: Tensor | None, t: int
    ) -> tuple[Tensor, Tensor]:
        """Gradient ``(P,)`` and Hessian-vector products ``(k, P)`` of the loss at ``theta``."""
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._loss_flat(leaf, indices, t), leaf, create_graph=True)
            if not grad.requires_grad:  # loss linear in theta: zero Hessian
                return grad.detach(), torch.zeros_like(directions)
            hvps = [
                torch.autograd.grad(grad, leaf, u, retain_graph=i < len(directions) - 1, allow_unused=True)[0]
                for i, u in enumerate(directions)
            ]
        hvps = [torch.zeros_like(theta) if h is None else h for h in hvps]
        return grad.detach(), torch.stack(hvps)

    def _update(self, x: Tensor, t: int, indices: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_next, loss at x, gradient at x)``."""
        theta, buffers = x[: self.param_dim], x[self.param_dim :]
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            loss = self._loss_flat(leaf, indices, t)
            (grad,) = torch.autograd.grad(loss, leaf)
        theta_next, buffers_next = self._optimizer_at(t).update(theta, buffers, grad, t)
        return torch.cat((theta_next, buffers_next)), loss.detach(), grad

    def _optimizer_at(self, t: int) -> FunctionalOptimizer:
        """The functional optimiser with step ``t``'s rate."""
        if self.schedule is None:
            return self.functional_optimizer
        return dataclasses.replace(self.functional_optimizer, lr=self.schedule(t))

    def _check_state(self, x: Tensor, caller: str) -> None:
        if x.shape != (self.dim,):
            raise ValueError(f"TrainingMap.{caller}: expected state of shape ({self.dim},), got {tuple(x.shape)}")


_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def step_seed(seed: int, t: int) -> int:
    """The seed of step ``t``'s random numbers (dropout masks ...): SplitMix64 of ``(seed, t)``.

    A fixed integer hash (not Python's ``hash``), so it is the same in every process;
    63 bits, a valid ``torch.manual_seed``.  Independent of the batch schedule's seeds.

    Parameters
    ----------
    seed : int
        The map's seed.
    t : int
        Step index.

    Returns
    -------
    int
        A seed in ``[0, 2^63)``.

    Examples
    --------
    >>> from netdyn.maps.training import step_seed
    >>> step_seed(0, 5) == step_seed(0, 5) != step_seed(0, 6)
    True
    """
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ (int(t) & _MASK64)) >> 1


def _trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` with ``requires_grad``; ``ValueError`` for none or mixed dtypes."""
    named = list(model.named_parameters())
    if not named:
        raise ValueError(f"TrainingMap: expected a model with parameters, got {type(model).__name__} with none")
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if not trainable:
        raise ValueError(
            f"TrainingMap: expected at least one trainable parameter (requires_grad=True), got all {len(named)} frozen"
        )
    dtypes = sorted({str(p.dtype) for _, p in named})
    if len(dtypes) > 1:
        raise ValueError(f"TrainingMap: expected parameters of one dtype, got a mix of {dtypes} (use model.to(dtype))")
    return trainable


@contextlib.contextmanager
def _seeded_rng(seed: int, cuda_devices: list[int]) -> Iterator[None]:
    """Seed torch's default CPU generator (and those of ``cuda_devices``) inside, restore them after.

    :func:`torch.random.fork_rng` + :func:`torch.manual_seed` does the same, but
    ``torch.manual_seed`` visits every backend and costs ~150 us per call here, against
    ~3 us for this (a step of the digits MLP costs ~1.4 ms).
    """
    generators = [torch.default_generator] + [torch.cuda.default_generators[i] for i in cuda_devices]
    saved = [g.get_state() for g in generators]
    try:
        for generator in generators:
            generator.manual_seed(seed)
        yield
    finally:
        for generator, state in zip(generators, saved):
            generator.set_state(state)


class _TensorSlots:
    """Where a module's named parameters and buffers live, found once: each name ->
    every ``(owner module, attribute)`` holding that tensor (tied aliases included).

    :meth:`call` is ``torch.func.functional_call(module, (params, cloned buffers), (inputs,))``
    without re-walking the module tree: the given tensors are installed in their
    owners' ``_parameters`` / ``_buffers`` tables for the one call and the originals put
    back after, as functional_call's swap does (tied aliases all receive the tensor).
    The module tree must not change after construction (a TrainingMap owns its copies).
    """

    def __init__(self, module: nn.Module):
        self.module = module
        found: dict[int, list[tuple[str, nn.Module, str, str]]] = {}
        for kind, named in (("_parameters", module.named_parameters(remove_duplicate=False)),
                            ("_buffers", module.named_buffers(remove_duplicate=False))):
            for name, tensor in named:
                owner_name, _, attr = name.rpartition(".")
                found.setdefault(id(tensor), []).append((kind, module.get_submodule(owner_name), attr, name))
        self.aliases: dict[str, list[tuple[str, nn.Module, str]]] = {}
        for entries in found.values():
            places = [(kind, owner, attr) for kind, owner, attr, _ in entries]
            for *_, name in entries:
                self.aliases[name] = places
        self.buffers = [name for name, _ in module.named_buffers()]

    def call(self, module: nn.Module, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """``module(inputs)`` with ``params`` (names of ``named_parameters``) and clones of the buffers."""
        if any(name not in self.aliases for name in params):  # not a slot of the module: torch's own path
            buffers = {n: b.clone() for n, b in module.named_buffers()}
            return torch.func.functional_call(module, (params, buffers), (inputs,))
        saved: list[tuple[dict[str, Any], str, Any]] = []
        try:
            for name in self.buffers:
                kind, owner, attr = self.aliases[name][0]
                clone = getattr(owner, kind)[attr].clone()
                for kind, owner, attr in self.aliases[name]:
                    table = getattr(owner, kind)
                    saved.append((table, attr, table[attr]))
                    table[attr] = clone
            for name, tensor in params.items():
                for kind, owner, attr in self.aliases[name]:
                    table = getattr(owner, kind)
                    saved.append((table, attr, table[attr]))
                    table[attr] = tensor
            return module(inputs)
        finally:
            for table, attr, original in reversed(saved):
                table[attr] = original


@contextlib.contextmanager
def _modes(model: nn.Module, training: Callable[[nn.Module], bool]) -> Iterator[None]:
    """Set each module's ``training`` flag to ``training(module)``; restore the flags on exit."""
    modules = list(model.modules())
    saved = [m.training for m in modules]
    try:
        for module in modules:
            module.training = training(module)
        yield
    finally:
        for module, flag in zip(modules, saved):
            module.training = flag


def callable_factory(optimizer: Any) -> bool:
    """True for a factory function (not a class, not a name)."""
    return callable(optimizer) and not isinstance(optimizer, (str, type))


def _row_major_indices(shape: torch.Size) -> list[tuple[int, ...]]:
    if len(shape) == 0:
        return [()]
    return [tuple(int(i) for i in idx) for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape))]


class _BlackBoxOptimizer:
    """Drives a real ``torch.optim.Optimizer`` as a map on ``(theta, buffers)``.

    The buffer layout (every floating tensor in ``optimizer.state`` except the step
    counter) is discovered by one probe step on a throw-away copy.  At ``t == 0`` the
    optimiser starts from its state at construction (fresh), ignoring the buffer part
    of ``x``; afterwards the buffers are loaded from ``x`` and the counter from ``t``.
    """

    def __init__(self, owner: TrainingMap, optimizer: Any, lr: float, kwargs: dict[str, Any]):
        self.owner = owner
        self.model = copy.deepcopy(owner.model)
        named = dict(self.model.named_parameters())
        self.params = [named[n] for n in owner._names]  # trainable only: frozen ones stay constants
        for p in self.params:
            p.requires_grad_(True)
        if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer(self.params, lr=lr, **kwargs)
        elif callable_factory(optimizer):
            self.optimizer = optimizer(self.params)
        elif isinstance(optimizer, str):
            raise ValueError(f"TrainingMap: optimizer {optimizer!r} has no black-box form; pass a torch.optim class")
        else:
            raise ValueError(
                f"TrainingMap: expected optimizer as a name, a torch.optim.Optimizer class or a factory, got {optimizer!r}"
            )
        self.fresh_state = copy.deepcopy(self.optimizer.state_dict())
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.layout, self.keys, self.step_template = self._probe()
        self.buffer_dim = sum(size for _, size in self.layout)

    def _probe(self) -> tuple[list[tuple[str, int]], list[tuple[int, str, torch.Size]], dict[int, Tensor]]:
        self._load_params(parameters_to_vector(self.params).detach())
        self._gradient(None, 0)
        self.optimizer.step()
        layout, keys, steps = [], [], {}
        for i, p in enumerate(self.params):
            for key, value in sorted(self.optimizer.state[p].items()):
                if not torch.is_tensor(value):
                    continue
                if key == "step":
                    steps[i] = value
                elif value.is_floating_point():
                    layout.append((f"{self.owner._names[i]}.{key}", value.numel()))
                    keys.append((i, key, value.shape))
        self.optimizer.load_state_dict(copy.deepcopy(self.fresh_state))
        return layout, keys, steps

    def _set_rates(self, t: int) -> None:
        """Each group's ``lr`` at step ``t``: the schedule's rate for a group built with the map's
        ``lr``, else the group's own rate scaled by ``lr_at(t) / lr``."""
        if self.owner.schedule is None:
            return
        rate = self.owner.lr_at(t)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = rate if base == self.owner.lr else base * (rate / self.owner.lr)

    def _load_params(self, theta: Tensor) -> None:
        with torch.no_grad():
            for p, chunk in zip(self.params, theta.split(self.owner._sizes)):
                p.copy_(chunk.view_as(p))

    def _gradient(self, indices: Tensor | None, t: int) -> Tensor:
        owner = self.owner
        inputs, targets = owner._batch(indices)
        self.optimizer.zero_grad(set_to_none=False)
        with torch.enable_grad():
            loss = owner.loss_fn(owner._forward(self.model, {}, inputs, t), targets)
            loss.backward()
        return loss.detach()

    def step(self, x: Tensor, t: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``(x_next, {"loss", "grad_norm"})``, the metrics as 0-dim tensors on the state's device."""
        theta, buffers = x[: self.owner.param_dim], x[self.owner.param_dim :]
        if t == 0:
            self.optimizer.load_state_dict(copy.deepcopy(self.fresh_state))
        else:
            for (i, key, shape), chunk in zip(self.keys, buffers.split([s for _, s in self.layout])):
                self.optimizer.state[self.params[i]][key] = chunk.clone().view(shape)
            for i, template in self.step_template.items():
                self.optimizer.state[self.params[i]]["step"] = torch.full_like(template, float(t))
        self._set_rates(t)
        self._load_params(theta)
        loss = self._gradient(self.owner.batch_indices(t), t)
        grad_norm = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in self.params]))
        self.optimizer.step()
        state = [parameters_to_vector(self.params).detach().clone()]
        state += [self.optimizer.state[self.params[i]][key].detach().reshape(-1).clone() for i, key, _ in self.keys]
        return torch.cat(state), {"loss": loss, "grad_norm": grad_norm}
