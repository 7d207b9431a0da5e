"""Device policy of the step loops: no host round-trip per step.

A map whose state lives on a CUDA device runs asynchronously: the host queues
kernels and only waits when it reads a value back (``.item()``, ``float()``,
``bool()``, ``.cpu()``, ``.numpy()``).  One such read per step serialises host and
device and costs a kernel-launch latency (~10-50 us) each time, more than a small
model's step.  The step loops of netdyn (``run``, ``max_lyapunov``, the QR spectra,
``perturbation_growth``, ``track_sharpness``) therefore keep per-step values
(separations, norms, finiteness flags, losses, recorded rows) as tensors on the
state's device and copy them to the host once per block of :data:`SYNC_EVERY`
steps, where the host logic (divergence rule, stopping, writing) is replayed step
by step exactly as before.  The cost of the block: a loop may run up to
``SYNC_EVERY - 1`` steps past the step where it stops (all members of an ensemble
lost, a diverged run); those steps change no result.

Randomness of the estimators (initial directions, twin shifts, QR bases) is drawn
with a CPU ``torch.Generator`` in float64 and moved to the state's device once, so
every device gives the CPU's draws (results agree across devices to round-off of
the map's own arithmetic).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["SYNC_EVERY", "host_block", "host_reads_are_free", "map_device"]

SYNC_EVERY = 64
"""Steps between the host copies of a step loop (see the module docstring)."""


def host_block(rows: list[Tensor]) -> np.ndarray:
    """Stack per-step device tensors ``rows`` (each of one shape ``S``) into a host array
    ``(len(rows), *S)``: one device-to-host copy for the block."""
    return torch.stack(rows).cpu().numpy()


def map_device(map_: object) -> torch.device | None:
    """The device of a map's state (its ``device`` attribute, e.g. a
    :class:`~netdyn.maps.training.TrainingMap`'s parameters'), ``None`` when it does not say.
    A start state given as an array (``ds.final_state.values``) is moved there."""
    device = getattr(map_, "device", None)
    return device if isinstance(device, torch.device) else None


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a value back from ``device`` costs no sync (the CPU), so a step loop
    may branch on it every step; elsewhere loops read once per block of :data:`SYNC_EVERY`.

    Examples
    --------
    >>> import torch
    >>> host_reads_are_free(torch.device("cpu"))
    True
    """
    return device.type == "cpu"
