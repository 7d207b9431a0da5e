"""PyTorch Lightning callback: the running Lyapunov exponent in the trainer's logger.

:class:`LyapunovCallback` wraps :class:`netdyn.monitor.LyapunovMonitor`: it builds
the monitor at ``on_train_start`` (model and optimiser exist, no step taken yet),
freezes the optimiser's hyper-parameters at ``on_train_batch_start`` (Lightning
steps ``interval="step"`` schedulers *before* ``on_train_batch_end``) and advances
the twin at ``on_train_batch_end`` with the batch of the step just taken, logging
``lyapunov`` (running estimate) and ``lyapunov_local_rate`` through
``pl_module.log`` whenever an interval is completed.  The monitor takes the RNG
state when ``training_step`` calls the module (or any of its submodules), so the
shadow sees the same dropout masks although the shuffling sampler draws between
steps.  The monitor is closed (its waiting forward hook removed, a ``record_to=``
file finished) at ``on_train_end`` and ``on_exception`` (Ctrl-C included);
``callback.monitor.result()`` stays available.

Needs ``lightning`` (``pip install netdyn[lightning]``).
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover - exercised by a test that hides lightning
    raise ImportError(
        "netdyn.integrations.lightning needs PyTorch Lightning, which is not installed: "
        "pip install netdyn[lightning]"
    ) from err

from netdyn.monitor import LyapunovMonitor

__all__ = ["LyapunovCallback"]


class LyapunovCallback(pl.Callback):
    """Log the maximal Lyapunov exponent of a Lightning training run as it trains.

    Parameters
    ----------
    loss_fn : callable, optional
        ``loss_fn(pl_module(inputs), targets) -> scalar``, the loss that
        ``training_step`` minimises, for batches ``(inputs, targets)``.
    batch_loss : callable, optional
        ``batch_loss(module, batch) -> scalar`` for other batch structures; it is
        called on the shadow copy of the module, so it must not call ``self.log``.
    name : str, default "lyapunov"
        metric name; the local rate is logged as ``name + "_local_rate"``.
    prog_bar : bool, default False
        also show the running exponent in the progress bar.
    **monitor_kwargs
        ``d0``, ``renorm_every``, ``every``, ``window``, ``transient``, ``seed``,
        ``params_only``, ``n_blocks``, ``record_to``, ``sketch``, ``flush_every`` of
        :class:`~netdyn.monitor.LyapunovMonitor` (``d0`` defaults to the
        parameters' dtype and size; with ``sharpness_every``, ``sharpness`` and
        ``sharpness_over_threshold`` are logged too).

    Attributes
    ----------
    monitor : LyapunovMonitor or None
        the monitor of the current fit (``monitor.result()`` after training).

    Supported set-ups: automatic optimisation with one optimiser, no gradient
    accumulation, no gradient clipping, full precision ("32-true" or "64-true")
    — otherwise the shadow would not repeat the user's step, and
    ``on_train_start`` raises ``ValueError``.

    Raises
    ------
    ValueError
        unless exactly one of ``loss_fn`` and ``batch_loss`` is given.

    Examples
    --------
    >>> from torch import nn
    >>> from netdyn.integrations.lightning import LyapunovCallback
    >>> callback = LyapunovCallback(nn.CrossEntropyLoss(), every=10)
    >>> callback.monitor is None  # built at on_train_start: Trainer(callbacks=[callback])
    True
    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        batch_loss: Callable[[nn.Module, Any], Tensor] | None = None,
        name: str = "lyapunov",
        prog_bar: bool = False,
        **monitor_kwargs: Any,
    ):
        if (loss_fn is None) == (batch_loss is None):
            raise ValueError(
                f"LyapunovCallback: expected exactly one of loss_fn and batch_loss, got {'both' if loss_fn else 'neither'}"
            )
        self.loss_fn, self.batch_loss, self.name, self.prog_bar = loss_fn, batch_loss, name, prog_bar
        self.monitor_kwargs = monitor_kwargs
        self.monitor: LyapunovMonitor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        problems = []
        if not pl_module.automatic_optimization:
            problems.append("manual optimisation")
        if len(trainer.optimizers) != 1:
            problems.append(f"{len(trainer.optimizers)} optimisers")
        if trainer.accumulate_grad_batches != 1:
            problems.append(f"accumulate_grad_batches={trainer.accumulate_grad_batches}")
        if trainer.gradient_clip_val:
            problems.append(f"gradient_clip_val={trainer.gradient_clip_val}")
        if str(trainer.precision) not in ("32-true", "64-true", "32", "64"):
            problems.append(f"precision={trainer.precision!r}")
        if problems:
            raise ValueError(
                "LyapunovCallback: expected automatic optimisation with one optimiser, no gradient accumulation or "
                f"clipping, full precision; got {', '.join(problems)}"
            )
        self.monitor = LyapunovMonitor(
            pl_module, trainer.optimizers[0], self.loss_fn, batch_loss=self.batch_loss, **self.monitor_kwargs
        )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.monitor.snapshot_hyperparameters()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor.step(batch):
            pl_module.log(self.name, self.monitor.exponent, on_step=True, on_epoch=False, prog_bar=self.prog_bar)
            pl_module.log(
                f"{self.name}_local_rate", self.monitor.history[-1][1], on_step=True, on_epoch=False
            )
        history = self.monitor.sharpness_history
        if history and history[-1][0] == self.monitor._calls:  # measured on this step (sharpness_every=...)
            pl_module.log("sharpness", history[-1][1], on_step=True, on_epoch=False)
            pl_module.log("sharpness_over_threshold", history[-1][1] / history[-1][2], on_step=True, on_epoch=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.close()
