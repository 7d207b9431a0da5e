"""Windowed (time-local) Lyapunov exponents against analytic truth for a scheduled map."""
import numpy as np
import pytest
import torch

import netdyn
from netdyn.lyapunov.local import windowed_lyapunov
from netdyn._core.stats import block_stderr
from netdyn.maps.problems import make_task, training_map
from netdyn.maps.schedules import Schedule


class ScheduledQuadraticGD:
    """Gradient descent on 0.5 x^T diag(h) x with rate lr(t): x_{t+1} = (1 - lr(t) h) x."""

    def __init__(self, h, lr, schedule):
        self.h = torch.as_tensor(h, dtype=torch.float64)
        self.dim, self.lr = len(h), float(lr)
        self.schedule = Schedule(schedule, lr)

    def lr_at(self, t):
        return self.schedule(t)

    def initial_state(self, seed=None):
        return torch.ones(self.dim, dtype=torch.float64)

    def step(self, x, t):
        return (1.0 - self.lr_at(t) * self.h) * x

    def step_jvp(self, x, v, t):
        factor = 1.0 - self.lr_at(t) * self.h
        return factor * x, factor * v


# h_max = 10 dominates h = 5 for every rate above 2 / 15 (by |1 - 10 lr| / |1 - 5 lr| >= 1.33 per step
# from 0.14 up): after a warm-up the rate falls from 0.22 (|1 - 10 lr| = 1.2, expanding) to
# 0.14 (0.4, contracting) along a cosine
H = (10.0, 5.0)
SPEC = {"name": "cosine", "warmup": 20, "total": 420, "min_factor": 0.14 / 0.22}
LR = 0.22


def exact_windows(map_, t_start, steps, window):
    t = np.arange(t_start, t_start + steps)
    logs = np.log(np.abs(1.0 - np.array([map_.lr_at(s) for s in t]) * H[0])).reshape(-1, window)
    return logs.mean(axis=1), logs


@pytest.mark.parametrize("method,tol", [("tangent", 1e-9), ("twin", 1e-6)])
def test_windows_are_the_mean_log_of_the_scheduled_factor(method, tol):
    map_ = ScheduledQuadraticGD(H, LR, SPEC)
    transient, steps, window = 60, 360, 40  # the warm-up, then >= 40 steps aligning on the top direction
    x0 = torch.tensor([1e-8, 1e-8], dtype=torch.float64)  # |x| stays <= 1: the twin's d0 stays resolved
    ds = windowed_lyapunov(map_, x0, steps, window=window, method=method, transient=transient, d0=1e-7)
    expected, logs = exact_windows(map_, transient, steps, window)
    assert expected.max() > 0.1 and expected.min() < -0.8, "the schedule must move the exponent through 0"
    np.testing.assert_allclose(ds["lyapunov"].values, expected, rtol=0, atol=tol)
    np.testing.assert_allclose(ds["lyapunov_stderr"].values, block_stderr(logs, 5), rtol=0, atol=tol)
    np.testing.assert_allclose(ds["lr"].values, [np.mean([map_.lr_at(t) for t in range(a, a + window)])
                                                 for a in ds["window_start"].values], rtol=1e-14)
    assert ds["window_start"].values[0] == transient and ds["window_stop"].values[-1] == transient + steps
    assert ds["complete"].all() and not bool(ds["diverged"])
    np.testing.assert_allclose(float(ds["lyapunov_total"]), expected.mean(), atol=tol)


def test_t0_reads_the_schedule_at_the_right_time():
    map_ = ScheduledQuadraticGD(H, LR, SPEC)
    x100 = torch.tensor([1.0, 1e-3], dtype=torch.float64)
    ds = windowed_lyapunov(map_, x100, 200, window=50, t0=100, transient=40)
    expected, _ = exact_windows(map_, 140, 200, 50)
    np.testing.assert_allclose(ds["lyapunov"].values, expected, atol=1e-9)
    assert list(ds["window_start"].values) == [140, 190, 240, 290]


def test_constant_rate_windows_have_zero_error_bar():
    map_ = ScheduledQuadraticGD((3.0,), 0.8, None)
    ds = windowed_lyapunov(map_, torch.ones(1, dtype=torch.float64), 40, window=20)
    np.testing.assert_allclose(ds["lyapunov"].values, np.log(1.4), rtol=1e-13)
    np.testing.assert_allclose(ds["lyapunov_stderr"].values, 0.0, atol=1e-14)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 50, "window": 20}, "multiple of window"),
    ({"steps": 40, "window": 20, "renorm_every": 3}, "multiple of renorm_every"),
    ({"steps": 40, "window": 20, "sharpness_every": 30}, "sharpness_every"),
    ({"steps": 40, "window": 0}, "window to be an int >= 1"),
])
def test_bad_arguments(kwargs, match):
    map_ = ScheduledQuadraticGD((3.0,), 0.1, None)
    with pytest.raises(ValueError, match=match):
        windowed_lyapunov(map_, torch.ones(1, dtype=torch.float64), **kwargs)


def test_training_map_with_schedule_and_preconditioned_sharpness():
    task = make_task("iris", hidden=(6,), seed=1)
    tmap = training_map(task, lr=0.02, optimizer="adam", schedule="cosine", warmup=10, total=60)
    x0 = tmap.initial_state()
    ds = windowed_lyapunov(tmap, x0, 60, window=20, sharpness_every=5, sharpness_options={"tol": 1e-6})
    # the windows are slices of one max_lyapunov run
    ref = netdyn.max_lyapunov(tmap, x0, 60, n_blocks=5)
    np.testing.assert_allclose(ds["lyapunov"].values, ref["local_rate"].values.reshape(3, 20).mean(1), rtol=1e-12)
    # the sharpness is track_sharpness's; the threshold is Adam's 38 / lr(t) at each measured step
    track = netdyn.track_sharpness(tmap, x0, 60, every=5, tol=1e-6)
    np.testing.assert_allclose(ds["sharpness_measured"].values, track["sharpness"].isel(eig=0).values, rtol=1e-10)
    rates = np.array([tmap.lr_at(t) for t in ds["measured_step"].values])
    np.testing.assert_allclose(ds["threshold_measured"].values, 38.0 / rates, rtol=1e-12)
    np.testing.assert_allclose(ds["threshold"].values, (38.0 / rates).reshape(3, 4).mean(1), rtol=1e-12)
    assert ds.attrs["sharpness_preconditioned"] == 1 and ds.attrs["schedule"] == "linear_warmup_cosine"
