"""perturbation_growth and its fit window.

Tolerances: GD on a quadratic has d(t) ~ |1 - lr h_max|^t exactly after alignment
(slope to 0.01 with the automatic window, 1e-4 with a late window); Henon slopes
scatter by ~0.07 per reference over 40 steps, so the mean of 20 is within ~0.05.
"""

import numpy as np
import pytest
import torch

from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.classic import HenonMap, QuadraticGD
from netdyn.lyapunov.growth import growth_fit_window, perturbation_growth



@pytest.fixture(scope="module")
def henon_states():
    m = HenonMap()
    xs = torch.stack([m.initial_state(s) for s in range(20)])
    for t in range(200):
        xs = torch.stack([m.step(x, t) for x in xs])
    return xs


class TestPerturbationGrowth:
    def test_henon_agrees_with_benettin(self, henon_states):
        m = HenonMap()
        ds = perturbation_growth(m, henon_states, 40)  # d grows 1e-8 -> ~1e-1: no saturation
        twin = max_lyapunov(m, henon_states, 2000, method="twin")
        assert ds.lyapunov.dims == ("init",) and ds.distance.dims == ("init", "copy", "step")
        assert float(ds.lyapunov.mean()) == pytest.approx(float(twin.lyapunov.mean()), abs=0.05)
        assert float(ds.lyapunov.mean()) == pytest.approx(0.41922, abs=0.05)

    def test_saturation_is_left_out(self, henon_states):
        ds = perturbation_growth(HenonMap(), henon_states[:5], 120)
        # the distance reaches the attractor size after ~45 steps; the window stops there
        assert (ds.fit_stop < 70).all() and (ds.fit_stop > 30).all()
        assert float(ds.lyapunov.mean()) == pytest.approx(0.41922, abs=0.1)

    @pytest.mark.parametrize("lr", [0.3, 0.9])  # contracting and expanding
    def test_quadratic_gd_slope(self, lr):
        m = QuadraticGD([0.5, 1.0, 3.0], lr=lr)
        exact = float(m.exact_exponents()[0])
        ds = perturbation_growth(m, m.initial_state(0), 60)
        # the automatic window starts while the sub-leading mode (gap 0.19/step at
        # lr=0.3) still bends ln d; in a late window the sub-leading mode is down to
        # (0.7/0.85)^40 ~ 4e-4 of d, which moves the slope by < 1e-4
        assert float(ds.lyapunov) == pytest.approx(exact, abs=0.01)
        late = perturbation_growth(m, m.initial_state(0), 60, fit_window=(40, 61))
        assert float(late.lyapunov) == pytest.approx(exact, abs=1e-4)
        assert late.attrs["fit_rule"] == "given" and int(late.fit_start) == 40

    def test_norms_and_eps(self):
        m = QuadraticGD([1.0, 1.0], lr=0.1)  # the map is 0.9 * identity
        l1 = perturbation_growth(m, m.initial_state(0), 5, n_copies=3, d0=1e-6, norm="l1", seed=3)
        l2 = perturbation_growth(m, m.initial_state(0), 5, n_copies=3, d0=1e-6, norm="l2", seed=3)
        d1, d2 = l1.distance.isel(step=0).values, l2.distance.isel(step=0).values
        assert (d1 <= 2 * 1e-6).all() and (d2 < d1).all()
        assert np.allclose(l1.distance.isel(step=5), 0.9**5 * d1, rtol=1e-9)

    def test_bad_input(self):
        m = HenonMap()
        with pytest.raises(ValueError, match="perturbation_growth: expected norm"):
            perturbation_growth(m, m.initial_state(0), 10, norm="linf")
        with pytest.raises(ValueError, match="perturbation_growth: expected fit_window"):
            perturbation_growth(m, m.initial_state(0), 10, fit_window=(5, 50))


class TestGrowthFitWindow:
    def test_flat_linear_flat(self):
        t = np.arange(100.0)
        curve = -20 + 0.5 * np.clip(t, 10, 60)
        assert growth_fit_window(curve) == (10, 61)

    def test_straight_line_is_whole_range(self):
        assert growth_fit_window(-0.2 * np.arange(50.0)) == (0, 50)

    def test_stops_at_non_finite(self):
        curve = 0.3 * np.arange(30.0)
        curve[20:] = np.inf
        assert growth_fit_window(curve)[1] <= 20
