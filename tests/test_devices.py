"""Every map-driven path on every available device, and no host round-trip per step.

``device`` runs each test on the CPU and, where one exists, on a CUDA device (skipped
with a visible reason otherwise).  Each path runs twice on the device (identical
results: a map is a function of ``(x, t)``) and once on the CPU in float64, the
reference: the device's result must agree with it to float64 round-off of the
runs' arithmetic (bit-identical on the CPU itself).

The second half counts device-to-host reads (``.item()``, ``.cpu()``, ``.numpy()``,
``.tolist()``, ``.to("cpu")``, ``float()``, ``int()``, ``bool()`` of a tensor) during the
step loops: each loop reads back once per block of
:data:`netdyn._core.devices.SYNC_EVERY` steps, not once per step.  Intended reads that
remain: one per record *write* (the state reached, for a resumable file), one per
evaluation (``eval_every``), one per Lanczos iteration in the sharpness solver.
"""
from __future__ import annotations

import copy
import functools
import os
import sys
from typing import Any, Callable

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from netdyn._core import devices as device_policy
from netdyn.lyapunov.growth import perturbation_growth
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.lyapunov.spectrum import clv, ftle, lyapunov_spectrum, lyapunov_sum_from_jacobian
from netdyn.maps.classic import HenonMap
from netdyn.maps.problems import make_task
from netdyn.maps.training import TrainingMap
from netdyn._core.twin_rescale import TwinRescale
from netdyn.monitor import LyapunovMonitor
from netdyn.orbits.trajectory import run
from netdyn.sharpness.hessian import sharpness_at, track_sharpness

CUDA = torch.cuda.is_available()

# Tolerances: the runs below are short (<= 80 steps) and the training maps contract, so
# the CPU/CUDA difference stays a few hundred ulps of float64 (reduction orders differ);
# the Hénon orbit is chaotic (lambda = 0.42 per step): 40 steps amplify 1e-16 by e^17.
RTOL_TRAINING, RTOL_HENON = 1e-9, 1e-6
BLOCK = device_policy.SYNC_EVERY


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not CUDA, reason="no CUDA device on this machine"))])
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@functools.lru_cache(maxsize=None)
def _iris():
    return make_task("iris", hidden=(6,), n_train=40)


def training_map(device: torch.device, optimizer: Any = "adam", batch_size: int | None = 8,
                 lr: float = 0.01, **kwargs: Any) -> TrainingMap:
    """The iris MLP (float64) with model and data on ``device``."""
    task = _iris()
    to = lambda pair: tuple(a.to(device) for a in pair)  # noqa: E731
    return TrainingMap(copy.deepcopy(task.model).to(device), task.loss_fn, to(task.train), optimizer=optimizer,
                       lr=lr, batch_size=batch_size, test_data=to(task.test), **kwargs)


def numbers(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The numeric variables of a result (not its attributes)."""
    return {name: np.asarray(var.values) for name, var in ds.variables.items() if var.dtype.kind in "fiub"}


def assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Bit-identical numbers (NaN where NaN)."""
    na, nb = numbers(a), numbers(b)
    assert na.keys() == nb.keys()
    for name in na:
        np.testing.assert_array_equal(na[name], nb[name], err_msg=name)


def assert_close(got: xr.Dataset, ref: xr.Dataset, rtol: float, atol: float = 1e-12) -> None:
    ng, nr = numbers(got), numbers(ref)
    assert ng.keys() == nr.keys()
    for name in nr:
        if nr[name].dtype.kind == "f":
            assert np.isfinite(ng[name]).sum() == np.isfinite(nr[name]).sum(), name
            np.testing.assert_allclose(ng[name], nr[name], rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(ng[name], nr[name], err_msg=name)


def check_path(device: torch.device, compute: Callable[[torch.device], xr.Dataset], rtol: float,
               finite: tuple[str, ...]) -> xr.Dataset:
    """``compute`` on ``device`` twice (identical) and on the CPU (close); ``finite`` variables are finite."""
    got = compute(device)
    assert_same(got, compute(device))
    assert_close(got, compute(torch.device("cpu")), rtol)
    for name in finite:
        assert np.isfinite(got[name].values).all(), name
    return got


# --------------------------------------------------------------------------- maps
@pytest.mark.parametrize("optimizer", ["adam", torch.optim.Adagrad])
def test_training_map_tensors_stay_on_the_device(device, optimizer):
    m = training_map(device, optimizer)
    x = m.initial_state(3)
    assert x.device.type == device.type and x.dtype == torch.float64
    np.testing.assert_array_equal(x.cpu().numpy(), training_map(torch.device("cpu"), optimizer).initial_state(3).numpy())
    assert m.batch_indices(7).device.type == device.type
    x_next, metrics = m.step_with_metric_tensors(x, 0)
    assert x_next.device.type == device.type
    assert all(torch.is_tensor(v) and v.device.type == device.type and v.ndim == 0 for v in metrics.values())
    assert {k: float(v) for k, v in metrics.items()} == m.step_with_metrics(x, 0)[1]
    ref = training_map(torch.device("cpu"), optimizer).step(x.cpu(), 0)
    np.testing.assert_allclose(m.step(x, 0).cpu().numpy(), ref.numpy(), rtol=RTOL_TRAINING, atol=1e-14)
    if optimizer == "adam":
        _, jv = m.step_jvp(x, torch.ones(2, m.dim, dtype=torch.float64, device=device), 1)
        assert jv.device.type == device.type and torch.isfinite(jv).all()


# --------------------------------------------------------------------------- exponents
@pytest.mark.parametrize("method", ["tangent", "twin"])
def test_max_lyapunov(device, method):
    def compute(dev):
        m = training_map(dev)
        x0 = torch.stack([m.initial_state(1), m.initial_state(2)])  # a batch: BatchStepper's path
        return max_lyapunov(m, x0, 40, method=method, transient=4, renorm_every=2)

    check_path(device, compute, RTOL_TRAINING, ("lyapunov", "lyapunov_running"))


@pytest.mark.parametrize("method", ["tangent", "twin"])
def test_max_lyapunov_henon(device, method):
    def compute(dev):
        return max_lyapunov(HenonMap(), HenonMap().initial_state(0).to(dev), 40, method=method, transient=5)

    check_path(device, compute, RTOL_HENON, ("lyapunov",))


def test_lyapunov_spectrum_ftle_clv(device):
    henon = lambda dev: (HenonMap(), HenonMap().initial_state(0).to(dev))  # noqa: E731
    check_path(device, lambda dev: lyapunov_spectrum(*henon(dev), 40, transient=5), RTOL_HENON, ("lyapunov",))
    check_path(device, lambda dev: ftle(*henon(dev), 40, k=2, window=10), RTOL_HENON, ("ftle",))
    check_path(device, lambda dev: clv(*henon(dev), 40, k=2, transient=10), RTOL_HENON, ("clv", "angle"))
    check_path(device, lambda dev: lyapunov_sum_from_jacobian(*henon(dev), 40), RTOL_HENON, ("lyapunov_sum",))
    check_path(device, lambda dev: lyapunov_spectrum(training_map(dev), training_map(dev).initial_state(1), 20, k=3),
               RTOL_TRAINING, ("lyapunov",))


def test_perturbation_growth(device):
    def compute(dev):
        m = training_map(dev)
        return perturbation_growth(m, m.initial_state(1), 30, n_copies=2)

    check_path(device, compute, RTOL_TRAINING, ("distance", "log_distance"))


# --------------------------------------------------------------------------- recording
def test_run_in_memory(device):
    def compute(dev):
        m = training_map(dev)
        return run(m, m.initial_state(2), 80, record_every=2, eval_every=10)

    ds = check_path(device, compute, RTOL_TRAINING, ("state", "loss", "grad_norm", "final_state"))
    assert not bool(ds["diverged"]) and int(ds["final_step"]) == 80


def test_run_continues_from_a_saved_array(device):
    """``x0=ds.final_state.values`` (a numpy array) continues on the map's device, exactly."""
    m = training_map(device)
    first = run(m, m.initial_state(2), 30)
    resumed = run(m, first["final_state"].values, 20, t0=30)
    np.testing.assert_array_equal(resumed["final_state"].values, run(m, m.initial_state(2), 50)["final_state"].values)


def test_run_to_netcdf(device, tmp_path):
    def compute(dev):
        path = tmp_path / f"{dev.type}-{len(list(tmp_path.iterdir()))}.nc"
        m = training_map(dev, torch.optim.Adagrad)
        return run(m, m.initial_state(2), 30, record=5, path=path, flush_every=4).load()

    check_path(device, compute, RTOL_TRAINING, ("state", "loss", "grad_norm"))


def test_run_stops_at_the_same_divergence(device):
    """A run that blows up mid-block stops at the step the rule names, as on the CPU."""
    def compute(dev):
        with pytest.warns(RuntimeWarning, match="diverged"):
            m = training_map(dev, "sgd", batch_size=None, lr=60.0, momentum=0.9)
            return run(m, m.initial_state(0), 200)

    ds = check_path(device, compute, RTOL_TRAINING, ("final_state",))
    assert bool(ds["diverged"]) and int(ds["final_step"]) == int(ds["diverged_step"]) - 1
    assert 1 < int(ds["diverged_step"]) < BLOCK  # inside the first block: the loop ran past it, the result did not
    assert ds.sizes["step"] == int(ds["diverged_step"])


# --------------------------------------------------------------------------- the user's loop
def _monitored_loop(dev: torch.device, steps: int = 40, sharpness_every: int | None = None,
                    sync_every: int | None = None, nan_at: int = -1) -> LyapunovMonitor:
    """The user's plain loop (SGD with momentum on iris batches of 8) with a monitor;
    ``nan_at``: a corrupt batch at that step (the run and its twin become NaN)."""
    task = _iris()
    model = copy.deepcopy(task.model).to(dev)
    inputs, targets = (a.to(dev) for a in task.train)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    monitor = LyapunovMonitor(model, optimizer, nn.CrossEntropyLoss(), sharpness_every=sharpness_every,
                              sync_every=sync_every)
    corrupt = inputs.clone()
    corrupt[0, 0] = float("nan")
    for t in range(steps):
        idx = slice((8 * t) % 40, (8 * t) % 40 + 8)
        inputs_t = corrupt if t == nan_at else inputs
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs_t[idx]), targets[idx])
        loss.backward()
        optimizer.step()
        monitor.step((inputs_t[idx], targets[idx]), loss)
    monitor.close()
    return monitor


def test_monitor_blocks_give_the_per_step_result(monkeypatch):
    """Reading the separations back once per 64 steps (the default on a GPU) gives what
    reading them every step gives, a stop mid-block included (both with torch operations:
    the CPU's compiled pass is switched off here and compared below)."""
    monkeypatch.setattr(TwinRescale, "applies", staticmethod(lambda refs, twins: False))
    cpu = torch.device("cpu")
    assert_same(_monitored_loop(cpu, 100, sync_every=BLOCK).result(), _monitored_loop(cpu, 100, sync_every=1).result())
    with pytest.warns(RuntimeWarning, match="non-finite at step 31"):
        blocked = _monitored_loop(cpu, 100, sync_every=BLOCK, nan_at=30)
    with pytest.warns(RuntimeWarning, match="non-finite at step 31"):
        stepped = _monitored_loop(cpu, 100, sync_every=1, nan_at=30)
    assert blocked.unresolved and blocked.unresolved_step == 31 and blocked.diverged_step == 31
    assert_same(blocked.result(), stepped.result())


def test_monitor_compiled_pass_equals_the_torch_operations(monkeypatch):
    """The CPU's compiled measure-and-rescale (netdyn._core.twin_rescale) against the torch
    operations it replaces, over a whole run and at a stop: sums of squares in float64
    instead of torch's float64 norm, so the same numbers to round-off (measured 2.7e-15
    on the local rates of a digits run), and the same verdicts."""
    cpu = torch.device("cpu")
    compiled = _monitored_loop(cpu, 100).result()
    with pytest.warns(RuntimeWarning, match="non-finite at step 31"):
        compiled_stop = _monitored_loop(cpu, 100, nan_at=30)
    monkeypatch.setattr(TwinRescale, "applies", staticmethod(lambda refs, twins: False))
    assert_close(compiled, _monitored_loop(cpu, 100).result(), rtol=1e-12, atol=1e-14)
    with pytest.warns(RuntimeWarning, match="non-finite at step 31"):
        torch_stop = _monitored_loop(cpu, 100, nan_at=30)
    assert (compiled_stop.unresolved_step, compiled_stop.diverged_step) == (torch_stop.unresolved_step, 31) == (31, 31)
    assert_close(compiled_stop.result(), torch_stop.result(), rtol=1e-12, atol=1e-14)


def test_lyapunov_monitor_in_a_user_loop(device):
    check_path(device, lambda dev: _monitored_loop(dev).result(), RTOL_TRAINING, ("lyapunov", "lyapunov_running"))
    check_path(device, lambda dev: _monitored_loop(dev, 12, sharpness_every=5).result(), 1e-7, ("sharpness",))


# --------------------------------------------------------------------------- sharpness
def test_sharpness(device):
    def at(dev):
        m = training_map(dev, "sgd", batch_size=None, lr=0.1)
        s = sharpness_at(m, m.initial_state(1), k=2)
        return xr.Dataset({"values": ("k", s.values), "vectors": (("k", "p"), np.abs(s.vectors))})

    check_path(device, at, 1e-7, ("values", "vectors"))

    def tracked(dev):
        m = training_map(dev, "adam")
        return track_sharpness(m, m.initial_state(1), 12, every=4)

    check_path(device, tracked, 1e-7, ("sharpness",))


# --------------------------------------------------------------------------- no read-back per step
class HostReads:
    """Counts device-to-host reads of tensors while active (monkeypatched methods)."""

    METHODS = ("item", "cpu", "numpy", "tolist", "__float__", "__int__", "__bool__", "__index__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, only_netdyn: bool = False):
        self.count, self.only_netdyn = 0, only_netdyn
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(getattr(torch.Tensor, name)))
        original_to = torch.Tensor.to

        def to(tensor, *args, **kwargs):
            # a copy to the host is written .to("cpu", ...); a move to the *state's* device passes a
            # torch.device (on this CPU-only machine both are "cpu": the literal tells them apart)
            if "cpu" in list(args) + [kwargs.get("device")]:
                self.count += 1
            return original_to(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "to", to)

    def _counting(self, method: Callable) -> Callable:
        def counted(tensor, *args, **kwargs):
            if not self.only_netdyn or f"{os.sep}netdyn{os.sep}" in sys._getframe(1).f_code.co_filename:
                self.count += 1
            return method(tensor, *args, **kwargs)

        return counted

    def during(self, f: Callable[[], Any]) -> int:
        before = self.count
        f()
        return self.count - before


def reads_per_block(monkeypatch: pytest.MonkeyPatch, f: Callable[[int], Any], blocks: tuple[int, int] = (2, 6)) -> float:
    """Extra host reads of ``f(steps)`` per extra block of steps, from two run lengths (so the
    fixed costs before and after the loop cancel)."""
    reads = HostReads(monkeypatch)
    short, long = (reads.during(lambda: f(b * BLOCK)) for b in blocks)
    return (long - short) / (blocks[1] - blocks[0])


@pytest.mark.parametrize("path", ["tangent", "twin", "spectrum", "ftle", "clv", "growth", "sum"])
def test_exponent_loops_read_back_once_per_block(monkeypatch, path):
    henon = HenonMap()
    x0 = henon.initial_state(0)
    runs = {
        "tangent": lambda n: max_lyapunov(henon, x0, n),
        "twin": lambda n: max_lyapunov(henon, torch.stack([x0, x0 + 1e-3]), n, method="twin"),
        "spectrum": lambda n: lyapunov_spectrum(henon, x0, n),
        "ftle": lambda n: ftle(henon, x0, n, k=2, window=4),
        "clv": lambda n: clv(henon, x0, n, k=2, transient=10),
        "growth": lambda n: perturbation_growth(henon, x0, n, fit_window=(0, 10)),
        "sum": lambda n: lyapunov_sum_from_jacobian(henon, x0, n),
    }
    # the compiled QR of small float64 batches is a CPU-only path (numba reads the tensor's
    # memory in place: no device, no sync); the device path is the generic one, counted here
    monkeypatch.setattr("netdyn.lyapunov.small_qr.SMALL", 0)
    monkeypatch.setattr("netdyn.lyapunov.spectrum.host_reads_are_free", lambda device: False)  # the device path
    per_block = reads_per_block(monkeypatch, runs[path])  # a read per step would give >= BLOCK
    assert per_block <= 8, f"{path}: {per_block} host reads per block of {BLOCK} steps (.cpu().numpy() counts 2)"


def test_run_reads_back_once_per_block(monkeypatch, tmp_path):
    """In memory: one read per block.  Streaming with flush_every=f: one more per write
    (the state reached) — i.e. per f recorded rows, never per step."""
    m = training_map(torch.device("cpu"))
    assert reads_per_block(monkeypatch, lambda n: run(m, m.initial_state(1), n)) <= 4
    files = iter(range(100))
    streamed = lambda n: run(m, m.initial_state(1), n, path=tmp_path / f"{next(files)}.nc", flush_every=BLOCK)  # noqa: E731
    assert reads_per_block(monkeypatch, streamed) <= 6


def test_monitor_reads_back_once_per_block(monkeypatch):
    per_block = reads_per_block(monkeypatch, lambda n: _monitored_loop(torch.device("cpu"), n, sync_every=BLOCK))
    assert per_block <= 4, f"LyapunovMonitor: {per_block} host reads per block of {BLOCK} steps"


def test_training_map_step_reads_nothing_back(monkeypatch):
    """The map itself: no read-back in step, step_jvp or step_with_metric_tensors (mini-batch
    Adam and the black-box path); step_with_metrics reads its two floats.  Counted in
    netdyn's code only: torch.optim's black-box optimisers read their step counter, a CPU
    tensor by torch's design (no device sync)."""
    for optimizer in ("adam", torch.optim.Adagrad):
        m = training_map(torch.device("cpu"), optimizer)
        x = m.initial_state(1)
        reads = HostReads(monkeypatch, only_netdyn=True)
        assert reads.during(lambda: [m.step(x, t) for t in range(20)]) == 0
        assert reads.during(lambda: [m.step_with_metric_tensors(x, t) for t in range(20)]) == 0
        assert reads.during(lambda: m.step_with_metrics(x, 3)) == 2
        if optimizer == "adam":
            assert reads.during(lambda: [m.step_jvp(x, x[None], t) for t in range(5)]) == 0
        monkeypatch.undo()


@pytest.mark.skipif(CUDA, reason="a CUDA device exists: the benchmark would run")
def test_gpu_benchmark_says_why_it_cannot_run(capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import gpu_cost

    assert gpu_cost.main(["--device", "cuda"]) == 2
    assert "no CUDA device on this machine" in capsys.readouterr().err
