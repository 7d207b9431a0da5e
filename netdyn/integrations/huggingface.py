"""Hugging Face ``transformers`` callback: the running Lyapunov exponent in the Trainer's logs.

:class:`LyapunovTrainerCallback` wraps :class:`netdyn.monitor.LyapunovMonitor` for a
``transformers.Trainer``:

* ``on_train_begin`` builds the monitor from the Trainer's model and optimiser (no step
  taken yet) and registers a forward pre-hook on the model that keeps the inputs of the
  first training forward of each step (the Trainer hands callbacks no batch);
* ``on_optimizer_step`` — after ``optimizer.step()``, before ``lr_scheduler.step()`` —
  advances the shadow twin on that batch, with the step's hyper-parameters and the
  Trainer's gradient clipping (``args.max_grad_norm``), so the shadow repeats the
  user's map; dropout masks are those of the user's forward (the monitor replays the
  RNG state captured when that forward started);
* ``on_log`` adds ``lyapunov``, ``lyapunov_stderr`` (per optimiser step) and, when the
  exponent cannot be trusted, ``lyapunov_unresolved`` to the logged values and to the
  Trainer's ``state.log_history``.

The loss of the shadow is the model output's ``.loss`` (the Trainer's default when the
batch has labels).  Training is left bit-identical: the hook only reads the inputs.

Supported set-ups: one process, full precision, no gradient accumulation, no label
smoothing and no custom ``compute_loss``; otherwise the shadow would not repeat the
user's step, and ``on_train_begin`` raises ``ValueError`` (the first three are
checked).  Callbacks that report to TensorBoard or W&B run before user callbacks, so
they see these values from the next log on only; ``state.log_history`` has them at once.

Needs ``transformers`` (``pip install netdyn[huggingface]``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - exercised by a test that hides transformers
    raise ImportError(
        "netdyn.integrations.huggingface needs transformers, which is not installed: pip install netdyn[huggingface]"
    ) from err

from netdyn.monitor import LyapunovMonitor

__all__ = ["LyapunovTrainerCallback"]

Batch = tuple[tuple[Any, ...], dict[str, Any]]


def output_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``model(*args, **kwargs).loss``: the loss a Trainer minimises for a batch with labels.

    Parameters
    ----------
    model : nn.Module
        A model whose output has a ``loss`` (attribute or dict key).
    batch : tuple
        ``(args, kwargs)`` of the forward call.

    Returns
    -------
    Tensor
        The scalar loss.

    Raises
    ------
    ValueError
        When the output has no loss (the batch had no labels).

    Examples
    --------
    >>> import torch
    >>> from netdyn.integrations.huggingface import output_loss
    >>> class Model(torch.nn.Module):
    ...     def forward(self, x, labels):
    ...         return {"loss": ((x - labels) ** 2).mean()}
    >>> float(output_loss(Model(), ((torch.ones(3),), {"labels": torch.zeros(3)})))
    1.0
    """
    args, kwargs = batch
    output = model(*args, **kwargs)
    loss = output["loss"] if isinstance(output, dict) else getattr(output, "loss", None)
    if loss is None:
        raise ValueError("LyapunovTrainerCallback: the model returned no loss; the training batches need labels")
    return loss


class LyapunovTrainerCallback(TrainerCallback):
    """Log the maximal Lyapunov exponent of a ``transformers.Trainer`` run as it trains.

    Parameters
    ----------
    name : str, default "lyapunov"
        key of the running exponent in the logs; its error is ``name + "_stderr"``.
    **monitor_kwargs
        ``d0``, ``renorm_every``, ``every``, ``window``, ``transient``, ``seed``,
        ``params_only``, ``n_blocks``, ``record_to``, ``sharpness_every`` of
        :class:`~netdyn.monitor.LyapunovMonitor` (``every=10`` costs ~1.1x a bare step; with
        ``sharpness_every`` the logs gain ``sharpness`` and ``sharpness_threshold``, e.g. 38/lr for Adam).

    Attributes
    ----------
    monitor : LyapunovMonitor or None
        the monitor of the current run (``monitor.result()`` after training).

    Examples
    --------
    >>> from netdyn.integrations.huggingface import LyapunovTrainerCallback
    >>> callback = LyapunovTrainerCallback(every=10)
    >>> callback.monitor is None  # built at on_train_begin: Trainer(..., callbacks=[callback])
    True
    """

    def __init__(self, *, name: str = "lyapunov", **monitor_kwargs: Any):
        self.name, self.monitor_kwargs = name, monitor_kwargs
        self.monitor: LyapunovMonitor | None = None
        self._model: nn.Module | None = None
        self._hook: Any = None
        self._batch: Batch | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        problems = []
        if args.gradient_accumulation_steps != 1:
            problems.append(f"gradient_accumulation_steps={args.gradient_accumulation_steps}")
        if args.fp16 or args.bf16:
            problems.append("mixed precision")
        if args.world_size != 1:
            problems.append(f"world_size={args.world_size}")
        if getattr(args, "label_smoothing_factor", 0.0):
            problems.append(f"label_smoothing_factor={args.label_smoothing_factor}")
        if model is None or optimizer is None:
            problems.append("no model or optimizer handed to the callback")
        if problems:
            raise ValueError(
                "LyapunovTrainerCallback: expected one process, full precision, no gradient accumulation or label "
                f"smoothing; got {', '.join(problems)}"
            )
        clip = float(args.max_grad_norm) if args.max_grad_norm and args.max_grad_norm > 0 else None
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one
        self.monitor = LyapunovMonitor(model, inner, batch_loss=output_loss, max_grad_norm=clip,
                                       **self.monitor_kwargs)
        self._model, self._batch = model, None
        # registered after the monitor copied the model, so the shadow does not carry it
        self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._batch is None and module.training and torch.is_grad_enabled():
            self._batch = (tuple(args), dict(kwargs))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None or self._batch is None:
            raise RuntimeError("LyapunovTrainerCallback: an optimiser step without a captured training forward")
        batch, self._batch = self._batch, None
        self.monitor.step(batch)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.monitor is None or logs is None or not self.monitor.history:
            return
        values = {self.name: float(self.monitor.exponent), f"{self.name}_stderr": float(self.monitor.stderr)}
        if self.monitor.unresolved:
            values[f"{self.name}_unresolved"] = 1.0
        if self.monitor.sharpness_history:  # sharpness_every=...: the last (preconditioned) sharpness
            _, value, threshold = self.monitor.sharpness_history[-1]
            values.update(sharpness=value, sharpness_threshold=threshold)
        logs.update(values)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.monitor is not None:
            self.monitor.close()
