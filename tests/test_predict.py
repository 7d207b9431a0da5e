"""early_features on maps with exact answers; compare_predictors on synthetic data
where one feature determines the target and another is pure noise.

Tolerances: linear maps have exact FTLE sums (ln|det J| per step, rounding ~1e-15)
and, after a 100-step window, leading FTLEs within (0.7/0.9)^100 ~ 1e-11 of
ln|1 - lr h|; the quadratic loss is a closed form.  Predictor scores are bounded
with wide margins: a near-deterministic feature gives held-out R² ~ 0.999, noise
R² <= 0 on average (0.2 is > 5 standard errors above it for 100 folds of 16).
"""
import math

import numpy as np
import pytest
import torch
import xarray as xr

from netdyn.maps.classic import LinearMap, QuadraticGD
from netdyn.lyapunov.predict import compare_predictors, early_features, feature_matrix



def quadratic(lr=0.1, h=(1.0, 3.0)):
    return QuadraticGD(list(h), lr=lr)


class TestEarlyFeatures:
    def test_quadratic_gd_exponents_and_loss(self):
        m = quadratic()
        x0s = torch.stack([m.initial_state(s) for s in range(3)])
        ds = early_features(m, x0s, window=100, n_windows=2, k=2)
        assert ds.ftle.dims == ("init", "step", "exponent") and ds.step.values.tolist() == [100, 200]
        # sum of both FTLEs = ln|det J| = ln 0.9 + ln 0.7 in every window, whatever the basis
        assert np.allclose(2 * ds.ftle_mean, math.log(0.9) + math.log(0.7), atol=1e-12)
        # aligned second window: the largest FTLE is the exponent ln 0.9
        assert np.allclose(ds.ftle_max.isel(step=1), math.log(0.9), atol=1e-9)
        assert (ds.positive_fraction == 0).all()
        # loss at x_t = (1 - lr h)^t x0: 0.5 sum h_i (1 - lr h_i)^(2t) x0_i^2
        h, factor = np.array([1.0, 3.0]), np.array([0.9, 0.7])
        for i in range(3):
            x0 = x0s[i].numpy()
            for j, t in enumerate((100, 200)):
                expected = 0.5 * np.sum(h * factor ** (2 * t) * x0**2)
                assert float(ds.loss[i, j]) == pytest.approx(expected, rel=1e-9)
        assert not ds.diverged.any() and ds.attrs["horizon"] == 200 and ds.attrs["clv_transient"] == -1

    def test_positive_fraction_counts_expanding_directions(self):
        m = quadratic(lr=1.0, h=(0.5, 3.0))  # |1 - h| = 0.5 and 2: one expanding direction
        ds = early_features(m, m.initial_state(0), window=50, n_windows=2, k=2)
        assert float(ds.positive_fraction.isel(init=0, step=1)) == 0.5
        assert float(ds.ftle_max.isel(init=0, step=1)) == pytest.approx(math.log(2.0), abs=1e-9)

    def test_clv_angle_of_a_non_normal_linear_map(self):
        # eigenvectors (1, 0) for 2 and (1, -1.5) for 0.5: the CLVs, at a fixed angle
        m = LinearMap([[2.0, 1.0], [0.0, 0.5]])
        ds = early_features(m, m.initial_state(0), window=50, n_windows=2, k=2, clv_transient=30)
        expected = math.acos(1 / math.sqrt(1 + 1.5**2))
        assert float(ds.clv_angle_min[0]) == pytest.approx(expected, abs=1e-8)
        assert float(ds.clv_angle_median[0]) == pytest.approx(expected, abs=1e-8)
        assert ds.loss.isnull().all()  # a LinearMap reports no loss

    def test_one_state_equals_its_row_of_a_batch(self):
        m = quadratic()
        x0s = torch.stack([m.initial_state(s) for s in range(2)])
        batch = early_features(m, x0s, window=10, n_windows=3, k=1)
        single = early_features(m, x0s[1], window=10, n_windows=3, k=1)
        xr.testing.assert_equal(batch.isel(init=1, drop=True), single.isel(init=0, drop=True))

    def test_divergence_is_recorded(self):
        m = QuadraticGD([1.0], lr=1e150)  # |1 - lr h| = 1e150: overflow after 3 steps
        with pytest.warns(RuntimeWarning, match="early_features: 1 of 1 orbit"):
            ds = early_features(m, torch.ones(1, dtype=torch.float64), window=5, n_windows=2, k=1)
        assert bool(ds.diverged[0]) and ds.ftle_max.isel(step=1).isnull().all()

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"window": 0}, "expected window to be an int >= 1"),
            ({"window": 10, "k": 3}, r"expected k to be an int in \[1, 2\]"),
            ({"window": 10, "n_windows": 2, "clv_transient": 10}, "expected n_windows \\* window > 2 \\* clv_transient.*= 20"),
            ({"window": 10, "k": 1, "clv_transient": 2}, "expected .*k >= 2.*k = 1"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        m = quadratic()
        with pytest.raises(ValueError, match="early_features: " + match):
            early_features(m, m.initial_state(0), **kwargs)

    def test_bad_state_shape(self):
        with pytest.raises(ValueError, match="early_features: expected x0 of shape"):
            early_features(quadratic(), torch.zeros(3, dtype=torch.float64), window=5)


def synthetic(n=80, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    ds = xr.Dataset(
        {"signal": ("init", signal), "noise": (("init", "step"), rng.normal(size=(n, 3)))},
        coords={"init": np.arange(n), "step": [10, 20, 30]},
    )
    return ds, 2 * signal + 0.05 * rng.normal(size=n)


class TestFeatureMatrix:
    def test_columns_and_labels(self):
        ds, _ = synthetic(n=5)
        matrix, labels = feature_matrix(ds, names=["signal", "noise"])
        assert matrix.shape == (5, 4)
        assert labels == ["signal", "noise[step=10]", "noise[step=20]", "noise[step=30]"]
        assert np.array_equal(matrix[:, 2], ds.noise.sel(step=20).values)

    def test_unknown_variable(self):
        ds, _ = synthetic(n=5)
        with pytest.raises(ValueError, match="feature_matrix: expected variables of the Dataset"):
            feature_matrix(ds, names=["nope"])


class TestComparePredictors:
    sets = {"noise": ["noise"], "signal": ["signal"]}

    def test_regression_finds_the_signal(self):
        ds, y = synthetic()
        out = compare_predictors(ds, target=y, feature_sets=self.sets, n_repeats=20)
        assert out.score.dims == ("feature_set", "fold") and out.sizes["fold"] == 100
        assert float(out.score_mean.sel(feature_set="signal")) > 0.99
        assert float(out.score_mean.sel(feature_set="noise")) < 0.2
        assert float(out.win_fraction.sel(feature_set="signal")) == 1.0
        assert float(out.gain_mean.sel(feature_set="noise")) == 0.0  # the baseline against itself
        # out-of-fold predictions of the signal set track the target
        pred = out.prediction.sel(feature_set="signal", repeat=0).values
        assert np.corrcoef(pred, y)[0, 1] > 0.99
        assert out.attrs["baseline"] == "noise" and out.attrs["metric"] == "r2"

    def test_classification_against_chance(self):
        ds, y = synthetic()
        labels = (y > np.median(y)).astype(int)
        out = compare_predictors(ds, target=labels, feature_sets=self.sets, kind="classification", n_repeats=20)
        assert out.attrs["chance"] == 0.5
        assert float(out.score_mean.sel(feature_set="signal")) > 0.9
        # noise: measured 0.419.  The 100 folds reuse the same 80 samples, so the mean's error is that of one
        # data set, sqrt(0.25 / 80) ~ 0.056 (plus CV's known pull below chance for balanced noise labels):
        # 0.35..0.65 is about 2.7 of those standard errors either side of 0.5
        assert 0.35 < float(out.score_mean.sel(feature_set="noise")) < 0.65
        prob = out.prediction.sel(feature_set="signal").values
        assert ((prob >= 0) & (prob <= 1)).all()

    def test_non_finite_rows_are_dropped_for_every_set(self):
        ds, y = synthetic()
        ds["noise"][3, 1] = np.nan
        y[7] = np.inf
        with pytest.warns(RuntimeWarning, match="dropped 2 of 80"):
            out = compare_predictors(ds, target=y, feature_sets=self.sets, n_repeats=2)
        assert out.attrs["n_used"] == 78
        assert out.prediction.sel(init=[3, 7]).isnull().all()
        assert out.prediction.sel(init=[0, 1]).notnull().all()

    def test_reproducible(self):
        ds, y = synthetic()
        a = compare_predictors(ds, target=y, feature_sets=self.sets, n_repeats=3, seed=4)
        b = compare_predictors(ds, target=y, feature_sets=self.sets, n_repeats=3, seed=4)
        xr.testing.assert_identical(a, b)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"kind": "ranking"}, "expected kind to be one of"),
            ({"baseline": "other"}, "expected baseline among"),
            ({"kind": "classification"}, "expected a 0/1 target"),
            ({"n_splits": 1}, "expected n_splits to be an int >= 2"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        ds, y = synthetic()
        with pytest.raises(ValueError, match="compare_predictors: " + match):
            compare_predictors(ds, target=y, feature_sets=self.sets, **kwargs)

    def test_target_length(self):
        ds, y = synthetic()
        with pytest.raises(ValueError, match=r"compare_predictors: expected target of shape \(80,\)"):
            compare_predictors(ds, target=y[:-1], feature_sets=self.sets)
