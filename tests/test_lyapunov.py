"""max_lyapunov (tangent and twin) against analytic exponents.

Tolerances: chaotic estimates are compared with the truth within a few of their
own block-average standard errors (and the error bars are required to be small,
so the test cannot pass by being vague); linear maps have exact answers up to
rounding after the tangent has aligned.
"""
import math

import numpy as np
import pytest
import torch

from netdyn.lyapunov import BatchStepper, block_stderr, max_lyapunov
from netdyn.maps import CircleRotation, HenonMap, LogisticMap, LorenzRK4, QuadraticGD

HENON_L1 = 0.41922  # Sprott, "Chaos and Time-Series Analysis" (2003), table 5.1
LORENZ_L1 = 0.9056  # per unit time, same source


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # 2 shared CPUs: torch's intra-op threads only add contention for these tiny ops
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def ensemble(map_, n, settle=200):
    """``n`` states on the attractor (``settle`` steps from seeded initial states)."""
    xs = torch.stack([map_.initial_state(s) for s in range(n)])
    for t in range(settle):
        xs = torch.stack([map_.step(x, t) for x in xs])
    return xs


class TestMaxLyapunov:
    @pytest.mark.parametrize("method", ["tangent", "twin"])
    def test_logistic_r4_is_ln2(self, method):
        m = LogisticMap(4.0)
        ds = max_lyapunov(m, ensemble(m, 4, 10), 800, method=method)
        err = float(np.sqrt((ds.lyapunov_stderr**2).sum()) / 4)  # stderr of the mean of 4 runs
        assert err < 0.01
        assert abs(float(ds.lyapunov.mean()) - math.log(2)) < 4 * err

    def test_henon_twin(self):
        m = HenonMap()
        ds = max_lyapunov(m, ensemble(m, 8), 3000, method="twin")
        err = float(np.sqrt((ds.lyapunov_stderr**2).sum()) / 8)
        assert err < 0.005
        assert abs(float(ds.lyapunov.mean()) - HENON_L1) < 4 * err

    def test_twin_equals_tangent_on_the_same_orbit(self):
        # same seed -> same initial direction; with d0 = 1e-9 the twin separation is
        # the tangent vector up to O(d0) nonlinear corrections
        m = HenonMap()
        x0 = ensemble(m, 1)[0]
        a = max_lyapunov(m, x0, 500, method="tangent")
        b = max_lyapunov(m, x0, 500, method="twin")
        assert float(a.lyapunov) == pytest.approx(float(b.lyapunov), abs=1e-6)
        assert np.allclose(a.local_rate, b.local_rate, atol=1e-5)

    def test_lorenz_rk4_per_step(self):
        dt = 0.02  # RK4 error O(dt^4) is far below the statistical error here
        m = LorenzRK4(dt=dt)
        ds = max_lyapunov(m, ensemble(m, 3, 500), 6000, method="twin")
        assert float(ds.lyapunov.mean()) / dt == pytest.approx(LORENZ_L1, rel=0.05)

    def test_quadratic_gd_beyond_two_over_h_is_exact(self):
        # lr * h_max = 3: the orbit grows like 2^t but stays finite; the tangent
        # aligns with the top eigenvector during the transient, then every local rate
        # is ln|1 - lr h_max| to rounding
        m = QuadraticGD([0.5, 1.0, 3.0], lr=1.0)
        ds = max_lyapunov(m, m.initial_state(0), 300, transient=100)
        assert not bool(ds.diverged)
        assert float(ds.lyapunov) == pytest.approx(math.log(2.0), abs=1e-12)
        assert float(ds.lyapunov_stderr) < 1e-12

    def test_renorm_every_gives_same_linear_rate(self):
        m = QuadraticGD([0.5, 3.0], lr=0.5)
        a = max_lyapunov(m, m.initial_state(0), 200, method="twin", transient=50, renorm_every=10)
        assert float(a.lyapunov) == pytest.approx(math.log(0.75), abs=1e-6)  # |1 - 0.5 * 0.5| > |1 - 0.5 * 3|
        assert a.step.values[:2].tolist() == [60, 70]

    def test_rotation_is_zero(self):
        m = CircleRotation()
        ds = max_lyapunov(m, m.initial_state(0), 200)
        assert float(ds.lyapunov) == pytest.approx(0.0, abs=1e-12)

    def test_divergence_is_recorded_not_raised(self):
        m = LogisticMap(4.0)
        with pytest.warns(RuntimeWarning, match="non-finite"):
            ds = max_lyapunov(m, torch.tensor([[0.3], [1.5]], dtype=torch.float64), 100, method="twin")
        assert ds.diverged.values.tolist() == [False, True]
        assert np.isposinf(ds.lyapunov.values[1]) and np.isfinite(ds.lyapunov.values[0])
        stop = int(ds.diverged_step[1])
        assert 0 < stop < 100 and int(ds.diverged_step[0]) == -1
        running = ds.lyapunov_running.isel(init=1)
        assert np.isfinite(running.sel(step=slice(None, stop - 1))).all()
        assert np.isnan(running.sel(step=slice(stop + 1, None))).all()

    def test_ensemble_matches_single_runs(self):
        m = HenonMap()
        xs = ensemble(m, 3)
        batch = max_lyapunov(m, xs, 200, seed=5, vectorize=True)
        loop = max_lyapunov(m, xs, 200, seed=5, vectorize=False)
        assert batch.attrs["batching"] == "vmap" and loop.attrs["batching"] == "loop"
        assert batch.lyapunov.dims == ("init",)
        assert np.allclose(batch.lyapunov, loop.lyapunov, atol=1e-10)

    def test_attrs_and_layout(self):
        m = HenonMap()
        ds = max_lyapunov(m, m.initial_state(0), 40, method="twin", transient=7, renorm_every=4, d0=1e-8)
        assert {k: ds.attrs[k] for k in ("method", "d0", "renorm_every", "transient")} == {
            "method": "twin", "d0": 1e-8, "renorm_every": 4, "transient": 7}
        assert ds.step.values.tolist() == list(range(11, 48, 4))
        assert ds.lyapunov_running[-1].item() == ds.lyapunov.item()

    def test_bad_input(self):
        m = HenonMap()
        with pytest.raises(ValueError, match="max_lyapunov: expected x0 of shape"):
            max_lyapunov(m, torch.zeros(3, dtype=torch.float64), 10)
        with pytest.raises(ValueError, match="max_lyapunov: expected method"):
            max_lyapunov(m, m.initial_state(0), 10, method="qr")
        with pytest.raises(ValueError, match="multiple of renorm_every"):
            max_lyapunov(m, m.initial_state(0), 10, renorm_every=3)
        with pytest.raises(ValueError, match="resolution"):
            max_lyapunov(m, m.initial_state(0).float(), 10, method="twin")

    def test_tangent_needs_jacobian(self):
        class StepOnly:
            dim = param_dim = 1

            def step(self, x, t):
                return 2 * x

            def describe(self):
                return {"map": "StepOnly"}

        with pytest.raises(TypeError, match="max_lyapunov"):
            max_lyapunov(StepOnly(), torch.ones(1, dtype=torch.float64), 10)
        ds = max_lyapunov(StepOnly(), torch.ones(1, dtype=torch.float64), 10, method="twin")
        assert float(ds.lyapunov) == pytest.approx(math.log(2), abs=1e-12)


class TestBlockStderr:
    def test_white_noise_matches_naive_error(self):
        rates = np.random.default_rng(0).normal(size=(200, 1000))
        # for independent rates the block estimate is unbiased for 1/sqrt(n)
        assert block_stderr(rates).mean() == pytest.approx(1 / math.sqrt(1000), rel=0.1)

    def test_too_short_is_nan(self):
        assert np.isnan(block_stderr(np.ones(1)))


class TestBatchStepper:
    def test_falls_back_to_loop(self):
        class ItemMap:
            dim = param_dim = 1

            def step(self, x, t):
                return x * float(x[0])  # .item() is not vmappable

        s = BatchStepper(ItemMap())
        out = s.step(torch.tensor([[2.0], [3.0]], dtype=torch.float64), 0)
        assert s.mode == "loop" and out[:, 0].tolist() == [4.0, 9.0]
