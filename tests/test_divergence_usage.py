"""Issue 11: one divergence rule in run, max_lyapunov and sweep; an unresolved exponent is
a separate fact.  The cases are the issue's reports plus the analytic ones (GD on a
quadratic above 2/h, the logistic map from a tiny start)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from netdyn.maps.divergence import divergence_reason
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.classic import HenonMap, LogisticMap, QuadraticGD
from netdyn.maps.problems import make_task, training_map
from netdyn.io.storage import open_trajectory
from netdyn.sweep.grid import run_sweep
from netdyn.orbits.trajectory import run, summarize, summary_dict


def one_point(**kwargs) -> xr.Dataset:
    """A one-point sweep in the calling process, squeezed to scalars."""
    ds = run_sweep(n_workers=0, progress=False, **kwargs)
    return ds.squeeze(drop=True)


class TestCrossEntropyBlowUp:
    def test_digits_at_lr_1e6_is_a_loss_blow_up_although_finite(self):
        # the report: softmax cross-entropy stays finite (2.3 -> 8.6e4 at step 1, measured)
        tmap = training_map(make_task("digits", seed=0), lr=1e6, seed=0)
        with pytest.warns(RuntimeWarning, match=r"diverged at step 1 \(loss blow-up"):
            ds = run(tmap, None, 32)
        assert bool(ds["diverged"]) and int(ds["diverged_step"]) == 1
        assert str(ds["divergence_reason"].values).startswith("loss blow-up")
        assert np.isfinite(ds["loss"]).all() and ds.sizes["step"] == 1

    def test_the_sweep_point_is_diverged_with_the_reason(self):
        ds = one_point(task="digits", lr=[1e6], steps=32)
        assert str(ds["status"].values) == "diverged" and bool(ds["diverged"])
        assert str(ds["divergence_reason"].values).startswith("loss blow-up")
        assert str(ds["orbit_class"].values) == "divergent" and float(ds["final_loss"]) == math.inf


class TestTwoFactsStoredApart:
    def test_adam_linear_at_lr_1e6_diverges_and_its_exponent_is_a_separate_fact(self):
        # The issue read this point as "training finite, only the twin lost resolution"
        # (test accuracy 0.95 after 60 steps).  By the one rule its training diverged:
        # measured loss 2.3 -> 5.0e13 and parameter norm 3.8 -> 4.8e7 at step 1.  Whether its
        # exponent can be resolved depends on the twin's d0, not on training: d0 = 1e-9 is
        # lost to the rounding of weights ~1e7 (unresolved), the default d0 = sqrt(eps) |theta_0|
        # is not (measured 0.67 per step).  Both facts are stored apart, whatever d0.
        grid = dict(task="digits", lr=[1e6], activation=["linear"], optimizer=["adam"], steps=32)
        for ds in (one_point(**grid), one_point(d0=1e-9, **grid)):
            assert str(ds["status"].values) == "diverged" and bool(ds["diverged"])
            assert str(ds["divergence_reason"].values).startswith("loss blow-up")
            assert np.isfinite(float(ds["lyapunov_resolved"]))
        default, small = one_point(**grid), one_point(d0=1e-9, **grid)
        assert not bool(default["exponent_unresolved"]) and np.isfinite(float(default["lyapunov"]))
        assert bool(small["exponent_unresolved"]) and float(small["lyapunov"]) == math.inf

    def test_sound_training_with_an_unresolved_exponent_is_ok_with_its_real_metrics(self):
        # iris, tanh, SGD at lr = 100: the weights grow ~800x but the loss stays within
        # 400x of its start (measured), so training is sound.  With d0 = 1e-13 the twin's
        # rounding (~ulp of the largest weights) exceeds d0 and the exponent is unresolved;
        # the training facts are those of the same point with the resolvable d0 = 1e-9.
        grid = dict(task="iris", lr=[100.0], activation=["tanh"], optimizer=["sgd"], steps=64)
        tiny = one_point(d0=1e-13, **grid)
        usual = one_point(d0=1e-9, **grid)
        assert str(tiny["status"].values) == "ok" and not bool(tiny["diverged"])
        assert str(tiny["divergence_reason"].values) == ""
        assert bool(tiny["exponent_unresolved"]) and float(tiny["lyapunov"]) == math.inf
        assert not bool(usual["exponent_unresolved"]) and np.isfinite(float(usual["lyapunov"]))
        for name in ("final_loss", "final_test_accuracy", "time_to_target"):
            assert float(tiny[name]) == float(usual[name])
        assert np.isfinite(float(tiny["final_loss"])) and float(tiny["final_test_accuracy"]) > 0.5
        # an unresolved exponent is above every chaos threshold
        assert str(tiny["orbit_class"].values) == "chaotic"


class TestAnalyticCases:
    def test_gd_above_two_over_h_diverges_by_growth_before_any_inf(self):
        # |1 - lr h_max| = 2: ||x_t|| ~ 2^t ||x_0|| along the top eigenvector; the rule's
        # norm test fires near log2(1e3) = 10 steps, ~1000 steps before float64 overflows
        m = QuadraticGD([0.5, 1.0, 3.0], lr=1.0)
        x0 = m.initial_state(0)
        with pytest.warns(RuntimeWarning, match="unbounded growth"):
            ds = max_lyapunov(m, x0, 60, method="tangent")
        norms, x = [float(x0.norm())], x0
        for t in range(60):
            x = m.step(x, t)
            norms.append(float(x.norm()))
        reason, index = divergence_reason(None, norm=np.array(norms))
        assert reason.startswith("unbounded growth") and int(ds["diverged_step"]) == index
        assert 8 <= index <= 14 and np.isfinite(norms).all()
        assert str(ds["divergence_reason"].values) == reason
        # (run also checks the loss, which grows 4^t and blows up first: test_trajectory)

    def test_logistic_map_from_1e_4_does_not_diverge(self):
        x0 = torch.tensor([1e-4], dtype=torch.float64)
        ds = run(LogisticMap(4.0), x0, 500)
        exponent = max_lyapunov(LogisticMap(4.0), x0, 500, transient=50)
        assert not bool(ds["diverged"]) and not bool(exponent["diverged"])
        # r = 4: finite-time error ~1/n (ln|f'| is ln 2 plus a coboundary): measured +0.0007 over 500 steps
        assert float(exponent["lyapunov"]) == pytest.approx(math.log(2.0), abs=0.02)

    def test_run_and_max_lyapunov_agree_on_a_map_without_loss(self):
        # Henon from (10, 10) escapes: both apply the same rule to the same norms
        x0 = torch.tensor([10.0, 10.0], dtype=torch.float64)
        with pytest.warns(RuntimeWarning, match="unbounded growth"):
            orbit = run(HenonMap(), x0, 50)
        with pytest.warns(RuntimeWarning):
            exponent = max_lyapunov(HenonMap(), x0, 50, method="twin")
        assert int(orbit["diverged_step"]) == int(exponent["diverged_step"]) > 0
        assert str(orbit["divergence_reason"].values) == str(exponent["divergence_reason"].values)


class TestFiles:
    def test_old_files_without_the_reason_still_open(self, tmp_path):
        ds = run(LogisticMap(4.0), torch.tensor([0.3], dtype=torch.float64), 20, path=tmp_path / "new.nc")
        assert "divergence_reason" in ds.variables and str(ds["divergence_reason"].values) == ""
        old = ds.load().drop_vars(["divergence_reason", "diverged_step"])
        ds.close()
        old.to_netcdf(tmp_path / "old.nc")
        with open_trajectory(tmp_path / "old.nc") as back:
            summary = summary_dict(summarize(back))
        assert summary["diverged"] is False and summary["divergence_reason"] is None

    def test_streamed_divergence_records_reason_and_step(self, tmp_path):
        with pytest.warns(RuntimeWarning, match="unbounded growth"):
            disk = run(HenonMap(), torch.tensor([10.0, 10.0], dtype=torch.float64), 50, path=tmp_path / "d.nc", flush_every=2)
        with disk:
            assert bool(disk["diverged"]) and str(disk["divergence_reason"].values).startswith("unbounded growth")
            assert int(disk["diverged_step"]) == disk.sizes["step"] and disk.attrs["complete"] == 1
