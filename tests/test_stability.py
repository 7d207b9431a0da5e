import dataclasses
import math

import numpy as np
import pytest
import torch
import xarray as xr

from netdyn.maps import CircleRotation, HenonMap, LogisticMap, PotentialGD, QuadraticGD
from netdyn.stability import LABELS, OrbitalStability, orbital_stability


def orbit(map_, steps: int, x0=None) -> np.ndarray:
    """States x_0 .. x_{steps-1} as a float64 array (steps, dim)."""
    x = map_.initial_state(0) if x0 is None else torch.as_tensor(x0, dtype=torch.float64).reshape(map_.dim)
    out = []
    with torch.no_grad():
        for t in range(steps):
            out.append(x.clone())
            x = map_.step(x, t)
    return torch.stack(out).numpy()


class StepOnly:
    """A map without step_jvp (the twin estimate must be used)."""

    def __init__(self, inner):
        self.inner, self.dim, self.dtype = inner, inner.dim, inner.dtype

    def step(self, x, t):
        return self.inner.step(x, t)

    def describe(self):  # optional in the protocol, but max_lyapunov's attrs read it (reported)
        return self.inner.describe()


class TestOrbitalStability:
    # 2000 steps from U(0.1, 0.9): the stable cycles attract within a few hundred steps
    # (multipliers well inside the unit circle), so the last 1000 repeat to rounding error.
    @pytest.mark.parametrize("r, label, period", [
        (2.8, "fixed_point", 1), (3.2, "periodic", 2), (3.5, "periodic", 4), (3.83, "periodic", 3),
    ])
    def test_logistic_cycles(self, r, label, period):
        res = orbital_stability(orbit(LogisticMap(r), 2000))
        assert (res.label, res.period, res.converged) == (label, period, True)
        assert res.return_distance <= res.tol

    def test_logistic_fixed_point_value(self):
        x = orbit(LogisticMap(2.8), 2000)
        res = orbital_stability(x)
        assert x[-1, 0] == pytest.approx(1 - 1 / 2.8, abs=1e-14)
        assert res.mean_distance <= res.tol

    def test_logistic_period_two_points(self):
        r = 3.2
        x = orbit(LogisticMap(r), 2000)[-2:, 0]
        root = math.sqrt((r - 3) * (r + 1))
        np.testing.assert_allclose(sorted(x), [(r + 1 - root) / (2 * r), (r + 1 + root) / (2 * r)], atol=1e-14)

    @pytest.mark.parametrize("r", [3.9, 4.0])
    def test_logistic_chaos_from_the_orbit(self, r):
        res = orbital_stability(orbit(LogisticMap(r), 2000))
        assert res.label == "chaotic" and res.period is None and res.exponent_source == "orbit"
        assert res.exponent > 0.3  # lambda(3.9) ~ 0.49, lambda(4) = ln 2

    def test_logistic_r4_exponent_from_the_map_is_ln2(self):
        # 500 tangent steps: the finite-time mean of ln|4(1-2x)| has std ~ (pi/2)/sqrt(500) ~ 0.07;
        # this seed lands within 0.02, the tolerance allows 0.1 (1.4 sigma)
        res = orbital_stability(orbit(LogisticMap(4.0), 2000), map=LogisticMap(4.0))
        assert res.label == "chaotic" and res.exponent_source == "map"
        assert res.exponent == pytest.approx(math.log(2), abs=0.1)

    def test_logistic_r4_orbit_exponent_near_ln2(self):
        # nearest-neighbour divergence over 5 steps from ~500 pairs in 1-D: a few % bias at most
        res = orbital_stability(orbit(LogisticMap(4.0), 2000))
        assert res.exponent == pytest.approx(math.log(2), abs=0.07)

    def test_henon_is_chaotic_with_its_exponent(self):
        # lambda_1 = 0.41922; 500 tangent steps give it to ~0.03
        m = HenonMap()
        res = orbital_stability(orbit(m, 2000), map=m)
        assert res.label == "chaotic" and res.exponent == pytest.approx(0.41922, abs=0.05)

    def test_twin_estimate_without_tangents(self):
        m = LogisticMap(4.0)
        res = orbital_stability(orbit(m, 2000), map=StepOnly(m))
        assert res.label == "chaotic" and res.exponent == pytest.approx(math.log(2), abs=0.1)

    def test_irrational_rotation_is_quasi_periodic(self):
        res = orbital_stability(orbit(CircleRotation(), 2000))
        assert res.label == "quasi_periodic" and res.period is None
        assert abs(res.exponent) < 1e-9  # a rotation is an isometry: separations never change
        assert res.return_distance > 0.01  # closest return for p <= 64 is p = 55: 2 sin(pi |55 w|) ~ 0.05
        assert res.recurrence_rate > 0  # the orbit comes back near itself

    def test_irrational_rotation_with_its_map(self):
        m = CircleRotation()
        res = orbital_stability(orbit(m, 2000), map=m)
        assert res.label == "quasi_periodic" and abs(res.exponent) < 1e-9

    def test_rational_rotation_is_periodic(self):
        res = orbital_stability(orbit(CircleRotation(omega=3 / 7), 500))
        assert (res.label, res.period) == ("periodic", 7)

    def test_quadratic_gd_converges_below_two_over_hmax(self):
        m = QuadraticGD([[2.0, 0.5], [0.5, 1.0]], lr=0.3)  # h_max ~ 2.21, 2/h_max ~ 0.905
        res = orbital_stability(orbit(m, 1000))
        assert (res.label, res.period) == ("fixed_point", 1)

    def test_quadratic_gd_diverges_above_two_over_hmax(self):
        m = QuadraticGD([[2.0, 0.5], [0.5, 1.0]], lr=1.0)  # |1 - lr h_max| ~ 1.21
        res = orbital_stability(orbit(m, 1000))
        assert res.label == "divergent" and res.growth > 1e3

    def test_slow_gd_is_a_converging_fixed_point(self):
        # contraction 0.998 per step: 1000 steps are far from tol, but the steps shrink steadily
        m = QuadraticGD([1.0, 3.0], lr=0.002)
        res = orbital_stability(orbit(m, 1000) + np.array([3.0, 1.0]))
        assert (res.label, res.period, res.converged) == ("fixed_point", 1, False)
        assert res.exponent == pytest.approx(math.log(1 - 0.002), abs=1e-3)

    def test_potential_gd_two_cycle(self):
        # f(x) = x^2/2 - x^4/4, lr = 2.1: stable 2-cycle +-sqrt((lr-2)/lr), multiplier (2 lr - 5)^2 = 0.64
        lr = 2.1
        c = math.sqrt((lr - 2) / lr)
        m = PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=lr)
        x = orbit(m, 400, [c + 0.01])
        res = orbital_stability(x)
        assert (res.label, res.period) == ("periodic", 2)
        np.testing.assert_allclose(sorted(x[-2:, 0]), [-c, c], atol=1e-14)
        # deviation from the cycle shrinks by the multiplier per period (0.64 within 1e-3 once linear)
        dev = np.abs(np.abs(x[:40:2, 0]) - c)
        assert dev[15] / dev[14] == pytest.approx((2 * lr - 5) ** 2, abs=1e-3)

    def test_still_converging_cycle_is_found_by_decay(self):
        # PotentialGD lr=2.03: multiplier 0.8836 per period, 100 states from 0.05 off the cycle
        lr = 2.03
        c = math.sqrt((lr - 2) / lr)
        m = PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=lr)
        res = orbital_stability(orbit(m, 200, [c + 0.05]), tail=100)
        assert (res.label, res.period, res.converged) == ("periodic", 2, False)

    def test_float_noise_does_not_hide_a_cycle(self):
        x = orbit(LogisticMap(3.5), 2000)
        noisy = x + 1e-9 * np.random.default_rng(0).standard_normal(x.shape)
        assert orbital_stability(noisy).period == 4
        res32 = orbital_stability(x.astype(np.float32))
        assert (res32.period, res32.tol) == (4, pytest.approx(100 * np.finfo(np.float32).eps))

    def test_non_finite_is_divergent(self):
        x = orbit(LogisticMap(3.2), 100)
        x[60] = np.nan
        res = orbital_stability(x)
        assert res.label == "divergent" and "non-finite" in res.reason

    def test_dataset_diverged_flag(self):
        x = orbit(LogisticMap(3.2), 100)
        ds = xr.Dataset({"state": (("step", "param"), x), "diverged": ((), True)},
                        coords={"step": np.arange(100)})
        assert orbital_stability(ds).label == "divergent"
        assert orbital_stability(ds.assign(diverged=False)).label == "periodic"

    def test_dataarray_tensor_and_scalar_series_agree(self):
        x = orbit(LogisticMap(3.5), 400)
        da = xr.DataArray(x, dims=("step", "param"), coords={"step": np.arange(400)})
        results = [orbital_stability(o) for o in (x, da, torch.from_numpy(x), x[:, 0])]
        assert all(repr(r) == repr(results[0]) for r in results)  # repr: NaN fields compare equal

    def test_supplied_exponent_decides(self):
        x = orbit(CircleRotation(), 500)
        res = orbital_stability(x, exponent=0.2)
        assert (res.label, res.exponent_source, res.exponent) == ("chaotic", "supplied", 0.2)

    def test_zero_orbit(self):
        res = orbital_stability(np.zeros((40, 3)))
        assert (res.label, res.period, res.scale) == ("fixed_point", 1, 0.0)

    def test_result_is_frozen(self):
        res = orbital_stability(orbit(LogisticMap(2.8), 100))
        assert isinstance(res, OrbitalStability) and res.label in LABELS
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.label = "chaotic"

    def test_refuses_short_tail(self):
        with pytest.raises(ValueError, match="orbital_stability: expected 16 <= tail <= T=20, got tail=10"):
            orbital_stability(np.zeros((20, 1)))

    def test_refuses_bad_shape(self):
        with pytest.raises(ValueError, match=r"orbital_stability: expected a real orbit of shape"):
            orbital_stability(np.zeros((40, 2, 2)))

    def test_refuses_map_of_another_width(self):
        with pytest.raises(ValueError, match="expected a map with dim=1"):
            orbital_stability(orbit(LogisticMap(4.0), 200), map=HenonMap())


class TestMapWithOptimiserBuffers:
    def test_adam_trajectory_uses_the_full_final_state(self):
        from netdyn.problems import make_task, training_map
        from netdyn.trajectory import run

        tmap = training_map(make_task("iris", hidden=(4,), seed=0), lr=0.01, optimizer="adam")
        ds = run(tmap, 120)
        assert ds.sizes["param"] < tmap.dim  # recorded parameters only; buffers live in final_state
        result = orbital_stability(ds, map=tmap, exponent_steps=50)
        assert result.exponent_source == "map" and np.isfinite(result.exponent)
