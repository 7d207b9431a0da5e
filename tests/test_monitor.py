"""LyapunovMonitor: agreement with max_lyapunov, GD on a quadratic, an untouched user loop."""
from __future__ import annotations

import copy
import gc
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.monitor import LyapunovMonitor
from netdyn.maps.problems import make_task, training_map
from netdyn.maps.training import TrainingMap, step_seed

STEPS = 60


@pytest.fixture(scope="module")
def digits():
    return make_task("digits", n_train=512)


def monitored_loop(task, tmap, optimizer_cls, steps=STEPS, monitor_kwargs=None, **hyper):
    """The user's plain loop on ``tmap``'s batches, with a monitor (or none)."""
    model = copy.deepcopy(task.model)
    optimizer = optimizer_cls(model.parameters(), lr=tmap.lr, **hyper)
    monitor = None if monitor_kwargs is None else LyapunovMonitor(model, optimizer, task.loss_fn, **monitor_kwargs)
    inputs, targets = task.train
    for t in range(steps):
        idx = tmap.batch_indices(t)
        optimizer.zero_grad()
        task.loss_fn(model(inputs[idx]), targets[idx]).backward()
        optimizer.step()
        if monitor is not None:
            monitor.step((inputs[idx], targets[idx]))
    return model, optimizer, monitor


CASES = [
    ("sgd", torch.optim.SGD, 0.5, {}),
    ("sgd-momentum", torch.optim.SGD, 0.2, {"momentum": 0.9}),
    ("adam", torch.optim.Adam, 0.01, {}),
]


class TestAgreementWithMaxLyapunov:
    @pytest.mark.parametrize("label,cls,lr,hyper", CASES, ids=[c[0] for c in CASES])
    def test_functional_map_params_only(self, digits, label, cls, lr, hyper):
        # torch.optim and netdyn.maps.optim round differently (add with alpha, lerp): the
        # orbits differ by ~1e-17, the twin separations (the default d0 = 5.6e-8 here,
        # passed to max_lyapunov) by ~1e-9 relative per step; averaged over 60 steps the
        # exponents agree far better than 1e-8 (measured: <= 7e-11; 6e-10 at d0 = 1e-9).
        tmap = training_map(digits, lr=lr, optimizer=cls, batch_size=32, seed=3, **hyper)
        *_, monitor = monitored_loop(digits, tmap, cls, monitor_kwargs={"seed": 1, "params_only": True}, **hyper)
        ref = max_lyapunov(tmap, tmap.initial_state(), STEPS, method="twin", d0=monitor.d0, seed=1, params_only=True)
        assert tmap.functional_optimizer is not None
        assert abs(monitor.exponent - float(ref.lyapunov)) < 1e-8
        np.testing.assert_allclose(monitor.result().lyapunov_running, ref.lyapunov_running, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(monitor.result().step, ref.step)

    @pytest.mark.parametrize("params_only", [True, False])
    @pytest.mark.parametrize("label,cls,lr,hyper", CASES, ids=[c[0] for c in CASES])
    def test_black_box_map_is_bit_identical(self, digits, label, cls, lr, hyper, params_only):
        # The black-box TrainingMap drives the same torch.optim class on the same
        # batches: orbits are bit-identical, only the order of the norm's sum differs
        # (it lays buffers out parameter by parameter, the monitor buffer by buffer),
        # so rates agree to a few ulps (measured <= 7e-16).  With params_only=False both
        # discard the perturbation of not-yet-existing buffers at the first step.
        tmap = training_map(digits, lr=lr, optimizer=cls, batch_size=32, seed=3, functional=False, **hyper)
        kwargs = {"seed": 2, "params_only": params_only}
        *_, monitor = monitored_loop(digits, tmap, cls, monitor_kwargs=kwargs, **hyper)
        ref = max_lyapunov(tmap, tmap.initial_state(), STEPS, method="twin", d0=monitor.d0, seed=2,
                           params_only=params_only)
        np.testing.assert_allclose(monitor.result().local_rate, ref.local_rate, rtol=0, atol=1e-14)
        assert abs(monitor.exponent - float(ref.lyapunov)) < 1e-14

    def test_full_state_sgd_momentum_matches_functional_map(self, digits):
        # Functional SGD ignores the momentum buffer at t = 0, as torch does: the
        # full-state twin agrees too (tolerance as above; measured 4e-9).
        hyper = {"momentum": 0.9}
        tmap = training_map(digits, lr=0.2, optimizer="sgd", batch_size=32, seed=3, **hyper)
        *_, monitor = monitored_loop(digits, tmap, torch.optim.SGD, monitor_kwargs={"params_only": False}, **hyper)
        ref = max_lyapunov(tmap, tmap.initial_state(), STEPS, method="twin", d0=monitor.d0, params_only=False)
        assert abs(monitor.exponent - float(ref.lyapunov)) < 1e-8

    def test_transient_and_renorm_every(self, digits):
        tmap = training_map(digits, lr=0.5, optimizer=torch.optim.SGD, batch_size=32, seed=3, functional=False)
        kwargs = {"transient": 10, "renorm_every": 5}
        *_, monitor = monitored_loop(digits, tmap, torch.optim.SGD, monitor_kwargs=kwargs)
        ref = max_lyapunov(tmap, tmap.initial_state(), STEPS - 10, method="twin", d0=monitor.d0, transient=10,
                           renorm_every=5)
        np.testing.assert_array_equal(monitor.result().step, ref.step)
        np.testing.assert_allclose(monitor.result().local_rate, ref.local_rate, rtol=0, atol=1e-14)
        assert math.isclose(monitor.stderr, float(ref.lyapunov_stderr), rel_tol=1e-10)


LR = 0.1
LR_H = (1.9, 1.2, 1.0, 0.8)  # lr * Hessian eigenvalues: |1 - lr h| = 0.9, 0.2, 0, 0.2


def quadratic_problem(n=40, seed=0):
    """nn.Linear(4, 1, bias=False) with MSE on fixed data whose Hessian has eigenvalues
    ``LR_H / LR``: GD is the affine map x -> x - lr H (x - x*), lambda = ln 0.9, and the
    gap to the next multiplier (0.2) aligns a separation within a few steps."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 4, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    h = torch.tensor(LR_H, dtype=torch.float64) / LR
    inputs = q * torch.sqrt(n * h / 2) @ v.T  # MSE Hessian (2/n) X^T X = V diag(h) V^T
    targets = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 4, generator=gen, dtype=torch.float64))
    return model, (inputs, targets), torch.linalg.eigvalsh(2.0 / n * inputs.T @ inputs)


class TestQuadraticSGD:
    """SGD on a quadratic loss: lambda = max_i ln|1 - lr h_i|, exactly."""

    def run(self, steps, **kwargs):
        model, batch, eigs = quadratic_problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), **kwargs)
        for _ in range(steps):
            optimizer.zero_grad()
            nn.MSELoss()(model(batch[0]), batch[1]).backward()
            optimizer.step()
            monitor.step(batch)
        truth = float(torch.log(torch.abs(1 - LR * eigs)).max())
        assert math.isclose(truth, math.log(0.9), rel_tol=1e-12)
        return monitor, truth

    def test_every_step(self):
        monitor, truth = self.run(100, transient=20)
        # The map is affine, so after alignment ((0.2/0.9)^20 ~ 1e-13) every local
        # rate is ln 0.9 up to rounding: ~1e-16 on O(1) states over the default
        # d0 = 3.1e-8 gives ~1e-8 per step (measured <= 2.3e-9; <= 1e-7 at d0 = 1e-9).
        rates = np.array([r for _, r in monitor.history])
        assert np.abs(rates - truth).max() < 1e-6
        assert abs(monitor.exponent - truth) < 1e-7

    def test_segments_carry_the_direction(self):
        monitor, truth = self.run(1000, every=10, window=10, transient=1)
        steps = [s for s, _ in monitor.history]
        # twin active on steps [100 j, 100 j + 10), counted after 1 transient step
        assert steps == [100 * j + i for j in range(10) for i in range(2, 11)]
        rates = np.array([r for _, r in monitor.history]).reshape(10, 9)
        # Segment 0 starts from a random direction: one step leaves a misalignment
        # ~0.2/0.9 times its initial one, so its first rate is visibly off.  Later
        # segments resume the aligned direction: ln 0.9 up to rounding from their
        # first step, which a fresh random direction per segment would not give.
        assert abs(rates[0, 0] - truth) > 1e-4
        assert np.abs(rates[1:] - truth).max() < 1e-6
        assert abs(monitor.exponent - truth) < 1e-2


class TestEvery:
    def test_shadow_steps_only_in_segments(self):
        # The cost claim: with every=k the twin takes one step in k (window steps per
        # k * window), never on the other batches.
        model, batch, _ = quadratic_problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        calls = []

        def batch_loss(module, b):
            calls.append(len(calls))
            return nn.MSELoss()(module(b[0]), b[1])

        monitor = LyapunovMonitor(model, optimizer, batch_loss=batch_loss, every=10, window=4)
        for _ in range(200):
            optimizer.zero_grad()
            nn.MSELoss()(model(batch[0]), batch[1]).backward()
            optimizer.step()
            monitor.step(batch)
        assert len(calls) == 200 // 10
        assert monitor.transient == 2 and [s for s, _ in monitor.history] == [40 * j + i for j in range(5) for i in (3, 4)]


def dropout_mlp(dtype=torch.float64, p=0.5):
    """The digits MLP 64-32-10 with dropout ``p`` after the tanh (torch's init, global RNG)."""
    return nn.Sequential(nn.Linear(64, 32, dtype=dtype), nn.Tanh(), nn.Dropout(p), nn.Linear(32, 10, dtype=dtype))


def noisy_loop(task, loop, steps, p=0.5, dtype=torch.float64, monitor_kwargs=None, before_forward=None):
    """The loops users write, with dropout ``p`` and Adam, monitored (``monitor_kwargs``) or not.

    ``loop="loader"``: a shuffling ``DataLoader`` (its sampler draws from the global RNG
    at the start of every epoch); ``loop="randint"``: batch indices from
    ``torch.randint`` between steps.  ``before_forward(model)`` is called right before
    each training forward.  Returns ``(model, optimizer, monitor, user_losses)``.
    """
    torch.manual_seed(123)  # the user's own global seeding, as in their script
    model = dropout_mlp(torch.float64, p).to(dtype)  # the same initial weights in every dtype
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = None if monitor_kwargs is None else LyapunovMonitor(model, optimizer, **monitor_kwargs)
    inputs, targets = task.train
    inputs = inputs.to(dtype)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True)

    def batches():
        while True:
            if loop == "loader":
                yield from loader
            else:
                idx = torch.randint(0, inputs.shape[0], (32,))
                yield inputs[idx], targets[idx]

    losses = []
    for _, batch in zip(range(steps), batches()):
        optimizer.zero_grad()
        if before_forward is not None:
            before_forward(model)
        loss = task.loss_fn(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if monitor is not None:
            monitor.step(batch)
    return model, optimizer, monitor, losses


LOOPS = ["loader", "randint"]


def loss_recorder(loss_fn):
    """``(batch_loss, losses)``: a ``batch_loss`` for the monitor that appends the
    shadow's loss of every twin step to ``losses``."""
    losses = []

    def batch_loss(module, batch):
        loss = loss_fn(module(batch[0]), batch[1])
        losses.append(loss.item())
        return loss

    return batch_loss, losses


class TestUserLoopUntouched:
    @pytest.mark.parametrize("cls,lr", [(torch.optim.SGD, 0.1), (torch.optim.Adam, 1e-3)])
    def test_weights_grads_and_rng_identical(self, digits, cls, lr):
        def loop(with_monitor: bool):
            torch.manual_seed(123)  # the user's own global seeding, as in their script
            model = dropout_mlp(p=0.2)
            optimizer = cls(model.parameters(), lr=lr)
            monitor = LyapunovMonitor(model, optimizer, digits.loss_fn) if with_monitor else None
            for batch in user_steps(digits, model, optimizer, 20):
                if monitor is not None:
                    before = ([p.grad.clone() for p in model.parameters()], torch.get_rng_state())
                    monitor.step(batch)
                    assert all(torch.equal(g, p.grad) for g, p in zip(before[0], model.parameters()))
                    assert torch.equal(before[1], torch.get_rng_state())
            return model, optimizer, torch.get_rng_state()

        assert_same_training(loop(False), loop(True))

    @pytest.mark.parametrize("cls,lr", [(torch.optim.SGD, 0.1), (torch.optim.Adam, 1e-3)])
    def test_the_shadow_fires_no_optimizer_step_hooks(self, digits, cls, lr):
        # hooks registered for real steps (global or on the user's optimiser: loggers, step counters)
        # see the user's 12 steps only; the shadow's steps run the same update without the hook wrapper
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        seen = []
        handles = [register_optimizer_step_pre_hook(lambda opt, args, kwargs: seen.append(("pre", opt))),
                   register_optimizer_step_post_hook(lambda opt, args, kwargs: seen.append(("post", opt)))]
        try:
            model = dropout_mlp(p=0.0)
            optimizer = cls(model.parameters(), lr=lr)
            monitor = LyapunovMonitor(model, optimizer, digits.loss_fn)
            for batch in user_steps(digits, model, optimizer, 12):
                monitor.step(batch)
        finally:
            for handle in handles:
                handle.remove()
        assert len(seen) == 24 and all(opt is optimizer for _, opt in seen)
        assert len(monitor.history) == 12 and math.isfinite(monitor.exponent)

    @pytest.mark.parametrize("loop", LOOPS)
    def test_dropout_loops_identical(self, digits, loop):
        # The forward pre-hooks only read the RNG state: the user's run is bit-identical.
        def run(monitor_kwargs):
            model, optimizer, _, losses = noisy_loop(digits, loop, 40, monitor_kwargs=monitor_kwargs)
            return (model, optimizer, torch.get_rng_state()), losses

        (plain, plain_losses), (monitored, monitored_losses) = run(None), run({"loss_fn": digits.loss_fn})
        assert_same_training(plain, monitored)
        assert plain_losses == monitored_losses


def user_steps(task, model, optimizer, steps):
    """The user's plain loop on consecutive batches of 32 of ``task``: yields each batch
    after its ``optimizer.step()`` (where the monitor's call goes)."""
    inputs, targets = task.train
    for t in range(steps):
        batch = (inputs[32 * t : 32 * t + 32], targets[32 * t : 32 * t + 32])
        optimizer.zero_grad()
        task.loss_fn(model(batch[0]), batch[1]).backward()
        optimizer.step()
        yield batch


def assert_same_training(run_a, run_b):
    (m1, o1, rng1), (m2, o2, rng2) = run_a, run_b
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert o1.state[p].keys() == o2.state[q].keys()
        for key, value in o1.state[p].items():
            assert torch.equal(value, o2.state[q][key])
    assert torch.equal(rng1, rng2)


class TestDropout:
    """The shadow replays the RNG state at the start of the user's forward pass."""

    @pytest.mark.parametrize("loop", LOOPS + ["no_grad-probe"])
    def test_shadow_sees_the_users_masks(self, digits, loop):
        # The shadow's loss at y_t = x_t + d0 u differs from the user's loss at x_t by
        # about |grad L| d0 (d0 = 5.6e-8 here; measured 1.7e-9) with the same masks; with
        # other masks by the loss's spread over masks (the old monitor: 8e-5 to 9e-2, on
        # every randint step and at each epoch start of the loader).
        batch_loss, shadow_losses = loss_recorder(digits.loss_fn)
        def probe(model):  # a metric under no_grad, in train mode: it draws masks, yet is not the step
            with torch.no_grad():
                model(digits.train[0][:8])

        before_forward = probe if loop == "no_grad-probe" else None
        *_, monitor, user_losses = noisy_loop(digits, "randint" if before_forward else loop, 30,
                                              monitor_kwargs={"batch_loss": batch_loss}, before_forward=before_forward)
        np.testing.assert_allclose(shadow_losses, user_losses, rtol=0, atol=1e-6)
        assert monitor.d0 < 1e-6

    def test_segments_see_the_users_masks(self, digits):
        # every=5, window=4: the twin runs on steps [20 j, 20 j + 4) only and must take
        # the RNG state of those steps' forwards, not of the last step it ran on.
        batch_loss, shadow_losses = loss_recorder(digits.loss_fn)
        kwargs = {"batch_loss": batch_loss, "every": 5, "window": 4, "transient": 2}
        *_, user_losses = noisy_loop(digits, "randint", 44, monitor_kwargs=kwargs)
        active = [t for t in range(44) if t % 20 < 4]
        np.testing.assert_allclose(shadow_losses, [user_losses[t] for t in active], rtol=0, atol=1e-6)

    @pytest.mark.parametrize("loop", LOOPS)
    def test_exponent_on_the_dropout_free_scale(self, digits, loop):
        # Replayed masks make the twin a sensitivity again: the exponent of the
        # dropout loop is of the order of the dropout-free loop's (measured per step,
        # 200 steps: loader 1.97e-3 vs 2.64e-3, randint 2.02e-3 vs 2.73e-3, stderr
        # 3e-4).  Masks that differ separate the twins by ~lr |update| >> d0 at once,
        # ln(1e-3 / 1e-7) ~ 10 per affected step: the old monitor read 15.4 (randint)
        # and 1.23 (loader: two mask changes in 200 steps).  The bound "within a factor
        # 5 of the dropout-free exponent" holds the measured ratios 0.75 with room for
        # the +-15% stderr and fails for one mismatched step in 200 (+0.05).
        steps, kw = 200, {"loss_fn": digits.loss_fn}
        with_dropout = noisy_loop(digits, loop, steps, monitor_kwargs=kw)[2].exponent
        without = noisy_loop(digits, loop, steps, p=0.0, monitor_kwargs=kw)[2].exponent
        assert 0 < without < 0.05
        assert without / 5 < with_dropout < 5 * without

    def test_equals_max_lyapunov_on_the_equivalent_map(self, digits):
        # The equivalent deterministic map: the black-box TrainingMap (the same
        # torch.optim.Adam on the same batches) draws step t's masks from
        # step_seed(seed, t); the user's loop here seeds its forward t the same way
        # (after drawing other random numbers between steps).  The monitor captures
        # that state with its hook; both twins then see the same masks and the rates
        # agree to the ulps of the norm's summation order (see
        # test_black_box_map_is_bit_identical).
        model = dropout_mlp()
        tmap = TrainingMap(copy.deepcopy(model), digits.loss_fn, digits.train, optimizer=torch.optim.Adam, lr=1e-3,
                           batch_size=32, seed=3, functional=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        monitor = LyapunovMonitor(model, optimizer, digits.loss_fn, seed=2)
        inputs, targets = digits.train
        torch.manual_seed(5)
        for t in range(STEPS):
            torch.randint(0, 10, (3,))  # the loop draws between steps
            idx = tmap.batch_indices(t)
            optimizer.zero_grad()
            torch.default_generator.manual_seed(step_seed(3, t))
            digits.loss_fn(model(inputs[idx]), targets[idx]).backward()
            optimizer.step()
            monitor.step((inputs[idx], targets[idx]))
        ref = max_lyapunov(tmap, tmap.initial_state(), STEPS, method="twin", d0=monitor.d0, seed=2)
        np.testing.assert_allclose(monitor.result().local_rate, ref.local_rate, rtol=0, atol=1e-14)
        assert abs(monitor.exponent) < 0.1  # and it is a sensitivity, not mask noise (~10)


class TestModelsThatDrawNothing:
    """A model whose pass draws no random numbers runs its twin on the user's stream, with no hook;
    a pass that starts drawing is caught at its step (module docstring, "Randomness")."""

    def test_same_rates_as_the_replay_and_no_hook(self, digits):
        # Dropout p = 0 draws nothing: after the first (replayed) step the twin runs directly,
        # with no forward hook, and every local rate is the replaying monitor's, bit for bit.
        hooks = torch.nn.modules.module._global_forward_pre_hooks
        before = len(hooks)

        def run(replay: bool):
            torch.manual_seed(123)
            model = dropout_mlp(p=0.0)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            monitor = LyapunovMonitor(model, optimizer, digits.loss_fn)
            if replay:
                monitor._draws = True
            for batch in user_steps(digits, model, optimizer, 12):
                monitor.step(batch)
                torch.randint(0, 10, (3,))  # the loop draws between steps
                assert len(hooks) == before + (1 if replay else 0)
            monitor.close()
            return monitor.result()

        direct, replayed = run(False), run(True)
        assert direct.attrs["rng_replay"].startswith("none needed")
        assert replayed.attrs["rng_replay"].startswith("the RNG state")
        np.testing.assert_array_equal(direct.local_rate, replayed.local_rate)
        assert direct.sizes["step"] == 12 and len(hooks) == before

    def test_user_stream_untouched(self, digits):
        def loop(with_monitor: bool):
            torch.manual_seed(123)
            model = dropout_mlp(p=0.0)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            monitor = LyapunovMonitor(model, optimizer, digits.loss_fn) if with_monitor else None
            for batch in user_steps(digits, model, optimizer, 10):
                if monitor is not None:
                    monitor.step(batch)
                torch.rand(2)
            return model, optimizer, torch.get_rng_state()

        assert_same_training(loop(False), loop(True))

    @pytest.mark.parametrize("switch,renorm_every,counted", [
        (5, 1, [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]),
        (5, 2, [2, 4, 8, 10, 12]),  # realigned at 5, mid-interval: the interval ending at 6 is not counted
        (6, 2, [2, 4, 8, 10, 12]),  # realigned at 6, a renormalisation step
    ])
    def test_dropout_switched_on(self, digits, switch, renorm_every, counted):
        # The model is in eval mode (dropout draws nothing) for the first steps, then in train
        # mode.  The twin ran the first train step on the user's stream, which the loop's
        # torch.randint had moved on: other masks.  That interval is not counted, the twin is
        # realigned, and from the next step on the shadow sees the user's masks (its loss equals
        # the user's to |grad L| d0, as in TestDropout).  The user's run is untouched.
        def run(monitored: bool):
            torch.manual_seed(123)
            model = dropout_mlp(p=0.5).eval()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            batch_loss, shadow_losses = loss_recorder(digits.loss_fn)
            monitor = LyapunovMonitor(model, optimizer, batch_loss=batch_loss, renorm_every=renorm_every) if monitored else None
            inputs, targets = digits.train
            user_losses = []
            for t in range(1, 13):
                if t == switch:
                    model.train()
                idx = torch.randint(0, inputs.shape[0], (32,))
                optimizer.zero_grad()
                loss = digits.loss_fn(model(inputs[idx]), targets[idx])
                loss.backward()
                optimizer.step()
                user_losses.append(loss.item())
                if monitor is not None:
                    monitor.step((inputs[idx], targets[idx]))
            return (model, optimizer, torch.get_rng_state()), monitor, user_losses, shadow_losses

        plain, *_ = run(False)
        with pytest.warns(RuntimeWarning, match=f"the model drew random numbers at step {switch} and drew none"):
            monitored, monitor, user_losses, shadow_losses = run(True)
        assert_same_training(plain, monitored)
        assert [s for s, _ in monitor.history] == counted
        assert monitor.result().attrs["rng_replay"].startswith("the RNG state")
        np.testing.assert_allclose(shadow_losses[:switch - 1], user_losses[:switch - 1], rtol=0, atol=1e-6)
        assert abs(shadow_losses[switch - 1] - user_losses[switch - 1]) > 1e-4  # other masks at the switch
        np.testing.assert_allclose(shadow_losses[switch:], user_losses[switch:], rtol=0, atol=1e-6)
        assert abs(monitor.exponent) < 1  # a sensitivity, not mask noise (~10 a step)


def test_rng_comparison_without_a_loadable_c_library(monkeypatch):
    # Where CDLL(None) cannot open the C library (Windows), the byte comparison stands in for memcmp.
    import ctypes

    from netdyn import monitor

    def refuse(name, *args, **kwargs):
        raise TypeError("no C library by name None")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    compare = monitor._c_memcmp()
    a, b = torch.get_rng_state(), torch.get_rng_state()
    assert compare(a.data_ptr(), b.data_ptr(), a.numel()) == 0
    torch.rand(1)
    c = torch.get_rng_state()
    assert compare(a.data_ptr(), c.data_ptr(), a.numel()) != 0


class TestForwardHook:
    def test_no_hook_left_behind(self, digits):
        # The capture is a global forward pre-hook while it waits for the user's next
        # forward: removed by that forward, by close(), or when the monitor is collected.
        hooks = torch.nn.modules.module._global_forward_pre_hooks
        before = len(hooks)
        model = dropout_mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        batch = (digits.train[0][:32], digits.train[1][:32])
        with LyapunovMonitor(model, optimizer, digits.loss_fn) as monitor:
            assert len(hooks) == before + 1
            loss = digits.loss_fn(model(batch[0]), batch[1])
            assert len(hooks) == before  # the forward took the state and removed the hook
            loss.backward()
            optimizer.step()
            monitor.step(batch)
            assert len(hooks) == before + 1  # waiting for the next step's forward
        assert len(hooks) == before
        with pytest.raises(ValueError, match="^LyapunovMonitor.step: the monitor is closed"):
            monitor.step(batch)
        LyapunovMonitor(model, optimizer, digits.loss_fn)  # dropped at once
        gc.collect()
        assert len(hooks) == before


class TestValidation:
    def test_bad_arguments(self, digits):
        model = copy.deepcopy(digits.model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(ValueError, match="^LyapunovMonitor: expected every to be an int >= 1"):
            LyapunovMonitor(model, opt, digits.loss_fn, every=0)
        with pytest.raises(ValueError, match="^LyapunovMonitor: expected window - transient"):
            LyapunovMonitor(model, opt, digits.loss_fn, every=5, window=4, transient=4)
        with pytest.raises(ValueError, match="^LyapunovMonitor: expected exactly one of loss_fn and batch_loss"):
            LyapunovMonitor(model, opt)
        with pytest.raises(ValueError, match="^LyapunovMonitor: expected a torch.optim.Optimizer"):
            LyapunovMonitor(model, "sgd", digits.loss_fn)
        other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
        with pytest.raises(ValueError, match="foreign"):
            LyapunovMonitor(model, other, digits.loss_fn)
        with pytest.raises(ValueError, match=r"^LyapunovMonitor.step: expected batch = \(inputs, targets\)"):
            LyapunovMonitor(model, opt, digits.loss_fn).step(digits.train[0])

    def test_explicit_d0_below_float32_resolution(self):
        # The default works on float32 (tests/test_perturbation.py); an explicit d0
        # that rounding swallows still raises.
        model = nn.Linear(3, 1)
        with pytest.raises(ValueError, match="resolution of the torch.float32"):
            LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), d0=1e-9)
        assert LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), d0=1e-3).d0 == 1e-3

    def test_closure_optimizer_rejected(self):
        model = nn.Linear(3, 1, dtype=torch.float64)
        with pytest.raises(ValueError, match="without a closure"):
            LyapunovMonitor(model, torch.optim.LBFGS(model.parameters()), nn.MSELoss(), params_only=False)


class TestFailurePolicy:
    def test_divergence_is_recorded(self):
        model, (inputs, targets), _ = quadratic_problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss())
        corrupt = inputs.clone()
        corrupt[0, 0] = math.nan  # a bad sample: the user's run and its twin become NaN
        with pytest.warns(RuntimeWarning, match="non-finite at step 4"):
            for t in range(6):
                batch = (corrupt if t == 3 else inputs, targets)
                optimizer.zero_grad()
                nn.MSELoss()(model(batch[0]), batch[1]).backward()
                optimizer.step()
                monitor.step(batch)
        ds = monitor.result()
        assert monitor.exponent == math.inf and bool(ds.unresolved) and int(ds.unresolved_step) == 4
        assert bool(ds.diverged) and int(ds.diverged_step) == 4 and ds.divergence_reason.item().startswith("non-finite")
        assert len(monitor.history) == 3 and not monitor.step(batch)  # stopped

    def test_collapse_is_recorded(self):
        # lr 5x larger: |1 - lr h_max| = 8.5, the run itself blows up; once ulp(x)
        # exceeds d0 the twin rounds onto the reference (the twin method's limit).
        model, batch, _ = quadratic_problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=5 * LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss())
        with pytest.warns(RuntimeWarning, match="collapsed to 0"):
            for _ in range(40):
                optimizer.zero_grad()
                nn.MSELoss()(model(batch[0]), batch[1]).backward()
                optimizer.step()
                monitor.step(batch)
        ds = monitor.result()
        assert monitor.exponent == -math.inf and not bool(ds.unresolved)
        # the run itself grows 8.5x per step: the divergence rule flags it (a fact about training, not the twin)
        assert bool(ds.diverged) and str(ds.divergence_reason.item()).startswith("unbounded growth")
        assert max(r for _, r in monitor.history) > math.log(8)  # while resolved, the growth (ln 8.5) shows

    def test_result_layout(self, digits):
        tmap = training_map(digits, lr=0.5, optimizer=torch.optim.SGD, batch_size=32, seed=3, functional=False)
        *_, monitor = monitored_loop(digits, tmap, torch.optim.SGD, steps=20, monitor_kwargs={})
        ds = monitor.result()
        ref = max_lyapunov(tmap, tmap.initial_state(), 20, method="twin", d0=monitor.d0)
        assert set(ds.data_vars) == set(ref.data_vars)
        assert ds.attrs["method"] == "twin" and ds.attrs["optimizer"] == "SGD" and ds.attrs["steps"] == 20
        assert len(monitor.history) == 20 and float(ds.lyapunov) == monitor.exponent


class TestRecording:
    """record_to= streams the monitored loop in the trajectory format that offline analysis reads."""

    @pytest.mark.filterwarnings("error::UserWarning")  # loss passed as a tensor that requires grad
    def test_recorded_loop_opens_as_a_trajectory(self, tmp_path):
        from netdyn.io.storage import open_trajectory

        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
        loss_fn = torch.nn.CrossEntropyLoss()
        x = torch.randn(40, 4, dtype=torch.float64)
        y = torch.randint(0, 3, (40,))
        initial = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        path = tmp_path / "monitored.nc"
        monitor = LyapunovMonitor(model, optimizer, loss_fn, record_to=path, sketch=None, flush_every=7)
        losses, states = [], [initial.numpy().copy()]
        for _ in range(25):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.step((x, y), loss=loss)
            losses.append(loss.item())
            states.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy())
        monitor.close()
        with open_trajectory(path) as ds:
            assert ds.sizes["step"] == 25 and int(ds.attrs["complete"]) == 1
            np.testing.assert_array_equal(ds.loss.values, losses)  # row t: loss at x_t
            np.testing.assert_array_equal(ds.state.values, np.stack(states[:-1]))  # row t: x_t
            np.testing.assert_array_equal(ds.final_state.values, states[-1])
            np.testing.assert_allclose(ds.lyapunov_running.values[-1], monitor.exponent, rtol=0, atol=0)
            assert np.isfinite(ds.grad_norm.values).all()
