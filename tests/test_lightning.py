"""LyapunovCallback: a real Trainer.fit on CPU logs the monitor's exponent."""
from __future__ import annotations

import copy
import csv
import importlib
import math
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netdyn.monitor import LyapunovMonitor
from netdyn.maps.problems import make_task

pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from netdyn.integrations.lightning import LyapunovCallback  # noqa: E402
from test_monitor import loss_recorder  # noqa: E402

STEPS = 6


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: str):
        super().__init__()
        self.net, self.loss_fn, self.optimizer_name = net, nn.CrossEntropyLoss(), optimizer
        self.user_losses: list[float] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        self.user_losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-2)
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.5)


@pytest.fixture(scope="module")
def digits():
    return make_task("digits", n_train=256)


def fit(digits, tmp_path, optimizer, net=None, shuffle=False, callback=None, steps=STEPS, **trainer_kwargs):
    module = Classifier(copy.deepcopy(digits.model) if net is None else net, optimizer)
    loader = DataLoader(TensorDataset(*digits.train), batch_size=32, shuffle=shuffle)
    callback = callback or LyapunovCallback(nn.CrossEntropyLoss())
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=CSVLogger(tmp_path), log_every_n_steps=1,
        callbacks=[callback],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, **trainer_kwargs,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(num_workers|does not have many workers|GPU available).*")
        trainer.fit(module, loader)
    return trainer, callback


class TestLyapunovCallback:
    @pytest.mark.parametrize("optimizer", ["sgd", "adam"])
    def test_fit_logs_the_plain_loops_exponent(self, digits, tmp_path, optimizer):
        trainer, callback = fit(digits, tmp_path, optimizer)
        with open(f"{trainer.logger.log_dir}/metrics.csv") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("lyapunov")]
        logged = [float(r["lyapunov"]) for r in rows]
        assert len(logged) == STEPS and all(math.isfinite(v) for v in logged)
        assert [int(r["step"]) for r in rows] == list(range(STEPS))

        # The same run as a plain loop with the monitor: Lightning steps the same
        # torch.optim class on the same batches, so the exponents are identical.
        model = copy.deepcopy(digits.model)
        opt = (torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
               else torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5))
        monitor = LyapunovMonitor(model, opt, nn.CrossEntropyLoss())
        inputs, targets = digits.train
        for t in range(STEPS):
            batch = (inputs[32 * t : 32 * t + 32], targets[32 * t : 32 * t + 32])
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(batch[0]), batch[1]).backward()
            opt.step()
            monitor.step(batch)
        assert callback.monitor.history == monitor.history
        assert logged[-1] == pytest.approx(monitor.exponent, rel=1e-6)  # the CSV holds float32-printed values

    def test_dropout_with_a_shuffling_loader(self, digits, tmp_path):
        # The sampler draws from the global RNG at every epoch start (8 batches per
        # epoch here), between the shadow's steps: the shadow still sees the user's
        # dropout masks, so its loss at y_t = x_t + d0 u is the user's loss at x_t up
        # to |grad| d0 ~ 1e-8 (masks that differ: 1e-4 to 1e-1, see test_monitor.py).
        batch_loss, shadow_losses = loss_recorder(nn.CrossEntropyLoss())
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 32, dtype=torch.float64), nn.Tanh(), nn.Dropout(0.5),
                            nn.Linear(32, 10, dtype=torch.float64))
        callback = LyapunovCallback(batch_loss=batch_loss)
        trainer, callback = fit(digits, tmp_path, "adam", net=net, shuffle=True, callback=callback, steps=20)
        user_losses = trainer.lightning_module.user_losses
        assert len(user_losses) == 20
        np.testing.assert_allclose(shadow_losses, user_losses, rtol=0, atol=1e-6)
        # a sensitivity (old monitor: ~10 per mask change, 3 changes in 20 steps -> ~1.5)
        assert abs(callback.monitor.exponent) < 0.5
        assert callback.monitor.closed  # on_train_end closed it: no forward hook left behind
        assert not torch.nn.modules.module._global_forward_pre_hooks

    def test_unsupported_setup_is_rejected(self, digits, tmp_path):
        with pytest.raises(ValueError, match="^LyapunovCallback: .*accumulate_grad_batches=2"):
            fit(digits, tmp_path, "sgd", accumulate_grad_batches=2)

    def test_needs_a_loss(self):
        with pytest.raises(ValueError, match="^LyapunovCallback: expected exactly one of loss_fn and batch_loss"):
            LyapunovCallback()


class TestMissingLightning:
    def test_import_error_names_the_extra(self, monkeypatch):
        for name in [m for m in sys.modules if m == "lightning" or m.startswith("lightning.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "lightning", None)
        monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
        monkeypatch.delitem(sys.modules, "netdyn.integrations.lightning", raising=False)
        with pytest.raises(ImportError, match=r"pip install netdyn\[lightning\]"):
            importlib.import_module("netdyn.integrations.lightning")
