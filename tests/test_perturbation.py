"""The dtype-aware default twin distance, alone and as LyapunovMonitor's default."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netdyn._core.perturbation import default_d0, resolution_tolerance
from netdyn.monitor import LyapunovMonitor
from netdyn.maps.problems import make_task
from test_monitor import LR, noisy_loop, quadratic_problem

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


class TestDefaultD0:
    def test_values(self):
        # sqrt(eps): 2^-26, 2^-11.5, 2^-5, 2^-3.5 for float64, float32, float16, bfloat16
        assert default_d0(torch.float64) == 2.0**-26
        assert default_d0(torch.float32, 12.0) == pytest.approx(12 * 2.0**-11.5, rel=1e-15)
        assert default_d0(torch.float16, 0.5) == 2.0**-5  # scale floored at 1
        assert default_d0(torch.bfloat16, 4.0) == pytest.approx(4 * 2.0**-3.5, rel=1e-15)
        assert resolution_tolerance(torch.float64) == 1e-3
        assert resolution_tolerance(torch.bfloat16) == pytest.approx(2.0**-3.5, rel=1e-15)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="^default_d0: expected a floating-point torch.dtype"):
            default_d0(torch.int64)
        with pytest.raises(ValueError, match="^default_d0: expected a finite scale >= 0"):
            default_d0(torch.float32, math.inf)
        with pytest.raises(ValueError, match="^resolution_tolerance: expected a floating-point torch.dtype"):
            resolution_tolerance("float32")


class TestMonitorDefault:
    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    def test_gd_on_a_quadratic_in_every_dtype(self, dtype):
        # GD on a quadratic: lambda = ln 0.9 exactly (tests/test_monitor.py).  At the
        # default d0 rounding and nonlinearity each disturb a step's growth factor by
        # ~sqrt(eps) relative, so even without averaging |lambda_hat - lambda| <
        # sqrt(eps): 1.5e-8, 3.5e-4, 3.1e-2, 8.8e-2.  Measured (200 steps, 20
        # transient): 6e-11, 1.4e-6, 1.1e-3 (float16), 8.2e-3 (bfloat16).
        model, (inputs, targets), _ = quadratic_problem()
        model, inputs, targets = model.to(dtype), inputs.to(dtype), targets.to(dtype)
        scale = float(model.weight.detach().double().norm())
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), transient=20)
        for _ in range(200):
            optimizer.zero_grad()
            nn.MSELoss()(model(inputs), targets).backward()
            optimizer.step()
            monitor.step((inputs, targets))
        eps = torch.finfo(dtype).eps
        assert monitor.d0 == pytest.approx(math.sqrt(eps) * max(scale, 1.0), rel=1e-12)
        assert abs(monitor.exponent - math.log(0.9)) < math.sqrt(eps)
        ds = monitor.result()
        assert ds.attrs["d0"] == monitor.d0 and ds.attrs["dtype"] == str(dtype)
        assert ds.attrs["d0_source"] == "sqrt(eps(dtype)) * max(|theta_0|, 1)"

    def test_float32_dropout_adam_agrees_with_float64(self):
        # The same dropout + Adam loop (randint batches, the same initial weights) in
        # float32 and float64, each at its default d0 (1.3e-3 and 5.6e-8): the float32
        # exponent carries ~sqrt(eps32) = 3.5e-4 relative error per step on top of
        # float32 training's own rounding; measured |difference| = 1.9e-7 on an
        # exponent of 2.02e-3 (stderr 2.7e-4).  Bound: a tenth of the standard error,
        # far below the statistical uncertainty yet 100x the measurement.
        task = make_task("digits", n_train=512)
        double = noisy_loop(task, "randint", 200, monitor_kwargs={"loss_fn": task.loss_fn})[2]
        single = noisy_loop(task, "randint", 200, dtype=torch.float32, monitor_kwargs={"loss_fn": task.loss_fn})[2]
        assert single.d0 > 1e-4 and double.d0 < 1e-6
        assert abs(single.exponent - double.exponent) < 0.1 * double.stderr
        assert single.result().attrs["dtype"] == "torch.float32"

    def test_explicit_d0_is_kept_and_reported(self):
        model = nn.Linear(3, 1)
        monitor = LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), d0=2e-3)
        assert monitor.d0 == 2e-3
        ds = monitor.result()
        assert ds.attrs["d0"] == 2e-3 and ds.attrs["d0_source"] == "given"

    def test_non_finite_parameters_rejected(self):
        model = nn.Linear(3, 1)
        with torch.no_grad():
            model.weight[0, 0] = math.nan
        with pytest.raises(ValueError, match=r"^LyapunovMonitor: expected finite parameters, got \|theta\| = nan"):
            LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss())

    def test_bfloat16_below_resolution_rejected(self):
        # bfloat16 keeps 8 bits: d0 = 1e-4 on O(1) weights is rounded away.
        model = nn.Linear(3, 1).to(torch.bfloat16)
        with pytest.raises(ValueError, match="resolution of the torch.bfloat16"):
            LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), d0=1e-4)
        default = LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss())
        assert default.d0 == default_d0(torch.bfloat16, float(torch.cat([p.detach().double().flatten()
                                                                        for p in model.parameters()]).norm()))
