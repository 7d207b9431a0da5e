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

from netdyn._core.stats import block_stderr
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.batching import BatchStepper
from netdyn.maps.classic import CircleRotation, HenonMap, LinearMap, LogisticMap, LorenzRK4, QuadraticGD

HENON_L1 = 0.41922  # Sprott, "Chaos and Time-Series Analysis" (2003), table 5.1
LORENZ_L1 = 0.9056  # per unit time, same source



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
        # is ln|1 - lr h_max| to rounding.  The orbit breaks the divergence rule
        # (norm > 1e3 x ||x0|| after ~10 steps), which flags it without stopping the
        # exact estimate: divergence and resolution are separate facts.
        m = QuadraticGD([0.5, 1.0, 3.0], lr=1.0)
        with pytest.warns(RuntimeWarning, match="diverged .*unbounded growth"):
            ds = max_lyapunov(m, m.initial_state(0), 300, transient=100)
        norm0 = float(m.initial_state(0).norm())
        assert bool(ds.diverged) and int(ds.diverged_step) == math.ceil(math.log2(1e3 * max(norm0, 1.0) / norm0)) + 1
        assert not bool(ds.unresolved) and int(ds.unresolved_step) == -1
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
        # x0 = 1.5 escapes doubly exponentially: the orbit breaks the divergence rule
        # first (flag only), the twin then loses resolution and the member stops
        m = LogisticMap(4.0)
        with pytest.warns(RuntimeWarning, match="could not be resolved"):
            ds = max_lyapunov(m, torch.tensor([[0.3], [1.5]], dtype=torch.float64), 100, method="twin")
        assert ds.diverged.values.tolist() == [False, True] and ds.unresolved.values.tolist() == [False, True]
        assert str(ds.divergence_reason.values[1]).startswith("unbounded growth")
        assert str(ds.divergence_reason.values[0]) == ""
        assert np.isposinf(ds.lyapunov.values[1]) and np.isfinite(ds.lyapunov.values[0])
        assert 0 < int(ds.diverged_step[1]) <= int(ds.unresolved_step[1]) and int(ds.diverged_step[0]) == -1
        stop = int(ds.unresolved_step[1])
        assert 0 < stop < 100 and int(ds.unresolved_step[0]) == -1
        running = ds.lyapunov_running.isel(init=1)
        assert np.isfinite(running.sel(step=slice(None, stop - 1))).all()
        assert np.isnan(running.sel(step=slice(stop + 1, None))).all()

    def test_ensemble_matches_single_runs(self):
        m = HenonMap()
        xs = ensemble(m, 3)
        batch = max_lyapunov(m, xs, 200, seed=5, vectorize=True)
        loop = max_lyapunov(m, xs, 200, seed=5, vectorize=False)
        assert batch.attrs["batching"] == "batch" and loop.attrs["batching"] == "loop"
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
        # an explicit d0 lost to float32 rounding still raises (the default adapts: see TestFloat32Twin)
        with pytest.raises(ValueError, match="resolution"):
            max_lyapunov(m, m.initial_state(0).float(), 10, method="twin", d0=1e-9)

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
        # measured: -0.7 % off, with a standard error of 1.7 % over the 200 rows: 0.05 is 3 standard errors
        assert block_stderr(rates).mean() == pytest.approx(1 / math.sqrt(1000), rel=0.05)

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


@pytest.fixture(scope="module")
def chaotic():
    from netdyn.maps.problems import make_task, training_map

    m = training_map(make_task("digits", hidden=(8,), n_train=200), lr=5.0)
    x = m.initial_state(0)
    for t in range(100):
        x = m.step(x, t)
    return m, x


class TestOnTrainingMaps:
    """Small digits MLP (64-8-10 tanh, 200 samples) trained by full-batch GD at lr = 5,
    a chaotic regime (exponent ~0.6-0.7 per step after 100 steps)."""

    def test_tangent_twin_and_perturbation_growth_agree(self, chaotic):
        from netdyn.lyapunov.growth import perturbation_growth

        m, x = chaotic
        tangent = max_lyapunov(m, x, 120)
        twin = max_lyapunov(m, x, 120, method="twin")
        # same orbit and direction: agreement to O(d0) corrections
        assert float(twin.lyapunov) == pytest.approx(float(tangent.lyapunov), abs=1e-4)
        assert float(tangent.lyapunov) > 0.3
        # finite perturbation, no renormalisation, L1 norm, 30 steps before saturation:
        # a finite-time exponent, so only within ~3 of the tangent's error bars
        growth = perturbation_growth(m, x, 30, n_copies=3)
        assert float(growth.lyapunov) == pytest.approx(float(tangent.lyapunov), abs=0.15)

    def test_mini_batch_estimates_are_reproducible(self):
        from netdyn.maps.problems import make_task, training_map

        task = make_task("digits", hidden=(8,), n_train=200)
        first, other = (training_map(task, lr=1.0, batch_size=50, seed=s) for s in (0, 1))
        x = first.initial_state(0)
        a = max_lyapunov(first, x, 30, method="twin")
        b = max_lyapunov(first, x, 30, method="twin")
        c = max_lyapunov(other, x, 30, method="twin")
        assert np.array_equal(a.local_rate, b.local_rate)
        assert not np.allclose(a.local_rate, c.local_rate)

    def test_generic_torch_optimizer_gets_twin_only(self):
        from netdyn.maps.problems import make_task, training_map

        m = training_map(make_task("iris", hidden=(4,), n_train=40), lr=0.5, optimizer=torch.optim.Adagrad)
        x = m.initial_state(0)
        with pytest.raises(TypeError, match="exact"):
            max_lyapunov(m, x, 10)
        full = max_lyapunov(m, x, 20, method="twin")
        params = max_lyapunov(m, x, 20, method="twin", params_only=True)
        assert m.dim > m.param_dim and full.attrs["batching"] == "loop"
        assert np.isfinite(full.lyapunov) and np.isfinite(params.lyapunov)
        assert params.attrs["params_only"] == 1


class TestCommand:
    def test_lyapunov_command_prints_estimate_and_plot(self, tmp_path, capsys):
        import argparse

        from netdyn.commands import lyapunov as command

        parser = argparse.ArgumentParser()
        command.register(parser.add_subparsers())
        figure = tmp_path / "conv.png"
        args = parser.parse_args(["lyapunov", "--task", "iris", "--hidden", "4", "--lr", "0.5", "--steps", "20",
                                  "--method", "twin", "--plot", str(figure), "-o", str(tmp_path / "out")])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "lambda_max = " in out and "+-" in out and figure.stat().st_size > 0


class TestPlots:
    def test_figures_draw_the_estimates(self):
        import matplotlib

        matplotlib.use("Agg")
        from netdyn.plot.lyapunov import plot_convergence, plot_perturbation_growth, plot_sharpness
        from netdyn.sharpness.hessian import sharpness_along
        from netdyn.lyapunov.spectrum import lyapunov_spectrum
        from netdyn.lyapunov.growth import perturbation_growth

        m = HenonMap()
        fig = plot_convergence(max_lyapunov(m, ensemble(m, 2, 20), 50))
        assert len(fig.axes[0].lines) == 3  # two runs + the zero line
        fig = plot_convergence(lyapunov_spectrum(m, m.initial_state(0), 30))
        assert len(fig.axes[0].lines) == 3
        growth = perturbation_growth(m, m.initial_state(0), 20, n_copies=2)
        assert len(plot_perturbation_growth(growth).axes[0].lines) == 4  # 2 copies, mean, fit
        q = QuadraticGD([1.0, 2.0], lr=0.5)
        along = sharpness_along(q, torch.stack([q.initial_state(s) for s in range(3)]))
        assert len(plot_sharpness(along).axes[0].lines) == 2  # sharpness and 2/lr
        with pytest.raises(ValueError, match="plot_convergence"):
            plot_convergence(growth)


class TestStartTime:
    """t0: continuing from a saved state runs the map at its own time (momentum, Adam, batches depend on it)."""

    class ClockMap(LinearMap):
        def __init__(self):
            super().__init__([[0.5, 0.0], [0.0, 0.9]])
            self.times = []

        def step(self, x, t):
            self.times.append(t)
            return super().step(x, t)

    def test_twin_and_growth_run_at_t0(self):
        from netdyn.lyapunov.growth import perturbation_growth

        m = self.ClockMap()
        ds = max_lyapunov(m, m.initial_state(0), 6, method="twin", transient=50, t0=100, vectorize=False)
        assert sorted(set(m.times)) == list(range(100, 156))
        assert ds["step"].values.tolist() == list(range(151, 157))
        # after 50 transient steps the 0.5-direction is (0.5/0.9)^50 ~ 1e-13 of the separation
        assert float(ds.lyapunov) == pytest.approx(math.log(0.9), abs=1e-6)
        m.times.clear()
        growth = perturbation_growth(m, m.initial_state(0), 5, n_copies=2, t0=40, vectorize=False)
        assert sorted(set(m.times)) == list(range(40, 45))
        assert growth["step"].values.tolist() == list(range(40, 46))


class TestFloat32Twin:
    def test_default_d0_resolves_henon_in_float32(self):
        # default d0 = sqrt(eps32) * max(scale, 1) ~ 3.5e-4; lambda_1 = 0.419 (float64: 0.414 +- 0.005
        # over these 5000 steps, measured); float32 gave 0.416 +- 0.004, so 0.02 is ~5 standard errors
        m = HenonMap()
        ds = max_lyapunov(m, m.initial_state(0).float(), 5000, method="twin", transient=100)
        assert not bool(ds.unresolved) and ds.attrs["d0"] == pytest.approx(math.sqrt(torch.finfo(torch.float32).eps))
        assert float(ds.lyapunov) == pytest.approx(0.419, abs=0.02)

    def test_float32_training_map_agrees_with_float64(self):
        # same network and data in both precisions: measured difference 1.2e-6 against a
        # standard error of 1e-3; 1e-4 bounds the rounding noise of the float32 twin
        # (relative eps * scale / d0 ~ 3.5e-4 per rate, averaged over 200 steps)
        from netdyn.maps.problems import make_task, training_map

        out = {}
        for dtype in ("float64", "float32"):
            tmap = training_map(make_task("iris", dtype=dtype, seed=0), lr=0.5, seed=0)
            out[dtype] = max_lyapunov(tmap, tmap.initial_state(), 200, method="twin")
        assert not bool(out["float32"].unresolved) and out["float32"].attrs["d0"] > 1e-4
        assert float(out["float32"].lyapunov) == pytest.approx(float(out["float64"].lyapunov), abs=1e-4)


class TestResolutionIsNotDivergence:
    def test_twin_loses_resolution_on_a_sound_orbit(self):
        # GD on 50 directions with lr h = 2.02: x_t = (-1.02)^t x_0, lambda = ln 1.02.  With
        # d0 = 1e-12 the twin's rounding (~6e-17 |x|) passes 10 % of d0 at |x| ~ 1.6e3 (step ~270),
        # before the divergence rule (|x| > 1e3 |x_0| = 7.4e3, step 349).  Measured: unresolved at
        # step 282, estimate reached 0.02035 vs ln 1.02 = 0.01980 (rounding of up to 10 % per step
        # near the loss of resolution).
        m = QuadraticGD([1.0] * 50, lr=2.02)
        with pytest.warns(RuntimeWarning, match="could not be resolved"):
            ds = max_lyapunov(m, m.initial_state(0), 500, method="twin", d0=1e-12)
        assert bool(ds.unresolved) and not bool(ds.diverged) and str(ds.divergence_reason.values) == ""
        assert 250 < int(ds.unresolved_step) < 349 and np.isposinf(float(ds.lyapunov))
        assert float(ds.lyapunov_resolved) == pytest.approx(math.log(1.02), abs=1.5e-3)

    def test_resolved_estimate_equals_the_exponent_when_resolved(self):
        m = HenonMap()
        ds = max_lyapunov(m, m.initial_state(0), 200, method="twin")
        assert float(ds.lyapunov_resolved) == float(ds.lyapunov) and not bool(ds.unresolved)

    def test_no_rule_flags_only_non_finite_orbits(self):
        m = QuadraticGD([0.5, 1.0, 3.0], lr=1.0)
        ds = max_lyapunov(m, m.initial_state(0), 300, transient=100, divergence=None)
        assert not bool(ds.diverged) and float(ds.lyapunov) == pytest.approx(math.log(2.0), abs=1e-12)
