"""The fast paths of issue 14 give the bits of the plain algorithms they replace.

* ``max_lyapunov``'s loop (preallocated buffers, stops and divergence judged per block of
  steps) against Benettin's algorithm written step by step in this file, exactly as the
  loop was before (every value compared bit for bit, NaN where it stopped);
* ``TrainingMap``'s forward through its tensor slots against ``torch.func.functional_call``
  on a model with BatchNorm, dropout, tied weights and a parametrization;
* ``BatchStepper.step(out=)`` against the plain call.
"""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from netdyn._core.perturbation import default_d0
from netdyn.maps.divergence import DivergenceRule, EnsembleDivergence, parameter_norms
from netdyn.lyapunov.maximal import BatchStepper, max_lyapunov
from netdyn.maps.classic import HenonMap, LogisticMap, QuadraticGD
from netdyn.maps.problems import make_task, training_map
from netdyn.maps.training import TrainingMap, _TensorSlots


def reference_benettin(map_, x0, steps, method, transient=0, m=1, d0=None, seed=0, params_only=True,
                       rule=DivergenceRule()):
    """Benettin's algorithm one step at a time: ``(logs (n, steps // m), end_step (n,), verdict)``.

    The growth ``g`` of the separation is measured every ``m`` steps (every step of the
    transient), logged as ``ln(g / prev)`` with ``prev`` the separation *measured* after the
    previous rescale; a member stops when x or z turn non-finite, g is non-finite, g == 0
    (collapse, logged as -inf) or the rescaled separation is off its target by > 10 %."""
    xs = x0.unsqueeze(0) if x0.ndim == 1 else x0
    n, n_params = xs.shape[0], getattr(map_, "param_dim", map_.dim)
    p = n_params if params_only else map_.dim
    if d0 is None:
        d0 = default_d0(xs.dtype, float(parameter_norms(xs, n_params).max()))
    gen = torch.Generator().manual_seed(seed)
    u = torch.zeros_like(xs)
    u[:, :p] = torch.randn(n, p, generator=gen, dtype=torch.float64).to(xs.dtype)
    u = u / u[:, :p].norm(dim=1, keepdim=True)
    norm = lambda z: z[:, :p].norm(dim=1).to(torch.float64).numpy()  # noqa: E731
    x, z = xs.clone(), (u if method == "tangent" else xs + d0 * u)
    target = 1.0 if method == "tangent" else d0
    separation = (lambda x, z: norm(z)) if method == "tangent" else (lambda x, z: norm(z - x))
    logs = np.full((n, steps // m), np.nan)
    alive, end_step = np.ones(n, dtype=bool), np.full(n, -1, dtype=np.int64)
    verdict = EnsembleDivergence(n, rule)
    verdict.update(parameter_norms(x, n_params), 0, alive)
    prev = separation(x, z)
    for t in range(transient + steps):
        if method == "tangent":
            pairs = [map_.step_jvp(x[i], z[i], t) for i in range(n)]
            x, z = torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])
        else:
            x, z = torch.stack([map_.step(r, t) for r in x]), torch.stack([map_.step(r, t) for r in z])
        verdict.update(parameter_norms(x, n_params), t + 1, alive)
        finite = (torch.isfinite(x).all(1) & torch.isfinite(z).all(1)).numpy()
        counted = t - transient + 1
        if counted > 0 and counted % m:
            stop = alive & ~finite
        else:
            g = separation(x, z)
            stop = alive & ~(finite & np.isfinite(g))
            if counted > 0:
                with np.errstate(divide="ignore", invalid="ignore"):
                    rate = np.log(g / prev)
                logs[alive & ~stop, counted // m - 1] = rate[alive & ~stop]
                collapsed = alive & ~stop & (g == 0)
                end_step[collapsed] = t + 1
                alive &= ~collapsed
            fixed = torch.from_numpy(np.where(g > 0, g, 1.0))
            if method == "tangent":
                z = z / fixed.to(z.dtype)[:, None]
            else:
                z = x + (z - x) * torch.from_numpy(d0 / fixed.numpy()).to(x.dtype)[:, None]
            prev = separation(x, z)
            with np.errstate(invalid="ignore"):
                stop |= alive & ~(np.abs(prev / target - 1.0) <= 0.1)
        end_step[stop] = t + 1
        alive &= ~stop
        if not alive.any():
            break
    return logs, end_step, verdict


class NanAt:
    """Grows by 1.3 per step; members with x[0] > 0.5 at step 6 turn NaN, and at step 9 the
    unmeasured last entry of every member turns infinite (a non-finite buffer)."""

    dim, param_dim = 3, 2

    def step(self, x, t):
        y = x * 1.3
        if t == 6 and float(x[0]) > 0.5:
            y = y * math.nan
        if t == 9:
            y = torch.cat((y[:2], y[2:] * math.inf))
        return y

    def describe(self):
        return {"map": "NanAt"}


class Collapse:
    """Contracts for three steps, then maps every state to one point: the separation is 0."""

    dim = param_dim = 2

    def step(self, x, t):
        return x * 0.5 if t < 3 else torch.tensor([0.3, 0.1], dtype=x.dtype)

    def describe(self):
        return {"map": "Collapse"}


def henon_states(n):
    m = HenonMap()
    return torch.stack([m.initial_state(s) for s in range(n)])


def iris_adam():
    return training_map(make_task("iris", hidden=(8,)), lr=0.05, optimizer="adam")


CASES = {
    # name: (map factory, x0 factory, steps, keyword arguments)
    "henon twin, renormalised every 4, transient 7": (HenonMap, lambda: henon_states(1)[0], 40,
                                                      dict(method="twin", transient=7, m=4, d0=1e-8)),
    "henon twin ensemble, blocks without a renormalisation": (HenonMap, lambda: henon_states(2), 60,
                                                              dict(method="twin", transient=37, m=20)),
    "henon tangent ensemble, steps not a multiple of the block": (HenonMap, lambda: henon_states(3), 97,
                                                                  dict(method="tangent", transient=3)),
    "henon float32 twin": (HenonMap, lambda: henon_states(1)[0].float(), 50, dict(method="twin", transient=5)),
    "logistic escaping member: diverged, then unresolved": (
        lambda: LogisticMap(4.0), lambda: torch.tensor([[0.3], [1.5]], dtype=torch.float64), 100,
        dict(method="twin")),
    "gd losing resolution on a sound orbit": (lambda: QuadraticGD([1.0] * 50, lr=2.02),
                                              lambda: QuadraticGD([1.0] * 50, lr=2.02).initial_state(0), 300,
                                              dict(method="twin", d0=1e-12)),
    "non-finite orbits and buffers": (NanAt, lambda: torch.tensor(
        [[0.1, 0.2, 0.3], [0.9, 0.1, 0.2], [0.2, 0.1, 0.1]], dtype=torch.float64), 12, dict(method="twin", m=3)),
    "non-finite, full-state norm": (NanAt, lambda: torch.tensor(
        [[0.1, 0.2, 0.3], [0.9, 0.1, 0.2]], dtype=torch.float64), 12,
        dict(method="twin", params_only=False, transient=2, m=2)),
    "collapse to 0": (Collapse, lambda: torch.ones(2, dtype=torch.float64), 10, dict(method="twin")),
    "adam training map, full state": (iris_adam, lambda: iris_adam().initial_state(0), 20,
                                      dict(method="twin", params_only=False, m=2, transient=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loop_gives_the_bits_of_the_step_by_step_algorithm(case):
    make_map, make_x0, steps, kwargs = CASES[case]
    map_, x0, kwargs = make_map(), make_x0(), dict(kwargs)
    m = kwargs.pop("m", 1)
    with np.errstate(all="ignore"):
        logs, end_step, verdict = reference_benettin(map_, x0, steps, m=m, **kwargs)
    with pytest.warns() if np.isnan(logs).any() or verdict.diverged.any() else _no_warning():
        ds = max_lyapunov(map_, x0 if x0.ndim == 2 else x0[None], steps, renorm_every=m, vectorize=False, **kwargs)
    rates = ds["local_rate"].values
    assert rates.shape == logs.shape
    assert np.array_equal(rates, logs / m, equal_nan=True)  # bit for bit, NaN after a stop
    unresolved = np.where(ds["unresolved"].values, ds["unresolved_step"].values, -1)
    collapsed = np.isneginf(logs).any(1)
    assert np.array_equal(np.where(collapsed, -1, end_step), unresolved)
    assert np.array_equal(ds["diverged"].values, verdict.diverged)
    assert np.array_equal(ds["diverged_step"].values, verdict.diverged_step)
    assert list(ds["divergence_reason"].values) == list(verdict.reason)


def test_cases_cover_every_way_to_stop():
    """The cases above are not all quiet: each stopping rule fires in at least one."""
    seen = set()
    for make_map, make_x0, steps, kwargs in CASES.values():
        kwargs = dict(kwargs)
        m = kwargs.pop("m", 1)
        with np.errstate(all="ignore"):
            logs, end_step, verdict = reference_benettin(make_map(), make_x0(), steps, m=m, **kwargs)
        if np.isneginf(logs).any():
            seen.add("collapse")
        if ((end_step >= 0) & ~np.isneginf(logs).any(1)).any():
            seen.add("unresolved")
        if verdict.diverged.any():
            seen.add("diverged")
    assert seen == {"collapse", "unresolved", "diverged"}


class _no_warning:
    def __enter__(self):
        import warnings

        self.catcher = warnings.catch_warnings()
        self.catcher.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self.catcher.__exit__(*exc)


class TiedNet(nn.Module):
    """BatchNorm (buffers), dropout (random numbers), a weight tied to two layers and a
    weight-norm parametrization: every kind of slot a forward swaps."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.norm = nn.BatchNorm1d(6)
        self.hidden = nn.Linear(6, 6)
        self.again = nn.Linear(6, 6)
        self.again.weight = self.hidden.weight
        self.out = nn.utils.parametrizations.weight_norm(nn.Linear(6, 3))
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        h = self.drop(torch.tanh(self.norm(self.inp(x))))
        return self.out(torch.tanh(self.again(torch.tanh(self.hidden(h)))))


def test_slots_forward_equals_functional_call():
    torch.manual_seed(0)
    model = TiedNet().double().train()
    inputs = torch.randn(16, 4, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    params = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    stored = {n: b.clone() for n, b in model.named_buffers()}
    originals = dict(model.named_parameters())
    slots = _TensorSlots(model)
    torch.manual_seed(1)
    fast = slots.call(model, params, inputs)
    torch.manual_seed(1)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    slow = torch.func.functional_call(model, (params, buffers), (inputs,))
    assert torch.equal(fast, slow)
    assert "again.weight" not in names  # tied: one name, both layers receive it
    for name, buffer in model.named_buffers():  # BatchNorm updated only the clones
        assert torch.equal(buffer, stored[name])
    for name, p in model.named_parameters():  # the module's own tensors are back
        assert p is originals[name]


def test_training_map_with_tied_and_parametrized_layers_steps_as_before():
    torch.manual_seed(0)
    model = TiedNet().double()
    data = (torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,)))
    tmap = TrainingMap(model, nn.CrossEntropyLoss(), data, lr=0.1, batch_size=8)
    x = tmap.initial_state()
    slow = TrainingMap(model, nn.CrossEntropyLoss(), data, lr=0.1, batch_size=8)
    slow._forward = lambda module, params, inputs, t: _functional_forward(slow, module, params, inputs, t)
    for t in range(3):
        a, b = tmap.step(x, t), slow.step(x, t)
        assert torch.equal(a, b)
        x = a


def _functional_forward(tmap, module, params, inputs, t):
    """TrainingMap._forward as it was: torch.func.functional_call with cloned buffers."""
    from netdyn.maps.training import _seeded_rng, step_seed

    buffers = {n: b.clone() for n, b in module.named_buffers()}
    with _seeded_rng(step_seed(tmap.seed, t), tmap._rng_devices):
        return torch.func.functional_call(module, (params, buffers), (inputs,))


@pytest.mark.parametrize("vectorize", [True, False])
def test_batch_stepper_out_equals_the_plain_call(vectorize):
    m = HenonMap()
    xs = henon_states(3)
    stepper = BatchStepper(m, vectorize)
    out = torch.empty_like(xs)
    result = stepper.step(xs, 4, out=out)
    assert result.data_ptr() == out.data_ptr()
    assert torch.equal(out, BatchStepper(m, vectorize).step(xs, 4))


class _GenericMonitor:
    """Builds a LyapunovMonitor that takes the general path: an optimiser class that overrides
    ``zero_grad`` (so the shadow calls it)."""

    @staticmethod
    def build(model, optimizer, loss_fn, **kwargs):
        from netdyn.monitor import LyapunovMonitor

        monitor = LyapunovMonitor(model, optimizer, loss_fn, **kwargs)
        base = type(monitor._shadow_opt)
        monitor._shadow_opt.__class__ = type("ZeroGradOverridden", (base,), {
            "zero_grad": lambda self, set_to_none=True: base.zero_grad(self, set_to_none)})
        return monitor


@pytest.mark.parametrize("optimizer,kwargs", [
    ("sgd", {}), ("momentum", {"params_only": False}), ("adam", {"renorm_every": 2}), ("adam", {"every": 3, "window": 6}),
])
def test_monitor_fast_paths_give_the_bits_of_the_general_ones(optimizer, kwargs):
    from netdyn.monitor import LyapunovMonitor

    task = make_task("iris", hidden=(8,))
    factories = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.3),
        "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.05),
    }
    inputs, targets = task.train
    results = []
    for build in (LyapunovMonitor, _GenericMonitor.build):
        model = copy.deepcopy(nn.Sequential(task.model[0], nn.Dropout(0.2), *list(task.model)[1:]))
        opt = factories[optimizer](model.parameters())
        torch.manual_seed(0)
        monitor = build(model, opt, task.loss_fn, **kwargs)
        for _ in range(40):
            index = torch.randint(0, inputs.shape[0], (16,))
            batch = (inputs[index], targets[index])
            opt.zero_grad()
            task.loss_fn(model(batch[0]), batch[1]).backward()
            opt.step()
            monitor.step(batch)
        results.append(monitor.result())
    fast, general = results
    assert fast.sizes["step"] >= 6  # enough counted intervals to compare (every=3 counts 7 of 40 steps)
    assert np.array_equal(fast["local_rate"].values, general["local_rate"].values)
    assert float(fast["lyapunov"]) == float(general["lyapunov"])
