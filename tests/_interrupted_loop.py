"""A monitored loop with ``record_to=`` that runs until a signal stops it, started as a
subprocess by tests/test_monitor_signals.py.  Usage: python tests/_interrupted_loop.py MODE PATH

It prints ``row t <loss>`` (flushed) after ``monitor.step`` recorded row ``t``.  Rows are
buffered (``FLUSH_EVERY`` larger than any test run), so before the signal the file holds
none of them: only the signal handling can put them there.

MODE ``plain``: no ``close()``, no ``with`` (the interpreter's exit must finish the file);
MODE ``with``: the loop inside ``with LyapunovMonitor(...)``, itself inside
``try/except KeyboardInterrupt`` that prints ``caught KeyboardInterrupt`` and re-raises.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdyn.monitor import LyapunovMonitor  # noqa: E402

FLUSH_EVERY = 100_000
STEPS = 100_000


def train(monitor: LyapunovMonitor, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    targets = inputs.sum(dim=1, keepdim=True).tanh()
    for t in range(STEPS):
        idx = torch.randint(0, 64, (16,))
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs[idx]), targets[idx])
        loss.backward()
        optimizer.step()
        monitor.step((inputs[idx], targets[idx]), loss=loss.item())
        print(f"row {t} {loss.item()!r}", flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    kwargs = {"record_to": path, "flush_every": FLUSH_EVERY, "sketch": None}
    if mode == "plain":
        train(LyapunovMonitor(model, optimizer, nn.MSELoss(), **kwargs), model, optimizer)
    else:
        try:
            with LyapunovMonitor(model, optimizer, nn.MSELoss(), **kwargs) as monitor:
                train(monitor, model, optimizer)
        except KeyboardInterrupt:
            print("caught KeyboardInterrupt", flush=True)
            raise
