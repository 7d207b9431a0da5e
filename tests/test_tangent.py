"""Spectrum by QR, FTLE, CLV and the det-J sum against analytic answers.

Tolerances: sums of QR exponents equal ln|det J| to rounding (1e-10 is ~1e5 times the
float64 error of a sum of logs); linear maps are exact once the basis has aligned;
chaotic exponents are compared within 4 of their own block standard errors.
"""
import math

import numpy as np
import pytest
import torch

from netdyn.maps.classic import HenonMap, LinearMap, QuadraticGD
from netdyn.lyapunov.spectrum import clv, ftle, lyapunov_spectrum, lyapunov_sum_from_jacobian

HENON = (0.41922, -1.62319)  # Sprott (2003); sum = ln 0.3



@pytest.fixture(scope="module")
def henon_x0():
    m = HenonMap()
    x = m.initial_state(0)
    for t in range(200):
        x = m.step(x, t)
    return x


class TestLyapunovSpectrum:
    def test_henon(self, henon_x0):
        ds = lyapunov_spectrum(HenonMap(), henon_x0, 2000)
        err = ds.lyapunov_stderr.values
        assert (err < 0.015).all()
        assert np.all(np.abs(ds.lyapunov.values - HENON) < 4 * err)
        # sum of exponents = ln|det J| = ln 0.3 at every step
        assert float(ds.lyapunov.sum()) == pytest.approx(math.log(0.3), abs=1e-10)
        assert np.allclose(ds.local_rate.sum("exponent"), math.log(0.3), atol=1e-12)

    @pytest.mark.parametrize("lr", [0.3, 1.0])  # 1.0 > 2 / h_max: the orbit diverges
    def test_quadratic_gd_exact(self, lr):
        m = QuadraticGD([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]], lr=lr)
        ds = lyapunov_spectrum(m, m.initial_state(0), 200, transient=100)
        # above 2 / h_max the orbit grows without bound: flagged by the divergence rule, estimate still exact
        assert bool(ds.diverged) == (lr > 2 / 3.0) and not bool(ds.unresolved)
        if lr > 2 / 3.0:
            assert ds.divergence_reason.item().startswith("unbounded growth")
        assert np.allclose(ds.lyapunov, m.exact_exponents(), atol=1e-10)

    def test_top_k_and_layout(self, henon_x0):
        ds = lyapunov_spectrum(HenonMap(), henon_x0, 50, k=1, transient=5)
        assert ds.lyapunov_running.dims == ("step", "exponent")
        assert ds.step.values[[0, -1]].tolist() == [6, 55] and ds.sizes["exponent"] == 1

    def test_divergence_keeps_finite_part(self):
        m = QuadraticGD([1.0], lr=1e150)  # |1 - lr h| = 1e150: overflow after 3 steps
        with pytest.warns(RuntimeWarning, match="non-finite"):
            ds = lyapunov_spectrum(m, torch.ones(1, dtype=torch.float64), 10)
        assert bool(ds.unresolved) and 0 < int(ds.unresolved_step) <= 10
        assert bool(ds.diverged) and int(ds.diverged_step) <= int(ds.unresolved_step)
        assert float(ds.lyapunov[0]) == pytest.approx(math.log(1e150), rel=1e-12)

    def test_bad_k(self, henon_x0):
        with pytest.raises(ValueError, match="lyapunov_spectrum: expected k to be an int"):
            lyapunov_spectrum(HenonMap(), henon_x0, 10, k=3)


class TestFtle:
    def test_windows_average_to_global_and_narrow(self, henon_x0):
        short = ftle(HenonMap(), henon_x0, 1200, k=2, window=4)
        long = ftle(HenonMap(), henon_x0, 1200, k=2, window=40)
        assert short.ftle.dims == ("step", "exponent") and short.sizes["step"] == 300
        assert np.allclose(short.ftle.mean("step"), long.ftle.mean("step"), atol=1e-12)
        assert abs(float(long.ftle.mean("step")[0]) - HENON[0]) < 0.04  # ~4 stderr of 1200 steps
        # central-limit narrowing: the spread falls roughly like 1/sqrt(window)
        ratio = float(short.ftle.std("step")[0] / long.ftle.std("step")[0])
        assert 2.0 < ratio < 5.0

    def test_window_must_divide_steps(self, henon_x0):
        with pytest.raises(ValueError, match="ftle: expected an integer window"):
            ftle(HenonMap(), henon_x0, 100, k=1, window=7)


class TestClv:
    def test_nonnormal_linear_map_gives_eigenvectors(self):
        m = LinearMap([[1.2, 0.3], [0.0, 0.5]])
        ds = clv(m, m.initial_state(0), 120, k=2, transient=60, window=(10, 40))
        v = ds.clv.values
        e1, e2 = np.array([1.0, 0.0]), np.array([-3.0, 7.0]) / math.sqrt(58.0)  # (A - 0.5 I) e2 = 0
        assert np.allclose(np.abs(v[:, 0] @ e1), 1.0, atol=1e-12)
        assert np.allclose(np.abs(v[:, 1] @ e2), 1.0, atol=1e-12)
        assert np.allclose(ds.angle, math.acos(3 / math.sqrt(58)), atol=1e-10)
        assert ds.step.values[[0, -1]].tolist() == [70, 99]
        # the backward Lyapunov vectors (QR) are orthogonal, the CLVs are not
        assert float(ds.angle.min()) < 1.2

    def test_henon_clvs_are_covariant(self, henon_x0):
        m = HenonMap()
        ds = clv(m, henon_x0, 200, k=2, transient=60, window=(0, 20))
        x = henon_x0
        for t in range(60):
            x = m.step(x, t)
        v = torch.from_numpy(ds.clv.values)
        _, jv = m.step_jvp(x, v[0], 60)  # J(x_60) maps CLV_i(60) onto CLV_i(61)
        jv = jv / jv.norm(dim=1, keepdim=True)
        assert np.allclose(np.abs((jv * v[1]).sum(1).numpy()), 1.0, atol=1e-10)

    def test_window_validation(self):
        m = LinearMap([[1.2, 0.3], [0.0, 0.5]])
        with pytest.raises(ValueError, match="clv: expected window"):
            clv(m, m.initial_state(0), 100, k=2, transient=50, window=(0, 80))


class TestLyapunovSumFromJacobian:
    def test_henon_is_ln_b(self, henon_x0):
        ds = lyapunov_sum_from_jacobian(HenonMap(), henon_x0, 30)
        assert float(ds.lyapunov_sum) == pytest.approx(math.log(0.3), abs=1e-12)

    def test_equals_spectrum_sum(self):
        m = QuadraticGD([[2.0, 0.5], [0.5, 1.0]], lr=0.9)
        ds = lyapunov_sum_from_jacobian(m, m.initial_state(0), 20)
        assert float(ds.lyapunov_sum) == pytest.approx(float(m.exact_exponents().sum()), abs=1e-12)


class TestStartTime:
    def test_spectrum_ftle_clv_run_the_map_at_t0(self):
        times = []

        class Clock(LinearMap):
            def step_jvp(self, x, v, t):
                times.append(t)
                return super().step_jvp(x, v, t)

        m = Clock([[0.5, 0.0], [0.0, 0.9]])
        spectrum = lyapunov_spectrum(m, m.initial_state(0), 4, k=2, transient=1, t0=30)
        assert times == [30, 31, 32, 33, 34] and spectrum["step"].values.tolist() == [32, 33, 34, 35]
        times.clear()
        assert ftle(m, m.initial_state(0), 4, k=2, window=2, t0=10)["step"].values.tolist() == [12, 14]
        assert times == [10, 11, 12, 13]
        times.clear()
        vectors = clv(m, m.initial_state(0), 6, k=2, transient=2, t0=50)
        assert times == list(range(50, 58)) and vectors["step"].values[0] == 52  # transient + steps map steps
