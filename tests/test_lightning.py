"""LyapunovCallback: a real Trainer.fit on CPU logs the monitor's exponent."""
from __future__ import annotations

import copy
import csv
import importlib
import math
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netdyn.monitor import LyapunovMonitor
from netdyn.problems import make_task

pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from netdyn.integrations.lightning import LyapunovCallback  # noqa: E402

STEPS = 6


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: str):
        super().__init__()
        self.net, self.loss_fn, self.optimizer_name = net, nn.CrossEntropyLoss(), optimizer

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-2)
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.5)


@pytest.fixture(scope="module")
def digits():
    return make_task("digits", n_train=256)


def fit(digits, tmp_path, optimizer, **trainer_kwargs):
    module = Classifier(copy.deepcopy(digits.model), optimizer)
    loader = DataLoader(TensorDataset(*digits.train), batch_size=32, shuffle=False)
    callback = LyapunovCallback(nn.CrossEntropyLoss())
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS, logger=CSVLogger(tmp_path), log_every_n_steps=1,
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
